"""Beta-distribution mathematics and the decayed Beta posterior (pure, no I/O)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = ["DecayedBeta", "beta_cdf", "prob_below", "prob_below_at_most"]

_EPS: Final = 1e-15
_TINY: Final = 1e-300


def _continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's evaluation of the continued fraction of the incomplete beta function."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """P(X <= x) for X ~ Beta(a, b): the regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _continued_fraction(a, b, x) / a
    return 1.0 - front * _continued_fraction(b, a, 1.0 - x) / b


def _support(a: float, b: float) -> tuple[float, float]:
    """Where ``prob_below`` integrates Beta(a, b): its mean ± 8 standard deviations, in [0, 1]."""
    mean = a / (a + b)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
    return max(0.0, mean - 8 * sd), min(1.0, mean + 8 * sd)


def prob_below(
    a1: float, b1: float, a2: float, b2: float, margin: float, points: int = 96
) -> float:
    """P(X < Y - margin) for independent X ~ Beta(a1, b1), Y ~ Beta(a2, b2).

    Integrates F_X(y - margin) against Y's density on a grid of quantiles of Y (midpoint rule
    in probability space), accurate to ~1e-3, plenty to compare with a 0.99 threshold.
    """
    total = 0.0
    lo, hi = _support(a2, b2)
    step = (hi - lo) / points
    log_norm = math.lgamma(a2 + b2) - math.lgamma(a2) - math.lgamma(b2)
    weight = 0.0
    for i in range(points):
        y = lo + (i + 0.5) * step
        density = math.exp(log_norm + (a2 - 1) * math.log(y) + (b2 - 1) * math.log1p(-y))
        weight += density
        total += density * beta_cdf(y - margin, a1, b1)
    return total / weight if weight > 0 else 0.0


def prob_below_at_most(a1: float, b1: float, a2: float, b2: float, margin: float) -> float:
    """An upper bound of ``prob_below`` for one incomplete beta instead of ``points``: that
    integral is a weighted mean of F_X(y - margin) over points y below the top of Y's support,
    and F_X grows with y."""
    return beta_cdf(_support(a2, b2)[1] - margin, a1, b1)


@dataclass(slots=True)
class DecayedBeta:
    """Beta(1 + s, 1 + f) with s and f decayed by event time (half-life in seconds).

    Contributions are kept as of ``t_ref``, the latest event time applied; an older event
    enters with weight 2^-(age / half_life). The result does not depend on the order in which
    events are applied.
    """

    half_life: float
    s: float = 0.0
    f: float = 0.0
    t_ref: float | None = None
    n: int = 0

    def update(self, reward: float, event_time: float) -> None:
        if self.t_ref is None:
            self.t_ref = event_time
        if event_time > self.t_ref:
            factor = 2.0 ** (-(event_time - self.t_ref) / self.half_life)
            self.s *= factor
            self.f *= factor
            self.t_ref = event_time
            weight = 1.0
        else:
            weight = 2.0 ** (-(self.t_ref - event_time) / self.half_life)
        self.s += weight * reward
        self.f += weight * (1.0 - reward)
        self.n += 1

    def at(self, moment: float) -> tuple[float, float]:
        """(alpha, beta) decayed to ``moment`` (no decay before t_ref)."""
        if self.t_ref is None or moment <= self.t_ref:
            return 1.0 + self.s, 1.0 + self.f
        factor = 2.0 ** (-(moment - self.t_ref) / self.half_life)
        return 1.0 + self.s * factor, 1.0 + self.f * factor

    @property
    def alpha(self) -> float:
        return 1.0 + self.s

    @property
    def beta(self) -> float:
        return 1.0 + self.f

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def reset(self, rewards: list[tuple[float, float]]) -> None:
        """Start again from these (reward, event_time) pairs only."""
        self.s = self.f = 0.0
        self.t_ref = None
        self.n = 0
        for reward, at in rewards:
            self.update(reward, at)
