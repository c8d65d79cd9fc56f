"""The decayed Beta posterior of one path (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["HALF_LIFE", "DecayedBeta"]

#: Default half-life of an outcome's weight, in seconds of event time: a day.
HALF_LIFE: Final = 24 * 3600.0


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
