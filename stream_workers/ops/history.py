"""What the dashboard charts: a goal's history, its pipeline's health, the goal list.

Readers of what the workers keep in Redis (``stream_workers.pipeline.posterior.history`` for
the format of the per-path buckets, the join stage for the health counts), each a function
over a synchronous ``redis.Redis`` client (one pipelined round trip; run it in a thread from
async code), with the arithmetic in pure functions beside them:

- ``path_series``: per path and point of a window, outcomes, success rate, traffic share,
  mean cost and latency. Windows (``WINDOWS``): ``hour`` is 60 points of a minute, ``day``
  144 points of 10 minutes (both from minute buckets), ``week`` 168 points of an hour (from
  hour buckets).
- ``health_series``: the join's counts per point (outcomes, decisions never reported,
  duplicates, dead-lettered, ...) and outcomes per minute, over the same windows and points.
- ``goal_summary`` / ``goal_summaries``: per goal, each path's status (``disabled`` when an
  override says so), the snapshot's age, open alerts, recent health, and how much the goal
  needs attention, with the reasons; ``goal_summaries`` lists the goals needing it first.
- ``read_alerts``: a goal's recent alerts, newest first.

Every result has ``to_json()``: plain dicts, lists, numbers and strings. A bucket nobody wrote
(no traffic, or expired) reads as zero outcomes; a rate over zero outcomes is ``None``.
Traffic share is the path's share of the outcomes of the point (decisions are not counted per
path): a path nobody reports on reads as no traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from pydantic import ValidationError

from schemas import DegradationAlert, PolicySnapshot
from schemas.overrides import GoalOverrides
from stream_workers.pipeline.join.state import COUNTERS
from stream_workers.pipeline.posterior.history import FIELDS, RESOLUTIONS, Resolution

if TYPE_CHECKING:
    from redis import Redis

    from schemas.topics import RedisKeys

__all__ = [
    "HEALTH_WINDOW",
    "STATUSES",
    "WINDOWS",
    "GoalSummary",
    "HealthSeries",
    "PathPoints",
    "PathSeries",
    "Status",
    "Window",
    "WindowSpec",
    "attention",
    "build_health_series",
    "build_path_series",
    "goal_summaries",
    "goal_summary",
    "health_series",
    "path_series",
    "points",
    "read_alerts",
]

Window = Literal["hour", "day", "week"]


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A window: ``points`` points of ``step`` seconds each, summed from buckets of
    ``resolution``; the last point is the one ``now`` falls in (partly elapsed)."""

    points: int
    step: int
    resolution: Resolution


WINDOWS: Final[dict[str, WindowSpec]] = {
    "hour": WindowSpec(60, 60, "m"),
    "day": WindowSpec(144, 600, "m"),
    "week": WindowSpec(168, 3600, "h"),
}
#: The minutes of health a goal summary looks at (the current minute and the 14 before).
HEALTH_WINDOW: Final = 15
#: Alerts kept per goal by the posterior stage (``R:alerts:<goal>``), read at most.
_ALERTS_READ: Final = 100
#: A snapshot older than this while the join counted outcomes of the goal in the last two
#: minutes means the posterior stage is behind.
_BEHIND_S: Final = 120.0


def _window(window: str) -> WindowSpec:
    spec = WINDOWS.get(window)
    if spec is None:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
    return spec


