"""SDK benchmark: decide() latency, caller-side cost of decide + report, sustained emission.

    .venv/bin/python bench/sdk.py            # about a minute on 2 cores
    .venv/bin/python bench/sdk.py --quick    # fewer iterations, for a smoke run

Starts a fresh embedded broker (its cost grows with stored batches), and measures, in the same
run, baselines to compare against:
  * an HTTP round trip per decision to a server on loopback (what a router that asks a service
    per decision pays at the very least: no network, no server-side work);
  * Thompson sampling with random.betavariate per path (no precomputed tables);
  * raw confluent-kafka produce() of pre-encoded events (the emission floor);
and how long a snapshot written to Redis takes to reach a running router, announced on the
update channel or found by the poll. Uses the Redis at OUTROUTE_REDIS_URL, or starts one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import redis
from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from producer_sdk import CacheOptions, ConnectionOptions, EmitterOptions, Router
from producer_sdk.testing import NullSink, StaticSnapshotSource
from schemas import PARTITIONER, PathStats, PolicySnapshot, RedisKeys
from schemas.settings import DEFAULT_REDIS_URL
from stream_workers import EmbeddedBroker, WorkerSettings, create_topics, find_or_start_redis
from stream_workers.local.stack import free_port


def snapshot(paths: list[str]) -> PolicySnapshot:
    rng = random.Random(1)
    stats = {}
    for p in paths:
        n = rng.randint(200, 2000)
        rate = rng.uniform(0.6, 0.97)
        stats[p] = PathStats(
            alpha=1 + n * rate,
            beta=1 + n * (1 - rate),
            n=n,
            recent_n=50,
            recent_successes=50 * rate,
            mean_cost_usd=rng.uniform(0.001, 0.01),
            mean_latency_ms=rng.uniform(200, 2000),
        )
    return PolicySnapshot(goal="bench", version=1, generated_at=datetime.now(UTC), paths=stats)


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    samples_ns.sort()
    n = len(samples_ns)
    return {
        "p50": samples_ns[n // 2] / 1000,
        "p99": samples_ns[int(n * 0.99)] / 1000,
        "p99.9": samples_ns[int(n * 0.999)] / 1000,
        "mean": statistics.fmean(samples_ns) / 1000,
        "max": samples_ns[-1] / 1000,
    }


def time_calls(fn: Callable[[], Any], n: int) -> dict[str, float]:
    for _ in range(min(n // 10, 5000)):  # warm up
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t = clock()
        fn()
        samples.append(clock() - t)
    return percentiles(samples)


def snapshot_pickup(redis_url: str, samples: int) -> dict[str, dict[str, float]]:
    """Milliseconds from writing a new snapshot to Redis until a running router uses it:
    announced on the update channel (how the worker publishes), and written without a word
    (found by the 1 s poll, the safety net)."""
    keys = RedisKeys(f"pickup{random.Random().randrange(10**9)}")
    paths = [f"p{i}" for i in range(10)]
    client = redis.Redis.from_url(redis_url)
    router = Router(
        "bench",
        paths,
        event_sink=NullSink(),
        connection=ConnectionOptions(redis_url=redis_url, redis_key_prefix=keys.prefix),
        seed=7,
    )
    figures: dict[str, dict[str, float]] = {}
    version = 1
    phase = random.Random(8)
    try:
        client.set(keys.policy("bench"), snapshot(paths).model_dump_json())
        router.start(wait=5)
        for how, count in (("published", samples), ("polled", max(samples // 5, 5))):
            waited: list[int] = []
            for _ in range(count):
                version += 1
                if how == "polled":  # at a random point of the poll's cycle, as writes come
                    time.sleep(phase.uniform(0, 1))
                body = snapshot(paths).model_copy(update={"version": version}).model_dump_json()
                written = time.perf_counter_ns()
                client.set(keys.policy("bench"), body)
                if how == "published":
                    client.publish(keys.policy_changes, "bench")
                while router.get_policy().version != version:
                    if time.perf_counter_ns() - written > 10 * 10**9:
                        raise RuntimeError(f"version {version} not picked up within 10 s ({how})")
                    time.sleep(0.0005)
                waited.append(time.perf_counter_ns() - written)
            figures[how] = {k: v / 1000 for k, v in percentiles(waited).items()}  # us -> ms
    finally:
        router.close()
        client.delete(keys.policy("bench"))
        client.close()
    return figures


def naive_thompson(snap: PolicySnapshot, rng: random.Random) -> Callable[[], str]:
    arms = [(name, s.alpha, s.beta) for name, s in snap.paths.items()]

    def decide() -> str:
        return max(arms, key=lambda a: rng.betavariate(a[1], a[2]))[0]

    return decide


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a warm SDK client
    disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms to every response

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        body = b'{"path":"p0","reason":"exploit"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def http_round_trip(n: int) -> dict[str, float]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/decide"
    with httpx.Client() as client:
        result = time_calls(lambda: client.post(url, json={"goal": "bench"}).json(), n)
    server.shutdown()
    server.server_close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    n_lat = int(200_000 * scale)
    n_rate = int(200_000 * scale)
    console = Console()
    rows: list[tuple[str, str, dict[str, float]]] = []
    results: dict[str, Any] = {}

    with EmbeddedBroker() as broker:
        settings = WorkerSettings(
            bootstrap_servers=broker.bootstrap_servers, topic_prefix="bench", partitions=4
        )
        create_topics(settings)

        rows.append(
            (
                "baseline",
                "HTTP round trip per decision (loopback)",
                http_round_trip(int(5000 * max(scale, 0.2))),
            )
        )
        for count in (2, 10, 50):
            paths = [f"p{i}" for i in range(count)]
            snap = snapshot(paths)
            naive = naive_thompson(snap, random.Random(2))
            rows.append(
                ("baseline", f"betavariate Thompson, {count} paths", time_calls(naive, n_lat))
            )
            router = Router(
                "bench",
                paths,
                event_sink=NullSink(),
                snapshot_source=StaticSnapshotSource(snap),
                seed=3,
            ).start()
            rows.append(
                (
                    "outroute",
                    f"decide(), {count} paths, events discarded",
                    time_calls(router.decide, n_lat),
                )
            )
            router.close()

        paths = [f"p{i}" for i in range(10)]
        router = Router(
            "bench",
            paths,
            connection=ConnectionOptions(
                bootstrap_servers=broker.bootstrap_servers, topic_prefix="bench"
            ),
            snapshot_source=StaticSnapshotSource(snapshot(paths)),
            seed=4,
        ).start()
        rows.append(
            ("outroute", "decide(), 10 paths, emitted to Kafka", time_calls(router.decide, n_lat))
        )

        def decide_report() -> None:
            router.decide().report(True, latency_ms=812.0, cost_usd=0.002)

        rows.append(
            (
                "outroute",
                "decide() + report(), 10 paths, to Kafka",
                time_calls(decide_report, n_lat),
            )
        )
        router.flush(60)

        # While Kafka is away: the same calls buffer in librdkafka's queue and must not block.
        away = Router(
            "bench",
            paths,
            connection=ConnectionOptions(
                bootstrap_servers=f"127.0.0.1:{free_port()}", topic_prefix="bench"
            ),
            snapshot_source=StaticSnapshotSource(snapshot(paths)),
            emitter=EmitterOptions(max_queued_events=2 * (n_lat + 5000)),  # with the warm-up
            seed=5,
        ).start()

        def decide_report_away() -> None:
            away.decide().report(True, latency_ms=812.0, cost_usd=0.002)

        rows.append(
            (
                "outroute",
                "decide() + report(), 10 paths, Kafka down",
                time_calls(decide_report_away, n_lat),
            )
        )
        results["kafka_down_dropped"] = away.stats().dropped
        away.close(timeout=0)

        # While Redis is away: no snapshot, every decision falls back to the first path.
        blind = Router(
            "bench",
            paths,
            event_sink=NullSink(),
            connection=ConnectionOptions(redis_url=f"redis://127.0.0.1:{free_port()}/0"),
            cache=CacheOptions(init_wait=0.2),
            seed=6,
        )
        blind.decide()  # the one bounded wait for a first snapshot
        rows.append(
            (
                "outroute",
                "decide(), 10 paths, Redis down (fallback)",
                time_calls(blind.decide, n_lat),
            )
        )
        blind.close()

        # Sustained: a tight loop of decide + report; events/s = 2 per iteration.
        before = router.stats()
        started = time.perf_counter()
        for _ in range(n_rate):
            router.decide().report(True, latency_ms=812.0)
        caller_seconds = time.perf_counter() - started
        pending = router.flush(120)
        drained_seconds = time.perf_counter() - started
        after = router.stats()
        emitted = after.emitted - before.emitted
        delivered = after.delivered - before.delivered
        results["sustained"] = {
            "events": 2 * n_rate,
            "caller_events_per_s": 2 * n_rate / caller_seconds,
            "delivered_events_per_s": delivered / drained_seconds,
            "emitted": emitted,
            "delivered": delivered,
            "dropped": after.dropped - before.dropped,
            "pending_after_flush": pending,
        }
        router.close()

        # Raw producer floor: the same number of pre-encoded events straight into produce().
        raw = Producer(
            {
                "bootstrap.servers": broker.bootstrap_servers,
                "partitioner": PARTITIONER,
                "linger.ms": 5,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
            }
        )
        value = b'{"schema_version":1,"event_id":"x.o","trace_id":"x","success":true}'
        started = time.perf_counter()
        for i in range(2 * n_rate):
            raw.produce("bench.outcomes", value, str(i).encode())
            if i % 1024 == 0:
                raw.poll(0)
        raw_caller = time.perf_counter() - started
        raw.flush(120)
        results["raw_produce_events_per_s"] = 2 * n_rate / raw_caller

    local_redis = find_or_start_redis(os.environ.get("OUTROUTE_REDIS_URL", DEFAULT_REDIS_URL))
    try:
        results["snapshot_pickup_ms"] = snapshot_pickup(local_redis.url, 20 if args.quick else 200)
    finally:
        local_redis.stop()  # only a server started here

    table = Table(title="SDK latency per call (us), 2-core machine")
    for col in ("", "what", "p50", "p99", "p99.9", "mean"):
        table.add_column(col, justify="right" if col in ("p50", "p99", "p99.9", "mean") else "left")
    for kind, what, stats in rows:
        table.add_row(kind, what, *(f"{stats[k]:.2f}" for k in ("p50", "p99", "p99.9", "mean")))
        results[what] = stats
    console.print(table)

    sustained = results["sustained"]
    rates = Table(title="Sustained emission into the embedded broker")
    rates.add_column("what")
    rates.add_column("events/s", justify="right")
    rates.add_row("decide()+report() loop, caller side", f"{sustained['caller_events_per_s']:,.0f}")
    rates.add_row(
        "... delivered (until flush returned)", f"{sustained['delivered_events_per_s']:,.0f}"
    )
    rates.add_row(
        "raw produce() of pre-encoded events", f"{results['raw_produce_events_per_s']:,.0f}"
    )
    console.print(rates)
    console.print(
        f"emitted {sustained['emitted']:,}, delivered {sustained['delivered']:,}, "
        f"dropped {sustained['dropped']:,}, pending after flush {sustained['pending_after_flush']}"
    )
    console.print(f"with Kafka down: dropped {results['kafka_down_dropped']:,} (buffered the rest)")
    pickup = Table(title="A new snapshot written to Redis, until a router uses it (ms)")
    for col in ("how", "p50", "p99", "max"):
        pickup.add_column(col, justify="left" if col == "how" else "right")
    for how, what in (
        ("published", "announced on the update channel"),
        ("polled", "not announced: the 1 s poll"),
    ):
        f = results["snapshot_pickup_ms"][how]
        pickup.add_row(what, f"{f['p50']:.1f}", f"{f['p99']:.1f}", f"{f['max']:.1f}")
    console.print(pickup)
    ten = results["decide(), 10 paths, events discarded"]
    http = results["HTTP round trip per decision (loopback)"]
    console.print(
        f"decide() p50 with 10 paths is {http['p50'] / ten['p50']:,.0f}x faster than one "
        "loopback HTTP round trip"
    )
    if args.json:
        print(json.dumps(results, indent=2))
    ok = (
        sustained["delivered"] == sustained["emitted"]
        and sustained["pending_after_flush"] == 0
        and results["kafka_down_dropped"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
