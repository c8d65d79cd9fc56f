"""PosteriorService: path-deltas in; policy snapshots, alerts and state out.

Each tick (``publish_interval``) for the goals that changed: send their new alerts to the
alerts topic; send each goal's state (posteriors, detectors, frontier, version) to the
compacted ``<prefix>.posterior-state`` topic; once the broker acknowledged both, commit the
consumer offsets; then write, in one Redis MULTI/EXEC per goal, the snapshot and the alert
list, and publish the goal's name. Kafka holds what was learned, Redis serves it
(docs/recovery.md):

- a crash replays deltas from the committed offsets, and the restored frontier drops what
  was already applied;
- a partition assigned to this worker is paused until its goals' states are read back from
  the state topic (retried with backoff), then all of them are written to Redis;
- Redis away: deltas keep being applied and their state written to Kafka, the snapshots wait
  (the newest per goal) until Redis takes them;
- Redis emptied (a restart without persistence, a flush, a failover to an empty replica): a
  marker per partition is gone; every goal of that partition is written again from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any, Final

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.partitioner import murmur2
from mode import Service
from pydantic import ValidationError
from pydantic_core import from_json, to_json

from schemas import DegradationAlert, PathDelta
from stream_workers.clients import (
    Backoff,
    close_clients,
    group_consumer,
    redis_client,
    start_producer,
)
from stream_workers.pipeline.posterior.changelog import StateLog, StateLogError
from stream_workers.pipeline.posterior.state import GoalState, PosteriorConfig
from stream_workers.settings import WorkerSettings

__all__ = ["PosteriorService"]

log = logging.getLogger("outroute.posterior")

_ALERTS_KEPT: Final = 100
#: How often the markers are checked that tell an emptied Redis from a live one (seconds).
_MARKER_CHECK: Final = 1.0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: PosteriorService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._service.release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._service.take({tp.partition for tp in assigned})


class PosteriorService(Service):
    """The posterior stage of one worker process."""

    def __init__(self, settings: WorkerSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.config = PosteriorConfig(
            half_life=settings.half_life,
            window=settings.detector_window,
            min_drop=settings.min_drop,
            min_samples=settings.min_samples,
            staleness=settings.staleness,
            source_partitions=settings.partitions,
        )
        topics = settings.topics()
        self._deltas_topic = topics.path_deltas.name
        self._alerts_topic = topics.alerts.name
        self._state_log = StateLog(settings, topics.posterior_state.name)
        self._keys = settings.redis_keys()
        #: partition -> token of the worker that wrote all its goals to this Redis
        self._marker_key = f"{settings.redis_key_prefix}:posterior-written:{settings.topic_prefix}"
        self._token = uuid.uuid4().hex
        self._legacy_prefix = f"{settings.redis_key_prefix}:posterior:{settings.topic_prefix}"
        self._migrated: set[str] = set()  # goals read from legacy keys, deleted once saved
        self._legacy_done = False
        self._goals: dict[str, GoalState] = {}
        #: restored partitions -> their goals; the partitions whose records are applied
        self._owned: dict[int, set[str]] = {}
        #: assigned partitions whose goals are not read back yet -> paused since
        self._waiting: dict[int, float] = {}
        self._dirty: set[str] = set()  # applied, state not yet acknowledged by Kafka
        self._unpublished: dict[str, str] = {}  # goal -> snapshot JSON not yet in Redis
        self._unmarked: set[int] = set()  # partitions whose marker must be written
        self._alerts: list[DegradationAlert] = []  # applied, not yet acknowledged by Kafka
        self._unwritten_alerts: dict[str, list[DegradationAlert]] = {}
        self._offsets: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._redis: aioredis.Redis | None = None
        self.snapshots_written = 0
        self.states_written = 0
        self.publish_errors = 0
        self.state_errors = 0
        self.invalid_deltas = 0
        self.restore_failures = 0
        self.redis_rewrites = 0

    async def on_start(self) -> None:
        self._redis = redis_client(self.settings)
        await self._warn_if_redis_forgets()
        self._producer = await start_producer(self.settings)
        self._consumer = group_consumer(self.settings, self.settings.posterior_group)
        self._consumer.subscribe([self._deltas_topic], listener=_Listener(self))
        await self._consumer.start()
        self.add_future(self._run())

    async def on_stop(self) -> None:
        try:
            async with self._lock:
                await self._publish()
        finally:
            await close_clients(self._consumer, self._producer, self._redis)

    async def _warn_if_redis_forgets(self) -> None:
        """Say at start when this Redis keeps nothing across a restart."""
        if self._redis is None:
            return
        try:
            save = await self._redis.config_get("save")
            appendonly = await self._redis.config_get("appendonly")
        except Exception as exc:  # CONFIG disabled (managed Redis) or Redis away: cannot tell
            log.info("cannot read the persistence settings of Redis (%s)", exc)
            return
        if not save.get("save") and appendonly.get("appendonly") == "no":
            log.warning(
                'Redis at %s persists nothing (save "", appendonly no): a restart empties '
                "it, and the workers then rewrite every snapshot from %s; see docs/deploy.md, "
                "Redis",
                self.settings.redis_url_redacted,
                self._state_log.topic,
            )

    # -- assignment --------------------------------------------------------------------------

    async def take(self, partitions: set[int]) -> None:
        """Pause newly assigned partitions until their goals are read back (in the loop)."""
        consumer = self._consumer
        if consumer is None:
            return
        async with self._lock:
            now = time.monotonic()
            for partition in sorted(partitions - self._owned.keys() - self._waiting.keys()):
                consumer.pause(TopicPartition(self._deltas_topic, partition))
                self._waiting[partition] = now

    async def _restore(self, consumer: AIOKafkaConsumer) -> bool:
        """Read back the goals of the waiting partitions; False if some are still waiting:
        the state topic could not be read, or a partition holds a state that does not parse
        (that partition alone waits). Retried with backoff."""
        partitions = sorted(self._waiting)
        if self._producer is None:
            return False
        try:
            saved = await self._state_log.read(self._producer, partitions)
            legacy = await self._legacy_states(saved)
        except Exception as exc:  # broker or Redis away, a timeout
            self._restore_failed(partitions, exc)
            return False
        for partition, raw_goals in saved.items():
            raw_goals = {**legacy.get(partition, {}), **raw_goals}  # the topic wins
            try:
                goals = {goal: self._parse(partition, goal, raw) for goal, raw in raw_goals.items()}
            except StateLogError as exc:
                self._restore_failed([partition], exc)
                continue
            since = self._waiting.pop(partition)
            self._goals.update(goals)
            self._owned[partition] = set(goals)
            self._dirty.update(goals)  # written to Redis as soon as possible
            self._unmarked.add(partition)
            consumer.resume(TopicPartition(self._deltas_topic, partition))
            log.info(
                "partition %d: %d goals read back in %.1f s",
                partition,
                len(goals),
                time.monotonic() - since,
            )
        return not self._waiting

    def _legacy_key(self, goal: str) -> str:
        return f"{self._legacy_prefix}:{goal}"

    async def _legacy_states(
        self, saved: dict[int, dict[str, bytes]]
    ) -> dict[int, dict[str, bytes]]:
        """Goal states an earlier version kept in Redis only (``<redis prefix>:posterior:<topic
        prefix>:<goal>``) that the state topic does not have yet: read once, written to the
        topic with the goal's next state, then deleted from Redis."""
        if self._legacy_done:
            return {}
        if self._redis is None:
            raise ConnectionError("the posterior service has not started")
        found: dict[int, dict[str, bytes]] = {}
        keys = 0
        assigned = (
            self._consumer.partitions_for_topic(self._deltas_topic) if self._consumer else None
        )
        partitions = len(assigned or ()) or self.settings.partitions  # the topic's own count
        async for key in self._redis.scan_iter(match=self._legacy_key("*"), count=1000):
            keys += 1
            goal = (key.decode() if isinstance(key, bytes) else key)[len(self._legacy_key("")) :]
            partition = (murmur2(goal.encode()) & 0x7FFFFFFF) % partitions  # the join's hash
            if partition not in saved or goal in saved[partition]:
                continue
            raw = await self._redis.get(key)
            if raw is not None:
                found.setdefault(partition, {})[goal] = (
                    raw if isinstance(raw, bytes) else raw.encode()
                )
                self._migrated.add(goal)
        self._legacy_done = keys == 0  # none left: no need to ask Redis on later assignments
        if found:
            log.warning(
                "read %d goal states from Redis keys of an earlier version; they are moved to %s",
                sum(len(goals) for goals in found.values()),
                self._state_log.topic,
            )
        return found

    def _restore_failed(self, partitions: list[int], exc: Exception) -> None:
        self.restore_failures += 1
        if self.restore_failures == 1 or self.restore_failures % 20 == 0:
            log.warning(
                "partitions %s: cannot read their goals back from %s (%s: %s); paused, retrying",
                partitions,
                self._state_log.topic,
                type(exc).__name__,
                exc,
            )

    def _parse(self, partition: int, goal: str, raw: bytes) -> GoalState:
        try:
            state = GoalState.from_json(from_json(raw), self.config)
        except (ValueError, KeyError, TypeError) as exc:
            raise StateLogError(
                f"partition {partition}, goal {goal!r}: the saved state does not parse "
                f"({type(exc).__name__}: {exc}); the partition waits until a valid state or a "
                "tombstone for the goal is written (docs/recovery.md)"
            ) from exc
        if state.goal != goal:
            raise StateLogError(
                f"partition {partition}: the state saved under goal {goal!r} is goal "
                f"{state.goal!r}'s"
            )
        return state

    async def release(self, partitions: set[int]) -> None:
        """Partitions are moving: write what was applied, then forget their goals."""
        async with self._lock:
            await self._publish()
            for partition in partitions:
                self._waiting.pop(partition, None)
                self._unmarked.discard(partition)
                for goal in self._owned.pop(partition, set()):
                    self._goals.pop(goal, None)
                    self._dirty.discard(goal)
                    self._unpublished.pop(goal, None)
                    # its unwritten alerts stay: if the partition comes back here they are
                    # written with the goal's snapshot (they are on the alerts topic anyway)
                self._offsets.pop(TopicPartition(self._deltas_topic, partition), None)

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        interval = self.settings.publish_interval
        next_publish = time.monotonic() + interval
        next_marker_check = 0.0
        retry = Backoff()
        while not self.should_stop:
            batch = await consumer.getmany(timeout_ms=int(interval * 500), max_records=5000)
            async with self._lock:
                for tp, messages in batch.items():
                    if tp.partition not in self._owned:
                        # Fetched before it was paused: read it again once restored.
                        if tp.partition in self._waiting and messages:
                            consumer.seek(tp, messages[0].offset)
                        continue
                    for message in messages:
                        self._apply(tp, message)
                if self._waiting and retry.due():
                    if await self._restore(consumer):
                        retry.reset()
                    else:
                        retry.failed()
                now = time.monotonic()
                if now >= next_marker_check:
                    await self._check_markers()
                    next_marker_check = now + _MARKER_CHECK
                if now >= next_publish:
                    await self._publish()
                    next_publish = now + interval

    def _apply(self, tp: TopicPartition, message: Any) -> None:
        self._offsets[tp] = message.offset + 1
        try:
            delta = PathDelta.model_validate_json(message.value or b"")
        except (ValidationError, ValueError) as exc:
            self.invalid_deltas += 1
            log.error("skipping an invalid delta at %s:%d: %s", tp, message.offset, exc)
            return
        state = self._goals.get(delta.goal)
        if state is None:  # every goal of the partition was read back: this one is new
            state = self._goals[delta.goal] = GoalState(delta.goal, self.config)
            self._owned[tp.partition].add(delta.goal)
        alerts = state.apply(delta)
        self._alerts.extend(alerts)
        for alert in alerts:
            self._unwritten_alerts.setdefault(alert.goal, []).append(alert)
        self._dirty.add(delta.goal)

    async def _check_markers(self) -> None:
        """Find partitions whose goals this Redis no longer holds (it lost its data)."""
        checked = sorted(self._owned.keys() - self._unmarked)
        if not checked or self._redis is None:
            return
        try:
            markers = await self._redis.hmget(self._marker_key, [str(p) for p in checked])
        except Exception:  # Redis away: the snapshot writes report it
            return
        lost = [p for p, marker in zip(checked, markers, strict=True) if marker is None]
        if not lost:
            return
        goals = set().union(*(self._owned[p] for p in lost))
        self.redis_rewrites += 1
        log.warning(
            "Redis no longer holds the snapshots of partitions %s (emptied or replaced); "
            "writing their %d goals again",
            lost,
            len(goals),
        )
        self._dirty.update(goals)
        self._unmarked.update(lost)

    async def _publish(self) -> None:
        for goal, state in self._goals.items():  # detector input that waited long enough
            released = state.release()
            if released:
                self._alerts.extend(released)
                for alert in released:
                    self._unwritten_alerts.setdefault(goal, []).append(alert)
                self._dirty.add(goal)
            elif any(p.waiting for p in state.paths.values()):
                self._dirty.add(goal)  # keep checkpointing until the buffer drains
        if self._producer is None:
            return
        if self._dirty and await self._write_state(self._producer):
            await self._commit()
        if self._unpublished or self._unmarked:
            await self._write_redis()

    async def _write_state(self, producer: AIOKafkaProducer) -> bool:
        """Alerts, then the state of every changed goal, acknowledged by the broker."""
        if self._alerts:
            try:
                futures = [
                    await producer.send(
                        self._alerts_topic,
                        key=alert.goal.encode(),
                        value=alert.model_dump_json().encode(),
                    )
                    for alert in self._alerts
                ]
                await asyncio.gather(*futures)
            except Exception as exc:  # retried next tick; no state is written before
                self.state_errors += 1
                log.warning("sending %d alerts failed (%s); retrying", len(self._alerts), exc)
                return False
            self._alerts = []
        partition_of = {goal: p for p, goals in self._owned.items() for goal in goals}
        now = time.time()
        snapshots = {}
        records = []
        for goal in sorted(self._dirty):
            state = self._goals[goal]
            snapshots[goal] = state.snapshot(now).model_dump_json()
            records.append((partition_of[goal], goal, to_json(state.to_json())))
        try:
            await self._state_log.write(producer, records)
        except Exception as exc:  # broker away: retried next tick, offsets stay uncommitted
            self.state_errors += 1
            if self.state_errors == 1 or self.state_errors % 50 == 0:
                log.warning(
                    "writing the state of %d goals failed (%s); retrying", len(records), exc
                )
            return False
        self.states_written += len(records)
        self._unpublished.update(snapshots)
        self._dirty.clear()
        if self._migrated and self._redis is not None:
            with contextlib.suppress(Exception):  # read again (the topic wins) if it fails
                await self._redis.delete(*(self._legacy_key(goal) for goal in self._migrated))
                self._migrated.clear()
        return True

    async def _commit(self) -> None:
        if not self._offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(dict(self._offsets))
        except Exception as exc:  # a rebalance is under way: the frontier covers replays
            log.warning("committing posterior offsets failed (%s)", exc)

    async def _write_redis(self) -> None:
        """The markers of partitions whose goals Redis must be given again, then the newest
        snapshot of each goal Redis lacks. Marker first: if Redis loses its data after it,
        the marker is gone too, and the next check writes every goal again."""
        if self._redis is None:
            return
        try:
            if self._unmarked:
                marked = {str(p): self._token for p in sorted(self._unmarked)}
                await self._redis.hset(self._marker_key, mapping=marked)  # type: ignore[arg-type]
                self._unmarked.clear()
            for goal in sorted(self._unpublished):
                alerts = self._unwritten_alerts.get(goal, [])
                pipe = self._redis.pipeline(transaction=True)
                pipe.set(self._keys.policy(goal), self._unpublished[goal])
                pipe.sadd(self._keys.goals, goal)
                for alert in alerts:
                    pipe.lpush(self._keys.alerts(goal), alert.model_dump_json())
                if alerts:
                    pipe.ltrim(self._keys.alerts(goal), 0, _ALERTS_KEPT - 1)
                pipe.publish(self._keys.policy_updates, goal)
                await pipe.execute()
                self._unwritten_alerts.pop(goal, None)
                del self._unpublished[goal]
                self.snapshots_written += 1
        except Exception as exc:  # Redis away: keep applying deltas, write when it is back
            self.publish_errors += 1
            if self.publish_errors == 1 or self.publish_errors % 50 == 0:
                log.warning("writing snapshots failed (%s); retrying", exc)

    # -- inspection --------------------------------------------------------------------------

    @property
    def partitions(self) -> list[int]:
        """Path-deltas partitions whose goals are held and updated here."""
        return sorted(self._owned)

    @property
    def waiting_partitions(self) -> list[int]:
        """Assigned partitions whose goals are not read back yet (paused)."""
        return sorted(self._waiting)
