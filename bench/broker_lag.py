"""Broker-only lag: produce at a steady rate, consume with a plain aiokafka consumer, and print
the produce -> consume lag per sixth of the run. No outroute code is involved: this is the
baseline that shows what the embedded broker itself does at a given producer linger.

    .venv/bin/python bench/broker_lag.py --rate 10000 --seconds 60 --linger-ms 5
    .venv/bin/python bench/broker_lag.py --rate 10000 --seconds 60 --linger-ms 50

Rates are events/s, split evenly over the decisions and outcomes topics (4 partitions each).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_workers import EmbeddedBroker, WorkerSettings, create_topics  # noqa: E402


async def consume(topics: list[str], bootstrap: str, expected: int, seconds: float) -> list[float]:
    """Lags (s) of every 1000th message read, until ``expected`` messages or the deadline."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=10,
        group_id=None,
    )
    await consumer.start()
    read, lags = 0, []
    deadline = time.monotonic() + seconds + 60
    try:
        while read < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=50, max_records=20_000)
            now = time.time()
            for messages in batch.values():
                for message in messages:
                    read += 1
                    if read % 1000 == 0:
                        lags.append(now - float(message.value))
    finally:
        await consumer.stop()
    if read < expected:
        print(f"read {read:,} of {expected:,} messages before the deadline")
    return lags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000, help="events/s (10000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="run length (60)")
    parser.add_argument("--linger-ms", type=float, default=5.0, help="producer linger (5)")
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        settings = WorkerSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix="lag")
        create_topics(settings)
        names = [settings.topics().decisions.name, settings.topics().outcomes.name]
        producer = Producer(
            {"bootstrap.servers": broker.bootstrap_servers, "linger.ms": args.linger_ms}
        )
        total = int(args.rate * args.seconds)

        def produce() -> None:
            started = time.monotonic()
            for i in range(total):
                ahead = i / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                while True:
                    try:
                        producer.produce(
                            names[i % 2], repr(time.time()).encode(), f"k{i // 2}".encode()
                        )
                        break
                    except BufferError:  # the broker is not keeping up: wait for deliveries
                        producer.poll(0.05)
                if i % 1000 == 0:
                    producer.poll(0)
            producer.flush(30)

        thread = threading.Thread(target=produce, name="lag-producer")
        thread.start()
        lags = asyncio.run(consume(names, broker.bootstrap_servers, total, args.seconds))
        thread.join()
    table = Table(title=f"{args.rate:,} events/s, linger {args.linger_ms:g} ms: lag per sixth")
    table.add_column("sixth", justify="right")
    table.add_column("max lag ms", justify="right")
    sixth = max(1, len(lags) // 6)
    for k in range(6):
        part = lags[k * sixth : (k + 1) * sixth]
        if part:
            table.add_row(str(k + 1), f"{1000 * max(part):,.0f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