def points(window: str, now: float) -> tuple[list[int], list[int]]:
    """(start of each point, Unix seconds, oldest first; the buckets to read for them)."""
    spec = _window(window)
    size = RESOLUTIONS[spec.resolution]
    last = int(now // spec.step) * spec.step
    starts = [last - spec.step * i for i in range(spec.points - 1, -1, -1)]
    # up to the bucket ``now`` is in: nothing later is written (or shown)
    return starts, list(range(starts[0] // size, int(now // size) + 1))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- per-path series -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PathPoints:
    """One path's values per point of a window; ``None`` where it had no outcome (or none
    with a cost, a latency)."""

    n: list[int]
    success_rate: list[float | None]
    share: list[float | None]
    mean_cost_usd: list[float | None]
    mean_latency_ms: list[float | None]


@dataclass(frozen=True, slots=True)
class PathSeries:
    """A goal's paths over a window: ``times[i]`` starts point ``i`` of every list."""

    goal: str
    window: str
    step_s: int
    times: list[int]
    total_n: list[int]
    paths: dict[str, PathPoints]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def build_path_series(
    goal: str,
    window: str,
    now: float,
    buckets: Mapping[int, Mapping[bytes | str, bytes | str]],
    paths: Iterable[str] = (),
) -> PathSeries:
    """The series of ``window`` ending at ``now`` from the hashes read (bucket -> hash of the
    window's resolution; missing buckets are empty). ``paths`` are shown even without traffic
    in the window; the paths found in the buckets are shown too. Paths sorted by name."""
    spec = _window(window)
    starts, _ = points(window, now)
    size = RESOLUTIONS[spec.resolution]
    first = starts[0]
    width = len(starts)
    sums: dict[str, list[list[float]]] = {p: [[0.0] * len(FIELDS) for _ in starts] for p in paths}
    index = {name: i for i, name in enumerate(FIELDS)}
    for bucket, fields in buckets.items():
        at = bucket * size
        point = (at - first) // spec.step
        if not 0 <= point < width:
            continue
        for raw_field, raw_value in fields.items():
            path, _, name = _text(raw_field).rpartition("|")
            i = index.get(name)
            if not path or i is None:
                continue  # a field of a later version: not ours to read
            rows = sums.get(path)
            if rows is None:
                rows = sums[path] = [[0.0] * len(FIELDS) for _ in starts]
            rows[point][i] += float(_text(raw_value))
    total = [sum(int(rows[k][0]) for rows in sums.values()) for k in range(width)]
    series = {}
    for path in sorted(sums):
        rows = sums[path]
        series[path] = PathPoints(
            n=[int(r[0]) for r in rows],
            success_rate=[r[1] / r[0] if r[0] else None for r in rows],
            share=[r[0] / t if t else None for r, t in zip(rows, total, strict=True)],
            mean_cost_usd=[r[2] / r[3] if r[3] else None for r in rows],
            mean_latency_ms=[r[4] / r[5] if r[5] else None for r in rows],
        )
    return PathSeries(goal, window, spec.step, starts, total, series)


def _hashes(client: Redis, keys: Sequence[str]) -> list[Mapping[bytes | str, bytes | str]]:
    if not keys:
        return []
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return list(pipe.execute())


def path_series(
    keys: RedisKeys,
    client: Redis,
    goal: str,
    window: str,
    *,
    now: float | None = None,
    paths: Iterable[str] = (),
) -> PathSeries:
    """``goal``'s per-path series over ``window`` (``hour``, ``day`` or ``week``) ending at
    ``now`` (Unix seconds; the clock by default). ``paths``: shown even without traffic."""
    spec = _window(window)
    at = datetime.now(UTC).timestamp() if now is None else now
    _, buckets = points(window, at)
    read = _hashes(client, [keys.history(goal, spec.resolution, b) for b in buckets])
    return build_path_series(goal, window, at, dict(zip(buckets, read, strict=True)), paths)


# -- health series ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthSeries:
    """The join's counts of a goal per point: ``counts[name][i]`` for every name of
    ``stream_workers.pipeline.join.COUNTERS``, by the minute the join counted them (its
    clock, not event time). ``outcomes_per_min`` is ``outcomes`` over the point's minutes."""

    goal: str
    window: str
    step_s: int
    times: list[int]
    counts: dict[str, list[int]]
    outcomes_per_min: list[float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def build_health_series(
    goal: str, window: str, now: float, buckets: Mapping[int, Mapping[bytes | str, bytes | str]]
) -> HealthSeries:
    """The health series of ``window`` ending at ``now`` from the hashes read (bucket of the
    window's resolution -> hash; missing buckets count zero)."""
    spec = _window(window)
    starts, _ = points(window, now)
    size = RESOLUTIONS[spec.resolution]
    first, width = starts[0], len(starts)
    counts = {name: [0] * width for name in COUNTERS}
    for bucket, fields in buckets.items():
        point = (bucket * size - first) // spec.step
        if not 0 <= point < width:
            continue
        for raw_field, raw_value in fields.items():
            row = counts.get(_text(raw_field))
            if row is not None:
                row[point] += int(_text(raw_value))
    per_min = [n / (spec.step / 60) for n in counts["outcomes"]]
    return HealthSeries(goal, window, spec.step, starts, counts, per_min)


def health_series(
    keys: RedisKeys, client: Redis, goal: str, window: str, *, now: float | None = None
) -> HealthSeries:
    """``goal``'s pipeline health over ``window`` ending at ``now`` (the clock by default),
    from the join's minute hashes (hour, day) or hour hashes (week). The goal ``""`` holds
    what the join could not attribute to a goal (an outcome that never met its decision, a
    message that did not parse)."""
    spec = _window(window)
    at = datetime.now(UTC).timestamp() if now is None else now
    _, buckets = points(window, at)
    read = _hashes(client, [keys.health(goal, b, spec.resolution) for b in buckets])
    return build_health_series(goal, window, at, dict(zip(buckets, read, strict=True)))


# -- goal summaries --------------------------------------------------------------------------

Status = Literal["cold", "healthy", "degrading", "stale", "disabled"]
STATUSES: Final[tuple[str, ...]] = get_args(Status)


@dataclass(frozen=True, slots=True)
class GoalSummary:
    """A goal at a glance, for the goal list. ``paths``: path -> status, ``disabled`` when an
    active override disables it. ``health``: the join's counts over the last
    ``HEALTH_WINDOW`` minutes. ``attention``: 0 when nothing needs a person; the higher, the
    sooner (see ``attention``), with one reason per finding."""

    goal: str
    version: int | None
    snapshot_age_s: float | None
    paths: dict[str, str]
    pinned: str | None
    open_alerts: list[dict[str, Any]]
    health: dict[str, int]
    attention: int
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def attention(
    statuses: Mapping[str, str],
    pinned: str | None,
    snapshot_age_s: float | None,
    health: Mapping[str, int],
    outcomes_last_2_min: int,
) -> tuple[int, list[str]]:
    """How much a goal needs a person, and why. Weights, summed: a degrading path 100; a
    snapshot more than 2 minutes old while the join counted outcomes of the goal in the last
    two minutes (the posterior stage is behind) 50; messages dead-lettered in the health
    window 20; half or more of at least 20 decisions never reported 20; a stale path 10; a
    path disabled, or the goal pinned, by an override 5 (a person's choice, to be undone)."""
    score = 0
    reasons = []
    for path in sorted(statuses):
        if statuses[path] == "degrading":
            score += 100
            reasons.append(f"path {path} is degrading")
    if snapshot_age_s is not None and snapshot_age_s > _BEHIND_S and outcomes_last_2_min > 0:
        score += 50
        reasons.append(
            f"snapshot {snapshot_age_s:.0f} s old while outcomes arrive: the workers are behind"
        )
    if health.get("dead_lettered", 0) > 0:
        score += 20
        count = health["dead_lettered"]
        reasons.append(f"{count} message{'' if count == 1 else 's'} dead-lettered")
    decisions, unreported = health.get("decisions", 0), health.get("unreported", 0)
    if decisions >= 20 and unreported * 2 >= decisions:
        score += 20
        reasons.append(f"{unreported} of {decisions} decisions never reported")
    for path in sorted(statuses):
        if statuses[path] == "stale":
            score += 10
            reasons.append(f"path {path} is stale")
    for path in sorted(statuses):
        if statuses[path] == "disabled":
            score += 5
            reasons.append(f"path {path} is disabled by an override")
    if pinned is not None:
        score += 5
        reasons.append(f"pinned to {pinned} by an override")
    return score, reasons


def _overrides(raw: bytes | str | None, now: float) -> tuple[set[str], str | None]:
    """Disabled paths and the pinned path of the goal's ``GoalOverrides``, ended entries
    left out; nothing for a missing or unreadable value (the SDKs ignore those too)."""
    if raw is None:
        return set(), None
    try:
        overrides = GoalOverrides.model_validate_json(raw)
    except (ValidationError, ValueError):
        return set(), None
    active = overrides.active(datetime.fromtimestamp(now, UTC))
    return set(active.disabled), None if active.pinned is None else active.pinned.path


def _alerts(raw: Iterable[bytes | str]) -> list[DegradationAlert]:
    alerts = []
    for item in raw:
        try:
            alerts.append(DegradationAlert.model_validate_json(item))
        except (ValidationError, ValueError):
            continue  # a value of a later version: not ours to read
    return alerts


def _open(alerts: Sequence[DegradationAlert]) -> list[DegradationAlert]:
    """The alerts still open: per path, the newest alert (``alerts`` newest first) if open."""
    seen: set[str] = set()
    still = []
    for alert in alerts:
        if alert.path in seen:
            continue
        seen.add(alert.path)
        if alert.state == "open":
            still.append(alert)
    return still


def _summary(
    goal: str,
    now: float,
    snapshot_raw: bytes | str | None,
    overrides_raw: bytes | str | None,
    alerts_raw: Iterable[bytes | str],
    health_minutes: Mapping[int, Mapping[bytes | str, bytes | str]],
) -> GoalSummary:
    snapshot = None
    if snapshot_raw is not None:
        try:
            snapshot = PolicySnapshot.model_validate_json(snapshot_raw)
        except ValidationError:
            snapshot = None
    disabled, pinned = _overrides(overrides_raw, now)
    statuses: dict[str, str] = {}
    if snapshot is not None:
        statuses = {name: stats.status for name, stats in snapshot.paths.items()}
    for path in disabled:
        statuses[path] = "disabled"
    health = dict.fromkeys(COUNTERS, 0)
    recent = 0
    current = int(now // 60)
    for minute, fields in health_minutes.items():
        for raw_field, raw_value in fields.items():
            name = _text(raw_field)
            if name in health:
                health[name] += int(_text(raw_value))
                if name == "outcomes" and minute >= current - 1:
                    recent += int(_text(raw_value))
    age = None if snapshot is None else now - snapshot.generated_at.timestamp()
    score, reasons = attention(statuses, pinned, age, health, recent)
    return GoalSummary(
        goal=goal,
        version=None if snapshot is None else snapshot.version,
        snapshot_age_s=age,
        paths=dict(sorted(statuses.items())),
        pinned=pinned,
        open_alerts=[a.model_dump(mode="json") for a in _open(_alerts(alerts_raw))],
        health=health,
        attention=score,
        reasons=reasons,
    )


def goal_summary(
    keys: RedisKeys, client: Redis, goal: str, *, now: float | None = None
) -> GoalSummary:
    """``goal`` at a glance as of ``now`` (Unix seconds; the clock by default)."""
    return (goal_summaries(keys, client, goals=[goal], now=now))[0]


def goal_summaries(
    keys: RedisKeys,
    client: Redis,
    *,
    goals: Iterable[str] | None = None,
    now: float | None = None,
) -> list[GoalSummary]:
    """The summaries of ``goals`` (every goal with a snapshot by default), the goals that
    need attention first (highest ``attention``, then by name). One Redis round trip."""
    at = datetime.now(UTC).timestamp() if now is None else now
    names = list(goals) if goals is not None else sorted(map(_text, client.smembers(keys.goals)))
    if not names:
        return []
    current = int(at // 60)
    minutes = list(range(current - HEALTH_WINDOW + 1, current + 1))
    pipe = client.pipeline(transaction=False)
    for goal in names:
        pipe.get(keys.policy(goal))
        pipe.get(keys.overrides(goal))
        pipe.lrange(keys.alerts(goal), 0, _ALERTS_READ - 1)
        for minute in minutes:
            pipe.hgetall(keys.health(goal, minute))
    replies = pipe.execute()
    per_goal = 3 + len(minutes)
    summaries = []
    for i, goal in enumerate(names):
        snapshot, overrides, alerts, *health = replies[i * per_goal : (i + 1) * per_goal]
        summaries.append(
            _summary(goal, at, snapshot, overrides, alerts, dict(zip(minutes, health, strict=True)))
        )
    summaries.sort(key=lambda s: (-s.attention, s.goal))
    return summaries


def read_alerts(
    keys: RedisKeys, client: Redis, goal: str, *, limit: int = _ALERTS_READ
) -> list[dict[str, Any]]:
    """``goal``'s recent alerts (open and resolved), newest first, as JSON dicts."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    raw = client.lrange(keys.alerts(goal), 0, limit - 1)
    return [a.model_dump(mode="json") for a in _alerts(raw)]
