"""The posterior stage's frontier: which items of a delta are new (see docs/recovery.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas import JoinPosition, PathDelta

__all__ = ["Frontier", "FrontierSet"]


@dataclass(slots=True)
class Frontier:
    """What has been applied for one (goal, path, source partition).

    Each applied delta with position P stands for the rectangle of pairs
    ``d < P.decisions and o < P.outcomes``; their union is a staircase, kept as its corners
    (positions no other applied position dominates). Within one run of the join the positions
    grow in both components and one corner remains; after a restart the new run starts behind
    on both and may get ahead on one first, adding a corner until it dominates the old one.
    A component-wise maximum would claim pairs that no run had read.
    """

    expired: int = 0
    corners: list[tuple[int, int]] = field(default_factory=list)

    def admits(self, d: int, o: int) -> bool:
        """True if item (d, o) was not in any delta applied so far."""
        if d < self.expired:
            return False
        if o < 0:  # an expired decision
            return True
        return not any(d < cd and o < co for cd, co in self.corners)

    def advance(self, position: JoinPosition) -> None:
        self.expired = max(self.expired, position.expired)
        d, o = position.decisions, position.outcomes
        corners = self.corners
        if any(d <= cd and o <= co for cd, co in corners):
            return  # already covered
        self.corners = [(cd, co) for cd, co in corners if not (cd <= d and co <= o)]
        self.corners.append((d, o))


class FrontierSet:
    """Frontiers of every (goal, path, source partition) a posterior worker has applied."""

    def __init__(self) -> None:
        self._frontiers: dict[tuple[str, str, int], Frontier] = {}

    def admit(self, delta: PathDelta) -> list[int]:
        """Indices of the delta's items to apply; advances the frontier past the delta."""
        key = (delta.goal, delta.path, delta.source_partition)
        frontier = self._frontiers.get(key)
        if frontier is None:
            frontier = self._frontiers[key] = Frontier()
        admits = frontier.admits
        fresh = [
            i
            for i, (d, o) in enumerate(zip(delta.d_offsets, delta.o_offsets, strict=True))
            if admits(d, o)
        ]
        frontier.advance(delta.position)
        return fresh

    def to_json(self) -> list[list[Any]]:
        return [
            [goal, path, partition, f.expired, [list(c) for c in f.corners]]
            for (goal, path, partition), f in self._frontiers.items()
        ]

    @classmethod
    def from_json(cls, rows: list[list[Any]]) -> FrontierSet:
        frontiers = cls()
        for goal, path, partition, expired, corners in rows:
            frontiers._frontiers[(goal, path, int(partition))] = Frontier(
                int(expired), [(int(d), int(o)) for d, o in corners]
            )
        return frontiers
