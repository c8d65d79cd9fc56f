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

History (``history``): the items applied to a goal since its last state write are taken
from its ``GoalState`` once that state is acknowledged by Kafka, and their bucket sums go to
Redis in the goal's next snapshot MULTI (HINCRBY/HINCRBYFLOAT, EXPIREAT every hash written).
Taken only after the state, so a replay after a crash, which the saved frontier filters, adds
nothing twice; lost if the worker dies before Redis has them (best-effort). While Redis is
away the sums wait, merged per hash, at most ``MAX_PENDING`` hashes; beyond, they are dropped
and counted (``history_dropped``).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2
from pydantic import ValidationError
from pydantic_core import from_json, to_json

from schemas import DegradationAlert, PathDelta
from stream_workers.pipeline.posterior.changelog import StateLog, StateLogError
from stream_workers.pipeline.posterior.history import Increments, PendingHistory, queue_writes
from stream_workers.pipeline.posterior.state import GoalState, PosteriorConfig
from stream_workers.pipeline.stage import BatchStage, Message
from stream_workers.settings import WorkerSettings

__all__ = ["PosteriorService"]

_ALERTS_KEPT: Final = 100
_MAX_RECORDS: Final = 5000
#: History hashes written with a goal's snapshot at most; a backfill's others follow in
#: pipelines of as many.
_HISTORY_PER_PIPELINE: Final = 200
#: How often the markers are checked that tell an emptied Redis from a live one (seconds).
_MARKER_CHECK: Final = 1.0


