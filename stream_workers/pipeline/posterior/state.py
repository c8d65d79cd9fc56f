"""Per-goal posterior state: deltas in, snapshots and alerts out (pure, no I/O).

``GoalState.apply`` admits a delta's items through the frontier (docs/recovery.md), updates
each path's decayed posterior and detector, adds them to the goal's history buckets (when
``PosteriorConfig.history``), and returns the alerts its items triggered. The whole state,
frontier included, serialises to JSON so that the posterior stage can checkpoint it
atomically with the snapshot it publishes; the history buckets are not part of it: the stage
takes them after each checkpoint and writes them to Redis.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from schemas import DegradationAlert, PathDelta, PathStats, PathStatus, PolicySnapshot
from schemas.policy import MIN_SAMPLES, STALENESS
from stream_workers.pipeline.posterior.decayed import (
    HALF_LIFE,
    HALF_LIFE_OUTCOMES,
    MAX_HALF_LIFE,
    DecayedBeta,
)
from stream_workers.pipeline.posterior.detectors import (
    BetaDropDetector,
    Detector,
    DetectorFactory,
    Transition,
)
from stream_workers.pipeline.posterior.frontier import FrontierSet
from stream_workers.pipeline.posterior.history import BucketSums

if TYPE_CHECKING:
    from stream_workers.settings import WorkerSettings

__all__ = ["GoalState", "PosteriorConfig"]


@dataclass(frozen=True, slots=True)
class PosteriorConfig:
    """How the stage learns and judges a goal's paths. Durations are seconds.

    The defaults are the workers' (``WorkerSettings`` takes its defaults from here and from
    the detector's constructor); ``from_settings`` builds the config the settings describe.
    """

    half_life: float = HALF_LIFE
    #: ... or this many newer outcomes of the path, whichever is later (0: by time alone),
    #: and ``max_half_life`` at the latest (``DecayedBeta``)
    half_life_outcomes: float = HALF_LIFE_OUTCOMES
    max_half_life: float = MAX_HALF_LIFE
    min_samples: int = MIN_SAMPLES
    staleness: float = STALENESS
    #: partitions of the input topics, where deltas come from: once every one has sent a goal
    #: deltas, its detectors wait for the slowest active one instead of a fixed lag
    source_partitions: int | None = None
    #: makes each path's detector, given the three half-lives
    detector: DetectorFactory = BetaDropDetector
    #: keep per-path sums in event-time buckets for the dashboard (``history``)
    history: bool = True

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> PosteriorConfig:
        """Fields named like a setting take its value; the input topics' partition count
        (``partitions``) bounds the detectors' wait; the detector is a ``BetaDropDetector``
        with ``detector_window`` and ``min_drop``."""
        named = type(settings).model_fields
        return cls(
            **{f.name: getattr(settings, f.name) for f in fields(cls) if f.name in named},
            source_partitions=settings.partitions,
            detector=partial(
                BetaDropDetector, window=settings.detector_window, min_drop=settings.min_drop
            ),
        )


@dataclass(slots=True)
class _Path:
    posterior: DecayedBeta
    detector: Detector
    # Items waiting to reach the detector in event-time order:
    # (event_time, arrival order, reward, trigger, arrival wall time)
    waiting: list[tuple[float, int, float, str, float]] = field(default_factory=list)
    n: int = 0
    cost_sum: float = 0.0
    cost_n: int = 0
    latency_sum: float = 0.0
    latency_n: int = 0
    last_event_at: float | None = None


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class GoalState:
    goal: str
    config: PosteriorConfig = field(default_factory=PosteriorConfig)
    version: int = 0
    paths: dict[str, _Path] = field(default_factory=dict)
    frontier: FrontierSet = field(default_factory=FrontierSet)
    #: Detector input waits so that items from different source partitions reach it in
    #: event-time order: ``reorder_lag`` seconds of event time (or of wall time, when traffic
    #: stops), or less once every source partition has sent this goal deltas: then until each
    #: one that sent any within the last ``reorder_lag`` wall seconds has passed the item's
    #: event time (a watermark). Live, that is a flush interval instead of 2 s.
    reorder_lag: float = 2.0
    latest_event_at: float | None = None
    _arrivals: int = 0
    #: source partition -> (its latest event time, wall time of its last delta); rebuilt
    #: from the deltas after a restart, so not in the checkpoint
    _sources: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False)
    #: items applied since the stage last took them, per (path, event-time minute); None
    #: when the config keeps no history. Not in the checkpoint.
    history: BucketSums | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.history is None and self.config.history:
            self.history = BucketSums()

    def _path(self, name: str) -> _Path:
        state = self.paths.get(name)
        if state is None:
            config = self.config
            decay = (config.half_life, config.half_life_outcomes, config.max_half_life)
            state = self.paths[name] = _Path(
                DecayedBeta(decay[0], half_life_outcomes=decay[1], max_half_life=decay[2]),
                config.detector(
                    half_life=decay[0], half_life_outcomes=decay[1], max_half_life=decay[2]
                ),
            )
        return state

    def apply(self, delta: PathDelta, wall: float | None = None) -> list[DegradationAlert]:
        """Apply the delta's new items to the posteriors at once; the detectors get them in
        event-time order (see ``release``). Returns the alerts released items triggered."""
        if delta.goal != self.goal:
            raise ValueError(f"delta of goal {delta.goal!r} given to goal {self.goal!r}")
        wall = time.time() if wall is None else wall
        state = self._path(delta.path)
        fresh = self.frontier.admit(delta)
        for i in fresh:
            reward, at = delta.rewards[i], delta.event_times[i]
            state.posterior.update(reward, at)
            state.n += 1
            cost, latency = delta.costs[i], delta.latencies[i]
            if cost is not None:
                state.cost_sum += cost
                state.cost_n += 1
            if latency is not None:
                state.latency_sum += latency
                state.latency_n += 1
            if state.last_event_at is None or at > state.last_event_at:
                state.last_event_at = at
            if self.latest_event_at is None or at > self.latest_event_at:
                self.latest_event_at = at
            trigger = f"{delta.source_partition}.{delta.d_offsets[i]}.{delta.o_offsets[i]}"
            self._arrivals += 1
            heapq.heappush(state.waiting, (at, self._arrivals, reward, trigger, wall))
        if self.history is not None and fresh:
            self.history.add_items(
                delta.path, fresh, delta.event_times, delta.rewards, delta.costs, delta.latencies
            )
        if delta.event_times:
            previous = self._sources.get(delta.source_partition, (0.0, 0.0))[0]
            newest = max(previous, max(delta.event_times))
            self._sources[delta.source_partition] = (newest, wall)
        return self.release(wall)

    def release(
        self, wall: float | None = None, *, everything: bool = False
    ) -> list[DegradationAlert]:
        """Feed the detectors the items that are ``reorder_lag`` behind the goal's latest
        event time, or have waited ``reorder_lag`` seconds; return the alerts they trigger."""
        wall = time.time() if wall is None else wall
        horizon = (self.latest_event_at or 0.0) - self.reorder_lag
        expected = self.config.source_partitions
        if expected and len(self._sources) >= expected:
            since = wall - self.reorder_lag
            active = [at for at, seen in self._sources.values() if seen > since]
            if active:
                horizon = max(horizon, min(active))
        alerts = []
        for name, state in self.paths.items():
            waiting = state.waiting
            while waiting and (
                everything or waiting[0][0] <= horizon or waiting[0][4] <= wall - self.reorder_lag
            ):
                at, _, reward, trigger, _ = heapq.heappop(waiting)
                change = state.detector.update(reward, at)
                if change is None:
                    continue
                # On open, traffic must leave the path within dozens of requests; on resolve,
                # come back as fast: either way the posterior restarts from the outcomes that
                # showed the change (on open the recent window, on resolve the recovery, not
                # the bad outcomes before it), and those still waiting here (already in the
                # posterior, not yet seen by the detector: newer still).
                pending = [(r, t) for t, _, r, _, _ in waiting]
                state.posterior.reset(state.detector.restart_from() + pending)
                alerts.append(self._alert(name, state.detector.name, change, trigger, at))
        return alerts

    def _alert(
        self, path: str, detector: str, change: Transition, trigger: str, at: float
    ) -> DegradationAlert:
        return DegradationAlert(
            alert_id=f"{self.goal}:{path}:{change.state}:{trigger}",
            goal=self.goal,
            path=path,
            state=change.state,
            recent_rate=change.recent_rate,
            recent_n=change.recent_n,
            baseline_rate=change.baseline_rate,
            baseline_n=max(0.0, change.baseline_n),
            detector=detector,
            evidence=change.evidence,
            detected_at=_utc(at),
        )

    def status(self, state: _Path, now: float) -> PathStatus:
        if state.detector.is_open:
            return "degrading"
        if state.n < self.config.min_samples:
            return "cold"
        if state.last_event_at is not None and now - state.last_event_at > self.config.staleness:
            return "stale"
        return "healthy"

    def snapshot(self, now: float) -> PolicySnapshot:
        """The next version of the goal's policy, as of ``now`` (Unix seconds)."""
        self.version += 1
        paths = {}
        for name, state in self.paths.items():
            detector = state.detector
            recent_n = min(detector.recent_n, state.n)
            recent_sum = sum(r for r, _ in detector.recent()[-recent_n:]) if recent_n else 0.0
            paths[name] = PathStats(
                alpha=state.posterior.alpha,
                beta=state.posterior.beta,
                n=state.n,
                recent_n=recent_n,
                recent_successes=min(recent_sum, float(recent_n)),
                baseline_rate=detector.baseline_rate,
                mean_cost_usd=state.cost_sum / state.cost_n if state.cost_n else None,
                mean_latency_ms=state.latency_sum / state.latency_n if state.latency_n else None,
                last_outcome_at=_utc(state.last_event_at) if state.last_event_at else None,
                status=self.status(state, now),
            )
        return PolicySnapshot(
            goal=self.goal, version=self.version, generated_at=_utc(now), paths=paths
        )

    # -- checkpoint --------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        paths = {}
        for name, s in self.paths.items():
            paths[name] = {
                "posterior": [s.posterior.s, s.posterior.f, s.posterior.t_ref, s.posterior.n],
                "detector": s.detector.to_json(),
                "totals": [s.n, s.cost_sum, s.cost_n, s.latency_sum, s.latency_n],
                "waiting": s.waiting,  # tuples: serialised as arrays by pydantic_core
                "last_event_at": s.last_event_at,
            }
        return {
            "goal": self.goal,
            "version": self.version,
            "latest_event_at": self.latest_event_at,
            "arrivals": self._arrivals,
            "paths": paths,
            "frontier": self.frontier.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], config: PosteriorConfig) -> GoalState:
        state = cls(
            goal=data["goal"],
            config=config,
            version=int(data["version"]),
            frontier=FrontierSet.from_json(data["frontier"]),
        )
        for name, saved in data["paths"].items():
            path = state._path(name)
            p = path.posterior
            p.s, p.f, p.t_ref, p.n = saved["posterior"]
            path.detector.load_json(saved["detector"])
            path.n, path.cost_sum, path.cost_n, path.latency_sum, path.latency_n = saved["totals"]
            path.last_event_at = saved["last_event_at"]
            path.waiting = [
                (float(a), int(n), float(r), str(t), float(w)) for a, n, r, t, w in saved["waiting"]
            ]
            heapq.heapify(path.waiting)
        state.latest_event_at = data["latest_event_at"]
        state._arrivals = int(data["arrivals"])
        return state
