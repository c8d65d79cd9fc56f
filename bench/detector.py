"""Degradation detector benchmark: detection delay and false alarms over seeded streams.

    .venv/bin/python bench/detector.py             # 200 seeds per drop, 30 x 10k outcomes per rate
    .venv/bin/python bench/detector.py --seeds 50  # quicker

outroute's BetaDropDetector (the defaults the workers use) next to a baseline measured on the
same streams: a plain threshold on the same recent window (alarm when the window's rate is
min_drop below the history's rate, no confidence test), which is what a hand-written alert
rule does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
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


def opens(make: Callable[[], object], rewards: list[float]) -> list[int]:
    detector = make()
    found = []
    for i, reward in enumerate(rewards):
        change = detector.update(reward, float(i))  # type: ignore[attr-defined]
        state = getattr(change, "state", change)
        if state == "open":
            found.append(i)
    return found


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
