"""Freshness: outcome produced -> counted in the goal's Redis snapshot, at steady input rates
(``bench/pipeline.py --freshness``)."""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime

from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from bench._stack import BROKERS, WorkerProcess, broker_of, topics_on
from schemas import PARTITIONER
from stream_workers import WorkerSettings

__all__ = ["freshness", "measure_freshness", "print_freshness"]


def freshness(settings: WorkerSettings, pairs_per_s: int, seconds: float) -> dict[str, float]:
    """Outcome produced -> the goal's snapshot in Redis counts it, while producing steadily.

    The snapshot's total n is sampled on every update notification; the k-th outcome produced
    is taken as visible when a snapshot first counts k outcomes (partitions interleave, so this
    matches counts, not identities)."""
    import threading

    import redis

    keys_prefix = f"fresh-{os.getpid()}-{time.time_ns()}"
    worker = WorkerProcess(settings, keys_prefix)
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
        worker.check(deadline, time.monotonic())
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
    worker.stop()
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


def measure_freshness(
    kind: str, redis_url: str, partitions: int, rate: int, seconds: float
) -> dict[str, float]:
    with broker_of(kind) as broker:
        broker.start()
        return freshness(topics_on(broker, redis_url, "fresh", partitions), rate // 2, seconds)


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