class PosteriorService(BatchStage):
    """The posterior stage of one worker process."""

    logger = logging.getLogger("outroute.posterior")

    def __init__(self, settings: WorkerSettings, **kwargs: Any) -> None:
        topics = settings.topics()
        self._deltas_topic = topics.path_deltas.name
        super().__init__(
            settings,
            group=settings.posterior_group,
            topics=[self._deltas_topic],
            interval=settings.publish_interval,
            max_records=_MAX_RECORDS,
            **kwargs,
        )
        self.config = PosteriorConfig.from_settings(settings)
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
        self._dirty: set[str] = set()  # applied, state not yet acknowledged by Kafka
        self._unpublished: dict[str, str] = {}  # goal -> snapshot JSON not yet in Redis
        self._unmarked: set[int] = set()  # partitions whose marker must be written
        self._alerts: list[DegradationAlert] = []  # applied, not yet acknowledged by Kafka
        self._unwritten_alerts: dict[str, list[DegradationAlert]] = {}
        self._history = PendingHistory()  # taken after the state write, not yet in Redis
        self._offsets: dict[TopicPartition, int] = {}
        self._next_marker_check = 0.0
        self._history_drops_logged = 0
        self.snapshots_written = 0
        self.states_written = 0
        self.invalid_deltas = 0
        self.restore_failures = 0
        self.redis_rewrites = 0

    async def before_start(self) -> None:
        """Say at start when this Redis keeps nothing across a restart."""
        if self.redis is None:
            return
        try:
            save = await self.redis.config_get("save")
            appendonly = await self.redis.config_get("appendonly")
        except Exception as exc:  # CONFIG disabled (managed Redis) or Redis away: cannot tell
            self.logger.info("cannot read the persistence settings of Redis (%s)", exc)
            return
        if not save.get("save") and appendonly.get("appendonly") == "no":
            self.logger.warning(
                'Redis at %s persists nothing (save "", appendonly no): a restart empties '
                "it, and the workers then rewrite every snapshot from %s; see docs/deploy.md, "
                "Redis",
                self.settings.redis_url_redacted,
                self._state_log.topic,
            )

    # -- assignment --------------------------------------------------------------------------

    async def take(self, assigned: Iterable[TopicPartition]) -> None:
        """Pause newly assigned partitions until their goals are read back (in the loop)."""
        consumer = self.consumer
        if consumer is None:
            return
        partitions = {tp.partition for tp in assigned}
        async with self.lock:
            self._count_source_partitions(consumer)
            for partition in sorted(partitions - self._owned.keys() - self.waiting.keys()):
                self.pause_waiting(consumer, partition, self._tp(partition))

    def _count_source_partitions(self, consumer: AIOKafkaConsumer) -> None:
        """The detectors wait for every partition that feeds a goal: count them on the topic
        itself (``OUTROUTE_PARTITIONS`` may say otherwise when the topics were made
        elsewhere). Goals already held keep the count they were made with."""
        actual = len(consumer.partitions_for_topic(self._deltas_topic) or ())
        if actual and actual != self.config.source_partitions:
            if self.config.source_partitions is not None:
                self.logger.warning(
                    "%s has %d partitions, OUTROUTE_PARTITIONS says %d; using %d",
                    self._deltas_topic,
                    actual,
                    self.config.source_partitions,
                    actual,
                )
            self.config = replace(self.config, source_partitions=actual)

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self._deltas_topic, partition)

    async def restore_waiting(self, consumer: AIOKafkaConsumer) -> None:
        """Read back the goals of the waiting partitions. Those whose state topic could not
        be read, or that hold a state that does not parse (that partition alone), keep
        waiting; the loop retries them with backoff."""
        partitions = sorted(self.waiting)
        if self.producer is None:
            return
        try:
            saved = await self._state_log.read(self.producer, partitions)
            legacy = await self._legacy_states(saved)
        except Exception as exc:  # broker or Redis away, a timeout
            self._restore_failed(partitions, exc)
            return
        for partition, raw_goals in saved.items():
            raw_goals = {**legacy.get(partition, {}), **raw_goals}  # the topic wins
            try:
                goals = {goal: self._parse(partition, goal, raw) for goal, raw in raw_goals.items()}
            except StateLogError as exc:
                self._restore_failed([partition], exc)
                continue
            self._goals.update(goals)
            self._owned[partition] = set(goals)
            self._dirty.update(goals)  # written to Redis as soon as possible
            self._unmarked.add(partition)
            waited = self.resume_restored(consumer, partition, self._tp(partition))
            self.logger.info(
                "partition %d: %d goals read back in %.1f s", partition, len(goals), waited
            )

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
        if self.redis is None:
            raise ConnectionError("the posterior service has not started")
        found: dict[int, dict[str, bytes]] = {}
        keys = 0
        assigned = self.consumer.partitions_for_topic(self._deltas_topic) if self.consumer else None
        partitions = len(assigned or ()) or self.settings.partitions  # the topic's own count
        async for key in self.redis.scan_iter(match=self._legacy_key("*"), count=1000):
            keys += 1
            goal = (key.decode() if isinstance(key, bytes) else key)[len(self._legacy_key("")) :]
            partition = (murmur2(goal.encode()) & 0x7FFFFFFF) % partitions  # the join's hash
            if partition not in saved or goal in saved[partition]:
                continue
            raw = await self.redis.get(key)
            if raw is not None:
                found.setdefault(partition, {})[goal] = (
                    raw if isinstance(raw, bytes) else raw.encode()
                )
                self._migrated.add(goal)
        self._legacy_done = keys == 0  # none left: no need to ask Redis on later assignments
        if found:
            self.logger.warning(
                "read %d goal states from Redis keys of an earlier version; they are moved to %s",
                sum(len(goals) for goals in found.values()),
                self._state_log.topic,
            )
        return found

    def _restore_failed(self, partitions: list[int], exc: Exception) -> None:
        self.restore_failures += 1
        if self.restore_failures == 1 or self.restore_failures % 20 == 0:
            self.logger.warning(
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
        async with self.lock:
            await self.tick()
            for partition in partitions:
                self.waiting.pop(partition, None)
                self._unmarked.discard(partition)
                for goal in self._owned.pop(partition, set()):
                    self._goals.pop(goal, None)
                    self._dirty.discard(goal)
                    self._unpublished.pop(goal, None)
                    # its unwritten alerts stay: if the partition comes back here they are
                    # written with the goal's snapshot (they are on the alerts topic anyway)
                self._offsets.pop(TopicPartition(self._deltas_topic, partition), None)

    # -- the loop ----------------------------------------------------------------------------

    def process(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]], fetched_in: int
    ) -> None:
        for tp, messages in batch.items():
            if tp.partition not in self._owned:
                # Fetched before it was paused: read it again once restored.
                if tp.partition in self.waiting and messages:
                    consumer.seek(tp, messages[0].offset)
                continue
            for message in messages:
                self._apply(tp, message)

    async def after_batch(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if now >= self._next_marker_check:
            await self._check_markers()
            self._next_marker_check = now + _MARKER_CHECK

    def _apply(self, tp: TopicPartition, message: Any) -> None:
        self._offsets[tp] = message.offset + 1
        try:
            delta = PathDelta.model_validate_json(message.value or b"")
        except (ValidationError, ValueError) as exc:
            self.invalid_deltas += 1
            self.logger.error("skipping an invalid delta at %s:%d: %s", tp, message.offset, exc)
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
        if not checked or self.redis is None:
            return
        try:
            markers = await self.redis.hmget(self._marker_key, [str(p) for p in checked])
        except Exception:  # Redis away: the snapshot writes report it
            return
        lost = [p for p, marker in zip(checked, markers, strict=True) if marker is None]
        if not lost:
            return
        goals = set().union(*(self._owned[p] for p in lost))
        self.redis_rewrites += 1
        self.logger.warning(
            "Redis no longer holds the snapshots of partitions %s (emptied or replaced); "
            "writing their %d goals again",
            lost,
            len(goals),
        )
        self._dirty.update(goals)
        self._unmarked.update(lost)

    async def tick(self, *, final: bool = False) -> None:
        for goal, state in self._goals.items():  # detector input that waited long enough
            released = state.release()
            if released:
                self._alerts.extend(released)
                for alert in released:
                    self._unwritten_alerts.setdefault(goal, []).append(alert)
                self._dirty.add(goal)
            elif any(p.waiting for p in state.paths.values()):
                self._dirty.add(goal)  # keep checkpointing until the buffer drains
        if self.producer is None:
            return
        if self._dirty and await self._write_state():
            await self._commit()
        if self._unpublished or self._unmarked or self._history:
            await self._write_redis()

    async def _write_state(self) -> bool:
        """Alerts, then the state of every changed goal, acknowledged by the broker."""
        if self._alerts:
            messages: list[Message] = [
                (self._alerts_topic, alert.goal.encode(), alert.model_dump_json().encode())
                for alert in self._alerts
            ]
            try:
                await self.send_acknowledged(messages)
            except Exception as exc:  # retried next tick; no state is written before
                self.failures.record(
                    "state", 1, "sending %d alerts failed (%s); retrying", len(messages), exc
                )
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
            await self._state_log.write(self.producer, records)
        except Exception as exc:  # broker away: retried next tick, offsets stay uncommitted
            self.failures.record(
                "state",
                50,
                "writing the state of %d goals failed (%s); retrying",
                len(records),
                exc,
            )
            return False
        self.states_written += len(records)
        self._unpublished.update(snapshots)
        for goal in self._dirty:
            history = self._goals[goal].history
            if history is not None and (history or history.dropped):
                self._history.add(goal, history.take(), now)
        self._dirty.clear()
        if self._migrated and self.redis is not None:
            with contextlib.suppress(Exception):  # read again (the topic wins) if it fails
                await self.redis.delete(*(self._legacy_key(goal) for goal in self._migrated))
                self._migrated.clear()
        return True

    async def _commit(self) -> None:
        if not self._offsets or self.consumer is None:
            return
        try:
            await self.consumer.commit(dict(self._offsets))
        except Exception as exc:  # a rebalance is under way: the frontier covers replays
            self.logger.warning("committing posterior offsets failed (%s)", exc)

    async def _write_redis(self) -> None:
        """The markers of partitions whose goals Redis must be given again, then the newest
        snapshot of each goal Redis lacks. Marker first: if Redis loses its data after it,
        the marker is gone too, and the next check writes every goal again."""
        if self.redis is None:
            return
        try:
            if self._unmarked:
                marked = {str(p): self._token for p in sorted(self._unmarked)}
                await self.redis.hset(self._marker_key, mapping=marked)  # type: ignore[arg-type]
                self._unmarked.clear()
            now = time.time()
            # goals whose partition moved away may still have history to write
            written = []
            for goal in sorted(self._unpublished.keys() | set(self._history.goals())):
                snapshot = self._unpublished.get(goal)
                history = self._history.of(goal, _HISTORY_PER_PIPELINE)
                pipe = self.redis.pipeline(transaction=True)
                if snapshot is not None:
                    alerts = self._unwritten_alerts.get(goal, [])
                    pipe.set(self._keys.policy(goal), snapshot)
                    pipe.sadd(self._keys.goals, goal)
                    for alert in alerts:
                        pipe.lpush(self._keys.alerts(goal), alert.model_dump_json())
                    if alerts:
                        pipe.ltrim(self._keys.alerts(goal), 0, _ALERTS_KEPT - 1)
                    pipe.publish(self._keys.policy_updates, goal)
                self._add_history(pipe, goal, history, now)
                await pipe.execute()
                self._history.written(goal, history)
                if snapshot is not None:
                    self._unwritten_alerts.pop(goal, None)
                    del self._unpublished[goal]
                    self.snapshots_written += 1
                    written.append(goal)
            if written:  # one wake-up for a process that routes many of them
                await self.redis.publish(self._keys.policy_changes, "\n".join(written))
                while history := self._history.of(goal, _HISTORY_PER_PIPELINE):
                    pipe = self.redis.pipeline(transaction=True)
                    self._add_history(pipe, goal, history, now)
                    await pipe.execute()
                    self._history.written(goal, history)
        except Exception as exc:  # Redis away: keep applying deltas, write when it is back
            self.failures.record("publish", 50, "writing snapshots failed (%s); retrying", exc)
        self._note_history_drops()

    def _add_history(self, pipe: Any, goal: str, hashes: list[Increments], now: float) -> None:
        keys = self._keys
        queue_writes(pipe, lambda res, bucket: keys.history(goal, res, bucket), hashes, now)

    def _note_history_drops(self) -> None:
        dropped = self._history.dropped["m"]
        if dropped > self._history_drops_logged:
            self._history_drops_logged = dropped
            self.failures.record(
                "history",
                20,
                "history: %d outcomes dropped from the per-minute buckets so far (Redis away "
                "too long, or a backfill larger than the buckets kept unwritten)",
                dropped,
            )

    @property
    def history_dropped(self) -> int:
        """Outcomes whose per-minute history was dropped (bounds reached; see module doc)."""
        return self._history.dropped["m"]

    # -- inspection --------------------------------------------------------------------------

    @property
    def partitions(self) -> list[int]:
        """Path-deltas partitions whose goals are held and updated here."""
        return sorted(self._owned)

    @property
    def waiting_partitions(self) -> list[int]:
        """Assigned partitions whose goals are not read back yet (paused)."""
        return sorted(self.waiting)
