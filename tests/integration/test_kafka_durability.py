"""What only a broker with a durable log allows: Apache Kafka restarted under traffic, and
workers scaled out, restarted one by one and killed, with every total exact."""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import redis

from producer_sdk import CacheOptions, EmitterOptions, Router
from stream_workers import ApacheKafka, WorkerSettings, create_topics

from _pipeline import DeltaReader, Worker, produce_scenario, snapshot
from _support import delete_topics_with_prefix, wait_until

pytestmark = pytest.mark.kafka_only


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[ApacheKafka]:
    """A broker of this test's own, which it may stop, kill and restart on its data dir."""
    with ApacheKafka(data_dir=tmp_path / "kafka", log_path=tmp_path / "kafka.log") as broker:
        broker.start()
        yield broker


def metric(worker: Worker, name: str) -> float | None:
    """One value of the worker's /metrics, or None while its web server is not up."""
    if worker.process.poll() is not None:
        pytest.fail(f"worker exited {worker.process.returncode}:\n{worker.log()[-4000:]}")
    try:
        return worker.metrics().get(name, 0.0)
    except httpx.HTTPError:
        return None


@pytest.mark.parametrize("idempotent", [False, True], ids=["at-least-once", "idempotent"])
def test_broker_restart_and_kill_9_under_sdk_traffic_lose_nothing(
    idempotent: bool,
    own_kafka: ApacheKafka,
    redis_url: str,
    prefix: str,
    redis_client: redis.Redis,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    """SIGTERM, then kill -9 of the broker while a router reports and a worker joins: the
    router's queued events are delivered after each restart, the worker carries on by itself,
    and the snapshot counts exactly the reports sent. Kafka keeps idempotent producers' state
    across its restarts, so ``idempotent=True`` works here (the embedded broker loses it)."""
    settings = WorkerSettings(
        bootstrap_servers=own_kafka.bootstrap_servers,
        redis_url=redis_url,
        topic_prefix=prefix,
        redis_key_prefix=prefix,
        partitions=4,
    )
    create_topics(settings)
    worker = Worker(settings, tmp_path, metrics=True)
    workers.append(worker)
    wait_until(
        lambda: (metric(worker, "outroute_join_partitions") or 0) >= 4,
        timeout=60,
        what="the worker to own its partitions",
    )
    router = Router(
        "restart",
        ["a", "b"],
        connection=settings,
        emitter=EmitterOptions(delivery_timeout=600.0, idempotent=idempotent),
        cache=CacheOptions(init_wait=0.0),
        seed=13,
    )
    rng = random.Random(13)
    reported: Counter[str] = Counter()

    def traffic(n: int) -> None:
        for _ in range(n):
            decision = router.decide()
            decision.report(rng.random() < (0.9 if decision.path == "a" else 0.6))
            reported[decision.path] += 1
            time.sleep(0.002)  # ~400 decisions/s: traffic goes on while the broker is away

    pending_seen: list[int] = []
    restarts: list[float] = []
    try:
        traffic(500)
        own_kafka.stop()  # SIGTERM: a controlled shutdown
        traffic(2500)
        pending_seen.append(router.stats().pending)
        began = time.monotonic()
        own_kafka.start()
        restarts.append(time.monotonic() - began)
        traffic(1000)
        own_kafka.kill()  # kill -9: the log is recovered from disk on the next start
        traffic(2500)
        pending_seen.append(router.stats().pending)
        began = time.monotonic()
        own_kafka.start()
        restarts.append(time.monotonic() - began)
        traffic(500)
        assert router.flush(120) == 0
        stats = router.stats()
    finally:
        router.close(timeout=5)
    total = sum(reported.values())
    assert (stats.emitted, stats.delivered, stats.failed, stats.dropped) == (
        2 * total,
        2 * total,
        0,
        0,
    )
    assert min(pending_seen) > 0, "the broker outages queued nothing: they did not happen"

    def counted() -> dict[str, int] | None:
        snap = snapshot(redis_client, settings, "restart")
        if snap is None:
            return None
        counts = {path: stats.n for path, stats in snap.paths.items()}
        return counts if sum(counts.values()) >= total else None

    final = wait_until(counted, timeout=120, interval=0.1, what=f"{total} outcomes applied")
    assert final == dict(reported), "lost or double-counted outcomes across broker restarts"
    assert worker.process.poll() is None, "the worker did not survive the broker restarts"
    print(
        f"{total} reports; pending during the outages {pending_seen}; broker back in "
        f"{restarts[0]:.1f} s after SIGTERM, {restarts[1]:.1f} s after kill -9"
    )


_LOG_TIME = r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]"
_TAKEN = re.compile(_LOG_TIME + r".*partition (\d+): rebuilding from", re.M)
_RELEASED = re.compile(_LOG_TIME + r".*partitions \[([\d, ]*)\]: checkpointed and released", re.M)


