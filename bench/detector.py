"""Degradation detector benchmark: detection delay, false alarms, and how alerts resolve, over
seeded streams.

    .venv/bin/python bench/detector.py             # 200 seeds per stream, 30 x 10k per rate
    .venv/bin/python bench/detector.py --seeds 50  # quicker

outroute's BetaDropDetector (the defaults the workers use) next to a baseline measured on the
same streams: a plain threshold on the same recent window (alarm when the window's rate is
min_drop below the history's rate, no confidence test), which is what a hand-written alert
rule does. For resolving, next to the same detector with its recovery test off
(``resolve_confidence=None``: the window rule only, as before the test existed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_workers.local.simulation import bernoulli_stream as stream  # noqa: E402
from stream_workers.pipeline.posterior.detectors import BetaDropDetector  # noqa: E402

_WORKERS = BetaDropDetector()  # the workers' defaults
WINDOW, MIN_DROP, BEFORE = _WORKERS.window, _WORKERS.min_drop, 400


class ThresholdRule:
    """Alarm while the last WINDOW outcomes' rate is MIN_DROP below the rate before them."""

    def __init__(self) -> None:
        self.recent: list[float] = []
        self.history_sum = 0.0
        self.history_n = 0
        self.open = False

    def update(self, reward: float, _at: float) -> str | None:
        self.recent.append(reward)
        if len(self.recent) > WINDOW:
            old = self.recent.pop(0)
            self.history_sum += old
            self.history_n += 1
        if len(self.recent) < WINDOW or self.history_n < WINDOW:
            return None
        below = sum(self.recent) / WINDOW < self.history_sum / self.history_n - MIN_DROP
        if below != self.open:
            self.open = below
            return "open" if below else "resolved"
        return None


def changes(make: Callable[[], object], rewards: list[float]) -> list[tuple[int, str]]:
    detector = make()
    found = []
    for i, reward in enumerate(rewards):
        change = detector.update(reward, float(i))  # type: ignore[attr-defined]
        state = getattr(change, "state", change)
        if state is not None:
            found.append((i, state))
    return found


def opens(make: Callable[[], object], rewards: list[float]) -> list[int]:
    return [i for i, state in changes(make, rewards) if state == "open"]


def spread(values: list[int]) -> tuple[str, str, str]:
    """Median, p90 and range, as table cells."""
    if not values:
        return "-", "-", "-"
    values = sorted(values)
    return (
        f"{statistics.median(values):.0f}",
        f"{values[int(len(values) * 0.9)]}",
        f"{values[0]}-{values[-1]}",
    )


def resolving(seeds: int, console: Console) -> None:
    """Outcomes from the recovery to the resolve, and false resolves of a path still degraded."""
    detectors: dict[str, Callable[[], object]] = {
        "outroute BetaDropDetector": BetaDropDetector,
        "window rule only (before)": partial(BetaDropDetector, resolve_confidence=None),
    }
    table = Table(title=f"Outcomes from the recovery to the resolve ({seeds} seeds)")
    columns = ("detector", "stream", "opened", "median", "p90", "range", "not resolved")
    for col in (*columns, "resolved before the recovery", "open again after"):
        table.add_column(col, justify="left" if col in ("detector", "stream") else "right")
    for name, make in detectors.items():
        for degraded_n, back in ((50, 0.98), (150, 0.98), (50, 0.90), (50, 0.80)):
            recovery = BEFORE + degraded_n
            opened, delays, never, early, again = 0, [], 0, 0, 0
            for seed in range(seeds):
                rewards = stream([0.98, 0.30, back], [BEFORE, degraded_n, 300], seed)
                found = changes(make, rewards)
                if not any(state == "open" and i < recovery for i, state in found):
                    continue  # no alert to resolve
                opened += 1
                early += any(state == "resolved" and i < recovery for i, state in found)
                late = [i for i, state in found if state == "resolved" and i >= recovery]
                if late:
                    delays.append(late[0] - recovery)
                    again += any(state == "open" and i > late[0] for i, state in found)
                else:
                    never += 1
            table.add_row(
                name,
                f"0.98 -> 0.30 x {degraded_n} -> {back:.2f}",
                f"{opened}/{seeds}",
                *spread(delays),
                f"{never}/{opened}",
                f"{early}/{opened}",
                f"{again}/{len(delays)}",
            )
    console.print(table)
    streams = ((0.98, 0.30), (0.95, 0.60), (0.98, 0.10))
    false = Table(
        title="False resolves of a path that stays degraded, per 10,000 outcomes after the drop "
        "(30 x 10,000)"
    )
    false.add_column("detector")
    for before, after in streams:
        false.add_column(f"{before:.2f} -> {after:.2f}", justify="right")
    for name, make in detectors.items():
        row = [name]
        for before, after in streams:
            count = sum(
                sum(
                    state == "resolved"
                    for _, state in changes(make, stream([before, after], [BEFORE, 10_000], s))
                )
                for s in range(2000, 2030)
            )
            row.append(f"{count / 30:.2f}")
        false.add_row(*row)
    console.print(false)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="seeded runs per drop (200)")
    args = parser.parse_args()
    detectors: dict[str, Callable[[], object]] = {
        "outroute BetaDropDetector": BetaDropDetector,
        "baseline: threshold on the window": ThresholdRule,
    }
    console = Console()
    drops = Table(title=f"Detection delay in outcomes after the drop ({args.seeds} seeds)")
    for col in ("detector", "drop", "median", "p90", "missed", "alarm before the drop"):
        drops.add_column(col, justify="left" if col in ("detector", "drop") else "right")
    for name, make in detectors.items():
        for before, after in ((0.95, 0.30), (0.95, 0.60), (0.90, 0.70), (0.95, 0.85)):
            delays, missed, early = [], 0, 0
            for seed in range(args.seeds):
                found = opens(make, stream([before, after], [BEFORE, 300], seed))
                early += any(i < BEFORE for i in found)
                late = [i for i in found if i >= BEFORE]
                if late:
                    delays.append(late[0] - BEFORE)
                else:
                    missed += 1
            delays.sort()
            drops.add_row(
                name,
                f"{before:.2f} -> {after:.2f}",
                f"{statistics.median(delays):.0f}" if delays else "-",
                f"{delays[int(len(delays) * 0.9)]}" if delays else "-",
                f"{missed}/{args.seeds}",
                f"{early}/{args.seeds}",
            )
    console.print(drops)
    alarms = Table(title="False alarms on stationary paths, per 10,000 outcomes (30 x 10,000)")
    alarms.add_column("detector")
    for rate in (0.95, 0.7, 0.5):
        alarms.add_column(f"rate {rate}", justify="right")
    for name, make in detectors.items():
        row = [name]
        for rate in (0.95, 0.7, 0.5):
            count = sum(len(opens(make, stream([rate], [10_000], 1000 + s))) for s in range(30))
            row.append(f"{count / 30:.2f}")
        alarms.add_row(*row)
    console.print(alarms)
    resolving(args.seeds, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
