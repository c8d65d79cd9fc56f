"""The routing benchmark's seeded worlds and the reference policies it compares. Pure, no I/O.

A :class:`Scenario` is a goal whose paths' success rates change over a run of ``requests``
requests: piecewise linear in the fraction of the run done, so a sudden drop is two knots at
the same fraction and a drift is two knots apart. Every (request, path) pair has one uniform
draw, fixed by the seed: a path succeeds on request ``i`` when its draw is below its rate at
``i``. Every policy sees the same draws, so differences between policies are the policies'.

The reference policies answer one request at a time and learn (where they learn) from the
outcome at once, with no pipeline in between:

- :class:`StaticChain`: the paths in a fixed order; the next one is tried when a path raises
  (``check=False``), or also when its output fails the success check (``check=True``).
- :class:`PlainThompson`: Beta(1 + s, 1 + f) per path, no decay, no detector, no exploration.
- :class:`Oracle`: the path with the highest true rate at that request (cheapest on ties).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

__all__ = [
    "SCENARIOS",
    "Attempt",
    "Oracle",
    "PlainThompson",
    "RunRecord",
    "Scenario",
    "ScenarioPath",
    "StaticChain",
    "World",
    "mean_interval",
    "requests_until_share",
    "run_reference",
]


@dataclass(frozen=True)
class ScenarioPath:
    name: str
    #: (fraction of the run, success rate) knots, linear in between, flat outside
    rates: tuple[tuple[float, float], ...]
    cost_usd: float
    latency_ms: float
    #: failures of this path are exceptions (a timeout, a 5xx), not bad outputs
    raises: bool = False
    #: the fraction of the run from which the path exists (a path added mid-run)
    available_from: float = 0.0

    def __post_init__(self) -> None:
        if not self.rates:
            raise ValueError(f"path {self.name!r}: rates needs at least one knot")
        fractions = [f for f, _ in self.rates]
        if fractions != sorted(fractions) or not all(0.0 <= f <= 1.0 for f in fractions):
            raise ValueError(f"path {self.name!r}: knot fractions must rise within [0, 1]")
        if not all(0.0 <= r <= 1.0 for _, r in self.rates):
            raise ValueError(f"path {self.name!r}: success rates must be in [0, 1]")

    def rate(self, fraction: float) -> float:
        knots = self.rates
        if fraction < knots[0][0]:
            return knots[0][1]
        for (f0, r0), (f1, r1) in itertools.pairwise(knots):
            if f0 <= fraction < f1:
                return r0 + (r1 - r0) * (fraction - f0) / (f1 - f0)
        return knots[-1][1]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    paths: tuple[ScenarioPath, ...]
    #: (phase name, fraction of the run where it starts), in order, the first at 0
    phases: tuple[tuple[str, float], ...]
    #: the path whose traffic is watched: it degrades, recovers, or (new path) arrives
    watch: str
    #: when the watched path starts to go bad / comes back / arrives (fractions)
    degrade_at: float | None = None
    recover_at: float | None = None

    def __post_init__(self) -> None:
        names = [p.name for p in self.paths]
        if len(set(names)) != len(names):
            raise ValueError(f"scenario {self.name!r}: path names repeat")
        if self.watch not in names:
            raise ValueError(f"scenario {self.name!r}: watch {self.watch!r} is not a path")
        if not self.phases or self.phases[0][1] != 0.0:
            raise ValueError(f"scenario {self.name!r}: the first phase must start at 0")

    @property
    def phase_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.phases)

    def path(self, name: str) -> ScenarioPath:
        for spec in self.paths:
            if spec.name == name:
                return spec
        raise KeyError(name)


_BEST, _SECOND, _THIRD = 0.98, 0.97, 0.90


def _paths(
    a_rates: tuple[tuple[float, float], ...], *, a_raises: bool = False
) -> tuple[ScenarioPath, ...]:
    """Three LLM-like paths. model-a (a tuned small model) is the best and the cheapest, the
    first in any chain; model-b is as good within the tie margin but twice the price and
    slower, model-c is clearly worse (7 points below model-b, beyond the 5-point margin), so
    every policy should prefer model-a, and model-b while model-a is bad."""
    return (
        ScenarioPath("model-a", a_rates, 0.0020, 600.0, raises=a_raises),
        ScenarioPath("model-b", ((0.0, _SECOND),), 0.0060, 1200.0),
        ScenarioPath("model-c", ((0.0, _THIRD),), 0.0040, 900.0),
    )


_DROP, _BACK = 0.2, 0.45  # where the sudden drop starts and where it recovers

SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario(
        "stationary",
        "control: nothing changes",
        _paths(((0.0, _BEST),)),
        (("first half", 0.0), ("second half", 0.5)),
        watch="model-a",
    ),
    Scenario(
        "sudden",
        "model-a drops from 0.98 to 0.30 with bad outputs, no exceptions",
        _paths(((_DROP, _BEST), (_DROP, 0.30))),
        (("before", 0.0), ("degraded", _DROP)),
        watch="model-a",
        degrade_at=_DROP,
    ),
    Scenario(
        "exceptions",
        "model-a drops from 0.98 to 0.30, its failures are exceptions",
        _paths(((_DROP, _BEST), (_DROP, 0.30)), a_raises=True),
        (("before", 0.0), ("degraded", _DROP)),
        watch="model-a",
        degrade_at=_DROP,
    ),
    Scenario(
        "drift",
        "model-a slides from 0.98 to 0.40 over 40% of the run, bad outputs",
        _paths(((_DROP, _BEST), (0.6, 0.40))),
        (("before", 0.0), ("drifting", _DROP), ("drifted", 0.6)),
        watch="model-a",
        degrade_at=_DROP,
    ),
    Scenario(
        "recovery",
        "model-a drops from 0.98 to 0.30, then comes back to 0.98",
        _paths(((_DROP, _BEST), (_DROP, 0.30), (_BACK, 0.30), (_BACK, _BEST))),
        (("before", 0.0), ("degraded", _DROP), ("recovered", _BACK)),
        watch="model-a",
        degrade_at=_DROP,
        recover_at=_BACK,
    ),
    Scenario(
        "new-path",
        "model-d (0.99, half the price of model-a) is added at 30% of the run",
        (
            *_paths(((0.0, _BEST),)),
            ScenarioPath("model-d", ((0.0, 0.99),), 0.0010, 500.0, available_from=0.3),
        ),
        (("before", 0.0), ("after", 0.3)),
        watch="model-d",
        recover_at=0.3,
    ),
)


class World:
    """One scenario's run of ``requests`` requests under one seed."""

    def __init__(self, scenario: Scenario, requests: int, seed: int) -> None:
        if requests < 1:
            raise ValueError(f"requests must be >= 1, got {requests!r}")
        self.scenario = scenario
        self.requests = requests
        self.seed = seed
        rng = random.Random(f"{scenario.name}/{seed}")
        width = len(scenario.paths)
        self._draws = [[rng.random() for _ in range(width)] for _ in range(requests)]
        self._index = {p.name: i for i, p in enumerate(scenario.paths)}
        phases = scenario.phases
        self._phase_starts = [(name, math.ceil(start * requests)) for name, start in phases]

    def fraction(self, i: int) -> float:
        return i / self.requests

    def at(self, fraction: float | None) -> int | None:
        """The first request index at or after ``fraction`` of the run."""
        return None if fraction is None else math.ceil(fraction * self.requests)

    def phase(self, i: int) -> str:
        current = self._phase_starts[0][0]
        for name, start in self._phase_starts:
            if i >= start:
                current = name
        return current

    def available(self, i: int) -> tuple[str, ...]:
        fraction = self.fraction(i)
        return tuple(p.name for p in self.scenario.paths if fraction >= p.available_from)

    def rate(self, path: str, i: int) -> float:
        return self.scenario.paths[self._index[path]].rate(self.fraction(i))

    def attempt(self, path: str, i: int) -> Attempt:
        """What calling ``path`` for request ``i`` gives (the same for every policy)."""
        spec = self.scenario.paths[self._index[path]]
        ok = self._draws[i][self._index[path]] < spec.rate(self.fraction(i))
        return Attempt(
            path,
            ok,
            raised=not ok and spec.raises,
            cost_usd=spec.cost_usd,
            latency_ms=spec.latency_ms,
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    path: str
    ok: bool
    raised: bool
    cost_usd: float
    latency_ms: float


@dataclass
class RunRecord:
    """One policy's run: per request, the first path it tried, whether the request ended well,
    and what all its attempts cost."""

    paths: list[str] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    cost_usd: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)

    def add(self, attempts: Sequence[Attempt]) -> None:
        self.paths.append(attempts[0].path)
        self.ok.append(attempts[-1].ok)
        self.cost_usd.append(sum(a.cost_usd for a in attempts))
        self.latency_ms.append(sum(a.latency_ms for a in attempts))

    def success(self, start: int = 0, stop: int | None = None) -> float:
        part = self.ok[start:stop]
        return sum(part) / len(part) if part else math.nan


