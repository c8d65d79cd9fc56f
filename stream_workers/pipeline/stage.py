"""The loop both stages run: what they share, each keeping only what is its own.

A stage is a group consumer read in batches, a producer whose sends are acknowledged by the
broker before anything is checkpointed or committed, a Redis client, and a tick. Partitions
assigned to the stage start paused while their state is restored; a restore that fails is
retried with backoff (0.5 s doubling to 10 s), never dropped. A stage subclass says which
topics it reads, what it does with a batch, what it restores and what a tick writes.

Why not Faust agents and tables: the same join on a Faust Table, one event at a time, ran
19-37x slower than this batched loop on this machine (``bench/faust_table_join.py`` against
``bench/pipeline.py``, BENCHMARKS.md), so Faust runs the process and these loops do the work
(``stream_workers/pipeline/app.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from mode import Service

from stream_workers.clients import close_clients, group_consumer, redis_client, start_producer
from stream_workers.settings import WorkerSettings

__all__ = ["Backoff", "BatchStage", "Failures", "Message"]

#: (topic, key, value): what a stage sends.
Message = tuple[str, bytes | None, bytes]

#: How long the loop waits for records, as a fraction of the tick: short enough that a tick
#: is never late by more than half its interval.
_FETCH_SHARE: Final = 0.5


class Backoff:
    """When to retry: 0.5 s after a failure, doubling to at most 10 s."""

    def __init__(self) -> None:
        self._delay = 0.0
        self._at = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self._at

    def failed(self) -> None:
        self._delay = min(10.0, max(0.5, self._delay * 2))
        self._at = time.monotonic() + self._delay

    def reset(self) -> None:
        self._delay = 0.0
        self._at = 0.0


class Failures:
    """Counts failures by kind and logs the first of each kind and then every ``every``-th, so
    that an outage of minutes writes a few lines, not one per tick."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self.counts: Counter[str] = Counter()

    def __getitem__(self, kind: str) -> int:
        return self.counts[kind]

    def record(self, kind: str, every: int, message: str, *args: object) -> None:
        self.counts[kind] += 1
        count = self.counts[kind]
        if count == 1 or count % every == 0:
            self._log.warning(message, *args)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stage: BatchStage) -> None:
        self._stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._stage.release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._stage.take(assigned)


class BatchStage(Service):
    """The skeleton of a stage. Subclasses set ``group``, ``topics``, ``interval`` and
    ``max_records`` and implement ``take``, ``release``, ``process``, ``restore_waiting`` and
    ``tick``; every hook runs under ``self.lock``, except ``take``/``release``, which take it.
    """

    logger: logging.Logger

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        group: str,
        topics: list[str],
        interval: float,
        max_records: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.group = group
        self.topics = topics
        self.interval = interval
        self.max_records = max_records
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.redis: aioredis.Redis | None = None
        #: assigned partitions whose state is not restored yet -> paused since (monotonic)
        self.waiting: dict[int, float] = {}
        #: seeks made to restored positions (``sought``): a batch fetched before one may hold
        #: records of that partition from before it, to be read again
        self.seeks = 0
        self.failures = Failures(self.logger)

    # -- what a stage is made of ------------------------------------------------------------

    def make_consumer(self) -> AIOKafkaConsumer:
        """The group consumer; a stage may ask for options of its own."""
        return group_consumer(self.settings, self.group)

    async def before_start(self) -> None:
        """Runs once Redis is there, before the clients of Kafka start."""

    async def take(self, assigned: Iterable[TopicPartition]) -> None:
        raise NotImplementedError

    async def release(self, partitions: set[int]) -> None:
        raise NotImplementedError

    def process(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]], fetched_in: int
    ) -> None:
        """Apply one fetched batch; ``fetched_in`` is ``seeks`` when its fetch began."""
        raise NotImplementedError

    async def restore_waiting(self, consumer: AIOKafkaConsumer) -> None:
        """Try to restore the partitions in ``waiting``; those restored leave it."""
        raise NotImplementedError

    async def after_batch(self, consumer: AIOKafkaConsumer) -> None:
        """Runs after every batch (pausing partitions, checks of its own)."""

    async def tick(self, *, final: bool = False) -> None:
        """Write what the batches since the last tick produced; ``final`` when stopping."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------

    async def send_acknowledged(self, messages: list[Message]) -> None:
        """Send ``messages`` and wait until the broker has acknowledged every one; raises if
        any send fails (the caller keeps them and sends them again)."""
        producer = self.producer
        if producer is None:
            raise ConnectionError("the stage has not started")
        futures = [
            await producer.send(topic, value=value, key=key) for topic, key, value in messages
        ]
        await asyncio.gather(*futures)

    def sought(self) -> int:
        """Count a seek to a restored position, made now; returns its number. A batch whose
        fetch began before it (``fetched_in`` below it) may hold the partition's records from
        before the seek. Counted when the seek is made, not when the rebalance is announced:
        a fetch that begins between the two would otherwise pass for a later one."""
        self.seeks += 1
        return self.seeks

    def pause_waiting(
        self, consumer: AIOKafkaConsumer, partition: int, *tps: TopicPartition
    ) -> None:
        """Pause ``tps`` of ``partition`` until its state is restored."""
        if partition not in self.waiting:
            consumer.pause(*tps)
            self.waiting[partition] = time.monotonic()

    def resume_restored(
        self, consumer: AIOKafkaConsumer, partition: int, *tps: TopicPartition
    ) -> float:
        """``partition`` is restored: resume ``tps``; returns the seconds it waited."""
        since = self.waiting.pop(partition)
        consumer.resume(*tps)
        return time.monotonic() - since

    # -- lifecycle and loop ------------------------------------------------------------------

    async def on_start(self) -> None:
        self.redis = redis_client(self.settings)
        await self.before_start()
        self.producer = await start_producer(self.settings)
        self.consumer = self.make_consumer()
        self.consumer.subscribe(self.topics, listener=_Listener(self))
        await self.consumer.start()
        self.add_future(self._run())

    async def on_stop(self) -> None:
        try:
            async with self.lock:
                await self.tick(final=True)
        finally:
            await close_clients(self.consumer, self.producer, self.redis)

    async def _run(self) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        next_tick = time.monotonic() + self.interval
        retry = Backoff()
        timeout_ms = int(self.interval * 1000 * _FETCH_SHARE)
        while not self.should_stop:
            fetched_in = self.seeks
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=self.max_records)
            async with self.lock:
                self.process(consumer, batch, fetched_in)
                # After the batch: it may hold records of a waiting partition fetched before
                # it was paused; ``process`` leaves those to be read again.
                if self.waiting and retry.due():
                    await self.restore_waiting(consumer)
                    if self.waiting:
                        retry.failed()
                    else:
                        retry.reset()
                await self.after_batch(consumer)
                now = time.monotonic()
                if now >= next_tick:
                    await self.tick()
                    next_tick = now + self.interval
