"""The routing benchmark's seeded scenarios and its measures. Pure, no I/O.

The worlds, the reference policies and ``run_reference`` are the demo's as well; they live in
``stream_workers.local.simulation`` and are re-exported here for the benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from schemas.beta import beta_cdf
from stream_workers.local.simulation import (
    Attempt,
    Oracle,
    PlainThompson,
    Policy,
    RunRecord,
    Scenario,
    ScenarioPath,
    StaticChain,
    World,
    run_reference,
)

__all__ = [
    "SCENARIOS",
    "Attempt",
    "Oracle",
    "PlainThompson",
    "Policy",
    "RunRecord",
    "Scenario",
    "ScenarioPath",
    "StaticChain",
    "World",
    "mean_interval",
    "outcomes_until_share_below",
    "requests_until_share",
    "run_reference",
]


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


def _far_paths(a_rates: tuple[tuple[float, float], ...]) -> tuple[ScenarioPath, ...]:
    """Alternatives far apart: model-a (0.95 while healthy), then model-b at 0.80 and model-c
    at 0.55. When model-a fails, every request sent to model-c costs 25 points."""
    return (
        ScenarioPath("model-a", a_rates, 0.0020, 600.0),
        ScenarioPath("model-b", ((0.0, 0.80),), 0.0060, 1200.0),
        ScenarioPath("model-c", ((0.0, 0.55),), 0.0040, 900.0),
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
        "far-sudden",
        "model-a drops from 0.95 to 0.30; the others are far apart: 0.80 and 0.55",
        _far_paths(((_DROP, 0.95), (_DROP, 0.30))),
        (("before", 0.0), ("degraded", _DROP)),
        watch="model-a",
        degrade_at=_DROP,
    ),
    Scenario(
        "far-recovery",
        "the same, and model-a comes back to 0.95",
        _far_paths(((_DROP, 0.95), (_DROP, 0.30), (_BACK, 0.30), (_BACK, 0.95))),
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


def outcomes_until_share_below(
    paths: Sequence[str], path: str, start: int, below: float, window: int = 20
) -> int | None:
    """How many of the requests from ``start`` went to ``path`` until its share fell below
    ``below``: up to the end of the first ``window`` requests that send it less; None when
    that never happens."""
    left = requests_until_share(paths, path, start, below=below, window=window)
    if left is None:
        return None
    return sum(1 for p in paths[start : start + left + window] if p == path)


def _t_quantile(p: float, df: int) -> float:
    """Student's t quantile by bisection on its CDF (df >= 1), to 1e-9."""

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
