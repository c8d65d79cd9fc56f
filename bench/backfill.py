"""Backfill benchmark: rows per second validated (``--dry-run``) and validated + produced, next to
a baseline measured in the same run: producing the same pre-encoded messages with nothing else
(the ceiling of the producer and the embedded broker here).

    .venv/bin/python bench/backfill.py                 # 600k rows, JSON lines and CSV
    .venv/bin/python bench/backfill.py --rows 100000   # quicker
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_workers import EmbeddedBroker, WorkerSettings, create_topics  # noqa: E402
from stream_workers.ops.backfill import (  # noqa: E402
    backfill,
    encode_row,
    producer_config,
    read_rows,
)

FIELDS = ["trace_id", "goal", "path", "decided_at", "success", "score", "cost_usd", "latency_ms"]


def write_rows(directory: Path, rows: int, seed: int = 7) -> tuple[Path, Path]:
    """The same rows as JSON lines and as CSV: 30 days of one goal's three paths."""
    rng = random.Random(seed)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    jsonl, csv_path = directory / "rows.jsonl", directory / "rows.csv"
    with jsonl.open("w") as j, csv_path.open("w", newline="") as c:
        writer = csv.writer(c)
        writer.writerow(FIELDS)
        for i in range(rows):
            at = start + timedelta(seconds=i * 2592000 / rows)  # 30 days
            row = [
                f"hist-{i}",
                "summarize",
                f"p{i % 3}",
                at.isoformat().replace("+00:00", "Z"),
                rng.random() < 0.9,
                None if i % 4 else round(rng.random(), 3),
                round(rng.uniform(0.0001, 0.01), 6),
                round(rng.uniform(100, 2000), 1),
            ]
            j.write(json.dumps(dict(zip(FIELDS, row, strict=True))) + "\n")
            writer.writerow(
                ["" if v is None else str(v).lower() if isinstance(v, bool) else v for v in row]
            )
    return jsonl, csv_path


def raw_produce(settings: WorkerSettings, path: Path) -> float:
    """Rows/s of producing the already-encoded messages of ``path``: the ceiling."""
    messages = [encode_row(row)[:5] for _, row, _, _ in read_rows(path) if row is not None]
    topics = settings.topics()
    producer = Producer(producer_config(settings))  # the same settings as the backfill
    started = time.perf_counter()
    for key, decision, outcome, decided_ms, occurred_ms in messages:
        for topic, value, at in (
            (topics.decisions.name, decision, decided_ms),
            (topics.outcomes.name, outcome, occurred_ms),
        ):
            while True:
                try:
                    producer.produce(topic, value, key, timestamp=at)
                    break
                except BufferError:
                    producer.poll(0.05)
    producer.flush(120)
    return len(messages) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600_000, help="rows per file (600k)")
    args = parser.parse_args()
    console = Console()
    table = Table(title=f"Backfill, {args.rows:,} rows, one process")
    for col in ("what", "rows/s", "vs raw produce"):
        table.add_column(col, justify="right" if col != "what" else "left")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        jsonl, csv_path = write_rows(Path(tmp), args.rows)
        settings = WorkerSettings(
            bootstrap_servers=broker.bootstrap_servers,
            topic_prefix="bf",
            redis_key_prefix=f"bench-backfill-{os.getpid()}-{time.time_ns()}",
            partitions=4,
        )
        create_topics(settings)
        console.print("raw produce of the encoded rows ...")
        raw = raw_produce(settings, jsonl)
        table.add_row("raw produce of pre-encoded messages (baseline)", f"{raw:,.0f}", "1.00x")
        runs = (
            ("JSON lines, validate only (--dry-run), 1 process", jsonl, True, 1),
            ("JSON lines, validate + produce, --workers 1", jsonl, False, 1),
            ("JSON lines, validate + produce, --workers 2", jsonl, False, 2),
            ("JSON lines, validate + produce, --workers 3 (CLI default here)", jsonl, False, 3),
            ("CSV, validate + produce, --workers 3", csv_path, False, 3),
        )
        for i, (label, path, dry, workers) in enumerate(runs):
            console.print(f"{label} ...")
            target = settings.model_copy(update={"topic_prefix": f"bf{i}"})
            if not dry:
                create_topics(target)
            summary = backfill(target, path, dry_run=dry, workers=workers)
            assert summary.valid == args.rows, summary
            table.add_row(label, f"{summary.rows_per_s:,.0f}", f"{summary.rows_per_s / raw:.2f}x")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
