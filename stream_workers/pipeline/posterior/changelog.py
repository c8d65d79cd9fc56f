"""The posterior stage's state in a compacted Kafka topic: the copy of what was learned that
survives Redis.

``<prefix>.posterior-state`` has as many partitions as ``<prefix>.path-deltas``; the state of
a goal whose deltas travel in path-deltas partition ``p`` is written to partition ``p`` under
the goal as key, so the worker that owns ``p`` reads back exactly the goals it owns. Kafka
keeps the latest record per key (``cleanup.policy=compact``), as Kafka Streams keeps its
stores' changelogs.

Reading a partition "to its end" must not rely on the broker's offset lookups (the embedded
broker answers ``ListOffsets(latest)`` wrongly, docs/recovery.md): the reader writes a barrier
record to each partition, and a partition is read once the reader has seen its own barrier.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_workers.clients import aiokafka_options
from stream_workers.settings import WorkerSettings

__all__ = ["BARRIER_KEY", "StateLog", "StateLogError"]

#: Key of the reader's barrier records; no goal can be named so (goals start with a letter or
#: a digit), and compaction keeps only the last one.
BARRIER_KEY: Final = b"#barrier"


class StateLogError(RuntimeError):
    """A partition of the state topic could not be read back (the reason is in the message)."""


class StateLog:
    """Write the latest state of goals to their partition; read every partition back."""

    def __init__(self, settings: WorkerSettings, topic: str) -> None:
        self.settings = settings
        self.topic = topic

    async def write(
        self, producer: AIOKafkaProducer, records: Iterable[tuple[int, str, bytes]]
    ) -> None:
        """Send ``(partition, goal, state)`` records and wait until the broker acknowledged
        all of them; raises if any send fails (the caller retries)."""
        futures = [
            await producer.send(self.topic, key=goal.encode(), value=value, partition=partition)
            for partition, goal, value in records
        ]
        await asyncio.gather(*futures)

    async def read(
        self, producer: AIOKafkaProducer, partitions: Iterable[int], *, timeout: float = 60.0
    ) -> dict[int, dict[str, bytes]]:
        """The latest state of every goal in ``partitions``: partition -> goal -> state."""
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        token = uuid.uuid4().hex.encode()
        barriers: dict[int, int] = {}
        for partition, future in [
            (p, await producer.send(self.topic, key=BARRIER_KEY, value=token, partition=p))
            for p in wanted
        ]:
            barriers[partition] = (await future).offset
        consumer = AIOKafkaConsumer(
            **aiokafka_options(self.settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        tps = [TopicPartition(self.topic, p) for p in wanted]
        states: dict[int, dict[str, bytes]] = {p: {} for p in wanted}
        try:
            await consumer.start()
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)  # below the log start: reset to the earliest kept
            left = set(wanted)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while left:
                if loop.time() > deadline:
                    raise StateLogError(
                        f"{self.topic}: partitions {sorted(left)} not read back to the barrier "
                        f"within {timeout:g} s"
                    )
                batch = await consumer.getmany(*tps, timeout_ms=200, max_records=10_000)
                for tp, messages in batch.items():
                    _absorb(states[tp.partition], messages)
                    if messages and messages[-1].offset >= barriers[tp.partition]:
                        left.discard(tp.partition)
        finally:
            await consumer.stop()
        return states


def _absorb(states: dict[str, bytes], messages: list[Any]) -> None:
    for message in messages:
        if message.key is None or message.key == BARRIER_KEY:
            continue
        goal = message.key.decode()
        if message.value is None:  # a tombstone: the goal was deleted
            states.pop(goal, None)
        else:
            states[goal] = message.value
