"""Reaction benchmark: how many outcomes a silently degraded path gets before its traffic
leaves, with one and with four SDK processes, at 100 and 2,000 requests/s.

    .venv/bin/python bench/reaction.py                 # 1 and 4 processes x 100 and 2,000/s
    .venv/bin/python bench/reaction.py --processes 1 --rates 100 --seconds 6

A fresh embedded broker, Redis and one `outroute worker` per (processes, rate). Each SDK
process routes 30 goals (one Router each, as a service with many goals would): the watched
goal at --rates / P requests/s per process, the other 29 at --background requests/s each,
so the process's policy feed and the worker carry more than one goal's traffic. The
watched goal's paths: model-a 0.95, model-b 0.85, model-c 0.70; after --warmup seconds
model-a drops to 0.30 in every process at the same wall-clock moment. Each process records
its watched decisions (time, path); merged in time order they give, from the first
decision after the drop: requests until the next 20 send model-a under 20 %, and model-a's
outcomes until the end of those 20.

The baseline in the same run: the same with ``SamplingParams(local_outcomes=False)``,
where only the pipeline (SDK -> Kafka -> join -> posterior -> Redis) moves traffic.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scenarios import outcomes_until_share_below, requests_until_share  # noqa: E402
from producer_sdk import CacheOptions, KafkaEventSink, Router, SamplingParams  # noqa: E402
from schemas import Topics  # noqa: E402
from stream_workers import WorkerSettings, create_topics  # noqa: E402
from stream_workers.local.stack import LocalStack, start_worker  # noqa: E402

RATES = {"model-a": 0.95, "model-b": 0.85, "model-c": 0.70}
GOALS_PER_PROCESS = 30


def drive(spec: dict[str, Any]) -> dict[str, Any]:
    """One SDK process (run with --drive): its routers, its paced traffic, its records."""
    settings = WorkerSettings(**spec["settings"])
    sink = KafkaEventSink(settings.kafka_client_config(), Topics(settings.topic_prefix))
    sampling = SamplingParams(local_outcomes=spec["local"])
    paths = list(RATES)
    watched = Router(
        spec["goal"],
        paths,
        connection=settings,
        event_sink=sink,
        sampling=sampling,
        cache=CacheOptions(poll_interval=0.5),
        seed=spec["seed"],
    )
    background = [
        Router(
            f"{spec['goal']}-bg{spec['index']}-{k}",
            paths,
            connection=settings,
            event_sink=sink,
            sampling=sampling,
            seed=spec["seed"] + k + 1,
        )
        for k in range(GOALS_PER_PROCESS - 1)
    ]
    rng = random.Random(spec["seed"])
    start, drop, end = spec["start"], spec["drop"], spec["end"]
    rate, bg_rate = spec["rate"], spec["background"]
    done = bg_done = fallbacks = 0
    worst = 0.0
    records: list[tuple[float, str]] = []
    try:
        for router in (watched, *background):
            router.start(wait=0)
        while (now := time.time()) < start:
            time.sleep(min(0.01, start - now))
        while (now := time.time()) < end:
            due = int((now - start) * rate) - done
            bg_due = int((now - start) * bg_rate * len(background)) - bg_done
            if due <= 0 and bg_due <= 0:
                time.sleep(0.001)
                continue
            worst = max(worst, (due - 1) / rate)  # how far behind its pace the process is
            for _ in range(max(0, due)):
                decision = watched.decide()
                fallbacks += decision.reason == "fallback"
                at = time.time()
                p = RATES[decision.path] if decision.path != "model-a" or at < drop else 0.30
                decision.report(rng.random() < p)
                records.append((at, decision.path))
                done += 1
            for _ in range(max(0, bg_due)):
                router = background[bg_done % len(background)]
                decision = router.decide()
                decision.report(rng.random() < RATES[decision.path])
                bg_done += 1
    finally:
        for router in (watched, *background):
            router.close(timeout=10)
        sink.close(10)
    return {"records": records, "lag": worst, "fallbacks": fallbacks}


def run(
    settings: WorkerSettings, processes: int, rate: float, local: bool, args: argparse.Namespace
) -> dict[str, Any]:
    goal = f"react-{processes}p-{int(rate)}-{'local' if local else 'pipeline'}"
    start = time.time() + 3.0 + processes  # every process started and loaded by then
    spec = {
        "settings": {
            "bootstrap_servers": settings.bootstrap_servers,
            "redis_url": settings.redis_url.get_secret_value(),
            "topic_prefix": settings.topic_prefix,
            "redis_key_prefix": settings.redis_key_prefix,
            "partitions": settings.partitions,
        },
        "goal": goal,
        "local": local,
        "rate": rate / processes,
        "background": args.background,
        "start": start,
        "drop": start + args.warmup,
        "end": start + args.warmup + args.seconds,
    }
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--drive", json.dumps(spec | {"index": k, "seed": 7 + k})],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(processes)
    ]
    records: list[tuple[float, str]] = []
    lag = 0.0
    fallbacks = 0
    for child in children:
        out, _ = child.communicate(timeout=120 + args.warmup + args.seconds)
        if child.returncode != 0:
            raise SystemExit(f"an SDK process failed ({goal}); see its output above")
        result = json.loads(out)
        records.extend((at, path) for at, path in result["records"])
        lag = max(lag, result["lag"])
        fallbacks += result["fallbacks"]
    records.sort()
    paths = [path for _, path in records]
    since = next((k for k, (at, _) in enumerate(records) if at >= spec["drop"]), None)
    left = outcomes = None
    if since is not None:
        left = requests_until_share(paths, "model-a", since, below=0.2, window=20)
        outcomes = outcomes_until_share_below(paths, "model-a", since, 0.2)
    before = paths[:since] if since else paths
    return {
        "processes": processes,
        "rate": rate,
        "local": local,
        "share_before": before.count("model-a") / max(1, len(before)),
        "left": left,
        "outcomes": outcomes,
        "decisions": len(paths),
        "lag": lag,
        "fallbacks": fallbacks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,4", help="SDK process counts (default 1,4)")
    parser.add_argument("--rates", default="100,2000", help="watched goal's requests/s, total")
    parser.add_argument("--background", type=float, default=2.0, help="requests/s per other goal")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before the drop")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds after the drop")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        print(json.dumps(drive(json.loads(args.drive))))
        return 0
    try:
        counts = [int(v) for v in args.processes.split(",")]
        rates = [float(v) for v in args.rates.split(",")]
    except ValueError:
        parser.error("--processes and --rates take comma-separated numbers")
    if min(counts) < 1 or min(rates) <= 0 or args.warmup < 3 or args.seconds < 2:
        parser.error("--processes >= 1, --rates > 0, --warmup >= 3 and --seconds >= 2")
    console = Console(width=160) if not sys.stdout.isatty() else Console()
    rows: list[dict[str, Any]] = []
    for processes in counts:
        for rate in rates:
            # A fresh broker and worker per pair: the embedded broker slows down as stored
            # batches pile up (BENCHMARKS.md, "The embedded broker alone"), and a worker
            # behind on a previous run's traffic would publish this run's snapshots late.
            with LocalStack() as stack:
                settings = WorkerSettings.from_env(
                    bootstrap_servers=stack.bootstrap_servers,
                    redis_url=stack.redis_url,
                    partitions=4,
                    redis_key_prefix=f"outroute-bench-reaction-{os.getpid()}-{len(rows)}",
                )
                create_topics(settings)
                worker = start_worker(settings)
                try:
                    for local in (True, False):
                        what = "local outcomes" if local else "pipeline only"
                        console.print(f"{processes} process(es), {rate:g}/s, {what} ...")
                        rows.append(run(settings, processes, rate, local, args))
                        if not worker.alive():
                            raise SystemExit(f"the worker exited:\n{worker.log_tail()}")
                finally:
                    worker.stop()
    table = Table(title="Traffic leaving a path that drops 0.95 -> 0.30 (30 goals per process)")
    for column in (
        "SDK processes",
        "requests/s",
        "SDK",
        "model-a share before",
        "requests until <20 % of the next 20",
        "its outcomes until then",
        "worst lag s",
        "fallback decisions",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["processes"]),
            f"{row['rate']:,.0f}",
            "local outcomes" if row["local"] else "pipeline only (baseline)",
            f"{row['share_before']:.0%}",
            "never" if row["left"] is None else f"{row['left']:,}",
            "-" if row["outcomes"] is None else f"{row['outcomes']:,}",
            f"{row['lag']:.2f}",
            f"{row['fallbacks']:,}",
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    seen = [r["outcomes"] for r in rows if r["local"] and r["outcomes"] is not None]
    if seen:
        console.print(f"median outcomes on the dropped path: {statistics.median(seen):g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
