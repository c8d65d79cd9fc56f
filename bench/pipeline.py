"""Pipeline benchmark: join throughput of one `outroute worker`, next to baselines measured in
the same run on the same fresh broker.

    .venv/bin/python bench/pipeline.py                 # 100k pairs; a few minutes on 2 cores
    .venv/bin/python bench/pipeline.py --pairs 20000   # quicker
    .venv/bin/python bench/pipeline.py --freshness     # outcome -> snapshot at steady rates
    .venv/bin/python bench/pipeline.py --history --pairs 50000   # the CPU the history adds
    .venv/bin/python bench/pipeline.py --broker kafka  # on Apache Kafka (needs a JDK, Maven)
    .venv/bin/python bench/pipeline.py --broker embedded,kafka   # a column per broker

Baselines:
  * raw consume: a plain aiokafka consumer reading the same preloaded topics (the ceiling);
  * a straightforward Faust Table join (bench/faust_table_join.py) on its own preloaded topics.
Rates are input events (decisions + outcomes) per second, from the first output to the last
plus one flush tick (the first output leaves a tick after processing starts), so start-up
(group joins) is excluded; start-up is reported separately. Each broker kind gets a fresh broker
(one per rate for --freshness); Redis is the one at OUTROUTE_REDIS_URL, or a local one started
for the run.
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

from bench._stack import BROKERS, WorkerProcess, broker_of, topics_on  # noqa: E402
from bench.freshness import print_freshness  # noqa: E402
from bench.history import print_history  # noqa: E402
from schemas import PARTITIONER, DecisionEvent, OutcomeEvent, PathDelta  # noqa: E402
from schemas.settings import DEFAULT_REDIS_URL  # noqa: E402
from stream_workers import WorkerSettings, find_or_start_redis  # noqa: E402

GOALS = {"summarize": ["a", "b", "c"], "classify": ["x", "y"]}


def preload(settings: WorkerSettings, pairs: int, *, spread: bool = False) -> float:
    """Decisions and outcomes of ``pairs`` traces; returns seconds taken. The goals alternate
    and each takes its paths in turn by trace number, so ``classify`` gets only ``y``;
    ``spread`` gives each goal's paths equal shares instead."""
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
        path = paths[(i // 2 if spread else i) % len(paths)]
        trace = f"t{i}"
        decision = DecisionEvent(
            event_id=f"{trace}.d",
            trace_id=trace,
            goal=goal,
            path=path,
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
    started = time.monotonic()
    worker = WorkerProcess(settings, f"bench-{os.getpid()}-{time.time_ns()}")
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
            worker.check(deadline, time.monotonic())
            for message in consumer.consume(5000, 0.2):
                if message.error() is not None:
                    continue
                now = time.monotonic()
                first = first or now
                last = now
                joined += PathDelta.model_validate_json(message.value() or b"").count
    finally:
        consumer.close()
        worker.stop()
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


def broker_kinds(value: str) -> list[str]:
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in BROKERS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown broker kind(s) {unknown or kinds}; choose from {', '.join(BROKERS)}"
        )
    return kinds


def rates(value: str) -> list[int]:
    try:
        parsed = [int(x) for x in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {value!r}"
        ) from None
    if not parsed or min(parsed) < 2:
        raise argparse.ArgumentTypeError(f"rates must be at least 2 events/s: {value!r}")
    return parsed


def measure_throughput(
    kind: str, redis_url: str, partitions: int, pairs: int, baseline_pairs: int, console: Console
) -> dict[str, float]:
    with broker_of(kind) as broker:
        broker.start()
        ours = topics_on(broker, redis_url, "bench", partitions)
        console.print(f"{BROKERS[kind]}: preloading {pairs:,} pairs ...")
        preload(ours, pairs)
        raw = asyncio.run(raw_consume(ours, 2 * pairs))
        console.print(f"{BROKERS[kind]}: running outroute worker ...")
        result = {"raw": raw, **run_outroute_worker(ours, pairs)}
        if baseline_pairs:
            baseline = topics_on(broker, redis_url, "fbase", partitions)
            console.print(f"{BROKERS[kind]}: preloading {baseline_pairs:,} pairs for Faust ...")
            preload(baseline, baseline_pairs)
            console.print(f"{BROKERS[kind]}: running the Faust Table join ...")
            result["faust"] = run_faust_baseline(baseline, baseline_pairs)["events_per_s"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--pairs", type=int, default=100_000, help="pairs for outroute (100k)")
    parser.add_argument(
        "--baseline-pairs",
        type=int,
        default=20_000,
        help="pairs for the Faust baseline (20k; 0 leaves it out)",
    )
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (4)")
    parser.add_argument(
        "--broker",
        type=broker_kinds,
        default=["embedded"],
        metavar="KINDS",
        help="embedded, kafka, or both comma-separated (a column each); default embedded",
    )
    parser.add_argument(
        "--freshness",
        action="store_true",
        help="measure outcome -> snapshot latency at steady rates instead of throughput",
    )
    parser.add_argument(
        "--history",
        action="store_true",
        help="measure the CPU the dashboard's history adds per event (OUTROUTE_HISTORY off/on)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="worker runs per setting for --history (3)"
    )
    parser.add_argument(
        "--rates",
        type=rates,
        default=[10_000, 20_000, 30_000, 40_000, 50_000],
        help="input events/s for --freshness, comma-separated (10000,...,50000)",
    )
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="seconds per rate for --freshness (30)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    if args.pairs < 1 or args.baseline_pairs < 0 or args.partitions < 1 or args.seconds <= 0:
        parser.error("--pairs and --partitions must be positive, --baseline-pairs >= 0")
    if args.rounds < 1:
        parser.error("--rounds must be positive")
    if args.history and args.freshness:
        parser.error("--history and --freshness are separate runs: choose one")
    console = Console()
    local_redis = find_or_start_redis(os.environ.get("OUTROUTE_REDIS_URL", DEFAULT_REDIS_URL))
    try:
        figures: object
        if args.freshness:
            figures = print_freshness(args, local_redis.url, console)
        elif args.history:
            figures = print_history(args, local_redis.url, local_redis.pid, GOALS, console)
        else:
            figures = print_throughput(args, local_redis.url, console)
        if args.json is not None:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        local_redis.stop()  # only a server started here
    return 0


def print_throughput(
    args: argparse.Namespace, redis_url: str, console: Console
) -> dict[str, dict[str, float]]:
    """The throughput table; returns {broker: figures}."""
    results = {
        kind: measure_throughput(
            kind, redis_url, args.partitions, args.pairs, args.baseline_pairs, console
        )
        for kind in args.broker
    }
    table = Table(title=f"Join throughput, {args.partitions} partitions, input events/s")
    table.add_column("what")
    for kind in args.broker:
        table.add_column(BROKERS[kind], justify="right")
    table.add_row(
        "raw aiokafka consume of the same topics", *(f"{r['raw']:,.0f}" for r in results.values())
    )
    table.add_row(
        f"outroute worker, {args.pairs:,} pairs",
        *(f"{r['events_per_s']:,.0f}" for r in results.values()),
    )
    table.add_row(
        "outroute / raw consume", *(f"{r['events_per_s'] / r['raw']:.1%}" for r in results.values())
    )
    if args.baseline_pairs:
        table.add_row(
            f"straightforward Faust Table join, {args.baseline_pairs:,} pairs",
            *(f"{r['faust']:,.0f}" for r in results.values()),
        )
        table.add_row(
            "outroute / Faust join",
            *(f"{r['events_per_s'] / r['faust']:.1f}x" for r in results.values()),
        )
    table.add_row(
        "outroute: first output after start (s)",
        *(f"{r['startup_s']:.1f}" for r in results.values()),
    )
    console.print(table)
    return results


if __name__ == "__main__":
    sys.exit(main())
