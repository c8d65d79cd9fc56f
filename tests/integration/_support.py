"""Helpers for integration tests: bounded polling instead of sleeps."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None], *, timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or probe}")
        time.sleep(interval)


def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    until: Callable[[list[Message]], bool],
    timeout: float = 30,
    on_poll: Callable[[], None] | None = None,
) -> list[Message]:
    """Read ``topic`` from the beginning of every partition until ``until(messages)`` holds.

    No consumer group: partitions are assigned directly, so there is no group join to wait for
    (on the embedded broker a join takes half the session timeout).
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": "unused-no-commits",
            "enable.auto.commit": False,
            "logger": logging.getLogger("outroute.tests.kafka"),
        }
    )
    messages: list[Message] = []
    try:

        def assigned() -> bool:
            metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if metadata is None or metadata.error is not None or not metadata.partitions:
                return False
            consumer.assign(
                [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
            )
            return True

        deadline = time.monotonic() + timeout
        wait_until(assigned, timeout=timeout, interval=0.1, what=f"topic {topic} to exist")

        def done() -> bool:
            if on_poll is not None:
                on_poll()
            for msg in consumer.consume(num_messages=1000, timeout=0.1):
                if msg.error() is None:
                    messages.append(msg)
            return until(messages)

        wait_until(
            done,
            timeout=max(0.0, deadline - time.monotonic()),
            interval=0,
            what=f"the expected messages on {topic}",
        )
    finally:
        consumer.close()
    return messages


def delete_topics_with_prefix(bootstrap_servers: str, prefix: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    names = [n for n in admin.list_topics(timeout=10).topics if n.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=10).values():
            future.result(10)


def default_sigint() -> None:
    """A ``preexec_fn`` for a child that the test interrupts with SIGINT: it gets the default
    handler back, which Python turns into KeyboardInterrupt. A test run started as a shell's
    background job inherits SIGINT ignored (so that a terminal's Ctrl-C spares it), and a
    Python child would then never see the test's signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
