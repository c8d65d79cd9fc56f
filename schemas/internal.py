"""Events between the worker stages. Not a public contract: they may change between versions."""

from __future__ import annotations

from typing import Final, Self

from pydantic import Field, model_validator

from ._base import Event
from ._types import Identifier, NonNegativeFinite, Probability, UtcDatetime
from .events import FailureCategory, OutcomeSource, Reason

__all__ = ["MAX_REWARDS_TAIL", "JoinedOutcome", "PathDelta"]

#: Deltas carry at most this many individual rewards (the detector's largest window).
MAX_REWARDS_TAIL: Final = 256


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


class PathDelta(Event):
    """Coalesced joined outcomes of one (goal, path) from one source partition.

    Topic ``<prefix>.path-deltas``, key ``goal``. ``source_partition`` and the offset range
    identify what was applied, so a delta re-emitted after a restart is recognisable.
    """

    goal: Identifier
    path: Identifier
    count: int = Field(ge=1)
    successes: NonNegativeFinite = Field(description="Sum of rewards.")
    failures: NonNegativeFinite = Field(description="Sum of (1 - reward).")
    cost_sum: NonNegativeFinite = 0.0
    cost_n: int = Field(default=0, ge=0)
    latency_sum: NonNegativeFinite = 0.0
    latency_n: int = Field(default=0, ge=0)
    first_event_at: UtcDatetime
    last_event_at: UtcDatetime
    rewards: tuple[Probability, ...] = Field(
        default=(),
        max_length=MAX_REWARDS_TAIL,
        description="The last rewards, oldest first, for the detector's recent window.",
    )
    source_partition: int = Field(ge=0)
    offset_start: int = Field(ge=0)
    offset_end: int = Field(ge=0)

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> Self:
        if self.first_event_at > self.last_event_at:
            raise ValueError("first_event_at is after last_event_at")
        if self.offset_start > self.offset_end:
            raise ValueError(f"offset_start {self.offset_start} > offset_end {self.offset_end}")
        if abs(self.successes + self.failures - self.count) > 1e-6 * max(1, self.count):
            raise ValueError(
                f"successes + failures ({self.successes + self.failures}) != count ({self.count})"
            )
        if self.cost_n > self.count or self.latency_n > self.count:
            raise ValueError("cost_n and latency_n cannot exceed count")
        if len(self.rewards) > self.count:
            raise ValueError(f"{len(self.rewards)} rewards for a count of {self.count}")
        return self
