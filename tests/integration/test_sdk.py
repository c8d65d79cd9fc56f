"""The SDK against the real broker and Redis: events on the topics, snapshots from Redis,
outages of either, fork and exit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Message

from producer_sdk import (
    CacheOptions,
    ConnectionOptions,
    EmitterOptions,
    KafkaEventSink,
    Router,
    SamplingParams,
)
from producer_sdk.testing import StaticSnapshotSource
from schemas import DecisionEvent, OutcomeEvent, PathStats, PolicySnapshot, Topics
from stream_workers import EmbeddedBroker, WorkerSettings, create_topics
from stream_workers.local.stack import free_port, start_redis_server

from _support import read_topic, wait_until


def snapshot(goal: str, version: int) -> PolicySnapshot:
    stats = PathStats(alpha=90.0, beta=10.0, n=98, recent_n=20, recent_successes=18.0)
    return PolicySnapshot(
        goal=goal,
        version=version,
        generated_at=datetime.now(UTC),
        paths={"a": stats, "b": stats.model_copy(update={"alpha": 10.0, "beta": 90.0})},
    )


@pytest.fixture
def routers() -> Iterator[list[Router]]:
    made: list[Router] = []
    yield made
    for router in made:
        router.close(timeout=1)


def kafka_router(
    settings: WorkerSettings, routers: list[Router], redis_url: str | None = None, **kw: Any
) -> Router:
    connection = ConnectionOptions(
        bootstrap_servers=settings.bootstrap_servers,
        topic_prefix=settings.topic_prefix,
        redis_url=redis_url or settings.redis_url,
        redis_key_prefix=settings.redis_key_prefix,
    )
    args: dict[str, Any] = {"snapshot_source": StaticSnapshotSource(None), "connection": connection}
    router = Router("summarize", ["a", "b"], **(args | kw))
    routers.append(router)
    return router


@pytest.mark.both_brokers
def test_events_on_the_topics_are_valid_and_keyed_by_trace(
    settings: WorkerSettings, topics: Topics, routers: list[Router]
) -> None:
    router = kafka_router(settings, routers)
    decisions = []
    for i in range(100):
        decision = router.decide(context={"i": i})
        decision.report(i % 3 != 0, latency_ms=float(i), cost_usd=0.001)
        decisions.append(decision)
    assert router.flush(10) == 0
    stats = router.stats()
    assert (stats.emitted, stats.delivered, stats.dropped, stats.failed) == (200, 200, 0, 0)

    def enough(n: int) -> Any:
        return lambda messages: len(messages) >= n

    bootstrap = settings.bootstrap_servers
    decided = read_topic(bootstrap, topics.decisions.name, until=enough(100))
    reported = read_topic(bootstrap, topics.outcomes.name, until=enough(100))
    by_trace: dict[str, tuple[Message, Message]] = {}
    for d in decided:
        event = DecisionEvent.model_validate_json(d.value())
        assert d.key() == event.trace_id.encode()
        by_trace[event.trace_id] = (d, d)
    for o in reported:
        event = OutcomeEvent.model_validate_json(o.value())
        assert o.key() == event.trace_id.encode()
        by_trace[event.trace_id] = (by_trace[event.trace_id][0], o)
    assert set(by_trace) == {d.trace_id for d in decisions}
    partitioner = DefaultPartitioner()
    everything = list(range(topics.decisions.partitions))
    for trace, (d, o) in by_trace.items():
        # Same partition in both topics, and the one every Kafka client computes.
        assert d.partition() == o.partition() == partitioner(trace.encode(), everything, everything)
    first = decisions[0]
    outcome = next(
        OutcomeEvent.model_validate_json(m.value())
        for m in reported
        if m.key() == first.trace_id.encode()
    )
    assert (outcome.success, outcome.latency_ms, outcome.cost_usd) == (False, 0.0, 0.001)


def test_a_snapshot_written_elsewhere_arrives_by_pub_sub_and_by_the_poll(
    settings: WorkerSettings, redis_client: redis.Redis, routers: list[Router]
) -> None:
    keys = settings.redis_keys()
    # An hour between polls: within the test's waits, only pub/sub can bring a new version.
    pubsub_only = kafka_router(
        settings,
        routers,
        snapshot_source=None,
        event_sink=None,
        sampling=SamplingParams(exploration_rate=0.0),
        cache=CacheOptions(poll_interval=3600),
    ).start()
    assert pubsub_only.get_policy().loaded
    assert pubsub_only.get_policy().version is None
    writer = textwrap.dedent(
        f"""
        import redis, sys
        r = redis.Redis.from_url({settings.redis_url.get_secret_value()!r})
        r.set({keys.policy("summarize")!r}, sys.stdin.read())
        if "--publish" in sys.argv:
            r.publish({keys.policy_changes!r}, "summarize")
        """
    )

    def write(version: int, *, publish: bool) -> None:
        subprocess.run(
            [sys.executable, "-c", writer, *(["--publish"] if publish else [])],
            input=snapshot("summarize", version).model_dump_json(),
            text=True,
            check=True,
        )

    for version in (1, 2):
        write(version, publish=True)
        wait_until(
            lambda v=version: pubsub_only.get_policy().version == v,
            timeout=30,
            interval=0.005,
            what=f"version {version} by pub/sub",
        )
    # A router polling every second (the default) shares the process's feed, which then
    # polls at the shortest interval of its routers: an unannounced write reaches both.
    polling = kafka_router(
        settings,
        routers,
        snapshot_source=None,
        event_sink=None,
        sampling=SamplingParams(exploration_rate=0.0),
    ).start()
    assert polling.get_policy().version == 2
    write(3, publish=False)
    for router in (polling, pubsub_only):
        wait_until(
            lambda r=router: r.get_policy().version == 3,
            timeout=30,
            interval=0.005,
            what="version 3 by the poll",
        )
    decision = polling.decide()
    assert (decision.path, decision.policy_version, decision.reason) == ("a", 3, "exploit")


def test_routers_of_a_process_share_one_policy_feed(
    settings: WorkerSettings, redis_client: redis.Redis, routers: list[Router]
) -> None:
    """Forty routers of twenty goals: one feed thread; one announcement of two goals'
    snapshots reaches every router of those goals and no other; the thread ends with the
    last router."""
    keys = settings.redis_keys()
    goals = [f"feed-{k}" for k in range(20)]
    connection = ConnectionOptions(
        bootstrap_servers=settings.bootstrap_servers,
        redis_url=settings.redis_url,
        redis_key_prefix=settings.redis_key_prefix,
        topic_prefix=settings.topic_prefix,
    )
    sink = KafkaEventSink(connection.kafka_client_config(), connection.topics(), EmitterOptions())
    made = [
        Router(
            goal,
            ["a", "b"],
            connection=connection,
            event_sink=sink,
            cache=CacheOptions(poll_interval=3600),
        )
        for goal in goals
        for _ in range(2)
    ]
    routers.extend(made)
    try:
        for router in made:
            router.start()
        feeds = [t for t in threading.enumerate() if t.name == "outroute-policy-feed"]
        assert len(feeds) == 1
        own = {f"outroute-policy-{goal}" for goal in goals}  # what each router had before
        assert not [t for t in threading.enumerate() if t.name in own]
        for k in (3, 7):
            redis_client.set(keys.policy(goals[k]), snapshot(goals[k], 10 + k).model_dump_json())
        # One message names the goals of a write, as a worker sends it.
        redis_client.publish(keys.policy_changes, f"{goals[3]}\n{goals[7]}")
        for k in (3, 7):
            for router in made[2 * k : 2 * k + 2]:
                wait_until(
                    lambda r=router, v=10 + k: r.get_policy().version == v,
                    timeout=30,
                    interval=0.005,
                    what=f"version {10 + k} of {goals[k]}",
                )
        others = [r for i, r in enumerate(made) if i // 2 not in (3, 7)]
        assert {r.get_policy().version for r in others} == {None}
    finally:
        for router in made:
            router.close(timeout=1)
        sink.close(5)
    wait_until(
        lambda: not [t for t in threading.enumerate() if t.name == "outroute-policy-feed"],
        timeout=10,
        what="the feed thread to end with the last router",
    )


def test_redis_outage_keeps_the_last_policy_and_recovers(
    settings: WorkerSettings, routers: list[Router]
) -> None:
    private = start_redis_server()
    port = int(private.url.rsplit(":", 1)[1].split("/")[0])
    keys = settings.redis_keys()
    client = redis.Redis.from_url(private.url)
    client.set(keys.policy("summarize"), snapshot("summarize", 1).model_dump_json())
    router = kafka_router(
        settings,
        routers,
        snapshot_source=None,
        redis_url=private.url,
        sampling=SamplingParams(exploration_rate=0.0),
        cache=CacheOptions(init_wait=2.0, poll_interval=0.2, max_staleness=0.5),
    ).start()
    try:
        assert router.get_policy().version == 1
        private.stop()
        for _ in range(100):
            decision = router.decide()
            assert (decision.path, decision.reason, decision.policy_version) == ("a", "exploit", 1)
        wait_until(lambda: router.get_policy().stale, timeout=5, what="the policy to go stale")
        assert router.stats().policy_errors >= 1
        assert router.decide().policy_version == 1  # stale, still used

        private = start_redis_server(port=port)
        client = redis.Redis.from_url(private.url)
        client.set(keys.policy("summarize"), snapshot("summarize", 2).model_dump_json())
        client.publish(keys.policy_changes, "summarize")
        wait_until(
            lambda: router.get_policy().version == 2 and not router.get_policy().stale,
            timeout=10,
            what="recovery after Redis returned",
        )
    finally:
        private.stop()


def test_redis_never_up_falls_back_within_the_init_wait(
    settings: WorkerSettings, routers: list[Router]
) -> None:
    router = kafka_router(
        settings,
        routers,
        snapshot_source=None,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        cache=CacheOptions(init_wait=0.3),
    )
    first = router.decide()
    assert (first.path, first.reason) == ("a", "fallback")
    for _ in range(1000):  # its cost per call: bench/sdk.py, "Redis down"
        assert router.decide().reason == "fallback"
    assert not router.get_policy().loaded


def test_broker_outage_buffers_events_and_delivers_them_after(routers: list[Router]) -> None:
    port = free_port()
    broker = EmbeddedBroker(port).start()
    settings = WorkerSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix="outage")
    try:
        create_topics(settings)
        router = kafka_router(settings, routers)
        for _ in range(100):
            router.decide().report(True)
        assert router.flush(10) == 0
        broker.stop()

        calls = 2000  # their cost per call: bench/sdk.py, "Kafka down"
        for i in range(calls):
            router.decide().report(i % 2 == 0, latency_ms=1.0)
        during = router.stats()
        assert during.pending == 2 * calls
        assert during.dropped == 0

        broker = EmbeddedBroker(port).start()  # memory storage: a new, empty broker
        create_topics(settings)
        assert router.flush(30) == 0
        after = router.stats()
        assert (after.emitted, after.delivered, after.failed, after.dropped) == (
            2 * (100 + calls),
            2 * (100 + calls),
            0,
            0,
        )
        outcomes = read_topic(
            settings.bootstrap_servers,
            settings.topics().outcomes.name,
            until=lambda m: len(m) >= calls,
        )
        assert len({m.key() for m in outcomes}) == calls
    finally:
        broker.stop()


def test_full_buffer_drops_and_counts_without_blocking(
    settings: WorkerSettings, routers: list[Router]
) -> None:
    router = kafka_router(
        settings.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"}),
        routers,
        emitter=EmitterOptions(max_queued_events=100),
    )
    for _ in range(300):
        router.decide().report(True)
    stats = router.stats()
    assert stats.emitted == 100
    assert stats.dropped == 500
    assert stats.emitted + stats.dropped == 600
    assert stats.delivered == 0


def run_script(script: str, settings: WorkerSettings) -> subprocess.CompletedProcess[str]:
    prologue = textwrap.dedent(
        f"""
        import os, sys, json
        from producer_sdk import ConnectionOptions, Router
        from producer_sdk.testing import StaticSnapshotSource
        router = Router(
            "summarize", ["a", "b"],
            connection=ConnectionOptions(
                bootstrap_servers={settings.bootstrap_servers!r},
                topic_prefix={settings.topic_prefix!r},
            ),
            snapshot_source=StaticSnapshotSource(None),
        )
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.both_brokers
def test_after_fork_the_child_decides_and_emits_on_its_own(
    settings: WorkerSettings, topics: Topics
) -> None:
    result = run_script(
        """
        for _ in range(5):
            router.decide().report(True)
        assert router.flush(10) == 0
        pid = os.fork()
        if pid == 0:
            traces = [router.decide() for _ in range(10)]
            for d in traces:
                d.report(False)
            pending = router.flush(10)
            stats = router.stats()
            print(json.dumps({"child": [d.trace_id for d in traces], "pending": pending,
                              "delivered": stats.delivered}), flush=True)
            os._exit(0 if stats.delivered == 20 and pending == 0 else 3)
        _, status = os.waitpid(pid, 0)
        for _ in range(5):
            router.decide().report(True)
        print(json.dumps({"child_status": status, "parent_pending": router.close(10)}))
        """,
        settings,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    child = next(line for line in lines if "child" in line)
    parent = next(line for line in lines if "child_status" in line)
    assert child["delivered"] == 20
    assert parent == {"child_status": 0, "parent_pending": 0}
    outcomes = read_topic(
        settings.bootstrap_servers, topics.outcomes.name, until=lambda m: len(m) >= 20
    )
    keys = [m.key().decode() for m in outcomes]
    assert len(keys) == len(set(keys)) == 20  # parent 10 + child 10, trace ids never collide
    assert set(child["child"]) <= set(keys)
    prefixes = {k.split("-")[0] for k in keys}
    assert len(prefixes) == 2  # the child drew its own trace-id prefix


@pytest.mark.both_brokers
def test_events_are_flushed_at_exit(settings: WorkerSettings, topics: Topics) -> None:
    result = run_script(
        """
        for i in range(50):
            router.decide().report(True, latency_ms=float(i))
        """,
        settings,
    )
    assert result.returncode == 0, result.stderr
    outcomes = read_topic(
        settings.bootstrap_servers, topics.outcomes.name, until=lambda m: len(m) >= 50
    )
    assert len(outcomes) == 50


@pytest.mark.both_brokers
def test_routers_of_many_goals_share_one_producer(settings: WorkerSettings, topics: Topics) -> None:
    sink = KafkaEventSink.create(settings.bootstrap_servers, topic_prefix=settings.topic_prefix)
    source = StaticSnapshotSource(None)
    goals = ["summarize", "translate", "classify"]
    routers = [Router(goal, ["a", "b"], event_sink=sink, snapshot_source=source) for goal in goals]
    try:
        for router in routers:
            for _ in range(10):
                router.decide().report(True)
        routers[0].close()  # flushes the shared producer; the others keep using it
        for _ in range(10):
            routers[1].decide().report(False)
        stats = routers[1].stats()
        assert stats.emitted == 2 * 40  # every router's events: they share the counters
    finally:
        for router in routers:
            router.close()
    assert sink.close(10) == 0
    decided = read_topic(
        settings.bootstrap_servers, topics.decisions.name, until=lambda m: len(m) >= 40
    )
    by_goal = Counter(DecisionEvent.model_validate_json(m.value()).goal for m in decided)
    assert by_goal == {"summarize": 10, "translate": 20, "classify": 10}
