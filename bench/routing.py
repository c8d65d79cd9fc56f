"""Routing benchmark: outroute through the real pipeline next to reference policies, on the
same seeded scenarios (bench/scenarios.py).

    .venv/bin/python bench/routing.py                      # 8 scenarios x 5 seeds, ~3.5 min
    .venv/bin/python bench/routing.py --seeds 2 --requests 4000 --scenarios sudden,recovery
    pip install -e '.[bench]'                              # for the traffic-share plot (PNG)

outroute runs for real: a fresh embedded broker, Redis, one `outroute worker` process, and one
SDK Router per (scenario, seed) goal, all goals at once, each paced at --speed requests/s, so
every decision reads the policy the worker last published and every outcome travels
SDK -> Kafka -> join -> posterior -> Redis before it can change a decision. Its success rate
is that of its first (only) attempt per request.

The reference policies answer the same requests (the same per-path draws) in process and
learn at once: a static fallback chain that moves on only on exceptions, the same chain that
also moves on when the success check fails (paying for every attempt), plain Thompson
sampling (no decay, no detector, no forced exploration), and an oracle that knows the true
rates. Intervals are 95% t-intervals over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scenarios import (  # noqa: E402
    SCENARIOS,
    Oracle,
    PlainThompson,
    RunRecord,
    Scenario,
    StaticChain,
    World,
    mean_interval,
    outcomes_until_share_below,
    requests_until_share,
    run_reference,
)
from producer_sdk import CacheOptions, EmitterOptions, KafkaEventSink, Router  # noqa: E402
from schemas import FailureCategory, Topics  # noqa: E402
from stream_workers import WorkerSettings, create_topics  # noqa: E402
from stream_workers.clients import sync_redis  # noqa: E402
from stream_workers.local.stack import LocalStack, start_worker  # noqa: E402

POLICIES = ("outroute", "chain (exceptions)", "chain (+ check)", "plain Thompson", "oracle")
LEAVE_BELOW, RETURN_AT, WINDOW = 0.2, 0.5, 100
#: The targets (BENCHMARKS.md): points of the oracle in a degraded phase, and in stationary;
#: outcomes of a degraded path before its traffic leaves; requests until it is back.
DEGRADED_GAP, STATIONARY_GAP, LEAVE_OUTCOMES, RETURN_REQUESTS = 0.02, 0.01, 30, 1000
#: A run that fell further behind its pace than this is marked: requests issued in a burst
#: all use the snapshot of before the burst.
MAX_LAG = 0.5


@dataclass
class Run:
    """One (scenario, seed): its world, its routers (one per set of available paths), and what
    every policy did."""

    world: World
    goal: str
    routers: dict[tuple[str, ...], Router] = field(default_factory=dict)
    records: dict[str, RunRecord] = field(default_factory=dict)

    def router(self, i: int) -> Router:
        return self.routers[self.world.available(i)]


def _routers(run: Run, settings: WorkerSettings, seed: int, sink: KafkaEventSink) -> None:
    """A router per set of paths the scenario offers over time: adding a path is a new
    release of the service with a longer path list, on the same goal."""
    for i in range(run.world.requests):
        paths = run.world.available(i)
        if paths not in run.routers:
            run.routers[paths] = Router(
                run.goal,
                list(paths),
                connection=settings,
                service="outroute-bench",
                cache=CacheOptions(poll_interval=0.5),
                event_sink=sink,
                seed=seed * 1000 + len(run.routers),
            )


def drive(console: Console, runs: list[Run], requests: int, speed: float, worker: Any) -> float:
    """Every run's request i at i / speed seconds; returns the worst lag behind that pace."""
    for run in runs:
        run.records["outroute"] = RunRecord()
        for router in run.routers.values():
            router.start(wait=0)
    started = time.monotonic()
    worst_lag = 0.0
    pause = threading.Event()
    for i in range(requests):
        ahead = i / speed - (time.monotonic() - started)
        if ahead > 0:
            pause.wait(ahead)
        else:
            worst_lag = max(worst_lag, -ahead)
        for run in runs:
            decision = run.router(i).decide()
            attempt = run.world.attempt(decision.path, i)
            category: FailureCategory | None = (
                None if attempt.ok else "provider_error" if attempt.raised else "invalid_output"
            )
            decision.report(
                attempt.ok,
                cost_usd=attempt.cost_usd,
                latency_ms=attempt.latency_ms,
                failure_category=category,
            )
            run.records["outroute"].add([attempt])
        if (i + 1) % max(1, requests // 10) == 0:
            if not worker.alive():
                raise SystemExit(f"the worker exited; log:\n{worker.log_tail()}")
            console.print(
                f"  request {i + 1:,}/{requests:,} of {len(runs)} goals at once "
                f"({time.monotonic() - started:.0f} s)",
                highlight=False,
            )
    for run in runs:
        for router in run.routers.values():
            router.close(timeout=10)
    return worst_lag


def references(runs: list[Run]) -> None:
    for run in runs:
        world = run.world
        run.records["chain (exceptions)"] = run_reference(world, StaticChain(check=False))
        run.records["chain (+ check)"] = run_reference(world, StaticChain(check=True))
        run.records["plain Thompson"] = run_reference(world, PlainThompson(world.seed))
        run.records["oracle"] = run_reference(world, Oracle())


def _phase_bounds(world: World) -> list[tuple[str, int, int]]:
    starts = [(name, world.at(start) or 0) for name, start in world.scenario.phases]
    return [
        (name, start, starts[k + 1][1] if k + 1 < len(starts) else world.requests)
        for k, (name, start) in enumerate(starts)
    ]


def _ci(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    mean, half = mean_interval(values)
    return f"{mean * scale:.{digits}f} ± {half * scale:.{digits}f}"


def _until(values: Sequence[int | None]) -> str:
    found = sorted(v for v in values if v is not None)
    if not found:
        return "never"
    text = f"{statistics.median(found):,.0f} ({found[0]:,}-{found[-1]:,})"
    missed = len(values) - len(found)
    return text + (f", never in {missed}" if missed else "")


def _reactions(
    paths: list[list[str]], watch: str, since: int | None, **threshold: float
) -> list[int | None] | None:
    """Per seed, requests from ``since`` until the share of ``watch`` crosses the threshold
    (None: the scenario has no such moment)."""
    if since is None:
        return None
    return [requests_until_share(p, watch, since, window=WINDOW, **threshold) for p in paths]


def summarize(scenario: Scenario, runs: list[Run]) -> dict[str, Any]:
    """Per policy: per-phase success, overall, regret against the oracle, cost, latency,
    and how fast traffic left / came back to the watched path."""
    out: dict[str, Any] = {"scenario": scenario.name, "description": scenario.description}
    # the phase where the watched path goes bad, and whether it drops at once (two knots at
    # one fraction) or slides (the leave target is for sudden drops)
    knots = [f for f, _ in scenario.path(scenario.watch).rates]
    out["degraded_from"] = next(
        (name for name, at in scenario.phases if at == scenario.degrade_at), None
    )
    out["sudden"] = scenario.degrade_at is not None and knots.count(scenario.degrade_at) > 1
    policies: dict[str, Any] = {}
    for policy in POLICIES:
        row: dict[str, Any] = {"phases": {}}
        for name, start, stop in _phase_bounds(runs[0].world):
            row["phases"][name] = [r.records[policy].success(start, stop) for r in runs]
        row["overall"] = [r.records[policy].success() for r in runs]
        row["regret_per_1k"] = [
            1000.0 * (sum(r.records["oracle"].ok) - sum(r.records[policy].ok)) / r.world.requests
            for r in runs
        ]
        row["cost_per_1k"] = [1000.0 * statistics.fmean(r.records[policy].cost_usd) for r in runs]
        row["latency_ms"] = [statistics.fmean(r.records[policy].latency_ms) for r in runs]
        paths = [r.records[policy].paths for r in runs]
        drop = runs[0].world.at(scenario.degrade_at)
        row["leave"] = _reactions(paths, scenario.watch, drop, below=LEAVE_BELOW)
        row["leave_outcomes"] = None
        if drop is not None:
            # Outcomes the degraded path got from the drop until its share of the next 20
            # requests fell under 20 %, those 20 included.
            row["leave_outcomes"] = [
                outcomes_until_share_below(p, scenario.watch, drop, LEAVE_BELOW) for p in paths
            ]
        row["return"] = _reactions(
            paths, scenario.watch, runs[0].world.at(scenario.recover_at), at_least=RETURN_AT
        )
        policies[policy] = row
    out["policies"] = policies
    return out


def summary_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The column names and one row of cells per policy."""
    phases = list(next(iter(summary["policies"].values()))["phases"])
    columns = ["policy", *(f"{name} %" for name in phases)]
    columns += ["overall %", "regret /1k", "$ /1k req", "latency ms"]
    has_leave = any(row["leave"] is not None for row in summary["policies"].values())
    has_return = any(row["return"] is not None for row in summary["policies"].values())
    if has_leave:
        columns.append(f"requests until <{LEAVE_BELOW:.0%} on it")
        columns.append("its outcomes until <20% of 20")
    if has_return:
        columns.append(f"requests until >={RETURN_AT:.0%} on it")
    rows = []
    for policy, row in summary["policies"].items():
        cells = [policy, *(_ci(row["phases"][name]) for name in phases)]
        cells += [
            _ci(row["overall"]),
            _ci(row["regret_per_1k"], scale=1.0),
            f"{statistics.fmean(row['cost_per_1k']):.2f}",
            f"{statistics.fmean(row['latency_ms']):,.0f}",
        ]
        if has_leave:
            cells.append(_until(row["leave"]) if row["leave"] is not None else "-")
            outcomes = row.get("leave_outcomes")
            cells.append(_until(outcomes) if outcomes is not None else "-")
        if has_return:
            cells.append(_until(row["return"]) if row["return"] is not None else "-")
        rows.append(cells)
    return columns, rows


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    columns, rows = summary_table(summary)
    table = Table(
        title=f"{summary['scenario']}: {summary['description']}",
        title_justify="left",
        caption="success % per phase ± 95% CI over seeds; regret = oracle's successes minus "
        "the policy's per 1,000 requests",
        caption_justify="left",
    )
    for k, column in enumerate(columns):
        table.add_column(column, justify="left" if k == 0 else "right")
    for cells in rows:
        table.add_row(*cells)
    console.print(table)


def markdown(summaries: list[dict[str, Any]]) -> str:
    """The same tables in Markdown, as BENCHMARKS.md shows them."""
    parts = []
    for summary in summaries:
        columns, rows = summary_table(summary)
        lines = [
            f"**{summary['scenario']}**: {summary['description']}",
            "",
            "| " + " | ".join(columns) + " |",
            "|---|" + "---:|" * (len(columns) - 1),
        ]
        for cells in rows:
            name = f"**{cells[0]}**" if cells[0] == "outroute" else cells[0]
            lines.append("| " + " | ".join([name, *cells[1:]]) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


#: Line styles of the plot: the two chains often send the same traffic, so one is dashed.
STYLES: dict[str, dict[str, Any]] = {
    "outroute": {"linewidth": 2.0, "color": "tab:blue"},
    "chain (exceptions)": {"linewidth": 2.4, "color": "tab:orange", "linestyle": "--"},
    "chain (+ check)": {"linewidth": 1.2, "color": "tab:green"},
    "plain Thompson": {"linewidth": 1.2, "color": "tab:red"},
    "oracle": {"linewidth": 1.2, "color": "black", "linestyle": ":"},
}


def plot(path: Path, by_scenario: dict[str, list[Run]], window: int = 200) -> str:
    """Traffic share of each scenario's watched path over the run, mean over seeds."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install -e '.[bench]')"
    names = list(by_scenario)
    cols = 2
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        runs = by_scenario[name]
        scenario = runs[0].world.scenario
        n = runs[0].world.requests
        xs = list(range(window, n + 1, max(1, n // 300)))
        for policy in POLICIES:
            series = []
            for x in xs:
                shares = [
                    sum(p == scenario.watch for p in r.records[policy].paths[x - window : x])
                    / window
                    for r in runs
                ]
                series.append(statistics.fmean(shares))
            ax.plot(xs, series, label=policy, **STYLES.get(policy, {}))
        for at in (scenario.degrade_at, scenario.recover_at):
            if at is not None:
                ax.axvline(at * n, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{name}: share of {scenario.watch}", fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("request")
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"traffic-share plot: {path}"


def verdict(summaries: list[dict[str, Any]], lag: float) -> list[str]:
    """The targets: a degraded phase within DEGRADED_GAP of the oracle, stationary within
    STATIONARY_GAP; a degraded path left within LEAVE_OUTCOMES of its outcomes (median over
    seeds), back at half the traffic within RETURN_REQUESTS requests of its recovery."""
    lines = []
    for summary in summaries:
        rows = summary["policies"]
        ours_row, oracle_row = rows["outroute"], rows["oracle"]
        # every phase from the degradation on, but a recovered one
        names = list(ours_row["phases"])
        start = summary.get("degraded_from")
        phases = names[names.index(start) :] if start in names else []
        phases = [name for name in phases if name not in ("recovered", "after")]
        gap = DEGRADED_GAP
        if summary["scenario"] == "stationary":
            phases, gap = list(ours_row["phases"]), STATIONARY_GAP
        checks = []
        for phase in phases:
            ours = statistics.fmean(ours_row["phases"][phase])
            oracle = statistics.fmean(oracle_row["phases"][phase])
            met = oracle - ours <= gap + 1e-9
            checks.append(
                f"{phase} {ours:.1%} vs oracle {oracle:.1%} (within {gap:.0%}: "
                f"{'met' if met else 'MISSED'})"
            )
        left = [v for v in ours_row.get("leave_outcomes") or [] if v is not None]
        if ours_row.get("leave_outcomes") is not None and summary.get("sudden", True):
            median = statistics.median(left) if left else math.inf
            checks.append(
                f"left after {median:.0f} of its outcomes (<= {LEAVE_OUTCOMES}: "
                f"{'met' if median <= LEAVE_OUTCOMES else 'MISSED'})"
            )
        back = [v for v in ours_row["return"] or [] if v is not None]
        if ours_row["return"] is not None and summary["scenario"] != "new-path":
            median = statistics.median(back) if len(back) == len(ours_row["return"]) else math.inf
            checks.append(
                f"back at >= {RETURN_AT:.0%} after {median:,.0f} requests "
                f"(<= {RETURN_REQUESTS:,}: {'met' if median <= RETURN_REQUESTS else 'MISSED'})"
            )
        if checks:
            lines.append(f"{summary['scenario']}: " + "; ".join(checks))
    if lag > MAX_LAG:
        lines.append(
            f"this run fell {lag:.1f} s behind its pace (more than {MAX_LAG} s): its reactions "
            "are slower than the pipeline's"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per scenario (default 5)")
    parser.add_argument("--requests", type=int, default=15_000, help="requests per run")
    parser.add_argument("--speed", type=float, default=100.0, help="requests/s per goal")
    parser.add_argument(
        "--scenarios",
        default=",".join(s.name for s in SCENARIOS),
        help="comma-separated subset of: " + ", ".join(s.name for s in SCENARIOS),
    )
    parser.add_argument("--plot", type=Path, default=ROOT / "bench" / "results" / "routing.png")
    parser.add_argument("--json", type=Path, help="also write the per-seed figures here")
    parser.add_argument("--markdown", type=Path, help="also write the tables here (Markdown)")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    known = {s.name: s for s in SCENARIOS}
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        parser.error(f"--scenarios: unknown {unknown or 'empty'}; choose from {list(known)}")
    if args.seeds < 1 or args.requests < 1000 or not args.speed > 0:
        parser.error("--seeds must be >= 1, --requests >= 1000 and --speed > 0")
    console = Console(width=200) if not sys.stdout.isatty() else Console()
    runs_by: dict[str, list[Run]] = {
        name: [
            Run(World(known[name], args.requests, seed), f"{name}-{seed}")
            for seed in range(args.seeds)
        ]
        for name in chosen
    }
    all_runs = [run for runs in runs_by.values() for run in runs]
    console.print(
        f"{len(chosen)} scenarios x {args.seeds} seeds = {len(all_runs)} goals, "
        f"{args.requests:,} requests each at {args.speed:g}/s: about "
        f"{args.requests / args.speed:.0f} s of traffic",
        highlight=False,
    )
    with LocalStack() as stack:
        settings = WorkerSettings.from_env(
            bootstrap_servers=stack.bootstrap_servers,
            redis_url=stack.redis_url,
            partitions=args.partitions,
            redis_key_prefix=f"outroute-bench-routing-{os.getpid()}",
        )
        create_topics(settings)
        redis = sync_redis(settings, "the routing benchmark")
        console.print("starting a worker ...")
        worker = start_worker(settings)
        # One producer for every goal, lingering 50 ms: the embedded broker slows down as the
        # number of stored batches grows (BENCHMARKS.md, "The embedded broker alone"), and 30
        # producers of 200 events/s each would store one batch per event.
        sink = KafkaEventSink(
            settings.kafka_client_config(),
            Topics(settings.topic_prefix),
            EmitterOptions(linger_ms=50),
        )
        try:
            for seed_runs in runs_by.values():
                for run in seed_runs:
                    _routers(run, settings, run.world.seed, sink)
            lag = drive(console, all_runs, args.requests, args.speed, worker)
        finally:
            sink.close(10)
            worker.stop()
            for key in redis.scan_iter(f"{settings.redis_key_prefix}:*"):
                redis.delete(key)
    console.print(f"worst lag behind the pace: {lag * 1000:.0f} ms", highlight=False)
    references(all_runs)
    summaries = [summarize(known[name], runs) for name, runs in runs_by.items()]
    for summary in summaries:
        print_summary(console, summary)
    for line in verdict(summaries, lag):
        console.print(line, highlight=False)
    console.print(plot(args.plot, runs_by), highlight=False)
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=1))
    if args.markdown:
        behind = f"worst lag behind the pace: {lag * 1000:,.0f} ms"
        if lag > MAX_LAG:
            behind += f" (**fell behind by more than {MAX_LAG} s**)"
        args.markdown.write_text(markdown(summaries) + "\n" + behind + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
