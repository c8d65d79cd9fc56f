"""Overrides: take a path out of rotation, or pin a goal to one path, for every router at once.

``apply`` makes one change (an ``OverrideRecord``) in this order:

1. under the goal's lock in Redis (one writer at a time, so two people disabling the last two
   paths of a goal at once cannot both succeed), read the goal's overrides and its snapshot's
   paths, and compute the next overrides with ``next_overrides`` (pure: the rules below);
2. send the record to ``<prefix>.overrides`` and wait for the broker's acknowledgement: a
   change that is not recorded is not made;
3. in one Redis MULTI: SET the goal's ``GoalOverrides`` (expiring when its last entry ends, or
   DEL when nothing is left), LPUSH + LTRIM the record onto the goal's log, and PUBLISH the goal
   on the policy-update channel so that every router re-reads it within its snapshot bound.

The rules (``OverrideRefused`` names the one broken; nothing is sent or written):

- ``disable`` and ``pin`` name a path of the goal's published snapshot (a goal with no snapshot
  has no known paths);
- ``disable`` may not leave every known path disabled, and may not disable the pinned path;
- ``pin`` may not name a disabled path; it replaces an earlier pin;
- ``enable`` names a disabled path, ``unpin`` a pinned goal;
- ``disable`` of a disabled path replaces its entry (a new reason or end).

Entries whose ``until`` has passed count as absent for every rule, and are dropped when the
value is rewritten. ``version`` is at least the change's time in epoch milliseconds and always
above the previous one, so it grows even across the key's expiry.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError

from schemas import PolicySnapshot, RedisKeys
from schemas.overrides import GoalOverrides, OverrideEntry, OverrideRecord, PinnedEntry
from stream_workers.clients import sync_redis
from stream_workers.errors import OverrideRefused, WorkerError
from stream_workers.settings import WorkerSettings

__all__ = [
    "LOG_CAP",
    "apply",
    "current",
    "known_paths",
    "log",
    "next_overrides",
    "parse_duration",
]

_log = logging.getLogger("outroute.overrides")

#: Records kept in a goal's Redis log; the ops topic keeps every one.
LOG_CAP: Final = 100

_DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``2h``, ``1d`` (a positive number and a unit) to a timedelta; a
    ValueError naming the rule otherwise."""
    match = _DURATION.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(
            f"duration: expected a positive number and a unit s, m, h or d (90s, 30m, 2h, 1d), "
            f"got {text!r}"
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _names(paths: Collection[str]) -> str:
    return ", ".join(sorted(paths)) or "none"


def next_overrides(
    previous: GoalOverrides | None, record: OverrideRecord, known: Collection[str]
) -> GoalOverrides:
    """The goal's overrides after ``record``, given the paths its snapshot knows (pure).

    Raises OverrideRefused naming the broken rule (see the module docstring).
    """
    goal, path = record.goal, record.path or ""  # "" only for unpin, which names no path
    if previous is not None and previous.goal != goal:
        raise ValueError(f"goal: the overrides are of {previous.goal!r}, the record of {goal!r}")
    active = previous.active(record.at) if previous is not None else None
    disabled = dict(active.disabled) if active is not None else {}
    pinned = active.pinned if active is not None else None
    entry = OverrideEntry(reason=record.reason, by=record.by, at=record.at, until=record.until)
    if record.action in ("disable", "pin") and path not in known:
        raise OverrideRefused(
            f"path {path!r} is not a path of goal {goal!r} (its snapshot knows: {_names(known)})"
        )
    if record.action == "disable":
        if pinned is not None and pinned.path == path:
            raise OverrideRefused(
                f"goal {goal!r} is pinned to {path!r}: unpin it before disabling that path"
            )
        disabled[path] = entry
        if set(known) <= set(disabled):
            raise OverrideRefused(
                f"disabling {path!r} would disable every path of goal {goal!r} "
                f"({_names(known)}): enable another path first, or pin the goal instead"
            )
    elif record.action == "enable":
        if path not in disabled:
            raise OverrideRefused(f"path {path!r} of goal {goal!r} is not disabled")
        del disabled[path]
    elif record.action == "pin":
        if path in disabled:
            raise OverrideRefused(
                f"path {path!r} of goal {goal!r} is disabled: enable it before pinning to it"
            )
        pinned = PinnedEntry(path=path, **entry.model_dump(exclude={"schema_version"}))
    else:  # unpin
        if pinned is None:
            raise OverrideRefused(f"goal {goal!r} is not pinned")
        pinned = None
    epoch_ms = int(record.at.timestamp() * 1000)
    version = max(epoch_ms, (previous.version + 1) if previous is not None else 1)
    return GoalOverrides(goal=goal, version=version, disabled=disabled, pinned=pinned)


def _parse_overrides(raw: bytes | None, key: str) -> GoalOverrides | None:
    if raw is None:
        return None
    try:
        return GoalOverrides.model_validate_json(raw)
    except ValidationError as exc:
        raise WorkerError(f"the overrides at {key} are invalid: {exc.errors()[0]['msg']}") from exc


def known_paths(redis: Any, keys: RedisKeys, goal: str) -> list[str]:
    """The paths of ``goal``'s published snapshot (empty if it has none)."""
    raw = redis.get(keys.policy(goal))
    if raw is None:
        return []
    try:
        return list(PolicySnapshot.model_validate_json(raw).paths)
    except ValidationError as exc:
        raise WorkerError(
            f"the snapshot at {keys.policy(goal)} is invalid: {exc.errors()[0]['msg']}"
        ) from exc


def _send(settings: WorkerSettings, record: OverrideRecord, timeout: float) -> None:
    """Send ``record`` to the overrides topic and wait for the broker's acknowledgement."""
    from confluent_kafka import KafkaException, Producer

    from schemas import PARTITIONER
    from stream_workers.ops.topics import KAFKA_LOGGER

    topic = settings.topics().overrides.name
    producer = Producer(
        {
            **settings.kafka_client_config(),
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": PARTITIONER,
            "message.timeout.ms": int(timeout * 1000),
            "logger": KAFKA_LOGGER,
        }
    )
    try:
        # Listing every topic does not create one; naming it could, on brokers that
        # auto-create topics (with their default partition count, not this topic's one).
        metadata = producer.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise WorkerError(
            f"could not reach Kafka at {settings.bootstrap_servers} to record the override: "
            f"{exc}; nothing changed"
        ) from exc
    if topic not in metadata.topics:
        raise WorkerError(
            f"topic {topic} does not exist on {settings.bootstrap_servers}; create it with "
            "`outroute topics create`; nothing changed"
        )
    failures: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    producer.produce(
        topic, key=record.goal.encode(), value=record.model_dump_json(), on_delivery=delivered
    )
    pending = producer.flush(timeout)
    if pending or failures:
        problem = failures[0] if failures else f"no acknowledgement within {timeout:g}s"
        raise WorkerError(f"the override was not recorded on {topic}: {problem}; nothing changed")


def apply(
    settings: WorkerSettings, record: OverrideRecord, *, timeout: float = 10.0
) -> GoalOverrides:
    """Apply one change (see the module docstring); the goal's overrides after it.

    OverrideRefused when a rule refuses it, WorkerError when Kafka or Redis cannot be reached
    or the change could not be recorded; in both cases nothing has changed.
    """
    from redis.exceptions import LockError

    redis = sync_redis(settings, "changing overrides")
    keys = settings.redis_keys()
    goal = record.goal
    lock = redis.lock(keys.override_lock(goal), timeout=3 * timeout + 5, blocking_timeout=timeout)
    if not lock.acquire():
        raise WorkerError(
            f"another change to the overrides of goal {goal!r} held its lock for {timeout:g}s; "
            "try again"
        )
    try:
        previous = _parse_overrides(redis.get(keys.overrides(goal)), keys.overrides(goal))
        known = known_paths(redis, keys, goal) if record.path is not None else []
        if not known and record.action in ("disable", "pin"):
            raise OverrideRefused(
                f"goal {goal!r} has no published policy ({keys.policy(goal)} is missing): "
                "its paths are not known yet"
            )
        result = next_overrides(previous, record, known)
        _send(settings, record, timeout)
        _write(redis, keys, record, result)
    finally:
        try:
            lock.release()
        except LockError:  # held longer than its timeout: the writes are done either way
            _log.warning("the override lock of goal %r had expired before its release", goal)
    _log.info("override %s %s/%s by %s", record.action, goal, record.path or "-", record.by)
    return result


def _write(redis: Any, keys: RedisKeys, record: OverrideRecord, result: GoalOverrides) -> None:
    goal = record.goal
    pipe = redis.pipeline(transaction=True)
    active = result.active(datetime.now(UTC))
    if active.empty:
        pipe.delete(keys.overrides(goal))
    else:
        # Readers ignore ended entries by themselves; the TTL only keeps Redis tidy.
        last = result.last_end()
        if last is None:
            pipe.set(keys.overrides(goal), result.model_dump_json())
        else:
            ttl = last - datetime.now(UTC)
            ttl_ms = max(1, int(ttl.total_seconds() * 1000))
            pipe.set(keys.overrides(goal), result.model_dump_json(), px=ttl_ms)
    pipe.lpush(keys.override_log(goal), record.model_dump_json())
    pipe.ltrim(keys.override_log(goal), 0, LOG_CAP - 1)
    pipe.publish(keys.policy_updates, goal)
    pipe.publish(keys.policy_changes, goal)
    pipe.execute()


def current(
    settings: WorkerSettings, goal: str, *, redis: Any = None, now: datetime | None = None
) -> GoalOverrides | None:
    """The overrides of ``goal`` in force at ``now`` (None: none in force)."""
    client = redis if redis is not None else sync_redis(settings, "reading overrides")
    key = settings.redis_keys().overrides(goal)
    stored = _parse_overrides(client.get(key), key)
    if stored is None:
        return None
    active = stored.active(now or datetime.now(UTC))
    return None if active.empty else active


def log(
    settings: WorkerSettings, goal: str, limit: int = 20, *, redis: Any = None
) -> list[OverrideRecord]:
    """The ``limit`` most recent changes of ``goal``'s overrides, newest first."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    client = redis if redis is not None else sync_redis(settings, "reading overrides")
    key = settings.redis_keys().override_log(goal)
    records = []
    for raw in client.lrange(key, 0, limit - 1):
        try:
            records.append(OverrideRecord.model_validate_json(raw))
        except ValidationError as exc:
            _log.warning("skipping an invalid record in %s: %s", key, exc.errors()[0]["msg"])
    return records
