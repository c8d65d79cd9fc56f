"""What the dashboard's API answers, read from Redis: the goal list and one goal's view.

Synchronous (redis-py), run by the server in a thread per request. Every number the page
shows comes from here; the page only draws it. What the pipeline writes and this reads:

- the snapshot (``PolicySnapshot``): per path the posterior, recent window, baseline, status,
  cost and latency; its age says whether the workers keep up;
- the alerts (``DegradationAlert``, newest first), the history and health buckets and the goal
  summaries, through ``stream_workers.ops.history``;
- the overrides in force (expired entries ignored by this clock) and their log, newest first,
  through ``stream_workers.ops.overrides``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any, Final

from schemas import PolicySnapshot
from schemas.beta import beta_ppf
from stream_workers.dashboard.live import LiveShare
from stream_workers.ops import history, overrides
from stream_workers.settings import WorkerSettings

__all__ = ["WINDOWS", "GoalNotFound", "Views"]

WINDOWS: Final[tuple[str, ...]] = tuple(history.WINDOWS)

_LOG_SHOWN: Final = 50


class GoalNotFound(LookupError):
    """The goal has no snapshot (yet)."""


def _interval_95(alpha: float, beta: float) -> list[float]:
    low, high = beta_ppf(alpha, beta, (0.025, 0.975), exact=True)
    return [low, high]


class Views:
    """The dashboard's reads over one deployment (its settings), with one Redis client."""

    def __init__(self, settings: WorkerSettings, redis: Any, live: LiveShare | None = None):
        self.settings = settings
        self.keys = settings.redis_keys()
        self.redis = redis
        self.live = live if live is not None else LiveShare()
        self._live_lock = threading.Lock()

    def goals(self) -> list[dict[str, Any]]:
        """Every goal with a snapshot, those that need attention first."""
        return [s.to_json() for s in history.goal_summaries(self.keys, self.redis)]

    def goal(self, goal: str, window: str, *, now: datetime | None = None) -> dict[str, Any]:
        """Everything the goal's page shows over ``window`` (one of WINDOWS)."""
        at = now or datetime.now(UTC)
        raw = self.redis.get(self.keys.policy(goal))
        if raw is None:
            raise GoalNotFound(goal)
        snapshot = PolicySnapshot.model_validate_json(raw)
        active = overrides.current(self.settings, goal, redis=self.redis, now=at)
        disabled = active.disabled if active is not None else {}
        pinned = active.pinned.path if active is not None and active.pinned else None
        summary = history.goal_summary(self.keys, self.redis, goal, now=at.timestamp())
        open_paths = {alert["path"] for alert in summary.open_alerts}
        counts = {name: stats.n for name, stats in snapshot.paths.items()}
        with self._live_lock:  # requests run in threads of their own
            share = self.live.observe(goal, time.monotonic(), snapshot.version, counts)
        paths: list[dict[str, Any]] = []
        for name, stats in snapshot.paths.items():
            entry = disabled.get(name)
            paths.append(
                {
                    "path": name,
                    "status": "disabled" if entry is not None else stats.status,
                    "mean": stats.mean,
                    "interval_95": _interval_95(stats.alpha, stats.beta),
                    "n": stats.n,
                    "recent_rate": stats.recent_rate,
                    "recent_n": stats.recent_n,
                    "baseline_rate": stats.baseline_rate,
                    "mean_cost_usd": stats.mean_cost_usd,
                    "mean_latency_ms": stats.mean_latency_ms,
                    "last_outcome_at": stats.last_outcome_at,
                    "share_now": None if share is None else share.get(name, 0.0),
                    "open_alert": name in open_paths,
                    "disabled": None if entry is None else entry.model_dump(mode="json"),
                    "pinned": pinned == name,
                }
            )
        paths.sort(key=lambda p: -p["mean"])
        t = at.timestamp()
        return {
            "goal": goal,
            "window": window,
            "snapshot": {
                "version": snapshot.version,
                "generated_at": snapshot.generated_at,
                "age_s": t - snapshot.generated_at.timestamp(),
            },
            "attention": summary.attention,
            "reasons": summary.reasons,
            "paths": paths,
            "series": history.path_series(
                self.keys, self.redis, goal, window, now=t, paths=snapshot.paths
            ).to_json(),
            "health": history.health_series(self.keys, self.redis, goal, window, now=t).to_json(),
            "alerts": history.read_alerts(self.keys, self.redis, goal),
            "overrides": {
                "active": None if active is None else active.model_dump(mode="json"),
                "log": [
                    record.model_dump(mode="json")
                    for record in overrides.log(self.settings, goal, _LOG_SHOWN, redis=self.redis)
                ],
            },
        }
