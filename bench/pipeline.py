"""Pipeline benchmark: join throughput of one `outroute worker`, next to baselines measured in
the same run on a fresh embedded broker.

    .venv/bin/python bench/pipeline.py                 # 100k pairs; a few minutes on 2 cores
    .venv/bin/python bench/pipeline.py --pairs 20000   # quicker
    .venv/bin/python bench/pipeline.py --freshness     # outcome -> snapshot at steady rates

Baselines:
  * raw consume: a plain aiokafka consumer reading the same preloaded topics (the ceiling);
  * a straightforward Faust Table join (bench/faust_table_join.py) on its own preloaded topics.
Rates are input events (decisions + outcomes) per second, from the first output to the last
plus one flush tick (the first output leaves a tick after processing starts), so start-up
(group joins) is excluded; start-up is reported separately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from schemas import PARTITIONER, DecisionEvent, OutcomeEvent, PathDelta  # noqa: E402
from stream_workers import EmbeddedBroker, WorkerSettings, create_topics  # noqa: E402

GOALS = {"summarize": ["a", "b", "c"], "classify": ["x", "y"]}


def preload(settings: WorkerSettings, pairs: int) -> float:
    """Decisions and outcomes of ``pairs`` traces; returns seconds taken."""
    topics = settings.topics()
    producer = Producer(
        {
            **settings.kafka_client_config(),
            "partitioner": PARTITIONER,
            "linger.ms": 5,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    goals = list(GOALS)
    started = time.perf_counter()
    for i in range(pairs):
        goal = goals[i % 2]
        paths = GOALS[goal]
        trace = f"t{i}"
        decision = DecisionEvent(
            event_id=f"{trace}.d",
            trace_id=trace,
            goal=goal,
            path=paths[i % len(paths)],
            candidates=tuple(paths),
            reason="exploit",
            decided_at=t0 + timedelta(milliseconds=i),
        )
        outcome = OutcomeEvent(
            event_id=f"{trace}.o",
            trace_id=trace,
            success=i % 5 != 0,
            latency_ms=100.0 + i % 700,
            occurred_at=t0 + timedelta(milliseconds=i + 40),
        )
        key = trace.encode()
        producer.produce(topics.decisions.name, decision.model_dump_json().encode(), key)
        producer.produce(topics.outcomes.name, outcome.model_dump_json().encode(), key)
        if i % 2000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0
    return time.perf_counter() - started


async def raw_consume(settings: WorkerSettings, expected: int) -> float:
    topics = settings.topics()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    parts = [
        TopicPartition(topic, p)
        for topic in (topics.decisions.name, topics.outcomes.name)
        for p in range(settings.partitions)
    ]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    seen = 0
    started = time.perf_counter()
    while seen < expected:
        batch = await consumer.getmany(timeout_ms=100, max_records=50_000)
        seen += sum(len(messages) for messages in batch.values())
    elapsed = time.perf_counter() - started
    await consumer.stop()
    return expected / elapsed


def run_outroute_worker(settings: WorkerSettings, pairs: int) -> dict[str, float]:
    env = {
        **os.environ,
        "OUTROUTE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OUTROUTE_TOPIC_PREFIX": settings.topic_prefix,
        "OUTROUTE_REDIS_KEY_PREFIX": f"bench-{os.getpid()}-{time.time_ns()}",
    }
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115
    started = time.monotonic()
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "outroute"), "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    topic = settings.topics().path_deltas
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "bench",
            "enable.auto.commit": False,
        }
    )
    consumer.assign(
        [CTopicPartition(topic.name, p, OFFSET_BEGINNING) for p in range(topic.partitions)]
    )
    joined = 0
    first = last = None
    deadline = time.monotonic() + 600
    try:
        while joined < pairs:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker failed or timed out; log: {log.name}")
            for message in consumer.consume(5000, 0.2):
                if message.error() is not None:
                    continue
                now = time.monotonic()
                first = first or now
                last = now
                joined += PathDelta.model_validate_json(message.value()).count
    finally:
        consumer.close()
        worker.terminate()
        worker.wait(60)
    assert first is not None
    assert last is not None
    # The first delta leaves one flush tick (0.1 s) after processing starts: count that tick.
    return {
        "events_per_s": 2 * pairs / (last - first + 0.1),
        "startup_s": first - started,
        "wall_s": last - started,
    }


def run_faust_baseline(settings: WorkerSettings, pairs: int) -> dict[str, float]:
    progress = Path(tempfile.mkdtemp()) / "progress.json"
    env = {
        **os.environ,
        "BENCH_BOOTSTRAP": settings.bootstrap_servers,
        "BENCH_PREFIX": settings.topic_prefix,
        "BENCH_PARTITIONS": str(settings.partitions),
        "BENCH_PROGRESS": str(progress),
    }
    workdir = tempfile.mkdtemp()
    started = time.monotonic()
    worker = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "faust_table_join.py"),
            "worker",
            "--without-web",
            "-l",
            "warn",
        ],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 900
    state: dict[str, float] = {}
    try:
        while state.get("joined", 0) < pairs:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Faust baseline failed or timed out")
            time.sleep(0.5)
            if progress.exists():
                try:
                    state = json.loads(progress.read_text())
                except ValueError:
                    continue  # caught mid-write
    finally:
        worker.terminate()
        worker.wait(60)
    return {
        "events_per_s": 2 * pairs / (state["at"] - state["first"]),
        "startup_s": state["first"] - (time.time() - (time.monotonic() - started)),
    }


def freshness(settings: WorkerSettings, pairs_per_s: int, seconds: float) -> dict[str, float]:
    """Outcome produced -> the goal's snapshot in Redis counts it, while producing steadily.

    The snapshot's total n is sampled on every update notification; the k-th outcome produced
    is taken as visible when a snapshot first counts k outcomes (partitions interleave, so this
    matches counts, not identities)."""
    import threading

    import redis

    keys_prefix = f"fresh-{os.getpid()}-{time.time_ns()}"
    env = {
        **os.environ,
        "OUTROUTE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OUTROUTE_TOPIC_PREFIX": settings.topic_prefix,
        "OUTROUTE_REDIS_KEY_PREFIX": keys_prefix,
    }
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "outroute"), "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis()
    key = f"{keys_prefix}:policy:fresh"
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{keys_prefix}:policy-updates")
    topics = settings.topics()
    # linger 50 ms: the embedded broker's fetch cost grows with the number of stored record
    # batches, and at 5 ms a plain consumer fell minutes behind 10k events/s within a minute
    # (bench/broker_lag.py). The linger counts against the latencies measured here.
    producer = Producer(
        {**settings.kafka_client_config(), "partitioner": PARTITIONER, "linger.ms": 50}
    )

    def send(i: int) -> None:
        trace = f"f{i}"
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        decision = (
            f'{{"event_id":"{trace}.d","trace_id":"{trace}","goal":"fresh","path":"p{i % 3}",'
            f'"candidates":["p0","p1","p2"],"reason":"exploit","decided_at":"{now}"}}'
        )
        outcome = (
            f'{{"event_id":"{trace}.o","trace_id":"{trace}","success":true,"occurred_at":"{now}"}}'
        )
        producer.produce(topics.decisions.name, decision.encode(), trace.encode())
        producer.produce(topics.outcomes.name, outcome.encode(), trace.encode())

    send(0)  # warm-up: wait until the pipeline answers at all
    producer.flush(10)
    deadline = time.monotonic() + 120
    while client.get(key) is None:
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker failed or timed out; log: {log.name}")
        time.sleep(0.05)
    total = int(pairs_per_s * seconds)
    produced_at: list[float] = []

    def produce_steadily() -> None:
        started = time.monotonic()
        for i in range(1, total + 1):
            ahead = (i - 1) / pairs_per_s - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            send(i)
            produced_at.append(time.time())
            if i % 500 == 0:
                producer.poll(0)
        producer.flush(30)

    thread = threading.Thread(target=produce_steadily, name="bench-producer")
    thread.start()
    seen: list[tuple[float, int]] = []
    deadline = time.monotonic() + seconds + 60
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.05)
        if message is None:
            continue
        raw = client.get(key)
        if raw is None:
            continue
        at = time.time()
        count = sum(p["n"] for p in json.loads(raw)["paths"].values()) - 1  # minus warm-up
        seen.append((at, count))
        if count >= total:
            break
    thread.join()
    worker.terminate()
    worker.wait(60)
    latencies = []
    j = 0
    for k, t_produced in enumerate(produced_at, start=1):
        while j < len(seen) and seen[j][1] < k:
            j += 1
        if j == len(seen):
            raise RuntimeError(f"outcome {k} never showed up in a snapshot")
        latencies.append(seen[j][0] - t_produced)
    # Kept up: the latencies of the last quarter of the run are not above those of the first
    # (a pipeline below its throughput has a steady latency; above it, a growing one).
    quarter = max(1, len(latencies) // 4)
    first, last = sorted(latencies[:quarter]), sorted(latencies[-quarter:])
    latencies.sort()
    return {
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "max_ms": 1000 * latencies[-1],
        "events_per_s": 2 * pairs_per_s,
        "produced_per_s": 2 * total / (produced_at[-1] - produced_at[0]),
        "first_p99_ms": 1000 * first[int(len(first) * 0.99)],
        "last_p99_ms": 1000 * last[int(len(last) * 0.99)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000, help="pairs for outroute (100k)")
    parser.add_argument(
        "--baseline-pairs", type=int, default=20_000, help="pairs for the Faust baseline (20k)"
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--freshness",
        action="store_true",
        help="measure outcome -> snapshot latency at steady rates instead of throughput",
    )
    parser.add_argument(
        "--rates",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[10_000, 20_000, 30_000, 40_000, 50_000],
        help="input events/s for --freshness, comma-separated (10000,...,50000)",
    )
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="seconds per rate for --freshness (30)"
    )
    args = parser.parse_args()
    console = Console()
    if args.freshness:
        table = Table(title="Freshness: outcome produced -> counted in the Redis snapshot")
        for col in (
            "input events/s",
            "produced/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p99 first/last quarter",
        ):
            table.add_column(col, justify="right")
        for rate in args.rates:
            with EmbeddedBroker() as broker:
                fresh = WorkerSettings(
                    bootstrap_servers=broker.bootstrap_servers,
                    topic_prefix="fresh",
                    partitions=args.partitions,
                )
                create_topics(fresh)
                console.print(f"steady {rate:,} events/s for {args.seconds:.0f} s ...")
                r = freshness(fresh, rate // 2, args.seconds)
            table.add_row(
                f"{r['events_per_s']:,.0f}",
                f"{r['produced_per_s']:,.0f}",
                f"{r['p50_ms']:.0f}",
                f"{r['p99_ms']:.0f}",
                f"{r['max_ms']:.0f}",
                f"{r['first_p99_ms']:.0f} / {r['last_p99_ms']:.0f}",
            )
        console.print(table)
        return 0
    with EmbeddedBroker() as broker:
        ours = WorkerSettings(
            bootstrap_servers=broker.bootstrap_servers,
            topic_prefix="bench",
            partitions=args.partitions,
        )
        create_topics(ours)
        console.print(f"preloading {args.pairs:,} pairs ...")
        preload(ours, args.pairs)
        raw = asyncio.run(raw_consume(ours, 2 * args.pairs))
        console.print("running outroute worker ...")
        worker = run_outroute_worker(ours, args.pairs)

        baseline = WorkerSettings(
            bootstrap_servers=broker.bootstrap_servers,
            topic_prefix="fbase",
            partitions=args.partitions,
        )
        create_topics(baseline)
        console.print(f"preloading {args.baseline_pairs:,} pairs for the Faust baseline ...")
        preload(baseline, args.baseline_pairs)
        console.print("running the Faust Table join ...")
        faust = run_faust_baseline(baseline, args.baseline_pairs)

    table = Table(title=f"Join throughput, {args.partitions} partitions, 2-core machine")
    table.add_column("what")
    table.add_column("input events/s", justify="right")
    table.add_column("vs outroute", justify="right")
    ours_rate = worker["events_per_s"]
    table.add_row(
        "raw aiokafka consume of the same topics", f"{raw:,.0f}", f"{ours_rate / raw:.1%}"
    )
    table.add_row(f"outroute worker, {args.pairs:,} pairs", f"{ours_rate:,.0f}", "1.00x")
    table.add_row(
        f"straightforward Faust Table join, {args.baseline_pairs:,} pairs",
        f"{faust['events_per_s']:,.0f}",
        f"{ours_rate / faust['events_per_s']:.1f}x",
    )
    console.print(table)
    console.print(
        f"outroute worker: first output {worker['startup_s']:.1f} s after start, "
        f"all joined after {worker['wall_s']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
