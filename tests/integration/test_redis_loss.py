"""Redis losing everything it held: what was learned comes back from Kafka, exactly.

Redis here is a private server that persists nothing (as the local stack's), stopped and
started empty on the same port, with no traffic flowing: the snapshots must come back with the
exact counts without waiting for outcomes, the routers that had a policy must keep deciding
with it meanwhile, and a worker started after the loss must restore the goals from the
posterior-state topic.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis
from confluent_kafka import Producer
from pydantic import SecretStr
from pydantic_core import from_json, to_json

from producer_sdk import ConnectionOptions, Router
from producer_sdk.testing import InMemorySink
from schemas import JoinPosition, PathDelta, PolicySnapshot, Topics
from stream_workers import WorkerSettings
from stream_workers.local.stack import LocalRedis, start_redis_server
from stream_workers.pipeline.posterior.state import GoalState, PosteriorConfig

from _pipeline import Worker, produce, snapshot
from _support import read_topic, wait_until

GOAL = "kept"


def _port(server: LocalRedis) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


def _counts(snap: PolicySnapshot | None) -> dict[str, int]:
    return {} if snap is None else {name: stats.n for name, stats in snap.paths.items()}


@pytest.mark.both_brokers
def test_redis_restarted_empty_gets_every_snapshot_back_without_traffic(
    settings: WorkerSettings, topics: Topics, workers: list[Worker], tmp_path: Path
) -> None:
    private = start_redis_server()
    port = _port(private)
    local = settings.model_copy(update={"redis_url": SecretStr(private.url)})
    rng = random.Random(19)
    rates = {"a": 0.9, "b": 0.3}
    plan = [(p, rates[p]) for p in (rng.choice("ab") for _ in range(3000))]
    produced = produce(local, GOAL, plan, seed=19)
    expected = dict(Counter(path for path, _, _ in produced))
    router: Router | None = None
    try:
        worker = Worker(local, tmp_path, metrics=True)
        workers.append(worker)
        client = redis.Redis.from_url(private.url)
        wait_until(
            lambda: _counts(snapshot(client, local, GOAL)) == expected,
            timeout=60,
            what="every outcome in the snapshot",
        )
        before = snapshot(client, local, GOAL)
        assert before is not None
        router = Router(
            GOAL,
            ["a", "b"],
            connection=ConnectionOptions(
                redis_url=private.url, redis_key_prefix=local.redis_key_prefix
            ),
            event_sink=InMemorySink(),
            seed=19,
        ).start(wait=10)
        assert router.get_policy().version is not None
        # Wait until the worker has nothing left to write (its reorder buffer drained), so
        # that only the marker can tell it that Redis lost its data.
        idle: list[float] = []

        def quiet() -> bool:
            idle.append(worker.metrics()["outroute_posterior_states_written_total"])
            time.sleep(0.5)
            return len(idle) >= 3 and len(set(idle[-3:])) == 1

        wait_until(quiet, timeout=60, what="the worker to have nothing left to write")

        # Fault: Redis restarts and has nothing; no outcome arrives from now on.
        private.stop()
        private = start_redis_server(port=port)
        client = redis.Redis.from_url(private.url)
        emptied = time.monotonic()
        assert snapshot(client, local, GOAL) is None
        reasons: Counter[str] = Counter()

        def restored() -> bool:
            for _ in range(50):
                reasons[router.decide().reason] += 1
            return _counts(snapshot(client, local, GOAL)) == expected

        wait_until(restored, timeout=60, what="the snapshot back after Redis restarted empty")
        print(f"\nsnapshot back {time.monotonic() - emptied:.2f} s after Redis restarted empty")
        after = snapshot(client, local, GOAL)
        assert after is not None
        assert after.version > before.version
        for name, stats in before.paths.items():
            assert after.paths[name].alpha == pytest.approx(stats.alpha, rel=1e-9)
            assert after.paths[name].beta == pytest.approx(stats.beta, rel=1e-9)
        assert reasons["cold_start"] == 0, reasons
        assert sum(reasons.values()) >= 50
        assert worker.metrics()["outroute_redis_rewrites_total"] == 1
        assert "persists nothing" in worker.log()

        # Fault, worse: the worker dies and Redis is emptied again before a new one starts.
        # The new worker reads the goal back from the posterior-state topic.
        worker.kill()
        private.stop()
        private = start_redis_server(port=port)
        client = redis.Redis.from_url(private.url)
        emptied = time.monotonic()
        second = Worker(local, tmp_path, metrics=True)
        workers.append(second)
        wait_until(
            lambda: _counts(snapshot(client, local, GOAL)) == expected,
            timeout=60,
            what="the snapshot restored by a new worker",
        )
        print(f"a new worker restored it {time.monotonic() - emptied:.2f} s after its start")
        more = produce(local, GOAL, plan[:500], seed=20)
        expected = dict(Counter(path for path, _, _ in produced + more))
        wait_until(
            lambda: _counts(snapshot(client, local, GOAL)) == expected,
            timeout=60,
            what="the later outcomes counted on top of the restored ones",
        )
        assert second.metrics()["outroute_posterior_partitions_waiting"] == 0
    finally:
        if router is not None:
            router.close()
        private.stop()


def test_an_unreadable_saved_state_pauses_its_partition_until_it_is_replaced(
    settings: WorkerSettings, topics: Topics, workers: list[Worker], tmp_path: Path
) -> None:
    producer = Producer(settings.kafka_client_config())
    producer.produce(topics.posterior_state.name, b"{not json", b"broken", partition=0)
    assert producer.flush(10) == 0
    goals = [f"g{i}" for i in range(8)]  # some of them travel in partition 0
    expected = {}
    for i, goal in enumerate(goals):
        produced = produce(settings, goal, [("a", 0.8), ("b", 0.6)] * 50, seed=i)
        expected[goal] = dict(Counter(path for path, _, _ in produced))
    worker = Worker(settings, tmp_path, metrics=True)
    workers.append(worker)
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())

    def waiting() -> float:
        with contextlib.suppress(httpx.HTTPError):  # its web server is not up yet
            return worker.metrics()["outroute_posterior_partitions_waiting"]
        return 0.0

    wait_until(lambda: waiting() == 1, timeout=60, what="partition 0 paused")
    assert "goal 'broken': the saved state does not parse" in worker.log()
    # The other partitions go on meanwhile.
    wait_until(
        lambda: any(_counts(snapshot(client, settings, g)) == expected[g] for g in goals),
        timeout=60,
        what="the goals of the other partitions",
    )
    # A tombstone (or a valid state) for the goal lets the partition go on, with nothing lost.
    producer.produce(topics.posterior_state.name, None, b"broken", partition=0)
    assert producer.flush(10) == 0
    wait_until(lambda: waiting() == 0, timeout=60, what="partition 0 restored")
    wait_until(
        lambda: all(_counts(snapshot(client, settings, g)) == expected[g] for g in goals),
        timeout=60,
        what="every goal's outcomes",
    )
    assert worker.metrics()["outroute_posterior_restore_failures_total"] >= 1


def test_goal_states_an_earlier_version_kept_in_redis_move_to_the_state_topic(
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    # An earlier version kept each goal's state only under <redis prefix>:posterior:<topic
    # prefix>:<goal>; a worker of this version must carry it over, not start from nothing.
    state = GoalState("carried", PosteriorConfig())
    at = time.time() - 60
    for i in range(40):
        moment = datetime.fromtimestamp(at + i, UTC)
        state.apply(
            PathDelta(
                goal="carried",
                path="a" if i % 4 else "b",
                source_partition=0,
                position=JoinPosition(decisions=i + 1, outcomes=i + 1, expired=i),
                count=1,
                successes=1.0,
                failures=0.0,
                first_event_at=moment,
                last_event_at=moment,
                d_offsets=(i,),
                o_offsets=(i,),
                rewards=(1.0,),
                event_times=(at + i,),
                costs=(None,),
                latencies=(None,),
            ),
            wall=at + i,
        )
    legacy = f"{settings.redis_key_prefix}:posterior:{settings.topic_prefix}:carried"
    redis_client.set(legacy, to_json(state.to_json()))
    worker = Worker(settings, tmp_path)
    workers.append(worker)
    wait_until(
        lambda: _counts(snapshot(redis_client, settings, "carried")) == {"a": 30, "b": 10},
        timeout=60,
        what="the carried-over goal's snapshot",
    )
    wait_until(lambda: not redis_client.exists(legacy), timeout=30, what="the old key deleted")
    records = read_topic(
        settings.bootstrap_servers,
        topics.posterior_state.name,
        until=lambda messages: any(m.key() == b"carried" for m in messages),
    )
    [*_, last] = [m.value() for m in records if m.key() == b"carried"]
    assert GoalState.from_json(from_json(last), PosteriorConfig()).paths["a"].n == 30
    assert "goal states from Redis keys of an earlier version" in worker.log()
