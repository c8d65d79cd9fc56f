"""A router's own outcomes: folded into its policy until a snapshot counts them, and watched
for a sudden drop where they happen. Pure logic behind one lock; no I/O.

**Folding.** Each outcome this router reports waits here until a snapshot counts it, that is
until the path's ``last_outcome_at`` in a snapshot reaches the outcome's time; meanwhile the
policy the router decides with adds it to the path's posterior (and to its count, so a new
path leaves cold start sooner). An outcome of another process newer than ours can make ours
leave a flush early (outcomes reach the workers through several partitions): the view then
undercounts for a moment, and never counts an outcome twice. At most ``PENDING_MAX`` outcomes
wait per path, none longer than ``PENDING_AGE`` seconds (a pipeline that is down for longer
leaves the router with the snapshot's view, as before).

**Watching.** The workers see a drop only after the pipeline: hundreds of milliseconds, which
at 2,000 requests/s is hundreds of requests. So each path's outcomes here also feed a
one-sided CUSUM of the log-likelihood ratio of "the path now succeeds at half its rate"
against "at its snapshot rate p0" (the posterior mean, once it rests on at least
``MIN_EVIDENCE`` effective outcomes and shows no alert). It alarms at ``log(1 / ALARM_P)``:
by Lorden's bound a CUSUM of likelihood ratios with that threshold raises at most one false
alarm per 1 / ALARM_P outcomes of a path that keeps its rate. Measured on seeded streams of
200,000 outcomes: 0.05 to 0.15 false alarms per 10,000 outcomes at p0 = 0.6 to 0.98; a
0.98 -> 0.30 drop is seen after a median of 5 outcomes (90 % within 8) and 0.95 -> 0.30
after 7 (10), where the workers' window test needs 20 and the pipeline's delay. A threshold
at 1e-3 sees drops two outcomes sooner at ten times the false alarms, each of which holds
the process off a good path until its probes end it.

While the alarm holds, this router restarts the path's posterior from the outcomes of the
alarm's run and treats it as alerted (recovery probes only), as the workers do with an alert
of theirs. The alarm ends when a snapshot shows the workers' alert on the path (they take
over), or when the outcomes since the alarm show the path back: a CUSUM of "within 5 points
of p0" against "at half of p0" reaching ``log(1 / RESOLVE_P)``. A false alarm ends after a
median of 8 outcomes (13 at p0 = 0.8); a path that stays at 0.30 ends it falsely in 10 % of
300 seeded runs within 2,000 outcomes, by which time the workers' alert holds it.

A small local sample does not outweigh the global posterior by counts: a folded outcome
weighs one, as it will in the snapshot. Only the drop test acts on few outcomes, with its
false-alarm bound.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from schemas import PathStats

__all__ = [
    "ALARM_P",
    "MIN_EVIDENCE",
    "PENDING_AGE",
    "PENDING_MAX",
    "RESOLVE_P",
    "LocalArm",
    "LocalEvidence",
    "reward_of",
]

PENDING_MAX: Final = 1_000
PENDING_AGE: Final = 300.0
#: Effective outcomes (alpha + beta - 2) a snapshot's posterior needs to be a baseline.
MIN_EVIDENCE: Final = 20.0
ALARM_P: Final = 1e-4
RESOLVE_P: Final = 1e-2
_ALARM: Final = math.log(1.0 / ALARM_P)
_RESOLVE: Final = math.log(1.0 / RESOLVE_P)
#: Below this baseline "half the rate" is too close to it to tell apart from few outcomes.
_MIN_BASELINE: Final = 0.2
#: The resolve test's margin: back within half of the workers' default min_drop.
_BACK_MARGIN: Final = 0.05
_RUN_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class LocalArm:
    """What the router's own outcomes add to one path's posterior: folded successes and
    failures and their count, or (``alarm``) the Beta parameters to restart it from."""

    successes: float = 0.0
    failures: float = 0.0
    count: int = 0
    alarm: tuple[float, float] | None = None


_NOTHING: Final = LocalArm()


@dataclass(slots=True)
class _Path:
    pending: deque[tuple[float, float]] = field(default_factory=deque)  # (time, reward)
    #: log-likelihood ratio per success and per failure of "half the rate" against p0
    on_success: float = 0.0
    on_failure: float = 0.0
    baseline: float | None = None
    cusum: float = 0.0
    run: list[float] = field(default_factory=list)  # rewards since the CUSUM left zero
    #: while alarmed: the restarted posterior's successes and failures
    alarm: tuple[float, float] | None = None
    back_success: float = 0.0
    back_failure: float = 0.0
    back: float = 0.0

    def set_baseline(self, p0: float | None) -> None:
        if p0 == self.baseline:
            return
        self.baseline = p0
        if p0 is None:
            self.cusum = 0.0
            self.run.clear()
            return
        p1 = p0 / 2.0
        self.on_success = math.log(p1 / p0)
        self.on_failure = math.log((1.0 - p1) / (1.0 - p0))

    def end_alarm(self) -> None:
        self.alarm = None
        self.back = 0.0
        self.cusum = 0.0
        self.run.clear()

    def watch(self, reward: float) -> bool:
        """Feed the drop test (or, while alarmed, the recovery test); True when the alarm
        opened or ended. (Outcomes while it holds go into the restarted posterior, which the
        next compile of the policy takes: compiling costs milliseconds, probes are many.)"""
        if self.alarm is not None:
            s, f = self.alarm
            self.alarm = (s + reward, f + 1.0 - reward)
            step = reward * self.back_success + (1.0 - reward) * self.back_failure
            self.back = max(0.0, self.back + step)
            if self.back < _RESOLVE:
                return False
            self.end_alarm()
            return True
        if self.baseline is None:
            return False
        step = reward * self.on_success + (1.0 - reward) * self.on_failure
        self.cusum = max(0.0, self.cusum + step)
        if self.cusum == 0.0:
            self.run.clear()
            return False
        self.run.append(reward)
        if len(self.run) > _RUN_MAX:
            del self.run[0]
        if self.cusum < _ALARM:
            return False
        successes = sum(self.run)
        self.alarm = (successes, len(self.run) - successes)
        # The recovery test: "back within the margin of p0" against "at half of p0", the
        # drop the alarm tested for (the run's own rate rests on a handful of outcomes).
        bad = self.baseline / 2.0
        good = self.baseline - _BACK_MARGIN  # baseline in [0.2, 0.999]: good in (bad, 1)
        self.back_success = math.log(good / bad)
        self.back_failure = math.log((1.0 - good) / (1.0 - bad))
        self.back = 0.0
        self.cusum = 0.0
        self.run.clear()
        return True


class LocalEvidence:
    """One router's own outcomes per path (see the module docstring). ``add`` runs on the
    reporting threads, ``arms`` on whichever thread compiles the policy."""

    def __init__(self, paths: Sequence[str], min_samples: int) -> None:
        self._names = tuple(paths)
        self._min_samples = min_samples
        self._paths = [_Path() for _ in self._names]
        self._lock = threading.Lock()

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def add(self, index: int, reward: float, at: float | None = None) -> bool:
        """An outcome of path ``index`` reported at ``at`` (Unix seconds; now by default).
        True when the path's alarm opened or ended: compile the policy again now."""
        at = time.time() if at is None else at
        with self._lock:
            path = self._paths[index]
            pending = path.pending
            pending.append((at, reward))
            if len(pending) > PENDING_MAX:
                pending.popleft()
            return path.watch(reward)

    def alarmed(self) -> list[str]:
        """The paths whose alarm holds."""
        with self._lock:
            return [n for n, p in zip(self._names, self._paths, strict=True) if p.alarm]

    def arms(self, known: Mapping[str, PathStats], now: float | None = None) -> list[LocalArm]:
        """What the router's outcomes add to each path's posterior in a snapshot whose paths
        are ``known``: outcomes the snapshot counts leave, baselines follow the snapshot, and
        an alert of the workers' ends the path's alarm (they take over)."""
        now = time.time() if now is None else now
        oldest = now - PENDING_AGE
        out: list[LocalArm] = []
        with self._lock:
            for name, path in zip(self._names, self._paths, strict=True):
                stats = known.get(name)
                pending = path.pending
                cut = oldest
                if stats is not None and stats.last_outcome_at is not None:
                    # counted by the snapshot (a microsecond of slack for float rounding)
                    cut = max(cut, stats.last_outcome_at.timestamp() + 1e-6)
                while pending and pending[0][0] <= cut:
                    pending.popleft()
                if stats is not None and stats.status == "degrading":
                    path.end_alarm()
                path.set_baseline(self._baseline(stats))
                if not pending and path.alarm is None:
                    out.append(_NOTHING)
                    continue
                successes = sum(reward for _, reward in pending)
                out.append(LocalArm(successes, len(pending) - successes, len(pending), path.alarm))
        return out

    def _baseline(self, stats: PathStats | None) -> float | None:
        if stats is None or stats.status == "degrading" or stats.n < self._min_samples:
            return None
        if stats.alpha + stats.beta - 2.0 < MIN_EVIDENCE:
            return None
        p0 = stats.alpha / (stats.alpha + stats.beta)
        return min(p0, 0.999) if p0 >= _MIN_BASELINE else None


def reward_of(success: bool, score: float | None) -> float:
    """What an outcome teaches, as the workers' join counts it."""
    return score if score is not None else (1.0 if success else 0.0)