class Policy(Protocol):
    def answer(self, world: World, i: int) -> list[Attempt]: ...


class StaticChain:
    """The paths present at the start, in the scenario's order; it never learns of new ones."""

    def __init__(self, check: bool) -> None:
        self.check = check

    def answer(self, world: World, i: int) -> list[Attempt]:
        attempts = []
        for path in world.available(0):
            attempt = world.attempt(path, i)
            attempts.append(attempt)
            if attempt.ok or not (attempt.raised or self.check):
                break
        return attempts


class PlainThompson:
    """Textbook Thompson sampling over the paths available at each request."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._counts: dict[str, list[float]] = {}

    def answer(self, world: World, i: int) -> list[Attempt]:
        best, best_draw = "", -1.0
        for path in world.available(i):
            s, f = self._counts.setdefault(path, [0.0, 0.0])
            draw = self._rng.betavariate(1.0 + s, 1.0 + f)
            if draw > best_draw:
                best, best_draw = path, draw
        attempt = world.attempt(best, i)
        self._counts[best][0 if attempt.ok else 1] += 1.0
        return [attempt]


class Oracle:
    """Knows every path's true rate at every request."""

    def answer(self, world: World, i: int) -> list[Attempt]:
        scenario = world.scenario
        best = max(
            world.available(i),
            key=lambda p: (world.rate(p, i), -scenario.path(p).cost_usd),
        )
        return [world.attempt(best, i)]


