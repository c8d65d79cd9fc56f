"""Low-traffic benchmark: goals with a few outcomes a day, over months of event time.

    .venv/bin/python bench/low_traffic.py                   # 10 and 20/day x 90 days, + 5,000/day
    .venv/bin/python bench/low_traffic.py --seeds 10        # tighter intervals (~2 min)
    .venv/bin/python bench/low_traffic.py --quick           # 2 seeds, 30 days, no high-rate run
    .venv/bin/python bench/low_traffic.py --setups all --rates 10

No broker, no Redis, no waiting: a simulated clock drives the real SDK policy, join and
``GoalState`` in process (``bench/_low_traffic_sim.py``). Requests arrive as a seeded Poisson
stream of ``--rates`` per day; the oracle always takes the truly best path, on the same draws.
Intervals are 95% t-intervals over seeds.

Setups differ only in the ``PosteriorConfig`` the stage is built with: how an outcome's weight
decays (``half_life``, ``half_life_outcomes``, ``max_half_life``, as ``DecayedBeta`` and the
detector's baseline apply them). "time 24h" is the default before the counted half-life (by
time alone); the default now is 24 h or 100 newer outcomes, whichever is later, at most 7 days.
A detector with ``min_baseline`` 5 under "time 24h" gave the same rows as "time 24h" to the
digit (10 and 20 a day, 90 days, 3 seeds; neither alerted), so it is no longer a setup.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._low_traffic_sim import (  # noqa: E402
    DAY,
    PATHS,
    WATCH,
    Scenario,
    Trace,
    World,
    degradation,
    simulate,
    stationary,
)
from bench.scenarios import mean_interval, requests_until_share  # noqa: E402
from stream_workers.pipeline.posterior import PosteriorConfig  # noqa: E402
from stream_workers.pipeline.posterior.decayed import HALF_LIFE, MAX_HALF_LIFE  # noqa: E402

LEAVE_BELOW, RETURN_AT = 0.2, 0.5  # traffic shares of the watched path
SHARE_WINDOW: Final = 100  # requests a share is measured over (a day's, when fewer)


# -- what is compared ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setup:
    """A name for the ``PosteriorConfig`` the goal's stage is built with: the workers' defaults
    but for the decay, and no history buckets (nothing reads them here)."""

    name: str
    config: PosteriorConfig


def _decay(
    half_life: float = HALF_LIFE, outcomes: float = 0.0, most: float = MAX_HALF_LIFE
) -> PosteriorConfig:
    """By time alone unless ``outcomes`` (``half_life_outcomes``) is given."""
    return PosteriorConfig(
        half_life=half_life, half_life_outcomes=outcomes, max_half_life=most, history=False
    )


DEFAULT: Final = "outcomes 100 max 7d (default)"
SETUPS: Final = (
    Setup("time 24h (before)", _decay()),
    Setup("time 3d", _decay(3 * DAY)),
    Setup("time 7d", _decay(7 * DAY)),
    Setup("outcomes 200", _decay(outcomes=200.0, most=math.inf)),
    Setup("outcomes 500", _decay(outcomes=500.0, most=math.inf)),
    Setup("outcomes 200 max 7d", _decay(outcomes=200.0)),
    Setup(DEFAULT, PosteriorConfig(history=False)),
)
DEFAULT_SETUPS: Final = ("time 24h (before)", "time 7d", "outcomes 200", DEFAULT)
#: run at the high rate when chosen: the default before, the uncapped count, the default now
HIGH_RATE_SETUPS: Final = ("time 24h (before)", "outcomes 200", DEFAULT)


# -- measures -----------------------------------------------------------------------------------


def _mean_over(values: Sequence[float], trace: Trace, start: float, stop: float) -> float:
    """Mean of per-request ``values`` over the requests of days [start, stop); NaN: none."""
    found = [v for v, t in zip(values, trace.world.times, strict=True) if start <= t < stop]
    return statistics.fmean(found) if found else math.nan


def success(trace: Trace, start: float, stop: float, *, oracle: bool = False) -> float:
    return _mean_over(
        [float(o) for o in (trace.oracle if oracle else trace.ok)], trace, start, stop
    )


def held(trace: Trace, start: float, stop: float, path: str = WATCH) -> float:
    """Mean effective outcomes of ``path`` in the policy, over the requests of those days."""
    return _mean_over(trace.held[path], trace, start, stop)


def baseline_held(trace: Trace, start: float, stop: float) -> float:
    return _mean_over(trace.baseline, trace, start, stop)


def share(trace: Trace, start: float, stop: float) -> float:
    return _mean_over([float(p == WATCH) for p in trace.paths], trace, start, stop)


def until_share(trace: Trace, since: float, **threshold: float) -> tuple[float, int] | None:
    """Days and requests from ``since`` until the next SHARE_WINDOW requests (a day's, when
    fewer) send the watched path a share below ``below`` (or at least ``at_least``)."""
    world = trace.world
    start = world.index(since)
    window = max(1, min(SHARE_WINDOW, round(world.per_day)))
    k = requests_until_share(trace.paths, WATCH, start, window=window, **threshold)
    return None if k is None else (world.times[start + k] - since, k)


def first_alert(trace: Trace, state: str, since: float) -> tuple[float, int] | None:
    """Days and requests from ``since`` to the watched path's first alert in ``state``."""
    for day, path, kind in trace.alerts:
        if path == WATCH and kind == state and day >= since:
            world = trace.world
            return day - since, world.index(day) - world.index(since)
    return None


