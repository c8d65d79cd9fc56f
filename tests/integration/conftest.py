"""Integration fixtures: one embedded broker per session, Redis, per-test names.

Each test gets its own topic prefix and Redis key prefix and cleans up after itself, so tests do
not see each other's data. Set OUTROUTE_TEST_BOOTSTRAP_SERVERS or OUTROUTE_TEST_REDIS_URL to run
against servers of your own instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from confluent_kafka.admin import AdminClient

from schemas import Topics
from schemas.settings import DEFAULT_REDIS_URL
from stream_workers import EmbeddedBroker, WorkerSettings, create_topics, find_or_start_redis

TEST_PARTITIONS = 4


@pytest.fixture(scope="session")
def bootstrap_servers() -> Iterator[str]:
    external = os.environ.get("OUTROUTE_TEST_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    # Raises LocalStackError with a clear message when no Redis answers and none can be started.
    with find_or_start_redis(os.environ.get("OUTROUTE_TEST_REDIS_URL", DEFAULT_REDIS_URL)) as r:
        yield r.url


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(bootstrap_servers: str, redis_url: str, prefix: str) -> WorkerSettings:
    return WorkerSettings(
        bootstrap_servers=bootstrap_servers,
        redis_url=redis_url,
        topic_prefix=prefix,
        redis_key_prefix=prefix,
        partitions=TEST_PARTITIONS,
    )


def delete_topics_with_prefix(bootstrap_servers: str, prefix: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    names = [n for n in admin.list_topics(timeout=10).topics if n.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=10).values():
            future.result(10)


@pytest.fixture
def topics(settings: WorkerSettings, prefix: str) -> Iterator[Topics]:
    """The outroute topics of this test, created fresh and deleted afterwards."""
    create_topics(settings)
    yield settings.topics()
    delete_topics_with_prefix(settings.bootstrap_servers, prefix)


@pytest.fixture
def redis_client(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    """A client for this test; every key under the test's prefix is deleted afterwards."""
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def workers() -> Iterator[list[Any]]:
    """Worker processes a test starts; stopped (SIGTERM) afterwards if still running."""
    started: list[Any] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.stop()
