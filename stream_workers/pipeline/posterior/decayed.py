"""The decayed Beta posterior of one path (pure, no I/O)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = ["HALF_LIFE", "HALF_LIFE_OUTCOMES", "MAX_HALF_LIFE", "DecayedBeta"]

#: Default half-life of an outcome's weight, in seconds of event time: a day.
HALF_LIFE: Final = 24 * 3600.0
#: Default half-life in outcomes: an outcome's weight halves after a day or after this many
#: newer outcomes of its path, whichever comes later. By time alone a path with 10 outcomes a
#: day holds 10 / ln 2 = 14 effective outcomes: a posterior too noisy to route by, and a
#: detector baseline that never reaches ``min_baseline`` (bench/low_traffic.py: over 90 days at
#: 10 a day the default never alerted and routed 84 % successes where the oracle got 90 %).
#: Paths with more than 100 outcomes a day decay by time as before.
HALF_LIFE_OUTCOMES: Final = 100.0
#: Default longest half-life: whatever the count, a weight halves within a week, so that a
#: path whose traffic left it still forgets a degradation (counted alone, 200 outcomes at 10 a
#: day saw traffic come back within 30 days of a recovery in 1 of 10 runs; bounded, in all 10).
MAX_HALF_LIFE: Final = 7 * 24 * 3600.0


@dataclass(slots=True)
class DecayedBeta:
    """Beta(1 + s, 1 + f) with s and f decayed by event time (half-lives in seconds) and, when
    ``half_life_outcomes`` > 0, by count.

    Contributions are kept as of ``t_ref``, the latest event time applied. A newer outcome
    decays the older ones by dt / half_life half-lives (dt: the event time since ``t_ref``),
    but by no more than 1 / half_life_outcomes of one and no less than dt / max_half_life. At
    a steady pace an outcome's weight thus halves after ``half_life`` seconds or
    ``half_life_outcomes`` newer outcomes, whichever comes later, and after ``max_half_life``
    at the latest; irregular gaps slow it near the crossover (Poisson arrivals at
    half_life_outcomes per half_life: a 1.6 times longer half-life). An older event enters with
    the weight of one such step. By time alone the result does not depend on the order in
    which events are applied; counted, by a factor of at most 2^-(reordering / half_life).
    """

    half_life: float
    s: float = 0.0
    f: float = 0.0
    t_ref: float | None = None
    n: int = 0
    #: 0: by time alone
    half_life_outcomes: float = 0.0
    max_half_life: float = math.inf

    def _halvings(self, seconds: float, outcomes: int = 1) -> float:
        """Half-lives the older outcomes decay by when the newest moves ``seconds`` on with
        ``outcomes`` newer outcomes (0: only the clock moved, as in ``at``)."""
        halvings = seconds / self.half_life
        if self.half_life_outcomes > 0:
            halvings = min(halvings, outcomes / self.half_life_outcomes)
        return max(halvings, seconds / self.max_half_life)

    def update(self, reward: float, event_time: float) -> None:
        if self.t_ref is None:
            self.t_ref = event_time
        if event_time > self.t_ref:
            factor = 2.0 ** -self._halvings(event_time - self.t_ref)
            self.s *= factor
            self.f *= factor
            self.t_ref = event_time
            weight = 1.0
        else:
            weight = 2.0 ** -self._halvings(self.t_ref - event_time)
        self.s += weight * reward
        self.f += weight * (1.0 - reward)
        self.n += 1

    def at(self, moment: float) -> tuple[float, float]:
        """(alpha, beta) decayed to ``moment`` (no decay before t_ref; counted, with no newer
        outcome, by ``max_half_life`` only)."""
        if self.t_ref is None or moment <= self.t_ref:
            return 1.0 + self.s, 1.0 + self.f
        factor = 2.0 ** -self._halvings(moment - self.t_ref, 0)
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
