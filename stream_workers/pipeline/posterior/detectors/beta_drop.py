"""``BetaDropDetector``: the recent window against the decayed history, two Beta posteriors.

It compares the recent window (the last ``window`` outcomes) with the baseline (the decayed
history of outcomes that left the window). It opens when the recent rate is below the
baseline by at least ``min_drop`` with probability ``confidence`` under the two Beta
posteriors, never with fewer than ``min_recent`` recent outcomes. While open the baseline is
frozen (the bad outcomes do not become the new normal).

The test runs after every outcome over overlapping windows, so the per-check confidence must
be far above the nominal 0.99. Measured over 200 seeded runs each: at 0.99 a 0.95 -> 0.85
drop (exactly ``min_drop``) alerted in 20 % of runs, at 0.999 in 2.5 %, at 0.9999 (the
default) in none, while a 0.95 -> 0.30 drop is detected after a median of 24 outcomes.

An open alert resolves in one of two ways, whichever comes first:

- on evidence, a one-sided CUSUM over the outcomes since it opened: the log-likelihood ratio
  of H1 "back", the frozen baseline's rate minus ``min_drop / 2``, against H0 "still
  degraded", the rate of the outcomes since open read two standard deviations above the mean
  of Beta(1 + s, 1 + f) (a handful of failures must not put it far under the truth), re-read
  whenever the statistic is at zero and never above the recent rate at open; both clipped
  into [0.01, 0.99], and the test is off when H1 is not ``min_drop / 4`` above H0. It
  resolves when the probability of H1 over the current run (the outcomes since the statistic
  was last at zero), from even odds, reaches ``resolve_confidence``: the statistic reaches
  log(c / (1 - c)). The recent window is then cut to that run: the degradation's outcomes
  before it neither stay there (the alert would open again at once) nor reach the baseline;
- by the window, as before the test existed: its rate is back within ``min_drop / 2`` of the
  frozen baseline; the window is kept. ``resolve_confidence=None`` leaves only this rule.

``restart_from()``, what the path's posterior restarts from, is the recent window: on open
the outcomes that showed the drop, on a resolve on evidence the run that showed the recovery.
The resolve's ``evidence`` is that probability of H1 (0.5 with the test off).

Why H0 is re-read: the window at open still holds outcomes from before the drop (its rate is
~0.65 when a 0.98 -> 0.30 drop opens), and against that H0 a recovery needed a median of 29
outcomes at the same threshold. Why two standard deviations above the mean: read at the mean,
three failures right after the alert read as a rate of 0.2 where it was 0.4, and six lucky
successes resolved it (5 % of 200 seeded runs of a 0.90 -> 0.40 drop, within 150 outcomes;
none of 400 this way). Why 0.9999: by Ville's inequality a run reaches the threshold with
probability at most (1 - c) / c when the true rate is at or below H0, and each outcome
starts at most one run, so a path that stays degraded resolves falsely at most about once
per 10,000 outcomes (the open side's target). Measured (``bench/detector.py``, 200 seeds for
delays, 30 x 10,000 outcomes for false resolves): a 0.98 -> 0.30 -> 0.98 path resolves a
median of 13 outcomes after its recovery (p90 23; the window rule alone: 46), while false
resolves of a path that stays at 0.30 / 0.60 / 0.10 are 0.13 / 0.17 / 0.13 per 10,000
outcomes. What the speed costs: a recovery only part-way is nearer H1 than H0 in likelihood
and resolves too, 0.30 -> 0.80 after a median of 33 outcomes (the window rule: never, in 161
of 200 runs).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

from schemas.beta import prob_below, prob_below_at_most
from stream_workers.pipeline.posterior.decayed import (
    HALF_LIFE,
    HALF_LIFE_OUTCOMES,
    MAX_HALF_LIFE,
    DecayedBeta,
)
from stream_workers.pipeline.posterior.detectors.protocol import Transition

__all__ = ["BetaDropDetector"]


def _clip(rate: float) -> float:
    return min(0.99, max(0.01, rate))


def _upper(successes: float, n: int) -> float:
    """Two standard deviations above the mean of Beta(1 + successes, 1 + n - successes): a
    rate since the alert opened that a handful of outcomes cannot put far below the truth
    (as the mean alone did: three failures read as a rate of 0.2 where it was 0.4, and six
    lucky successes then resolved it)."""
    a, b = 1.0 + successes, 1.0 + n - successes
    total = a + b
    return a / total + 2.0 * math.sqrt(a * b / (total * total * (total + 1.0)))


@dataclass(slots=True)
class _RecoveryTest:
    """The CUSUM that resolves an open alert: the log-likelihood ratio of ``back`` (H1)
    against ``degraded`` (H0), each outcome's weighted by its reward (scores in 0..1 too)."""

    back: float
    degraded: float
    ceiling: float  # the recent rate at open, clipped: H0 never rises above it
    statistic: float = 0.0
    run: int = 0  # outcomes since the statistic was last at zero
    seen: float = 0.0  # reward sum of the outcomes since open
    seen_n: int = 0

    def update(self, reward: float) -> None:
        good = math.log(self.back / self.degraded)
        bad = math.log((1.0 - self.back) / (1.0 - self.degraded))
        self.statistic = max(0.0, self.statistic + reward * good + (1.0 - reward) * bad)
        self.seen += reward
        self.seen_n += 1
        if self.statistic > 0.0:
            self.run += 1
        else:  # H0 is re-read only here, so that it is fixed within a run (Ville's bound)
            self.run = 0
            self.degraded = min(self.ceiling, _clip(_upper(self.seen, self.seen_n)))

    @property
    def probability(self) -> float:
        """P(H1) over the run, from even prior odds."""
        return 1.0 / (1.0 + math.exp(-self.statistic))

    def to_json(self) -> list[float]:
        return [self.statistic, self.run, self.degraded, self.ceiling, self.seen, self.seen_n]

    @classmethod
    def from_json(cls, back: float, data: list[float]) -> _RecoveryTest:
        statistic, run, degraded, ceiling, seen, seen_n = data
        return cls(back, degraded, ceiling, statistic, int(run), seen, int(seen_n))


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
        half_life_outcomes: float = HALF_LIFE_OUTCOMES,
        max_half_life: float = MAX_HALF_LIFE,
        resolve_confidence: float | None = 0.9999,
    ) -> None:
        if not 1 <= min_recent <= window:
            raise ValueError(f"min_recent must be in [1, window], got {min_recent}")
        if not 0 < min_drop < 1:
            raise ValueError(f"min_drop must be in (0, 1), got {min_drop}")
        if not 0.5 < confidence < 1:
            raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
        if resolve_confidence is not None and not 0.5 < resolve_confidence < 1:
            raise ValueError(
                f"resolve_confidence must be None or in (0.5, 1), got {resolve_confidence}"
            )
        self.window = window
        self.min_drop = min_drop
        self.confidence = confidence
        self.min_recent = min_recent
        self.min_baseline = min_baseline
        self.half_life = half_life
        self.half_life_outcomes = half_life_outcomes
        self.max_half_life = max_half_life
        self.resolve_confidence = resolve_confidence
        #: the statistic's threshold: the log of the odds that ``resolve_confidence`` stands for
        self._threshold = (
            math.inf
            if resolve_confidence is None
            else math.log(resolve_confidence / (1.0 - resolve_confidence))
        )
        self._recent: deque[tuple[float, float]] = deque()
        self._recent_sum = 0.0
        self.baseline = DecayedBeta(
            half_life, half_life_outcomes=half_life_outcomes, max_half_life=max_half_life
        )
        self._frozen: tuple[float, float] | None = None  # (alpha, beta) of the baseline at open
        self._test: _RecoveryTest | None = None  # while open, unless H1 and H0 are too close

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

    def restart_from(self) -> list[tuple[float, float]]:
        """The recent window: after a resolve on evidence it holds the recovery run only."""
        return list(self._recent)

    def to_json(self) -> dict[str, Any]:
        b, test = self.baseline, self._test
        return {
            "baseline": [b.s, b.f, b.t_ref, b.n],
            "recent": [list(pair) for pair in self._recent],
            "frozen": list(self._frozen) if self._frozen is not None else None,
            "recovery": test.to_json() if test is not None else None,
        }

    def load_json(self, data: dict[str, Any]) -> None:
        """Restore state saved by ``to_json`` (the configuration stays this detector's).

        A state saved before the recovery test existed (no ``recovery``) continues an open
        alert with a test that opens now, as if the recent window's rate had opened it."""
        b = self.baseline
        b.s, b.f, b.t_ref, b.n = data["baseline"]
        self._recent = deque((float(r), float(t)) for r, t in data["recent"])
        self._recent_sum = sum(r for r, _ in self._recent)
        frozen = data["frozen"]
        self._frozen = (float(frozen[0]), float(frozen[1])) if frozen is not None else None
        if self._frozen is None or self.resolve_confidence is None:
            self._test = None
        elif "recovery" not in data:  # saved before the test existed: it starts now
            self._test = self._open_test(self.recent_rate)
        elif data["recovery"] is None:  # off for this alert
            self._test = None
        else:
            self._test = _RecoveryTest.from_json(self._back(), data["recovery"])

    def _baseline(self) -> tuple[float, float]:
        return (
            self._frozen if self._frozen is not None else (self.baseline.alpha, self.baseline.beta)
        )

    def _back(self) -> float:
        a2, b2 = self._baseline()
        return _clip(a2 / (a2 + b2) - self.min_drop / 2)

    def _open_test(self, rate: float) -> _RecoveryTest | None:
        back, degraded = self._back(), _clip(rate)
        if self.resolve_confidence is None or back - degraded < self.min_drop / 4:
            return None  # off; or each outcome would weigh too little to be worth it
        return _RecoveryTest(back, degraded, degraded)

    def update(self, reward: float, event_time: float) -> Transition | None:
        self._recent.append((reward, event_time))
        self._recent_sum += reward
        if len(self._recent) > self.window:
            old_reward, old_time = self._recent.popleft()
            self._recent_sum -= old_reward
            if self._frozen is None:
                self.baseline.update(old_reward, old_time)
        n = len(self._recent)
        if self._test is not None:
            self._test.update(reward)
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
            self._test = self._open_test(rate)
            return Transition("open", rate, n, base_rate, a2 + b2 - 2, evidence)
        test = self._test
        if rate < base_rate - self.min_drop / 2:  # not back by the window (which it keeps)
            if test is None or test.statistic < self._threshold:
                return None
            while len(self._recent) > test.run:  # back on evidence: only the run stays
                self._recent.popleft()
            self._recent_sum = sum(r for r, _ in self._recent)
            n = len(self._recent)
            rate = self._recent_sum / n
        self._frozen = self._test = None
        evidence = test.probability if test is not None else 0.5
        return Transition("resolved", rate, n, base_rate, a2 + b2 - 2, evidence)
