"""Event emission: the EventSink interface and its Kafka implementation.

``KafkaEventSink`` wraps one confluent-kafka producer, created on first use (no threads or
sockets in constructors). ``send()`` never blocks: librdkafka buffers up to
``max_queued_events``; beyond that an event is dropped and counted (a bounded wait is opt-in).
Delivery runs on librdkafka's own threads. A small named thread serves delivery errors.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas import PARTITIONER, Topics
from schemas.settings import DEFAULT_BOOTSTRAP_SERVERS

from .options import ConnectionOptions, EmitterOptions

__all__ = ["EmitterStats", "EventKind", "EventSink", "KafkaEventSink"]

log = logging.getLogger("outroute.sdk.emitter")


class _DebugLogger:
    """librdkafka's own log lines (every reconnect attempt) at DEBUG; what users need to
    know arrives through error_cb, once per outage."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def log(self, level: int, msg: str, *args: Any) -> None:
        self._logger.debug(msg, *args)


_LIBRDKAFKA_LOG: Final = _DebugLogger(logging.getLogger("outroute.kafka"))
_ERROR_LOG_INTERVAL: Final = 60.0

EventKind = Literal["decision", "outcome"]

_POLL_EVERY: Final = 1024


@dataclass(frozen=True, slots=True)
class EmitterStats:
    """``emitted`` events were accepted into the buffer; of those, ``delivered`` reached Kafka,
    ``failed`` could not be delivered, ``pending`` are still on their way. ``dropped`` never
    entered the buffer (it was full)."""

    emitted: int = 0
    delivered: int = 0
    pending: int = 0
    dropped: int = 0
    failed: int = 0


class EventSink(Protocol):
    """Where a router's events go. Implementations must be thread-safe and never block long."""

    def send(self, kind: EventKind, key: bytes, value: bytes) -> bool:
        """Queue one event; False if it was dropped."""

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for queued events; return how many are still pending."""

    def close(self, timeout: float) -> int:
        """Flush, then release resources; return how many events were left undelivered."""

    def stats(self) -> EmitterStats: ...

    def after_fork_in_child(self) -> None:
        """Forget the parent's connections; the child builds its own on first use."""


