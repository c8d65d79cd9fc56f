"""The harness is real: events through the broker, snapshots through Redis, Faust tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import PARTITIONER, DecisionEvent, PathStats, PolicySnapshot, Topics
from stream_workers import WorkerSettings

from _support import read_topic

HERE = Path(__file__).resolve().parent


@pytest.mark.both_brokers
def test_decision_event_through_the_broker(settings: WorkerSettings, topics: Topics) -> None:
    producer = Producer(
        {**settings.kafka_client_config(), "partitioner": PARTITIONER, "linger.ms": 5}
    )
    sent = [
        DecisionEvent(
            event_id=f"ev-{i}",
            trace_id=f"trace-{i}",
            goal="summarize",
            path="gpt-4o" if i % 2 else "claude",
            candidates=("gpt-4o", "claude"),
            reason="exploit",
            context={"i": i},
            decided_at=datetime.now(UTC),
        )
        for i in range(50)
    ]
    for event in sent:
        producer.produce(
            topics.decisions.name, key=event.trace_id.encode(), value=event.model_dump_json()
        )
    assert producer.flush(10) == 0

    messages = read_topic(
        settings.bootstrap_servers, topics.decisions.name, until=lambda m: len(m) >= len(sent)
    )
    received = {DecisionEvent.model_validate_json(m.value()).trace_id: m for m in messages}
    assert len(messages) == len(sent)
    # What went in comes out, validated, unchanged.
    for event in sent:
        assert DecisionEvent.model_validate_json(received[event.trace_id].value()) == event
    # Every client must put a key in the same partition, or the join would miss pairs:
    # the librdkafka producer (murmur2) must agree with aiokafka/Faust's partitioner.
    partitioner = DefaultPartitioner()
    all_partitions = list(range(topics.decisions.partitions))
    for trace_id, msg in received.items():
        assert msg.key() == trace_id.encode()
        assert msg.partition() == partitioner(msg.key(), all_partitions, all_partitions)


def test_policy_snapshot_through_redis(
    settings: WorkerSettings, redis_client: redis.Redis, prefix: str
) -> None:
    keys = settings.redis_keys()
    snapshot = PolicySnapshot(
        goal="summarize",
        version=3,
        generated_at=datetime.now(UTC),
        paths={
            "gpt-4o": PathStats(alpha=40.0, beta=3.0, n=41, recent_n=20, recent_successes=19.0),
            "claude": PathStats(alpha=1.0, beta=1.0, n=0, recent_n=0, recent_successes=0.0),
        },
    )
    key = keys.policy(snapshot.goal)
    assert key.startswith(f"{prefix}:")
    redis_client.set(key, snapshot.model_dump_json())
    raw = redis_client.get(key)
    assert isinstance(raw, bytes)
    assert PolicySnapshot.model_validate_json(raw) == snapshot


@pytest.mark.both_brokers
def test_faust_worker_writes_a_table_with_a_changelog(
    settings: WorkerSettings, prefix: str
) -> None:
    source = f"{prefix}.words"
    app_id = f"{prefix}-faust"
    admin = AdminClient(settings.kafka_client_config())
    admin.create_topics([NewTopic(source, num_partitions=4, replication_factor=1)])[source].result(
        10
    )
    words = [f"w{i % 7}" for i in range(300)]
    expected = Counter(words)
    producer = Producer({**settings.kafka_client_config(), "partitioner": PARTITIONER})
    for word in words:
        producer.produce(source, key=word.encode(), value=b"1")
    assert producer.flush(10) == 0

    env = {
        **os.environ,
        "HARNESS_BOOTSTRAP": settings.bootstrap_servers,
        "HARNESS_APP_ID": app_id,
        "HARNESS_SOURCE": source,
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "faust_counter_app.py"),
            "worker",
            "--without-web",
            "-l",
            "warn",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=HERE,
    )
    try:
        latest: dict[str, int] = {}

        def worker_alive() -> None:
            if worker.poll() is not None:
                output = worker.stdout.read().decode() if worker.stdout else ""
                pytest.fail(f"the Faust worker exited with {worker.returncode}:\n{output}")

        def counts_complete(messages: list[Message]) -> bool:
            latest.clear()
            for msg in messages:  # the changelog's last value per key is the table's state
                latest[json.loads(msg.key())] = json.loads(msg.value())
            return latest == dict(expected)

        read_topic(
            settings.bootstrap_servers,
            f"{app_id}-counts-changelog",
            until=counts_complete,
            timeout=90,
            on_poll=worker_alive,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            pytest.fail("the Faust worker did not stop within 30 s of SIGTERM")