def run_reference(world: World, policy: Policy) -> RunRecord:
    record = RunRecord()
    for i in range(world.requests):
        record.add(policy.answer(world, i))
    return record


def requests_until_share(
    paths: Sequence[str],
    path: str,
    start: int,
    *,
    below: float | None = None,
    at_least: float | None = None,
    window: int = 100,
) -> int | None:
    """Requests from ``start`` until the next ``window`` requests send ``path`` a share below
    ``below`` (or at least ``at_least``); None when that never happens."""
    if (below is None) == (at_least is None):
        raise ValueError("give exactly one of below and at_least")
    n = len(paths)
    if start + window > n:
        return None
    count = sum(1 for p in paths[start : start + window] if p == path)
    for k in range(start, n - window + 1):
        if k > start:
            count += (paths[k + window - 1] == path) - (paths[k - 1] == path)
        share = count / window
        if (below is not None and share < below) or (at_least is not None and share >= at_least):
            return k - start
    return None


def _t_quantile(p: float, df: int) -> float:
    """Student's t quantile by bisection on its CDF (df >= 1), to 1e-9."""
    from stream_workers.pipeline.posterior import beta_cdf

    def cdf(t: float) -> float:
        tail = 0.5 * beta_cdf(df / (df + t * t), df / 2.0, 0.5)
        return 1.0 - tail if t >= 0 else tail

    lo, hi = -1e3, 1e3
    while hi - lo > 1e-9:
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2.0


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its ``confidence`` t-interval (0 for a single value)."""
    if not values:
        raise ValueError("no values")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, _t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