class KafkaEventSink:
    """Decisions and outcomes to their Kafka topics, keyed by trace id.

    A router makes its own unless given one. A process routing many goals can give all its
    routers one, so that their events share a producer and its batches::

        sink = KafkaEventSink.create("kafka:9092", topic_prefix="outroute")
        routers = [Router(goal, paths, event_sink=sink) for goal, paths in GOALS.items()]
        ...
        for router in routers:
            router.close()  # flushes the shared sink, leaves it open
        sink.close(5.0)

    Each router's ``stats()`` then counts the events of all of them.
    """

    @classmethod
    def create(
        cls,
        kafka_bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS,
        *,
        topic_prefix: str | None = None,
        kafka_config: Mapping[str, str] | None = None,
        options: EmitterOptions | None = None,
    ) -> KafkaEventSink:
        """A sink with the connection settings ``Router`` takes (validated the same way:
        ``ConnectionOptions``; ``topic_prefix`` defaults to its default). The producer is
        created on the first event."""
        fields: dict[str, Any] = {"topic_prefix": topic_prefix} if topic_prefix is not None else {}
        connection = ConnectionOptions(
            bootstrap_servers=kafka_bootstrap_servers,
            kafka_config=dict(kafka_config or {}),
            **fields,
        )
        return cls(connection.kafka_client_config(), connection.topics(), options)

    def __init__(
        self,
        config: dict[str, str],
        topics: Topics,
        options: EmitterOptions | None = None,
    ) -> None:
        self._config = dict(config)
        self._topics = {"decision": topics.decisions.name, "outcome": topics.outcomes.name}
        self._options = options or EmitterOptions()
        self._orphans: list[Producer] = []
        self._reset()

    def _reset(self) -> None:
        self._producer: Producer | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._emitted = 0
        self._dropped = 0
        self._failed = 0  # delivery failures reported by librdkafka
        self._rejected = 0  # refused by produce() itself (e.g. too large)
        self._warned_full = False
        self._last_error_log = -_ERROR_LOG_INTERVAL
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def _producer_config(self) -> dict[str, Any]:
        opts = self._options
        return {
            **self._config,
            "partitioner": PARTITIONER,
            "enable.idempotence": opts.idempotent,
            "linger.ms": opts.linger_ms,
            "compression.type": opts.compression,
            "queue.buffering.max.messages": opts.max_queued_events,
            "queue.buffering.max.kbytes": 1024 * 1024,
            "message.timeout.ms": int(opts.delivery_timeout * 1000),
            # Reconnect within a second of the broker's return (librdkafka's default: 10 s).
            "reconnect.backoff.max.ms": 1000,
            # Only failures call back into Python; delivered = emitted - failed - pending.
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
            "logger": _LIBRDKAFKA_LOG,
        }

    def _ensure_producer(self) -> Producer:
        producer = self._producer
        if producer is not None:
            return producer
        with self._lock:
            if self._producer is None:
                self._producer = Producer(self._producer_config())
                self._stop.clear()
                self._poller = threading.Thread(
                    target=self._poll_loop, name="outroute-emitter", daemon=True
                )
                self._poller.start()
            return self._producer

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            producer = self._producer
            if producer is None:
                return
            producer.poll(0.2)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._failed += 1
                first = self._failed == 1
            if first:
                log.error("event delivery failed (%s); failures are counted in stats()", err)

    def _on_error(self, err: KafkaError) -> None:
        # Broker unreachable and similar: librdkafka keeps retrying; events wait in the buffer.
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.warning("kafka: %s; events wait in the buffer and are retried", err.str())

    def send(self, kind: EventKind, key: bytes, value: bytes) -> bool:
        if self._closed:
            with self._lock:
                self._dropped += 1
            return False
        producer = self._ensure_producer()
        topic = self._topics[kind]
        try:
            producer.produce(topic, value, key)
        except BufferError:
            if not self._retry_after_wait(producer, topic, key, value):
                return False
        except KafkaException as exc:  # e.g. message larger than the broker allows
            with self._lock:
                self._rejected += 1
            log.error("event rejected by the producer: %s", exc)
            return False
        with self._lock:
            self._emitted += 1
            count = self._emitted
        if count % _POLL_EVERY == 0:
            producer.poll(0)
        return True

    def _retry_after_wait(self, producer: Producer, topic: str, key: bytes, value: bytes) -> bool:
        wait = self._options.block_on_full
        if wait > 0:
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                producer.poll(min(left, 0.01))
                try:
                    producer.produce(topic, value, key)
                    return True
                except BufferError:
                    continue
        with self._lock:
            self._dropped += 1
            warn = not self._warned_full
            self._warned_full = True
        if warn:
            log.warning(
                "event buffer full (%d events): dropping events until Kafka catches up; "
                "drops are counted in stats()",
                self._options.max_queued_events,
            )
        return False

    def flush(self, timeout: float) -> int:
        producer = self._producer
        if producer is None:
            return 0
        pending: int = producer.flush(timeout)
        return pending

    def close(self, timeout: float) -> int:
        pending = self.flush(timeout)
        self._closed = True
        self._stop.set()
        poller = self._poller
        if poller is not None and poller is not threading.current_thread():
            poller.join(1.0)
        return pending

    def stats(self) -> EmitterStats:
        producer = self._producer
        pending = len(producer) if producer is not None else 0
        with self._lock:
            emitted, dropped, failed = self._emitted, self._dropped, self._failed
            rejected = self._rejected
        return EmitterStats(
            emitted=emitted,
            delivered=max(0, emitted - failed - pending),
            pending=pending,
            dropped=dropped,
            failed=failed + rejected,
        )

    def after_fork_in_child(self) -> None:
        # The parent's producer has no threads in the child and must never be used or
        # destroyed here (destroying it would wait for threads that do not exist).
        if self._producer is not None:
            self._orphans.append(self._producer)
        self._reset()

    def __repr__(self) -> str:
        return f"KafkaEventSink(pid={os.getpid()}, topics={self._topics})"
