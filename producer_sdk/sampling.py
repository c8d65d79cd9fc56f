"""Path selection: pure functions, no I/O, an explicit RNG.

The rules, in order:

1. ``force_path`` given: that path (``forced``) -- handled by the Router.
2. No policy could ever be loaded: the first path (``fallback``) -- handled by the Router.
3. Every candidate has fewer than ``min_samples`` outcomes: uniform (``cold_start``).
4. With probability ``exploration_rate``, a decision may explore (``explore``): a path other
   than the Thompson winner worth learning about. Cold or stale paths (no outcome for
   ``staleness`` seconds) come first; else the path whose draw in the same Thompson round was
   the largest after the winner's (the one most likely to be best after it), provided that
   draw reached the tie set (the best posterior mean less ``tie_margin``): a path that could
   be chosen, as the best or as good and cheaper. A path whose draw falls short is known to
   be worse, and a request spent on it is a failure bought for nothing: that decision takes
   the winner (``exploit``). Measured (``bench/routing.py``): sending every exploration to the
   largest other draw cost 2.5 points of success where the only other path was 25 points
   worse, and 0.7 where it was 7 points worse. Paths with an open degradation alert are
   left out: each costs the failures of a known-bad path. Instead a decision probes each of
   them with a probability that starts at ``probe_start`` when this router first sees the
   alert and halves every ``probe_half_life`` of its decisions down to
   ``recovery_probe_rate`` (together at most what exploration leaves), like a breaker's
   half-open state: many probes while the incident may be short, few once it lasts; the
   workers resolve the alert on the probes' evidence (``explore``).
5. Otherwise theta ~ Beta(alpha, beta) per path and the largest draw wins (``exploit``).
   Trust invariant: success rate dominates. Cost, then latency, break ties only among paths
   whose posterior mean is within ``tie_margin`` of the best posterior mean.

Drawing from a Beta distribution with ``random.betavariate`` costs about a microsecond, too
much per path per decision. Each :class:`Arm` therefore carries its posterior's quantile
function at ``QUANTILE_KNOTS + 1`` evenly spaced probabilities, computed once per snapshot (off
the hot path) by ``schemas.beta.beta_ppf``; a draw is a uniform variate pushed through that
function with linear interpolation (inverse-transform sampling). Computing those tables costs
about 3 ms, and a busy goal's snapshot changes every 200 ms (a process routing 1,000 goals
would spend 15 s a second on them). When a posterior has moved by less than
``_SHIFT_WITHIN`` of its parameters since its tables were computed, it keeps those tables and
an affine map from their mean and standard deviation to its own (``Arm.affine``: one
multiply-add per draw, no table built). For Beta(a, b) with a + b >= ``_SHIFT_MIN`` the draws
are then off by at most 0.045 of the posterior's standard deviation over the central table
and 0.1 in the outermost 1/K of either tail (measured over moves of 10 % from Beta(25, 25),
Beta(40, 12), Beta(60, 60), Beta(950, 50) and Beta(2700, 55); tested): far inside the
posterior's own spread, which is what a Thompson draw samples.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from schemas import Reason
from schemas.beta import beta_ppf
from schemas.policy import MIN_SAMPLES, STALENESS

__all__ = [
    "QUANTILE_KNOTS",
    "Arm",
    "ArmSet",
    "SamplingParams",
    "beta_quantiles",
    "choose",
    "cold_arm",
    "probe_rate",
    "shift",
    "thompson_winner",
]

QUANTILE_KNOTS: Final = 512


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """The knobs of path selection (the rules above), and their defaults: 10 % exploration,
    20 outcomes before a path is no longer cold and 7 days without one before it is stale (the
    workers' thresholds too: ``schemas.policy``), a tie margin of 5 points of success rate;
    recovery probes of an alerted path from 3 % of decisions, halving every 200 decisions, down
    to 1.5 %. ``staleness`` is in seconds.

    ``local_outcomes``: the router folds its own process's outcomes into its policy until the
    snapshot counts them, and watches them for a sudden drop (``producer_sdk._impl.local``)."""

    exploration_rate: float = 0.1
    min_samples: int = MIN_SAMPLES
    tie_margin: float = 0.05
    #: the probes' floor: 1 % gave a recovery back at half the traffic after ~1,050 requests
    #: (bench/routing.py), 1.5 % within the 1,000 of the target, for 0.3 points of success in
    #: a long degradation
    recovery_probe_rate: float = 0.015
    staleness: float = STALENESS
    probe_start: float = 0.03
    probe_half_life: int = 200
    local_outcomes: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.exploration_rate <= 1.0:
            raise ValueError(f"exploration_rate must be in [0, 1], got {self.exploration_rate}")
        if not 0.0 <= self.recovery_probe_rate <= 1.0:
            raise ValueError(
                f"recovery_probe_rate must be in [0, 1], got {self.recovery_probe_rate}"
            )
        if isinstance(self.min_samples, bool) or self.min_samples < 0:
            raise ValueError(f"min_samples must be a non-negative int, got {self.min_samples}")
        if not 0.0 <= self.tie_margin <= 1.0:
            raise ValueError(f"tie_margin must be in [0, 1], got {self.tie_margin}")
        if not 0.0 <= self.probe_start <= 1.0:
            raise ValueError(f"probe_start must be in [0, 1], got {self.probe_start}")
        half = self.probe_half_life
        if isinstance(half, bool) or not isinstance(half, int) or half < 1:
            raise ValueError(f"probe_half_life must be an int >= 1 (decisions), got {half!r}")
        if not isinstance(self.local_outcomes, bool):
            raise ValueError(f"local_outcomes must be True or False, got {self.local_outcomes!r}")
        staleness = self.staleness
        if isinstance(staleness, bool) or not isinstance(staleness, int | float) or staleness <= 0:
            raise ValueError(f"staleness must be a positive duration in seconds, got {staleness!r}")


#: Tables are shifted rather than computed again within this relative change of alpha and
#: beta, for posteriors resting on at least _SHIFT_MIN outcomes (see the module docstring).
_SHIFT_WITHIN: Final = 0.10
_SHIFT_MIN: Final = 50.0

_K: Final = QUANTILE_KNOTS
_MAIN_P: Final = [k / _K for k in range(_K + 1)]
_LOWER_P: Final = [j / (_K * _K) for j in range(_K + 1)]
_UPPER_P: Final = [1.0 - 1.0 / _K + j / (_K * _K) for j in range(_K + 1)]
_UNIFORM_TABLES: Final = (tuple(_MAIN_P), tuple(_LOWER_P), tuple(_UPPER_P))

Tables = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]


def beta_quantiles(alpha: float, beta: float) -> Tables:
    """The quantile function of Beta(alpha, beta) as three tables: at probabilities k/K, and,
    finer, at j/K^2 within the lowest and the highest 1/K (K = QUANTILE_KNOTS)."""
    if not (alpha > 0 and beta > 0 and math.isfinite(alpha) and math.isfinite(beta)):
        raise ValueError(f"Beta parameters must be positive and finite, got ({alpha}, {beta})")
    if alpha == 1.0 and beta == 1.0:
        return _UNIFORM_TABLES
    if alpha < 1.0 or beta < 1.0:
        return _tables_by_sampling(alpha, beta)
    probabilities = sorted({*_MAIN_P, *_LOWER_P, *_UPPER_P})
    at = dict(zip(probabilities, beta_ppf(alpha, beta, probabilities), strict=True))
    return (
        tuple(at[p] for p in _MAIN_P),
        tuple(at[p] for p in _LOWER_P),
        tuple(at[p] for p in _UPPER_P),
    )


def _moments(alpha: float, beta: float) -> tuple[float, float]:
    total = alpha + beta
    return alpha / total, math.sqrt(alpha * beta / (total * total * (total + 1.0)))


def shift(source: tuple[float, float], alpha: float, beta: float) -> tuple[float, float] | None:
    """(offset, scale) that move draws from the tables of Beta(``source``) to the mean and
    standard deviation of Beta(alpha, beta), when that is close enough to computing its
    own tables (module docstring); else None."""
    a0, b0 = source
    if (
        a0 + b0 < _SHIFT_MIN
        or abs(alpha - a0) > _SHIFT_WITHIN * a0
        or abs(beta - b0) > _SHIFT_WITHIN * b0
    ):
        return None
    m0, s0 = _moments(a0, b0)
    m1, s1 = _moments(alpha, beta)
    scale = s1 / s0
    return m1 - m0 * scale, scale


def _tables_by_sampling(alpha: float, beta: float) -> Tables:
    # A density with a pole at 0 or 1 (a parameter below 1) defeats the midpoint rule. Such
    # posteriors never come from the workers (alpha, beta >= 1); use empirical quantiles of a
    # large deterministic sample so that a hand-written snapshot still works.
    rng = random.Random(f"{alpha}:{beta}")
    n = 64 * _K
    sample = sorted(rng.betavariate(alpha, beta) for _ in range(n))

    def at(p: float) -> float:
        return sample[min(n - 1, int(p * n))]

    return (
        tuple(at(p) for p in _MAIN_P),
        tuple(at(p) for p in _LOWER_P),
        tuple(at(p) for p in _UPPER_P),
    )


@dataclass(frozen=True, slots=True)
class Arm:
    """One candidate path as sampling sees it. Immutable; built once per snapshot."""

    name: str
    alpha: float = 1.0
    beta: float = 1.0
    n: int = 0
    cold: bool = True
    stale: bool = False
    #: an alert is open on it: only recovery probes explore it
    degrading: bool = False
    #: the router's count of decisions when it first saw that alert (the probes' clock)
    alerted_at: int = 0
    mean_cost: float | None = None
    mean_latency: float | None = None
    tables: Tables = _UNIFORM_TABLES
    #: the (alpha, beta) ``tables`` were computed for, when that is not this arm's own: its
    #: draws are then moved by ``affine`` = (offset, scale)
    tables_of: tuple[float, float] | None = None
    affine: tuple[float, float] | None = None

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def draw(self, u: float) -> float:
        """The posterior quantile at probability ``u`` in [0, 1): one Thompson draw."""
        d = _draw(self.tables, u)
        return d if self.affine is None else self.affine[0] + self.affine[1] * d


def _draw(tables: Tables, u: float) -> float:
    pos = u * _K
    i = int(pos)
    if 0 < i < _K - 1:
        q = tables[0]
    else:  # the lowest or highest 1/K of probability: use the finer tail table
        q = tables[1] if i == 0 else tables[2]
        pos = (pos - i) * _K
        i = int(pos)
    lo = q[i]
    return lo + (pos - i) * (q[i + 1] - lo)


def cold_arm(name: str) -> Arm:
    """A path nothing is known about: Beta(1, 1), no outcomes."""
    return Arm(name)


class ArmSet:
    """Candidates compiled for fast repeated choice: everything that does not depend on the
    random draws (tie set, cost/latency ranking, cold flags) is computed once here."""

    __slots__ = (
        "affine",
        "all_cold",
        "arms",
        "count",
        "degrading",
        "in_tie",
        "tables",
        "tie_floor",
        "tie_rank",
    )

    def __init__(self, arms: Sequence[Arm], tie_margin: float) -> None:
        if not arms:
            raise ValueError("at least one arm is needed")
        self.arms = tuple(arms)
        self.count = len(self.arms)
        self.tables = tuple(arm.tables for arm in self.arms)
        self.affine: tuple[tuple[float, float] | None, ...] | None = None
        if any(arm.affine is not None for arm in self.arms):
            self.affine = tuple(arm.affine for arm in self.arms)
        self.all_cold = all(arm.cold for arm in self.arms)
        self.degrading = tuple(i for i, arm in enumerate(self.arms) if arm.degrading)
        floor = max(arm.mean for arm in self.arms) - tie_margin
        #: the lowest posterior mean of the tie set: the bar an exploration draw must reach
        self.tie_floor = floor
        self.in_tie = tuple(arm.mean >= floor for arm in self.arms)
        tied = [i for i in range(self.count) if self.in_tie[i]]
        self.tie_rank: tuple[int, ...] | None = None
        if len(tied) > 1:
            use_cost = all(self.arms[i].mean_cost is not None for i in tied)
            use_latency = all(self.arms[i].mean_latency is not None for i in tied)
            if use_cost or use_latency:
                keys = [
                    (
                        (arm.mean_cost or 0.0) if use_cost else 0.0,
                        (arm.mean_latency or 0.0) if use_latency else 0.0,
                    )
                    for arm in self.arms
                ]
                distinct = sorted(set(keys))
                self.tie_rank = tuple(distinct.index(key) for key in keys)


def thompson_winner(arm_set: ArmSet, rng: random.Random) -> int:
    """Index of the Thompson winner; cost, then latency, break ties within the margin."""
    return _thompson(arm_set, rng)[0]


def _thompson(arm_set: ArmSet, rng: random.Random) -> tuple[int, list[float]]:
    """The Thompson winner and every arm's draw."""
    rand = rng.random
    k = _K
    best_i = 0
    best_draw = -1.0
    draws: list[float] = []
    append = draws.append
    affine = arm_set.affine
    for i, tables in enumerate(arm_set.tables):
        # Arm.draw() inlined: this loop is the cost of a decision.
        pos = rand() * k
        j = int(pos)
        if 0 < j < k - 1:
            q = tables[0]
        else:
            q = tables[1] if j == 0 else tables[2]
            pos = (pos - j) * k
            j = int(pos)
        lo = q[j]
        d = lo + (pos - j) * (q[j + 1] - lo)
        if affine is not None and (move := affine[i]) is not None:
            d = move[0] + move[1] * d
        append(d)
        if d > best_draw:
            best_draw, best_i = d, i
    rank = arm_set.tie_rank
    if rank is None or not arm_set.in_tie[best_i]:
        # No tie to break, or a lucky draw of a path below the margin (Thompson exploration).
        return best_i, draws
    in_tie = arm_set.in_tie
    winner = best_i
    for i in range(arm_set.count):
        if in_tie[i] and (
            rank[i] < rank[winner] or (rank[i] == rank[winner] and draws[i] > draws[winner])
        ):
            winner = i
    return winner, draws


def probe_rate(arm: Arm, decisions: int, params: SamplingParams) -> float:
    """The chance that a decision probes ``arm`` (alerted) when the router has made
    ``decisions``: ``probe_start`` when it first saw the alert, halving every
    ``probe_half_life`` decisions, never under ``recovery_probe_rate``."""
    floor = params.recovery_probe_rate
    age = max(0, decisions - arm.alerted_at)
    decay: float = 0.5 ** (age / params.probe_half_life)
    return floor + max(0.0, params.probe_start - floor) * decay


def choose(
    arm_set: ArmSet, rng: random.Random, params: SamplingParams, decisions: int = 0
) -> tuple[int, Reason]:
    """Pick one arm by rules 3-5 above (the caller handles forced and fallback).
    ``decisions`` is the router's count of decisions so far: the probes' clock."""
    count = arm_set.count
    if arm_set.all_cold:
        return (rng.randrange(count) if count > 1 else 0), "cold_start"
    if count > 1:
        u = rng.random()
        if u < params.exploration_rate:
            winner, draws = _thompson(arm_set, rng)
            arms = arm_set.arms
            others = [i for i in range(count) if i != winner and not arms[i].degrading]
            preferred = [i for i in others if arms[i].cold or arms[i].stale]
            if preferred:
                return max(preferred, key=draws.__getitem__), "explore"
            if not others:  # every other path has an open alert: probes alone look at them
                return winner, "exploit"
            challenger = max(others, key=draws.__getitem__)
            if draws[challenger] >= arm_set.tie_floor:
                return challenger, "explore"
            return winner, "exploit"  # nothing worth learning this time
        degrading = arm_set.degrading
        if degrading:
            arms = arm_set.arms
            rates = [probe_rate(arms[i], decisions, params) for i in degrading]
            room = 1.0 - params.exploration_rate
            total = sum(rates)
            scale = room / total if total > room else 1.0
            left = u - params.exploration_rate
            for i, rate in zip(degrading, rates, strict=True):
                left -= rate * scale
                if left < 0:
                    return i, "explore"
    return thompson_winner(arm_set, rng), "exploit"
