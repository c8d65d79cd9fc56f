"""The posterior stage through the real broker and Redis: snapshots, kill -9, alerts."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from schemas import (
    DegradationAlert,
    PolicySnapshot,
    Topics,
)
from stream_workers import WorkerSettings
from stream_workers.local.stack import start_redis_server
from stream_workers.pipeline.posterior import DecayedBeta

from _pipeline import Worker, produce, snapshot
from _support import read_topic, wait_until


@pytest.mark.both_brokers
def test_snapshots_match_the_pure_posteriors_across_a_kill_9(
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    rng = random.Random(4)
    rates = {"a": 0.9, "b": 0.7, "c": 0.5}
    plan = [(p, rates[p]) for p in (rng.choice("abc") for _ in range(6000))]
    produced: list = []
    producer = threading.Thread(
        target=lambda: produced.extend(produce(settings, "triad", plan, seed=4, rate=600)),
        daemon=True,
    )
    changes = redis_client.pubsub(ignore_subscribe_messages=True)
    changes.subscribe(settings.redis_keys().policy_changes)
    producer.start()
    worker = Worker(settings, tmp_path)
    workers.append(worker)
    versions: list[int] = []

    def observe() -> PolicySnapshot | None:
        snap = snapshot(redis_client, settings, "triad")
        if snap is not None and (not versions or versions[-1] != snap.version):
            versions.append(snap.version)
        return snap

    wait_until(lambda: observe() is not None, timeout=30, what="a first snapshot")
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        observe()
        time.sleep(0.02)
    worker.kill()
    worker = Worker(settings, tmp_path)
    workers.append(worker)
    producer.join(60)

    def complete() -> bool:
        snap = observe()
        return snap is not None and sum(s.n for s in snap.paths.values()) >= len(plan)

    wait_until(complete, timeout=90, interval=0.05, what="every outcome in the snapshot")
    final = snapshot(redis_client, settings, "triad")
    assert final is not None
    assert versions == sorted(versions), f"versions went backwards: {versions}"
    for path in "abc":
        pure = DecayedBeta(24 * 3600.0)
        for p, reward, at in produced:
            if p == path:
                pure.update(reward, at)
        stats = final.paths[path]
        assert stats.n == pure.n
        assert stats.alpha == pytest.approx(pure.alpha, rel=1e-9)
        assert stats.beta == pytest.approx(pure.beta, rel=1e-9)
        assert stats.status == "healthy"
    assert redis_client.sismember(settings.redis_keys().goals, "triad")
    # Each write was announced on the batched channel too: the goals it wrote, one message.
    announced = []
    quiet_until = time.monotonic() + 1.0  # the subscription's confirmation reads as None
    while time.monotonic() < quiet_until:
        message = changes.get_message(timeout=0.2)
        if message is not None:
            announced.append(message["data"].split(b"\n"))
            quiet_until = time.monotonic() + 1.0
    changes.close()
    assert announced
    assert all(names == [b"triad"] for names in announced)


@pytest.mark.both_brokers
def test_a_degraded_path_opens_one_alert_and_resolves_it(
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    plan = [("a", 0.97)] * 800 + [("a", 0.2)] * 150 + [("a", 0.97)] * 300
    produced = produce(settings, "flaky", plan, seed=9)
    degraded_from = produced[800][2]
    workers.append(Worker(settings, tmp_path))
    messages = read_topic(
        settings.bootstrap_servers,
        topics.alerts.name,
        until=lambda m: len(m) >= 2,
        timeout=60,
    )
    alerts = [DegradationAlert.model_validate_json(m.value()) for m in messages]
    assert [(a.goal, a.path, a.state) for a in alerts] == [
        ("flaky", "a", "open"),
        ("flaky", "a", "resolved"),
    ]
    opened = alerts[0]
    delay = round((opened.detected_at.timestamp() - degraded_from) * 1000)  # outcomes, 1 ms apart
    assert 0 <= delay <= 50, f"detected {delay} outcomes after the drop"
    assert opened.baseline_rate > 0.9
    assert opened.recent_rate < opened.baseline_rate - 0.1
    assert all(m.key() == b"flaky" for m in messages)
    # Redis is written after the broker has the alerts (and the goal's state): wait for it.
    key = settings.redis_keys().alerts("flaky")
    wait_until(lambda: redis_client.llen(key) >= 2, timeout=30, what="the alerts in Redis")
    mirrored = [json.loads(x) for x in redis_client.lrange(key, 0, -1)]
    assert [a["state"] for a in mirrored] == ["resolved", "open"]  # newest first
    final = wait_until(
        lambda: (
            (s := snapshot(redis_client, settings, "flaky"))
            and sum(p.n for p in s.paths.values()) == len(plan)
            and s
        ),
        timeout=30,
        what="the final snapshot",
    )
    assert final.paths["a"].status == "healthy"


def test_redis_outage_mid_stream_loses_nothing(
    settings: WorkerSettings, topics: Topics, workers: list[Worker], tmp_path: Path
) -> None:
    private = start_redis_server()
    port = int(private.url.rsplit(":", 1)[1].split("/")[0])
    local = settings.model_copy(update={"redis_url": SecretStr(private.url)})
    rng = random.Random(6)
    plan = [(p, 0.8) for p in (rng.choice("ab") for _ in range(3000))]
    producer = threading.Thread(
        target=lambda: produce(local, "outage", plan, seed=6, rate=600), daemon=True
    )
    try:
        worker = Worker(local, tmp_path, metrics=True)
        workers.append(worker)
        producer.start()
        client = redis.Redis.from_url(private.url)
        wait_until(lambda: snapshot(client, local, "outage"), timeout=30, what="a first snapshot")
        private.stop()  # Redis goes away mid-stream, and with it everything it held

        def failed_writes() -> float:
            return worker.metrics().get("outroute_publish_errors_total", 0.0)

        wait_until(lambda: failed_writes() >= 3, timeout=30, what="the worker to hit the outage")
        private = start_redis_server(port=port)
        client = redis.Redis.from_url(private.url)
        producer.join(60)

        def complete() -> bool:
            assert worker.process.poll() is None, worker.log()[-3000:]
            snap = snapshot(client, local, "outage")
            return snap is not None and sum(s.n for s in snap.paths.values()) == len(plan)

        wait_until(complete, timeout=60, what="every outcome after Redis returned")
    finally:
        private.stop()