def false_alarms(trace: Trace, before: float | None = None) -> int:
    return sum(1 for d, _, s in trace.alerts if s == "open" and (before is None or d < before))


# -- the tables ---------------------------------------------------------------------------------


def _ci(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    found = [v for v in values if not math.isnan(v)]
    if not found:
        return "-"
    mean, half = mean_interval(found)
    return f"{mean * scale:.{digits}f} ± {half * scale:.{digits}f}"


def _when(values: Sequence[tuple[float, int] | None]) -> str:
    """Median days (range over seeds) and median requests; hours below a day."""
    found = [v for v in values if v is not None]
    if not found:
        return "never"
    days = sorted(d for d, _ in found)
    scale, unit = (24.0, "h") if statistics.median(days) < 1 else (1.0, "d")
    low, mid, high = days[0] * scale, statistics.median(days) * scale, days[-1] * scale
    requests = statistics.median(k for _, k in found)
    text = f"{mid:.1f}{unit} ({low:.1f}-{high:.1f}) {requests:,.0f}r"
    missed = len(values) - len(found)
    return text + (f" +{missed} never" if missed else "")


@dataclass
class Result:
    """Every seed's trace of one (setup, scenario, rate)."""

    setup: Setup
    scenario: Scenario
    per_day: float
    days: float
    traces: list[Trace]

    def bounds(self) -> list[tuple[str, float, float]]:
        starts = self.scenario.phases
        return [
            (name, start, starts[k + 1][1] if k + 1 < len(starts) else self.days)
            for k, (name, start) in enumerate(starts)
        ]


Rows = tuple[list[str], list[list[str]]]


def _oracle_row(results: Sequence[Result], width: int) -> list[str]:
    first = results[0]
    cells = ["oracle"]
    cells += [
        _ci([success(t, a, b, oracle=True) for t in first.traces]) for _, a, b in first.bounds()
    ]
    return cells + [""] * (width - len(cells))


def stationary_rows(results: Sequence[Result]) -> Rows:
    first = results[0]
    days = first.days
    end, early = (days - 5, days), (days / 3 - 5, days / 3)
    columns = ["setup", *(f"{name} %" for name, _, _ in first.bounds()), "share of a %"]
    columns += [f"a holds, d{early[0]:g}-{early[1]:g}", f"a holds, d{end[0]:g}-{end[1]:g}"]
    columns += [f"b holds, d{end[0]:g}-{end[1]:g}", f"a's baseline, d{end[0]:g}-{end[1]:g}"]
    columns.append("false alarms")
    rows = [_oracle_row(results, len(columns))]
    for result in results:
        traces = result.traces
        cells = [result.setup.name]
        cells += [_ci([success(t, a, b) for t in traces]) for _, a, b in result.bounds()]
        cells.append(_ci([share(t, days / 3, days) for t in traces]))
        cells.append(_ci([held(t, *early) for t in traces], 1.0))
        cells.append(_ci([held(t, *end) for t in traces], 1.0))
        cells.append(_ci([held(t, *end, path="model-b") for t in traces], 1.0))
        cells.append(_ci([baseline_held(t, *end) for t in traces], 1.0))
        cells.append(str(sum(false_alarms(t) for t in traces)))
        rows.append(cells)
    return columns, rows


def degradation_rows(results: Sequence[Result]) -> Rows:
    first = results[0]
    drop, back = first.scenario.degrade_at or 0.0, first.scenario.recover_at or 0.0
    columns = ["setup", *(f"{name} %" for name, _, _ in first.bounds()), "regret /100"]
    columns += [f"a <{LEAVE_BELOW:.0%} after drop", "alert opens after drop"]
    columns += ["resolves after recovery", f"a >={RETURN_AT:.0%} after recovery"]
    columns += ["a/b hold before", "false alarms"]
    before = (drop * 5 / 6, drop)
    rows = [_oracle_row(results, len(columns))]
    for result in results:
        traces = result.traces
        cells = [result.setup.name]
        cells += [_ci([success(t, a, b) for t in traces]) for _, a, b in result.bounds()]
        cells.append(_ci([100.0 * (sum(t.oracle) - sum(t.ok)) / len(t.ok) for t in traces], 1.0))
        holds = [statistics.fmean(held(t, *before, path=p) for t in traces) for p in PATHS[:2]]
        cells.append(_when([until_share(t, drop, below=LEAVE_BELOW) for t in traces]))
        cells.append(_when([first_alert(t, "open", drop) for t in traces]))
        cells.append(_when([first_alert(t, "resolved", back) for t in traces]))
        cells.append(_when([until_share(t, back, at_least=RETURN_AT) for t in traces]))
        cells.append("/".join(f"{h:,.0f}" for h in holds))
        cells.append(str(sum(false_alarms(t, before=drop) for t in traces)))
        rows.append(cells)
    return columns, rows


_CAPTIONS: Final = {
    "stationary": "success % ± 95% CI over seeds; 'holds': effective outcomes (alpha + beta - 2) "
    "in the policy the SDK used, mean over the requests of those days; a's baseline: the same of "
    "its detector's baseline (an alert needs min_baseline, 20 by default)",
    "degradation": "success % ± 95% CI over seeds; regret: the oracle's successes minus the "
    "setup's per 100 requests; times: median (range) over seeds, d days or h hours, and median "
    "requests r (+k never: k seeds never got there); a share "
    f"measured over the next {SHARE_WINDOW} requests (a day's, when fewer); holds: mean effective "
    "outcomes over the last sixth of the first phase; false alarms: alerts opened before the "
    "drop, all seeds",
}


def print_results(console: Console, results: Sequence[Result]) -> None:
    first = results[0]
    scenario = first.scenario
    title = f"{scenario.name}, {first.per_day:g} requests/day, {first.days:g} days, "
    title += f"{len(first.traces)} seeds: {scenario.description}"
    make = stationary_rows if scenario.degrade_at is None else degradation_rows
    columns, rows = make(results)
    table = Table(
        title=title, title_justify="left", caption=_CAPTIONS[scenario.name], caption_justify="left"
    )
    for k, column in enumerate(columns):
        table.add_column(column, justify="left" if k == 0 else "right")
    for cells in rows:
        table.add_row(*cells)
    console.print(table)


# -- the run ------------------------------------------------------------------------------------


def run(
    setups: Sequence[Setup],
    scenario: Scenario,
    per_day: float,
    days: float,
    seeds: int,
    *,
    delay: float = 1.0,
    sdk_tables: bool = False,
) -> list[Result]:
    """Every setup on the same ``seeds`` worlds of ``scenario``."""
    worlds = [World(scenario, per_day, days, seed) for seed in range(seeds)]
    return [
        Result(
            setup,
            scenario,
            per_day,
            days,
            [simulate(setup.config, w, delay=delay, sdk_tables=sdk_tables) for w in worlds],
        )
        for setup in setups
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rates", default="10,20", help="requests per day, comma-separated")
    parser.add_argument("--days", type=float, default=90.0, help="days of event time per run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per configuration")
    parser.add_argument(
        "--setups",
        default=",".join(DEFAULT_SETUPS),
        help="'all' or a comma-separated subset of: " + ", ".join(s.name for s in SETUPS),
    )
    parser.add_argument(
        "--high-rate", type=float, default=5000.0, help="requests/day of the high-rate run, 0: none"
    )
    parser.add_argument("--high-days", type=float, default=1.5, help="days of the high-rate run")
    parser.add_argument("--high-seeds", type=int, default=2, help="seeds of the high-rate run")
    parser.add_argument(
        "--delay", type=float, default=1.0, help="seconds from a snapshot to the SDK reading it"
    )
    parser.add_argument(
        "--sdk-tables",
        action="store_true",
        help="draw through the SDK's quantile tables (exact Beta draws otherwise; much slower)",
    )
    parser.add_argument("--quick", action="store_true", help="2 seeds, 30 days, no high-rate run")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.days, args.high_rate = 2, 30.0, 0.0
    known = {s.name: s for s in SETUPS}
    chosen = (
        list(known)
        if args.setups == "all"
        else [name.strip() for name in args.setups.split(",") if name.strip()]
    )
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        parser.error(f"--setups: unknown {unknown or 'empty'}; choose from {list(known)}")
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error(f"--rates: not numbers: {args.rates!r}")
    if not rates or min(rates) <= 0 or args.days < 3 or min(args.seeds, args.high_seeds) < 1:
        parser.error("--rates must be > 0, --days >= 3, --seeds and --high-seeds >= 1")
    setups = [known[name] for name in chosen]
    console = Console(width=250) if not sys.stdout.isatty() else Console()
    options: dict[str, Any] = {"delay": args.delay, "sdk_tables": args.sdk_tables}
    started = time.process_time()
    for per_day in rates:
        for scenario in (stationary(args.days), degradation(args.days)):
            print_results(console, run(setups, scenario, per_day, args.days, args.seeds, **options))
    high = [s for s in setups if s.name in HIGH_RATE_SETUPS]
    if args.high_rate > 0 and high:
        scenario = degradation(args.high_days)
        results = run(high, scenario, args.high_rate, args.high_days, args.high_seeds, **options)
        print_results(console, results)
    console.print(f"{time.process_time() - started:.0f} s of CPU", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