def _at(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def ownership(log: str, ended: float) -> dict[int, list[tuple[float, float]]]:
    """Per partition, the (from, to) wall-clock intervals a worker owned it, read from its
    log; an interval still open when the process ended closes at ``ended``."""
    events: list[tuple[float, int, bool]] = []
    for m in _TAKEN.finditer(log):
        events.append((_at(m.group(1)), int(m.group(2)), True))
    for m in _RELEASED.finditer(log):
        for p in m.group(2).split(","):
            events.append((_at(m.group(1)), int(p), False))
    held: dict[int, float] = {}
    intervals: dict[int, list[tuple[float, float]]] = {}
    for at, partition, taken in sorted(events):
        if taken:
            held.setdefault(partition, at)
        elif partition in held:
            intervals.setdefault(partition, []).append((held.pop(partition), at))
    for partition, since in held.items():
        intervals.setdefault(partition, []).append((since, ended))
    return intervals


def test_three_workers_on_12_partitions_survive_a_rolling_restart_and_a_kill_9(
    kafka_bootstrap_servers: str,
    redis_url: str,
    prefix: str,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    settings = WorkerSettings(
        bootstrap_servers=kafka_bootstrap_servers,
        redis_url=redis_url,
        topic_prefix=prefix,
        redis_key_prefix=prefix,
        partitions=12,
    )
    create_topics(settings)
    ended: dict[int, float] = {}  # pid -> when its process was seen gone
    all_workers: list[Worker] = []

    def start() -> Worker:
        worker = Worker(settings, tmp_path, metrics=True)
        workers.append(worker)
        all_workers.append(worker)
        return worker

    def owned(live: list[Worker]) -> float | None:
        counts = [metric(w, "outroute_join_partitions") for w in live]
        return None if None in counts else sum(c or 0 for c in counts)

    def settled(live: list[Worker]) -> bool:
        return owned(live) == 12 and all(
            (metric(w, "outroute_join_partitions") or 0) > 0 for w in live
        )

    pauses: list[tuple[str, float]] = []

    def rebalance(what: str, live: list[Worker]) -> None:
        began = time.monotonic()
        wait_until(lambda: settled(live), timeout=120, interval=0.1, what=f"{what} to settle")
        pauses.append((what, time.monotonic() - began))

    pairs = 30_000
    expected_holder: list = []
    producer = threading.Thread(
        target=lambda: expected_holder.append(
            produce_scenario(settings, pairs, seed=12, rate=1000)
        ),
        daemon=True,
    )
    reader = DeltaReader(settings)
    try:
        live = [start(), start(), start()]
        rebalance("three workers starting", live)
        producer.start()
        for i in range(3):  # a rolling restart: each worker in turn, SIGTERM then a new one
            old = live.pop(0)
            assert old.stop() == 0, old.log()[-3000:]
            ended[old.process.pid] = time.time()
            live.append(start())
            rebalance(f"rolling restart {i + 1}", live)
            reader.poll()
        victim = live.pop(1)
        victim.kill()
        ended[victim.process.pid] = time.time()
        live.append(start())
        rebalance("kill -9 and a replacement", live)
        producer.join(120)
        expected = expected_holder[0]
        total = sum(expected.joined.values())

        def done() -> bool:
            reader.poll()
            return sum(reader.joined.values()) >= total

        wait_until(done, timeout=120, interval=0, what=f"{total} joined outcomes")
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # nothing more arrives that would count twice
            reader.poll(0.1)
        assert owned(live) == 12, "a partition is not owned at the end"
        for worker in live:
            assert worker.stop() == 0, worker.log()[-3000:]
            ended[worker.process.pid] = time.time()
    finally:
        reader.close()
        delete_topics_with_prefix(kafka_bootstrap_servers, prefix)
    assert reader.joined == expected.joined, "lost or double-counted outcomes"
    assert reader.reward == expected.reward

    now = time.time()
    held: dict[int, list[tuple[float, float, int]]] = {}
    for worker in all_workers:
        for partition, spans in ownership(worker.log(), ended.get(worker.process.pid, now)).items():
            held.setdefault(partition, []).extend((a, b, worker.process.pid) for a, b in spans)
    assert sorted(held) == list(range(12))
    for partition, spans in held.items():
        spans.sort()
        for (_, end_a, pid_a), (start_b, _, pid_b) in itertools.pairwise(spans):
            assert pid_a == pid_b or start_b >= end_a, (
                f"partition {partition} joined by workers {pid_a} and {pid_b} at once"
            )
    print("rebalance pauses: " + ", ".join(f"{what} {s:.1f} s" for what, s in pauses))
