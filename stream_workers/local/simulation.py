"""Simulated worlds for the demo and the routing benchmark, and the reference policies they
compare outroute with. Pure, seeded, no I/O.

A :class:`Scenario` is a goal whose paths' success rates change over a run of ``requests``
requests: piecewise linear in the fraction of the run done, so a sudden drop is two knots at
the same fraction and a drift is two knots apart. A :class:`World` fixes every uniform draw by
the seed: a path succeeds on request ``i`` when its draw is below its rate at ``i``. Every
policy sees the same draws, so differences between policies are the policies'.

The reference policies answer one request at a time and learn (where they learn) from the
outcome at once, with no pipeline in between:

- :class:`StaticChain`: the paths in a fixed order; the next one is tried when a path raises
  (``check=False``), or also when its output fails the success check (``check=True``).
- :class:`PlainThompson`: Beta(1 + s, 1 + f) per path, no decay, no detector, no exploration.
- :class:`Oracle`: the path with the highest true rate at that request (cheapest on ties).

``DEMO`` is ``outroute demo``'s world: three models, the best one silently degraded (bad
outputs, not exceptions) in the middle third of the run.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

__all__ = [
    "DEMO",
    "Attempt",
    "Oracle",
    "PlainThompson",
    "Policy",
    "RunRecord",
    "Scenario",
    "ScenarioPath",
    "StaticChain",
    "Tally",
    "World",
    "bernoulli_stream",
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
    #: one draw per request judges every path (common random numbers: a request a worse path
    #: gets right, a better one does too), instead of one draw per (request, path)
    shared_draws: bool = False

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


DEMO: Final = Scenario(
    "demo",
    "large-model drops from 0.95 to 0.30 with bad outputs in the middle third, then recovers",
    (
        ScenarioPath(
            "large-model", ((0.35, 0.95), (0.35, 0.30), (0.7, 0.30), (0.7, 0.95)), 0.0060, 1200.0
        ),
        ScenarioPath("medium-model", ((0.0, 0.88),), 0.0020, 700.0),
        ScenarioPath("small-model", ((0.0, 0.75),), 0.0004, 300.0),
    ),
    (("normal", 0.0), ("degraded", 0.35), ("recovered", 0.7)),
    watch="large-model",
    degrade_at=0.35,
    recover_at=0.7,
    shared_draws=True,
)


class World:
    """One scenario's run of ``requests`` requests under one seed."""

    def __init__(self, scenario: Scenario, requests: int, seed: int = 0) -> None:
        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
            raise ValueError(f"requests must be an int >= 1, got {requests!r}")
        self.scenario = scenario
        self.requests = requests
        self.seed = seed
        rng = random.Random(f"{scenario.name}/{seed}")
        width = 1 if scenario.shared_draws else len(scenario.paths)
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

    @property
    def paths(self) -> tuple[ScenarioPath, ...]:
        return self.scenario.paths

    def available(self, i: int) -> tuple[str, ...]:
        fraction = self.fraction(i)
        return tuple(p.name for p in self.scenario.paths if fraction >= p.available_from)

    def rate(self, path: str, i: int) -> float:
        return self.scenario.paths[self._index[path]].rate(self.fraction(i))

    def attempt(self, path: str, i: int) -> Attempt:
        """What calling ``path`` for request ``i`` gives (the same for every policy)."""
        index = self._index[path]
        spec = self.scenario.paths[index]
        draw = self._draws[i][0 if self.scenario.shared_draws else index]
        ok = draw < spec.rate(self.fraction(i))
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


@dataclass
class Tally:
    """Successes and requests per phase, and traffic per path."""

    requests: Counter[str] = field(default_factory=Counter)
    successes: Counter[str] = field(default_factory=Counter)
    traffic: Counter[tuple[str, str]] = field(default_factory=Counter)  # (phase, path)
    cost_usd: float = 0.0

    def add(self, phase: str, path: str, success: bool, cost_usd: float) -> None:
        self.requests[phase] += 1
        self.successes[phase] += success
        self.traffic[phase, path] += 1
        self.cost_usd += cost_usd

    def rate(self, phase: str | None = None) -> float | None:
        if phase is None:
            total = sum(self.requests.values())
            return sum(self.successes.values()) / total if total else None
        n = self.requests[phase]
        return self.successes[phase] / n if n else None


def bernoulli_stream(rates: list[float], counts: list[int], seed: int) -> list[float]:
    """Rewards (1.0 or 0.0): ``counts[k]`` outcomes at success rate ``rates[k]``, in order."""
    rng = random.Random(seed)
    return [
        1.0 if rng.random() < rate else 0.0
        for rate, count in zip(rates, counts, strict=True)
        for _ in range(count)
    ]
