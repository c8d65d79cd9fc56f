"""JoinService: reads decisions and outcomes, joins them per partition, emits PathDeltas.

A batched aiokafka loop (``BatchStage``) inside the Faust app, not Faust streams: a Faust Table
join, one event at a time, measured ~5k events/s here, this loop over 100k (BENCHMARKS.md).
State is per partition and rebuilt from the input topics on assignment (docs/recovery.md);
the checkpoint lives in Redis, not in Kafka offsets, because the embedded broker drops commit
metadata and answers offset lookups wrongly.

Each tick (``flush_interval``): expire, build deltas, send them and any dead letters, wait for
the broker's acknowledgements, then write the checkpoints. If a send fails, the same messages
are sent again on the next tick and nothing is checkpointed until they are acknowledged.

Health (``history``): what each flush added to the counters (``COUNTERS``, per goal, ``""``
for what has none) is added, in the checkpoints' MULTI, to the goal's health hashes of the
minute and of the hour of the flush (this worker's clock; ``RedisKeys.health``), kept as long
as the history's buckets (25 hours, 8 days): the dashboard's outcomes per minute, unreported
decisions, duplicates, dead letters. While Redis is away the increments wait, merged per
(goal, minute), at most ``_HEALTH_PENDING``; beyond, they are dropped and counted
(``health_dropped``).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from pydantic import ValidationError
from redis.exceptions import RedisError

from schemas import DecisionEvent, JoinPosition, OutcomeEvent
from stream_workers.clients import group_consumer
from stream_workers.pipeline.join.deltas import build_deltas
from stream_workers.pipeline.join.state import COUNTERS, JoinConfig, PartitionJoin
from stream_workers.pipeline.posterior.history import Resolution, expires_at
from stream_workers.pipeline.stage import BatchStage, Message
from stream_workers.settings import WorkerSettings

__all__ = ["JoinService"]

_EXPIRE_PER_TICK: Final = 20_000
_MAX_RECORDS: Final = 20_000
#: While catching up, a partition whose outcome clock is this far (seconds of event time) ahead
#: of the slowest partition that still has input is paused, so that deltas of one goal from
#: different partitions reach the detector roughly in event-time order.
_MAX_SKEW: Final = 1.0
#: (goal, minute) health hashes kept unwritten at most while Redis is away.
_HEALTH_PENDING: Final = 20_000


class JoinService(BatchStage):
    """The join stage of one worker process."""

    logger = logging.getLogger("outroute.join")

    def __init__(self, settings: WorkerSettings, **kwargs: Any) -> None:
        topics = settings.topics()
        self._decisions = topics.decisions.name
        self._outcomes = topics.outcomes.name
        super().__init__(
            settings,
            group=settings.join_group,
            topics=[self._decisions, self._outcomes],
            interval=settings.flush_interval,
            max_records=_MAX_RECORDS,
            **kwargs,
        )
        self.config = JoinConfig.from_settings(settings)
        self._deltas_topic = topics.path_deltas.name
        self._dead_letter = topics.dead_letter.name
        self._keys_prefix = f"{settings.redis_key_prefix}:join:{settings.topic_prefix}"
        self._joins: dict[int, PartitionJoin] = {}
        self._paused: set[int] = set()
        #: the number of the seek that started each partition at its checkpoint
        self._taken_in: dict[int, int] = {}
        self._unsent: list[Message] = []
        self.totals: dict[str, Counter[str]] = {name: Counter() for name in COUNTERS}
        self._keys = settings.redis_keys()
        #: partition -> counter -> goal -> value already in a health increment
        self._counted: dict[int, dict[str, Counter[str]]] = {}
        #: (goal, epoch minute) -> counter -> increment not yet in Redis
        self._health: dict[tuple[str, int], Counter[str]] = {}
        self.health_dropped = 0
        self.deltas_sent = 0
        self.checkpoints_written = 0
        self.restore_failures = 0
        self.ready = asyncio.Event()

    def make_consumer(self) -> AIOKafkaConsumer:
        return group_consumer(
            self.settings,
            self.group,
            # Range assignment gives one process partition p of both topics (co-partitioned).
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    # -- assignment --------------------------------------------------------------------------

    def _key(self, partition: int) -> str:
        return f"{self._keys_prefix}:{partition}"

    async def take(self, assigned: Iterable[TopicPartition]) -> None:
        """Rebuild the state of newly assigned partitions from their checkpoints."""
        by_partition: dict[int, set[str]] = {}
        for tp in assigned:
            by_partition.setdefault(tp.partition, set()).add(tp.topic)
        consumer = self.consumer
        if consumer is None or self.redis is None:
            return
        async with self.lock:
            todo = []
            for partition, topics in sorted(by_partition.items()):
                if partition in self._joins or partition in self.waiting:
                    continue
                if topics != {self._decisions, self._outcomes}:
                    self.logger.error(
                        "partition %d of only %s assigned; decisions and outcomes must be "
                        "co-partitioned and assigned together (paused, not read)",
                        partition,
                        sorted(topics),
                    )
                    consumer.pause(*(TopicPartition(t, partition) for t in topics))
                    continue
                todo.append(partition)
            await self._restore_partitions(consumer, todo)
            # Move what is alive now (the framework's objects, these partitions' containers)
            # to the permanent generation: full collections then stop traversing join state
            # that holds millions of entries at high rates. They paused the worker for 0.1-0.2 s
            # every ~2 s at 25k events/s (measured); garbage is still freed by refcount.
            gc.freeze()
        self.ready.set()

    def _tps(self, partition: int) -> list[TopicPartition]:
        return [
            TopicPartition(self._decisions, partition),
            TopicPartition(self._outcomes, partition),
        ]

    async def restore_waiting(self, consumer: AIOKafkaConsumer) -> None:
        await self._restore_partitions(consumer, sorted(self.waiting))

    async def _restore_partitions(self, consumer: AIOKafkaConsumer, partitions: list[int]) -> None:
        """Rebuild assigned partitions from their checkpoints and seek to them. When a
        checkpoint cannot be read (Redis away, a checkpoint that does not parse) that partition
        and the ones after it are paused, never consumed and dropped, and the loop retries
        them with backoff (one timeout per try, not one per partition)."""
        for i, partition in enumerate(partitions):
            try:
                if self.redis is None:
                    raise ConnectionError("the join service has not started")
                join = self._restore(partition, await self.redis.get(self._key(partition)))
            except (RedisError, OSError, ValueError, KeyError, TypeError) as exc:
                for waiting in partitions[i:]:
                    self._wait(consumer, waiting, exc)
                return
            self._start(consumer, partition, join)

    def _wait(self, consumer: AIOKafkaConsumer, partition: int, exc: BaseException) -> None:
        if partition in self.waiting:
            return
        self.pause_waiting(consumer, partition, *self._tps(partition))
        self.restore_failures += 1
        self.logger.warning(
            "partition %d: cannot restore its join state (%s: %s); paused, retrying until "
            "it can be read",
            partition,
            type(exc).__name__,
            exc,
        )

    def _start(self, consumer: AIOKafkaConsumer, partition: int, join: PartitionJoin) -> None:
        self._joins[partition] = join
        start_d, start_o = join.position.decisions, join.position.outcomes
        for tp, offset in zip(self._tps(partition), (start_d, start_o), strict=True):
            consumer.seek(tp, offset)
        self._taken_in[partition] = self.sought()
        if partition in self.waiting:
            waited = self.resume_restored(consumer, partition, *self._tps(partition))
            self.logger.warning("partition %d: restored after %.1f s paused", partition, waited)
        self.logger.info(
            "partition %d: rebuilding from decisions %d, outcomes %d", partition, start_d, start_o
        )

    def _restore(self, partition: int, raw: bytes | str | None) -> PartitionJoin:
        if raw is None:
            return PartitionJoin(partition, self.config)
        saved = json.loads(raw)
        position = JoinPosition.model_validate(saved["position"])
        start_d, start_o = saved["replay_start"]
        decision_time, outcome_time = saved["clocks"]
        return PartitionJoin(
            partition,
            self.config,
            start=(int(start_d), int(start_o)),
            replay_until=(position.decisions, position.outcomes),
            clocks=(float(decision_time), float(outcome_time)),
        )

    async def release(self, partitions: set[int]) -> None:
        """Flush and checkpoint partitions that are being taken away, then forget them."""
        async with self.lock:
            await self._flush(only=partitions)
            released = []
            for partition in sorted(partitions):
                self._paused.discard(partition)
                self.waiting.pop(partition, None)
                join = self._joins.pop(partition, None)
                self._taken_in.pop(partition, None)
                self._counted.pop(partition, None)
                if join is not None:
                    self._absorb(join)
                    released.append(partition)
            if released:
                self.logger.info("partitions %s: checkpointed and released", released)

    def _absorb(self, join: PartitionJoin) -> None:
        for name, counter in join.counters.items():
            self.totals[name].update(counter)
            counter.clear()

    # -- the loop ----------------------------------------------------------------------------

    def process(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]], fetched_in: int
    ) -> None:
        for tp, messages in batch.items():
            join = self._joins.get(tp.partition)
            if join is None:
                continue
            if self._taken_in[tp.partition] > fetched_in:
                # Taken (and sought to its checkpoint) by a rebalance while this batch was
                # fetched: its records may come from before that seek, and read as they are
                # they would move the position backwards. Read them again.
                start = join.position
                decisions = tp.topic == self._decisions
                consumer.seek(tp, start.decisions if decisions else start.outcomes)
                continue
            self._process(join, tp.topic, messages)

    async def after_batch(self, consumer: AIOKafkaConsumer) -> None:
        self._balance(consumer)

    def _balance(self, consumer: AIOKafkaConsumer) -> None:
        """Pause partitions that run ahead in event time; resume them when the others catch
        up or have no more input."""
        behind: dict[int, float] = {}
        for partition, join in self._joins.items():
            tp = TopicPartition(self._outcomes, partition)
            highwater = consumer.highwater(tp)
            if highwater is None or join.position.outcomes < highwater:
                behind[partition] = join.outcome_time
        slowest = min(behind.values()) if len(behind) > 1 else None
        for partition, join in self._joins.items():
            ahead = slowest is not None and join.outcome_time > slowest + _MAX_SKEW
            tps = self._tps(partition)
            if ahead and partition not in self._paused:
                consumer.pause(*tps)
                self._paused.add(partition)
            elif not ahead and partition in self._paused:
                consumer.resume(*tps)
                self._paused.discard(partition)

    def _process(self, join: PartitionJoin, topic: str, messages: list[Any]) -> None:
        decisions = topic == self._decisions
        validate = (
            DecisionEvent.model_validate_json if decisions else OutcomeEvent.model_validate_json
        )
        on_event = join.on_decision if decisions else join.on_outcome
        skip = join.skip_decision if decisions else join.skip_outcome
        field = "decided_at" if decisions else "occurred_at"
        skew_ms = self.settings.max_clock_skew * 1000
        for message in messages:
            try:
                if message.value is None:
                    raise ValueError("empty message (null value)")
                event = validate(message.value)
                at = getattr(event, field)
                sent = message.timestamp  # ms; CreateTime or LogAppendTime, None or -1 if unknown
                if sent is not None and sent >= 0 and at.timestamp() * 1000 > sent + skew_ms:
                    raise ValueError(
                        f"{field}: {at.isoformat()} is {at.timestamp() - sent / 1000:,.0f} s "
                        f"after the message's timestamp (OUTROUTE_MAX_CLOCK_SKEW: "
                        f"{self.settings.max_clock_skew:g} s); read as it says, it would move "
                        "the event-time clocks past every open window"
                    )
            except (ValidationError, ValueError) as exc:
                skip(message.offset)
                if message.offset >= (join._replay_d if decisions else join._replay_o):
                    self._dead_letter_message(topic, message, exc)
                continue
            on_event(message.offset, event)  # type: ignore[arg-type]

    def _dead_letter_message(self, topic: str, message: Any, error: Exception) -> None:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, ValidationError):
            reason = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}"
                for e in error.errors()[:5]
            )
        record = {
            "topic": topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp_ms": message.timestamp,
            "error": reason,
            "key_b64": base64.b64encode(message.key).decode() if message.key else None,
            "value_b64": base64.b64encode(message.value).decode() if message.value else None,
        }
        self._unsent.append((self._dead_letter, message.key, json.dumps(record).encode()))

    async def tick(self, *, final: bool = False) -> None:
        await self._flush()
        if final and self._joins:  # the group learns of it when the consumer leaves, next
            self.logger.info("partitions %s: checkpointed and released", sorted(self._joins))

    async def _flush(self, *, only: set[int] | None = None) -> None:
        joins = {p: j for p, j in self._joins.items() if only is None or p in only}
        for partition, join in joins.items():
            join.expire(_EXPIRE_PER_TICK)
            items = join.drain()
            if items:
                for delta in build_deltas(partition, join.position, items):
                    self._unsent.append(
                        (self._deltas_topic, delta.goal.encode(), delta.model_dump_json().encode())
                    )
        if self.settings.history:
            self._count_health(joins, time.time())
        if not await self._send_unsent():
            return  # nothing is checkpointed until every message is acknowledged
        await self._checkpoint(joins)

    def _count_health(self, joins: dict[int, PartitionJoin], now: float) -> None:
        """Add what the counters of ``joins`` gained since the last flush to the health of
        the minute of ``now``."""
        minute = int(now // 60)
        pending = self._health
        dropped = self.health_dropped
        for partition, join in joins.items():
            counted = self._counted.setdefault(partition, {})
            for name, counter in join.counters.items():
                seen = counted.setdefault(name, Counter())
                for goal, value in counter.items():
                    gained = value - seen[goal]
                    if gained <= 0:
                        continue
                    seen[goal] = value
                    into = pending.get((goal, minute))
                    if into is None:
                        if len(pending) >= _HEALTH_PENDING:
                            self.health_dropped += gained
                            continue
                        into = pending[goal, minute] = Counter()
                    into[name] += gained
        if self.health_dropped > dropped:
            self.failures.record(
                "health",
                100,
                "health counts: %d dropped so far while Redis is away (%d minutes kept)",
                self.health_dropped,
                _HEALTH_PENDING,
            )

    async def _send_unsent(self) -> bool:
        if not self._unsent or self.producer is None:
            return self.producer is not None
        try:
            await self.send_acknowledged(self._unsent)
        except Exception as exc:  # broker away: keep the messages, retry on the next tick
            self.failures.record(
                "send", 100, "sending %d messages failed (%s); retrying", len(self._unsent), exc
            )
            return False
        self.deltas_sent += sum(1 for topic, _, _ in self._unsent if topic == self._deltas_topic)
        self._unsent = []
        return True

    async def _checkpoint(self, joins: dict[int, PartitionJoin]) -> None:
        if self.redis is None:
            return
        pipe = self.redis.pipeline(transaction=True)
        health = self._health
        hours: dict[tuple[str, int], Counter[str]] = {}
        for (goal, minute), counts in health.items():
            hours.setdefault((goal, minute // 60), Counter()).update(counts)
        levels: tuple[tuple[Resolution, dict[tuple[str, int], Counter[str]]], ...] = (
            ("m", health),
            ("h", hours),
        )
        for resolution, buckets in levels:
            for (goal, bucket), counts in buckets.items():
                key = self._keys.health(goal, bucket, resolution)
                for name, value in counts.items():
                    pipe.hincrby(key, name, value)
                pipe.expireat(key, expires_at(bucket, resolution))
        written = 0
        for partition, join in joins.items():
            if join.replaying:
                continue  # its clocks are ahead of what it has re-read (docs/recovery.md)
            saved = {
                "position": join.position.model_dump(exclude={"schema_version"}),
                "replay_start": list(join.replay_start),
                "clocks": list(join.clocks),
            }
            pipe.set(self._key(partition), json.dumps(saved))
            written += 1
        if not written and not health:
            return
        try:
            await pipe.execute()
            self.checkpoints_written += written
            self._health = {}
        except Exception as exc:  # Redis away: a restart replays more, the frontier dedups
            self.failures.record(
                "checkpoint", 100, "writing join checkpoints failed (%s); retrying", exc
            )

    # -- inspection --------------------------------------------------------------------------

    def counters(self) -> dict[str, Counter[str]]:
        """Totals per goal: released partitions plus the live ones."""
        merged = {name: Counter(counter) for name, counter in self.totals.items()}
        for join in self._joins.values():
            for name, counter in join.counters.items():
                merged[name].update(counter)
        return merged

    @property
    def partitions(self) -> list[int]:
        """Partitions being joined."""
        return sorted(self._joins)

    @property
    def waiting_partitions(self) -> list[int]:
        """Partitions assigned to this worker whose state could not be restored yet (paused)."""
        return sorted(self.waiting)

    def pending(self) -> int:
        return sum(j.pending for j in self._joins.values())
