"""Pipeline benchmark: join throughput of one `outroute worker`, next to baselines measured in
the same run on the same fresh broker.

    .venv/bin/python bench/pipeline.py                 # 100k pairs; a few minutes on 2 cores
    .venv/bin/python bench/pipeline.py --pairs 20000   # quicker
    .venv/bin/python bench/pipeline.py --freshness     # outcome -> snapshot at steady rates
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

from schemas import PARTITIONER, DecisionEvent, OutcomeEvent, PathDelta  # noqa: E402
from schemas.settings import DEFAULT_REDIS_URL  # noqa: E402
from stream_workers import (  # noqa: E402
    KAFKA_VERSION,
    ApacheKafka,
    EmbeddedBroker,
    WorkerSettings,
    create_topics,
    find_or_start_redis,
)

BROKERS = {"embedded": "embedded broker", "kafka": f"Apache Kafka {KAFKA_VERSION}"}

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


def worker_env(settings: WorkerSettings, key_prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "OUTROUTE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OUTROUTE_REDIS_URL": settings.redis_url.get_secret_value(),
        "OUTROUTE_TOPIC_PREFIX": settings.topic_prefix,
        "OUTROUTE_REDIS_KEY_PREFIX": key_prefix,
    }


def run_outroute_worker(settings: WorkerSettings, pairs: int) -> dict[str, float]:
    env = worker_env(settings, f"bench-{os.getpid()}-{time.time_ns()}")
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
                joined += PathDelta.model_validate_json(message.value() or b"").count
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
    env = worker_env(settings, keys_prefix)
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "outroute"), "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    key = f"{keys_prefix}:policy:fresh"
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{keys_prefix}:policy-updates")
    topics = settings.topics()
    # linger 50 ms: the embedded broker's fetch cost grows with the number of stored record
    # batches, and at 5 ms a plain consumer fell minutes behind 10k events/s within a minute
    # (bench/broker_lag.py). The linger counts against the latencies measured here; Kafka gets
    # the same, so that the brokers compare.
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


def broker_of(kind: str) -> EmbeddedBroker | ApacheKafka:
    return ApacheKafka() if kind == "kafka" else EmbeddedBroker()


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


def measure_freshness(
    kind: str, redis_url: str, partitions: int, rate: int, seconds: float
) -> dict[str, float]:
    with broker_of(kind) as broker:
        broker.start()
        settings = WorkerSettings(
            bootstrap_servers=broker.bootstrap_servers,
            redis_url=redis_url,
            topic_prefix="fresh",
            partitions=partitions,
        )
        create_topics(settings)
        return freshness(settings, rate // 2, seconds)


def measure_throughput(
    kind: str, redis_url: str, partitions: int, pairs: int, baseline_pairs: int, console: Console
) -> dict[str, float]:
    with broker_of(kind) as broker:
        broker.start()
        ours = WorkerSettings(
            bootstrap_servers=broker.bootstrap_servers,
            redis_url=redis_url,
            topic_prefix="bench",
            partitions=partitions,
        )
        create_topics(ours)
        console.print(f"{BROKERS[kind]}: preloading {pairs:,} pairs ...")
        preload(ours, pairs)
        raw = asyncio.run(raw_consume(ours, 2 * pairs))
        console.print(f"{BROKERS[kind]}: running outroute worker ...")
        result = {"raw": raw, **run_outroute_worker(ours, pairs)}
        if baseline_pairs:
            baseline = WorkerSettings(
                bootstrap_servers=broker.bootstrap_servers,
                redis_url=redis_url,
                topic_prefix="fbase",
                partitions=partitions,
            )
            create_topics(baseline)
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
    console = Console()
    local_redis = find_or_start_redis(os.environ.get("OUTROUTE_REDIS_URL", DEFAULT_REDIS_URL))
    try:
        figures: object
        if args.freshness:
            figures = print_freshness(args, local_redis.url, console)
        else:
            figures = print_throughput(args, local_redis.url, console)
        if args.json is not None:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        local_redis.stop()  # only a server started here
    return 0


def print_freshness(
    args: argparse.Namespace, redis_url: str, console: Console
) -> dict[str, dict[str, dict[str, float]]]:
    """The table of --freshness; returns {broker: {rate: figures}}."""
    figures: dict[str, dict[str, dict[str, float]]] = {kind: {} for kind in args.broker}
    table = Table(title="Freshness: outcome produced -> counted in the Redis snapshot")
    # A row per rate and broker, the brokers of a rate measured one after the other.
    table.add_column("input events/s", justify="right")
    if len(args.broker) > 1:
        table.add_column("broker")
    for col in ("produced/s", "p50 ms", "p99 ms", "max ms", "p99 first/last quarter"):
        table.add_column(col, justify="right")
    for rate in args.rates:
        for kind in args.broker:
            console.print(f"{BROKERS[kind]}: steady {rate:,} events/s for {args.seconds:.0f} s ...")
            r = measure_freshness(kind, redis_url, args.partitions, rate, args.seconds)
            figures[kind][str(rate)] = r
            table.add_row(
                f"{rate:,}",
                *([BROKERS[kind]] if len(args.broker) > 1 else []),
                f"{r['produced_per_s']:,.0f}",
                f"{r['p50_ms']:.0f}",
                f"{r['p99_ms']:.0f}",
                f"{r['max_ms']:.0f}",
                f"{r['first_p99_ms']:.0f} / {r['last_p99_ms']:.0f}",
            )
    console.print(table)
    return figures


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
