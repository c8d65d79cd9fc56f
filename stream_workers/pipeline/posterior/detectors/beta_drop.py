"""``BetaDropDetector``: the recent window against the decayed history, two Beta posteriors.

It compares the recent window (the last ``window`` outcomes) with the baseline (the decayed
history of outcomes that left the window). It opens when the recent rate is below the
baseline by at least ``min_drop`` with probability ``confidence`` under the two Beta
posteriors, never with fewer than ``min_recent`` recent outcomes. While open the baseline is
frozen (the bad outcomes do not become the new normal); it resolves when the recent window's
rate is back within ``min_drop / 2`` of that baseline (hysteresis: confident to open, a point
estimate to resolve, with a margin between the two).

The test runs after every outcome over overlapping windows, so the per-check confidence must
be far above the nominal 0.99. Measured over 200 seeded runs each: at 0.99 a 0.95 -> 0.85
drop (exactly ``min_drop``) alerted in 20 % of runs, at 0.999 in 2.5 %, at 0.9999 (the
default) in none, while a 0.95 -> 0.30 drop is detected after a median of 24 outcomes.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from schemas.beta import prob_below, prob_below_at_most
from stream_workers.pipeline.posterior.decayed import HALF_LIFE, DecayedBeta
from stream_workers.pipeline.posterior.detectors.protocol import Transition

__all__ = ["BetaDropDetector"]


class BetaDropDetector:
    """Constructor arguments are kept as given; ``baseline`` is the decayed history."""

    name: ClassVar[str] = "beta-drop"

    def __init__(
        self,
        *,
        window: int = 50,
        min_drop: float = 0.1,
        confidence: float = 0.9999,
        min_recent: int = 20,
        min_baseline: float = 20.0,
        half_life: float = HALF_LIFE,
    ) -> None:
        if not 1 <= min_recent <= window:
            raise ValueError(f"min_recent must be in [1, window], got {min_recent}")
        if not 0 < min_drop < 1:
            raise ValueError(f"min_drop must be in (0, 1), got {min_drop}")
        if not 0.5 < confidence < 1:
            raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
        self.window = window
        self.min_drop = min_drop
        self.confidence = confidence
        self.min_recent = min_recent
        self.min_baseline = min_baseline
        self.half_life = half_life
        self._recent: deque[tuple[float, float]] = deque()
        self._recent_sum = 0.0
        self.baseline = DecayedBeta(half_life)
        self._frozen: tuple[float, float] | None = None  # (alpha, beta) of the baseline at open

    @property
    def is_open(self) -> bool:
        return self._frozen is not None

    @property
    def recent_n(self) -> int:
        return len(self._recent)

    @property
    def baseline_rate(self) -> float | None:
        return self.baseline.mean if self.baseline.n else None

    @property
    def recent_rate(self) -> float:
        return self._recent_sum / len(self._recent) if self._recent else 0.0

    def recent(self) -> list[tuple[float, float]]:
        return list(self._recent)

    def to_json(self) -> dict[str, Any]:
        b = self.baseline
        return {
            "baseline": [b.s, b.f, b.t_ref, b.n],
            "recent": [list(pair) for pair in self._recent],
            "frozen": list(self._frozen) if self._frozen is not None else None,
        }

    def load_json(self, data: dict[str, Any]) -> None:
        """Restore state saved by ``to_json`` (the configuration stays this detector's)."""
        b = self.baseline
        b.s, b.f, b.t_ref, b.n = data["baseline"]
        self._recent = deque((float(r), float(t)) for r, t in data["recent"])
        self._recent_sum = sum(r for r, _ in self._recent)
        frozen = data["frozen"]
        self._frozen = (float(frozen[0]), float(frozen[1])) if frozen is not None else None

    def _baseline(self) -> tuple[float, float]:
        return (
            self._frozen if self._frozen is not None else (self.baseline.alpha, self.baseline.beta)
        )

    def update(self, reward: float, event_time: float) -> Transition | None:
        self._recent.append((reward, event_time))
        self._recent_sum += reward
        if len(self._recent) > self.window:
            old_reward, old_time = self._recent.popleft()
            self._recent_sum -= old_reward
            if self._frozen is None:
                self.baseline.update(old_reward, old_time)
        n = len(self._recent)
        if n < self.min_recent:
            return None
        a2, b2 = self._baseline()
        base_rate = a2 / (a2 + b2)
        rate = self._recent_sum / n
        if self._frozen is None:
            if a2 + b2 - 2 < self.min_baseline or rate > base_rate - self.min_drop:
                return None  # not even the point estimate shows the drop: skip the integral
            a1, b1 = 1 + self._recent_sum, 1 + n - self._recent_sum
            if prob_below_at_most(a1, b1, a2, b2, self.min_drop) < self.confidence - 1e-9:
                # The integral cannot reach the confidence either. One incomplete beta instead
                # of 96: a stationary path whose recent rate wanders under the point threshold
                # cost ~50 us per outcome here before (measured).
                return None
            evidence = prob_below(a1, b1, a2, b2, self.min_drop)
            if evidence < self.confidence:
                return None
            self._frozen = (a2, b2)
            return Transition("open", rate, n, base_rate, a2 + b2 - 2, evidence)
        if rate >= base_rate - self.min_drop / 2:
            self._frozen = None
            return Transition("resolved", rate, n, base_rate, a2 + b2 - 2, rate - base_rate)
        return None
