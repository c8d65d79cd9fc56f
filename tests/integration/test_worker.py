"""The join worker against the real broker and Redis: totals, dead letters, kill -9, scaling."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from schemas import Topics
from stream_workers import WorkerSettings
from stream_workers.local.stack import start_redis_server

from _pipeline import DeltaReader, Worker, produce_scenario
from _support import read_topic, wait_until


def drain_until_total(
    reader: DeltaReader,
    total: int,
    timeout: float,
    running: list[Worker] = (),  # type: ignore[assignment]
) -> None:
    def done() -> bool:
        for worker in running:
            if worker.process.poll() is not None:
                pytest.fail(f"worker exited {worker.process.returncode}:\n{worker.log()[-4000:]}")
        reader.poll()
        return sum(reader.joined.values()) >= total

    wait_until(done, timeout=timeout, interval=0, what=f"{total} joined outcomes")
    # and nothing more arrives that would be counted (duplicates would show up here)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        reader.poll(0.1)


@pytest.mark.both_brokers
def test_out_of_order_replays_and_garbage_are_joined_and_counted_exactly(
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    expected = produce_scenario(settings, 3000, seed=1, garbage_rate=0.1)
    # A 1 s window: unreported decisions expire once the outcome clock is 1 s past them.
    worker = Worker(settings, tmp_path, metrics=True, env={"OUTROUTE_OUTCOME_WINDOW": "1"})
    workers.append(worker)
    reader = DeltaReader(settings)
    try:
        drain_until_total(reader, sum(expected.joined.values()), timeout=60, running=[worker])
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; got {sum(reader.joined.values())}; worker log:\n{worker.log()[-4000:]}"
        ) from exc
    finally:
        reader.close()
    assert reader.joined == expected.joined
    assert reader.reward == expected.reward

    dead = read_topic(
        settings.bootstrap_servers,
        topics.dead_letter.name,
        until=lambda m: len(m) >= expected.garbage,
    )
    assert len(dead) == expected.garbage
    record = json.loads(dead[0].value())
    assert record["topic"] in (topics.decisions.name, topics.outcomes.name)
    assert {"partition", "offset", "error", "value_b64"} <= set(record)
    assert record["error"]
    errors = [json.loads(message.value())["error"] for message in dead]
    future = [error for error in errors if "after the message's timestamp" in error]
    assert future, errors[:10]  # valid events dated a day ahead: dead letters, not a clock jump

    def metric(kind: str) -> float:
        values = worker.metrics()
        return sum(v for k, v in values.items() if f'kind="{kind}"' in k)

    wait_until(lambda: metric("joined") == sum(expected.joined.values()), timeout=10)
    assert metric("dead_lettered") == expected.garbage
    assert metric("replays") == expected.replays
    assert metric("duplicates") == expected.duplicates
    assert metric("decisions") == 3000
    expired = expected.expired(timedelta(seconds=1), topics.decisions.partitions)
    assert expired > 0
    wait_until(lambda: metric("unreported") == expired, timeout=10, what=f"{expired} unreported")
    assert worker.metrics()["outroute_join_partitions"] == 4
    assert worker.stop() == 0
    # A clean stop wrote a checkpoint for every partition.
    keys = redis_client.keys(f"{settings.redis_key_prefix}:join:*")
    assert len(keys) == 4
    # ... and left nothing in its working directory but the log (Faust makes a data directory).
    assert [p.name for p in tmp_path.iterdir()] == [worker.log_path.name]


def caught_up(worker: Worker) -> bool:
    """The worker has rebuilt its partitions and checkpointed: it is consuming live input."""
    if worker.process.poll() is not None:
        pytest.fail(f"worker exited {worker.process.returncode}:\n{worker.log()[-4000:]}")
    try:
        return worker.metrics().get("outroute_join_checkpoints_total", 0) > 0
    except httpx.HTTPError:
        return False  # its web server is not up yet


@pytest.mark.both_brokers
def test_kill_9_mid_stream_totals_stay_exact(
    settings: WorkerSettings, topics: Topics, workers: list[Worker], tmp_path: Path
) -> None:
    pairs = 20_000
    expected_holder: list = []
    producer = threading.Thread(
        target=lambda: expected_holder.append(produce_scenario(settings, pairs, seed=7, rate=1000)),
        daemon=True,
    )
    producer.start()
    reader = DeltaReader(settings)
    rng = random.Random(20261122)
    startups: list[float] = []
    try:
        worker = Worker(settings, tmp_path, metrics=True)
        workers.append(worker)
        wait_until(lambda: caught_up(worker), timeout=30, what="the first worker to consume")
        startups.append(time.monotonic() - worker.started)
        for _ in range(3):
            deadline = time.monotonic() + rng.uniform(1.0, 3.0)
            while time.monotonic() < deadline:
                reader.poll(0.05)
            worker.kill()
            worker = Worker(settings, tmp_path, metrics=True)
            workers.append(worker)
            wait_until(lambda w=worker: caught_up(w), timeout=40, what="the restarted worker")
            startups.append(time.monotonic() - worker.started)
        producer.join(60)
        expected = expected_holder[0]
        drain_until_total(reader, sum(expected.joined.values()), timeout=90, running=[worker])
    finally:
        reader.close()
    assert reader.joined == expected.joined, "lost or double-counted outcomes"
    assert reader.reward == expected.reward
    print(
        f"start {startups[0]:.1f} s, restarts {', '.join(f'{r:.1f} s' for r in startups[1:])}; "
        f"{reader.raw_items - sum(expected.joined.values())} re-emitted items dropped"
    )


@pytest.mark.both_brokers
def test_two_workers_split_the_partitions_and_total_the_same(
    settings: WorkerSettings, topics: Topics, workers: list[Worker], tmp_path: Path
) -> None:
    expected = produce_scenario(settings, 4000, seed=3)
    first = Worker(settings, tmp_path, metrics=True)
    second = Worker(settings, tmp_path, metrics=True)
    workers.extend([first, second])
    reader = DeltaReader(settings)
    try:
        drain_until_total(
            reader, sum(expected.joined.values()), timeout=60, running=[first, second]
        )
    finally:
        reader.close()
    assert reader.joined == expected.joined

    # On Apache Kafka the second worker may join the group after the first has taken all
    # four partitions and drained them; the split follows at the next rebalance.
    def owned() -> list[float]:
        return sorted(w.metrics()["outroute_join_partitions"] for w in (first, second))

    wait_until(lambda: owned() == [2, 2], timeout=60, what="two partitions on each worker")


@pytest.mark.both_brokers
def test_worker_refuses_topics_that_are_not_copartitioned(
    settings: WorkerSettings, prefix: str, tmp_path: Path
) -> None:
    admin = AdminClient(settings.kafka_client_config())
    new = [NewTopic(f"{prefix}.decisions", 4, 1), NewTopic(f"{prefix}.outcomes", 2, 1)]
    for future in admin.create_topics(new).values():
        future.result(10)
    worker = Worker(settings, tmp_path)
    assert worker.process.wait(30) == 1
    assert f"{prefix}.decisions has 4 partitions but {prefix}.outcomes has 2" in worker.log()


@pytest.mark.both_brokers
def test_lost_checkpoints_replay_everything_and_nothing_counts_twice(
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    expected = produce_scenario(settings, 2000, seed=5)
    total = sum(expected.joined.values())
    reader = DeltaReader(settings)
    try:
        first = Worker(settings, tmp_path)
        workers.append(first)
        drain_until_total(reader, total, timeout=60, running=[first])
        assert first.stop() == 0
        # Redis lost the join's checkpoints: the next worker replays from the beginning and
        # emits every join again; the frontier must drop all of them.
        deleted = redis_client.delete(*redis_client.keys(f"{settings.redis_key_prefix}:join:*"))
        assert deleted == 4
        second = Worker(settings, tmp_path)
        workers.append(second)
        wait_until(
            lambda: (reader.poll(), reader.raw_items >= 2 * total)[1],
            timeout=60,
            what="the replayed joins",
        )
    finally:
        reader.close()
    assert reader.raw_items == 2 * total
    assert reader.joined == expected.joined
    assert reader.reward == expected.reward


@pytest.mark.both_brokers
def test_a_worker_joining_while_redis_hangs_waits_and_totals_stay_exact(
    settings: WorkerSettings, topics: Topics, workers: list[Worker], tmp_path: Path
) -> None:
    private = start_redis_server()  # a Redis of its own, to hang and resume
    local = settings.model_copy(update={"redis_url": SecretStr(private.url)})
    expected_holder: list = []
    producer = threading.Thread(
        target=lambda: expected_holder.append(produce_scenario(local, 8000, seed=11, rate=500)),
        daemon=True,
    )
    producer.start()
    reader = DeltaReader(local)
    paused = False
    try:
        first = Worker(local, tmp_path, metrics=True)
        workers.append(first)
        wait_until(lambda: caught_up(first), timeout=30, what="the first worker to consume")
        os.kill(private.pid, signal.SIGSTOP)  # every Redis call now times out
        paused = True
        second = Worker(local, tmp_path, metrics=True)  # its arrival moves partitions
        workers.append(second)

        def waiting() -> float:
            for worker in (first, second):
                if worker.process.poll() is not None:
                    pytest.fail(f"worker exited:\n{worker.log()[-4000:]}")
            total = 0.0
            for worker in (first, second):
                with contextlib.suppress(httpx.HTTPError):  # its web server is not up yet
                    total += worker.metrics().get("outroute_join_partitions_waiting", 0.0)
            return total

        wait_until(waiting, timeout=60, what="a partition paused for its state")
        os.kill(private.pid, signal.SIGCONT)
        paused = False
        producer.join(60)
        expected = expected_holder[0]
        drain_until_total(reader, sum(expected.joined.values()), 90, running=[first, second])
        wait_until(lambda: waiting() == 0, timeout=30, what="every partition restored")
        joined = [w.metrics()["outroute_join_partitions"] for w in (first, second)]
        logs = first.log() + second.log()
    finally:
        if paused:
            os.kill(private.pid, signal.SIGCONT)
        reader.close()
        for worker in workers:
            worker.stop()
        private.stop()
    assert reader.joined == expected.joined, "lost or double-counted outcomes"
    assert reader.reward == expected.reward
    assert sum(joined) == 4
    assert "cannot restore its join state" in logs
    assert "restored after" in logs
