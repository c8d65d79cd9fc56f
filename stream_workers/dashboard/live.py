"""Traffic share "now": how the outcomes of the last seconds split between a goal's paths.

The history's minute buckets answer "how did traffic split over the hour", but a change made a
few seconds ago (a path disabled, traffic leaving a degrading path) shows in them only once the
minute is over. Each snapshot carries every path's outcome count ``n``, which only grows; the
dashboard keeps the counts of the snapshots it read in the last ``span`` seconds and reports how
the growth between the oldest and the newest splits between the paths. Pure: the caller passes
the clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Final

__all__ = ["LIVE_SPAN", "LiveShare"]

#: Seconds of snapshots the share "now" is computed over.
LIVE_SPAN: Final = 10.0
_MAX_GOALS: Final = 1000


class LiveShare:
    """Per goal, the outcome counts of recent snapshots (bounded) and their split."""

    def __init__(self, span: float = LIVE_SPAN) -> None:
        if not span > 0:
            raise ValueError(f"span must be > 0 seconds, got {span}")
        self.span = span
        self._samples: dict[str, deque[tuple[float, int, dict[str, int]]]] = {}

    def observe(
        self, goal: str, now: float, version: int, counts: Mapping[str, int]
    ) -> dict[str, float] | None:
        """Record a snapshot's counts read at ``now``; the share of each path of the outcomes
        since the oldest sample within ``span`` (None until there are two and traffic)."""
        samples = self._samples.get(goal)
        if samples is None:
            if len(self._samples) >= _MAX_GOALS:
                self._samples.pop(next(iter(self._samples)))
            samples = self._samples[goal] = deque(maxlen=256)
        if not samples or samples[-1][1] != version:
            samples.append((now, version, dict(counts)))
        while len(samples) > 2 and now - samples[1][0] >= self.span:
            samples.popleft()
        if len(samples) < 2:
            return None
        first, last = samples[0][2], samples[-1][2]
        grown = {path: max(0, n - first.get(path, 0)) for path, n in last.items()}
        total = sum(grown.values())
        if total == 0:
            return None
        return {path: g / total for path, g in grown.items()}
