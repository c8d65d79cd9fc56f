"""Integration fixtures: the brokers, Redis, per-test names.

Brokers. A test runs on the embedded broker unless it is marked:

- ``both_brokers``: it runs once on each broker kind selected (``--brokers``, default
  ``embedded,kafka``), as ``test_x[embedded]`` and ``test_x[kafka]``. The rule: a test whose
  outcome depends on the broker's behaviour (what the SDK's producer, the workers' consumer
  groups, offsets, rebalances and the CLI's consumers see) is marked; a test of Redis, HTTP or
  argument handling that only needs *a* broker is not.
- ``kafka_only``: it needs Apache Kafka's durable log (a broker restart, rolling restarts).

One broker of each kind serves the whole session; Apache Kafka is started only when a selected
test needs it. ``--brokers`` (or OUTROUTE_TEST_BROKERS) narrows the kinds, e.g. to ``embedded``
on a machine without a JDK; tests that need an unselected kind are deselected and reported as
such. Set OUTROUTE_TEST_BOOTSTRAP_SERVERS / OUTROUTE_TEST_KAFKA_BOOTSTRAP_SERVERS or
OUTROUTE_TEST_REDIS_URL to run against servers of your own instead.

Each test gets its own topic prefix and Redis key prefix and cleans up after itself, so tests do
not see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from schemas import Topics
from schemas.settings import DEFAULT_REDIS_URL
from stream_workers import (
    ApacheKafka,
    EmbeddedBroker,
    WorkerSettings,
    create_topics,
    find_or_start_redis,
)

from _support import delete_topics_with_prefix

TEST_PARTITIONS = 4
BROKER_KINDS = ("embedded", "kafka")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--brokers",
        default=os.environ.get("OUTROUTE_TEST_BROKERS", ",".join(BROKER_KINDS)),
        help="comma-separated broker kinds for tests marked both_brokers or kafka_only "
        "(embedded, kafka; default: both, or OUTROUTE_TEST_BROKERS)",
    )


def selected_brokers(config: pytest.Config) -> list[str]:
    kinds = [k.strip() for k in str(config.getoption("--brokers")).split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(BROKER_KINDS))
    if unknown or not kinds:
        raise pytest.UsageError(
            f"--brokers: unknown broker kind(s) {unknown or kinds}; choose from {BROKER_KINDS}"
        )
    return kinds


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker_kind" not in metafunc.fixturenames:
        return
    selected = selected_brokers(metafunc.config)
    if metafunc.definition.get_closest_marker("kafka_only"):
        metafunc.parametrize("broker_kind", ["kafka"], indirect=True)
    elif metafunc.definition.get_closest_marker("both_brokers"):
        metafunc.parametrize("broker_kind", selected, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = selected_brokers(config)
    if "kafka" in selected:
        return
    dropped = [item for item in items if item.get_closest_marker("kafka_only")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("kafka_only")]


@pytest.fixture(scope="session")
def embedded_bootstrap_servers() -> Iterator[str]:
    external = os.environ.get("OUTROUTE_TEST_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_bootstrap_servers() -> Iterator[str]:
    external = os.environ.get("OUTROUTE_TEST_KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    # Raises LocalStackError naming what is missing (a JDK, Maven) when it cannot start.
    with ApacheKafka() as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def broker_kind(request: pytest.FixtureRequest) -> str:
    """``embedded`` or ``kafka``: set by the markers above (unmarked tests: embedded)."""
    kind: str = getattr(request, "param", "embedded")
    return kind


@pytest.fixture
def bootstrap_servers(request: pytest.FixtureRequest, broker_kind: str) -> str:
    servers: str = request.getfixturevalue(f"{broker_kind}_bootstrap_servers")
    return servers


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
