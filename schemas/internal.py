"""Events between the worker stages. Not a public contract: they may change between versions."""

from __future__ import annotations

from typing import Final, Self

from pydantic import Field, model_validator

from ._base import Event
from ._types import Identifier, NonNegativeFinite, Probability, UtcDatetime
from .events import FailureCategory, OutcomeSource, Reason

__all__ = ["MAX_ITEMS", "JoinPosition", "JoinedOutcome", "PathDelta"]

#: Items per delta at most; the join stage splits larger flushes.
MAX_ITEMS: Final = 10_000


class JoinedOutcome(Event):
    """One decision matched with its first outcome."""

    trace_id: Identifier
    goal: Identifier
    path: Identifier
    reason: Reason
    policy_version: int | None = Field(default=None, ge=0)
    decided_at: UtcDatetime
    occurred_at: UtcDatetime
    success: bool
    score: Probability | None = None
    cost_usd: NonNegativeFinite | None = None
    latency_ms: NonNegativeFinite | None = None
    failure_category: FailureCategory | None = None
    source: OutcomeSource = "sdk"

    @property
    def reward(self) -> float:
        """The score when graded, else 1.0 for success and 0.0 for failure."""
        if self.score is not None:
            return self.score
        return 1.0 if self.success else 0.0


class JoinPosition(Event):
    """How far the join stage had read one input partition (see docs/recovery.md)."""

    decisions: int = Field(ge=0, description="Next decision offset to read.")
    outcomes: int = Field(ge=0, description="Next outcome offset to read.")
    expired: int = Field(
        ge=0, description="Every pending decision below this offset is joined or expired."
    )

    @model_validator(mode="after")
    def _expired_within_read(self) -> Self:
        if self.expired > self.decisions:
            raise ValueError(f"expired {self.expired} > decisions {self.decisions}")
        return self


class PathDelta(Event):
    """Joined outcomes of one (goal, path) from one input partition, flushed together.

    Topic ``<prefix>.path-deltas``, key ``goal``. Aggregates summarise the items; the items
    themselves (parallel arrays, oldest first) let the posterior stage drop those it has already
    applied after a restart (``d_offsets``/``o_offsets`` against its frontier) and feed the
    detector's window. ``o_offsets`` is -1 for a decision that expired with
    ``on_timeout = failure``.
    """

    goal: Identifier
    path: Identifier
    source_partition: int = Field(ge=0)
    position: JoinPosition
    count: int = Field(ge=1)
    successes: NonNegativeFinite = Field(description="Sum of rewards.")
    failures: NonNegativeFinite = Field(description="Sum of (1 - reward).")
    cost_sum: NonNegativeFinite = 0.0
    cost_n: int = Field(default=0, ge=0)
    latency_sum: NonNegativeFinite = 0.0
    latency_n: int = Field(default=0, ge=0)
    first_event_at: UtcDatetime
    last_event_at: UtcDatetime
    d_offsets: tuple[int, ...] = Field(max_length=MAX_ITEMS)
    o_offsets: tuple[int, ...] = Field(max_length=MAX_ITEMS)
    rewards: tuple[Probability, ...] = Field(max_length=MAX_ITEMS)
    event_times: tuple[float, ...] = Field(
        max_length=MAX_ITEMS, description="Event time of each item, Unix seconds."
    )
    costs: tuple[NonNegativeFinite | None, ...] = Field(max_length=MAX_ITEMS)
    latencies: tuple[NonNegativeFinite | None, ...] = Field(max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        n = self.count
        lengths = {
            len(a)
            for a in (
                self.d_offsets,
                self.o_offsets,
                self.rewards,
                self.event_times,
                self.costs,
                self.latencies,
            )
        }
        if lengths != {n}:
            raise ValueError(f"item arrays must all have count ({n}) entries")
        if self.first_event_at > self.last_event_at:
            raise ValueError("first_event_at is after last_event_at")
        if abs(self.successes + self.failures - n) > 1e-6 * n:
            raise ValueError(
                f"successes + failures ({self.successes + self.failures}) != count ({n})"
            )
        if self.cost_n > n or self.latency_n > n:
            raise ValueError("cost_n and latency_n cannot exceed count")
        position = self.position
        for d, o in zip(self.d_offsets, self.o_offsets, strict=True):
            if not 0 <= d < position.decisions or not -1 <= o < position.outcomes:
                raise ValueError(f"item ({d}, {o}) lies beyond the delta's position")
        return self
