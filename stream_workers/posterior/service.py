"""PosteriorService: path-deltas in; policy snapshots, alerts and checkpoints out.

Each tick (``publish_interval``) for the goals that changed: send their new alerts to the
alerts topic and wait for the acknowledgements; then, in one Redis MULTI/EXEC per goal, write
the snapshot, the goal's checkpoint (posteriors, detectors, frontier, version) and the alert
list, and publish the goal's name; only when every changed goal is written, commit the
consumer offsets. A crash anywhere replays deltas from the committed offsets, and the
checkpointed frontier drops what was already applied (docs/recovery.md). Redis away: deltas
keep being applied, the tick retries, nothing is committed until Redis takes the writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from mode import Service
from pydantic import ValidationError
from pydantic_core import from_json, to_json

from schemas import DegradationAlert, PathDelta

from ..kafka import close_clients, group_consumer, redis_client, start_producer
from ..settings import WorkerSettings
from .state import GoalState, PosteriorConfig

__all__ = ["PosteriorService"]

log = logging.getLogger("outroute.posterior")

_ALERTS_KEPT: Final = 100


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: PosteriorService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._service.release()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


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
        self._keys = settings.redis_keys()
        self._state_prefix = f"{settings.redis_key_prefix}:posterior:{settings.topic_prefix}"
        self._goals: dict[str, GoalState] = {}
        self._dirty: set[str] = set()
        self._alerts: list[DegradationAlert] = []  # applied, not yet acknowledged by Kafka
        self._unwritten_alerts: dict[str, list[DegradationAlert]] = {}
        self._offsets: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._redis: aioredis.Redis | None = None
        self.snapshots_written = 0
        self.publish_errors = 0
        self.invalid_deltas = 0

    async def on_start(self) -> None:
        self._redis = redis_client(self.settings)
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

    async def release(self) -> None:
        """Partitions are moving: write what was applied, then forget every goal (they are
        reloaded from their checkpoints when their deltas arrive again)."""
        async with self._lock:
            await self._publish()
            self._goals.clear()
            self._dirty.clear()
            self._offsets.clear()

    def _state_key(self, goal: str) -> str:
        return f"{self._state_prefix}:{goal}"

    async def _goal(self, goal: str) -> GoalState:
        state = self._goals.get(goal)
        if state is not None:
            return state
        if self._redis is None:
            raise RuntimeError("the posterior service has not started")
        raw = await self._redis.get(self._state_key(goal))  # raises if Redis is away
        state = (
            GoalState.from_json(from_json(raw), self.config)
            if raw is not None
            else GoalState(goal, self.config)
        )
        self._goals[goal] = state
        return state

    async def _run(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        interval = self.settings.publish_interval
        next_publish = time.monotonic() + interval
        while not self.should_stop:
            batch = await consumer.getmany(timeout_ms=int(interval * 500), max_records=5000)
            async with self._lock:
                for tp, messages in batch.items():
                    for message in messages:
                        if not await self._apply(tp, message):
                            consumer.seek(tp, message.offset)  # Redis away: read it again
                            await asyncio.sleep(0.5)
                            break
                now = time.monotonic()
                if now >= next_publish:
                    await self._publish()
                    next_publish = now + interval

    async def _apply(self, tp: TopicPartition, message: Any) -> bool:
        try:
            delta = PathDelta.model_validate_json(message.value or b"")
        except (ValidationError, ValueError) as exc:
            self.invalid_deltas += 1
            log.error("skipping an invalid delta at %s:%d: %s", tp, message.offset, exc)
            self._offsets[tp] = message.offset + 1
            return True
        try:
            state = await self._goal(delta.goal)
        except Exception as exc:  # cannot load the goal's checkpoint: do not apply blind
            self.publish_errors += 1
            log.warning("cannot load goal %r from Redis (%s); retrying", delta.goal, exc)
            return False
        alerts = state.apply(delta)
        self._alerts.extend(alerts)
        for alert in alerts:
            self._unwritten_alerts.setdefault(alert.goal, []).append(alert)
        self._dirty.add(delta.goal)
        self._offsets[tp] = message.offset + 1
        return True

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
        if not self._dirty or self._redis is None or self._producer is None:
            return
        if self._alerts:
            try:
                futures = [
                    await self._producer.send(
                        self._alerts_topic,
                        key=alert.goal.encode(),
                        value=alert.model_dump_json().encode(),
                    )
                    for alert in self._alerts
                ]
                await asyncio.gather(*futures)
            except Exception as exc:  # retried next tick; nothing is checkpointed before
                self.publish_errors += 1
                log.warning("sending %d alerts failed (%s); retrying", len(self._alerts), exc)
                return
            self._alerts = []
        now = time.time()
        try:
            for goal in sorted(self._dirty):
                state = self._goals[goal]
                snapshot = state.snapshot(now)
                alerts = self._unwritten_alerts.get(goal, [])
                pipe = self._redis.pipeline(transaction=True)
                pipe.set(self._keys.policy(goal), snapshot.model_dump_json())
                pipe.sadd(self._keys.goals, goal)
                pipe.set(self._state_key(goal), to_json(state.to_json()))
                for alert in alerts:
                    pipe.lpush(self._keys.alerts(goal), alert.model_dump_json())
                if alerts:
                    pipe.ltrim(self._keys.alerts(goal), 0, _ALERTS_KEPT - 1)
                pipe.publish(self._keys.policy_updates, goal)
                await pipe.execute()
                self._unwritten_alerts.pop(goal, None)
                self._dirty.discard(goal)
                self.snapshots_written += 1
        except Exception as exc:  # Redis away: keep applying deltas, write when it is back
            self.publish_errors += 1
            if self.publish_errors == 1 or self.publish_errors % 50 == 0:
                log.warning("writing snapshots failed (%s); retrying", exc)
            return
        if self._offsets and self._consumer is not None:
            try:
                await self._consumer.commit(dict(self._offsets))
            except Exception as exc:  # a rebalance is under way: the frontier covers replays
                log.warning("committing posterior offsets failed (%s)", exc)
