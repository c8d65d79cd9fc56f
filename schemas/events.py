"""What services emit: one DecisionEvent per decide(), one OutcomeEvent per report()."""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self, get_args

from pydantic import Field, StringConstraints, model_validator

from ._base import Event
from ._types import Context, Identifier, NonNegativeFinite, Probability, UtcDatetime

__all__ = [
    "FAILURE_CATEGORIES",
    "MAX_CANDIDATES",
    "OUTCOME_SOURCES",
    "REASONS",
    "DecisionEvent",
    "FailureCategory",
    "OutcomeEvent",
    "OutcomeSource",
    "Reason",
]

MAX_CANDIDATES: Final = 64

Reason = Literal["exploit", "explore", "cold_start", "forced", "fallback", "override"]
"""Why a path was chosen: the rules in ``producer_sdk.sampling`` and ``docs/sdk.md``.
``override``: the goal is pinned to the path by an operator (``schemas.overrides``)."""
REASONS: Final[tuple[str, ...]] = get_args(Reason)

FailureCategory = Literal[
    "timeout",
    "rate_limited",
    "connection_error",
    "provider_error",
    "auth_error",
    "invalid_request",
    "invalid_output",
    "content_filter",
    "tool_error",
    "user_rejected",
    "cancelled",
    "other",
]
FAILURE_CATEGORIES: Final[tuple[str, ...]] = get_args(FailureCategory)

OutcomeSource = Literal["sdk", "backfill", "external"]
OUTCOME_SOURCES: Final[tuple[str, ...]] = get_args(OutcomeSource)

_SdkVersion = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z.+-]+$")
]


class DecisionEvent(Event):
    """A path was chosen for one request. Topic ``<prefix>.decisions``, key ``trace_id``."""

    event_id: Identifier = Field(description="Unique id of this event; replays are dropped by it.")
    trace_id: Identifier = Field(description="Joins this decision with its outcome.")
    goal: Identifier = Field(description="The job being routed, e.g. 'summarize'.")
    path: Identifier = Field(description="The path chosen; one of candidates.")
    candidates: tuple[Identifier, ...] = Field(
        min_length=1,
        max_length=MAX_CANDIDATES,
        description="The paths offered, in the caller's order, without duplicates.",
    )
    reason: Reason
    policy_version: int | None = Field(
        default=None, ge=0, description="Version of the policy snapshot used, if any."
    )
    context: Context = Field(default_factory=dict, description="Small flat dict of labels.")
    decided_at: UtcDatetime
    service: Identifier | None = Field(default=None, description="Name of the emitting service.")
    sdk_version: _SdkVersion | None = None

    @model_validator(mode="after")
    def _path_is_a_candidate(self) -> Self:
        candidates = self.candidates
        if self.path not in candidates:
            raise ValueError(f"path {self.path!r} is not one of candidates {list(candidates)}")
        if len(set(candidates)) != len(candidates):
            repeated = sorted({c for c in candidates if candidates.count(c) > 1})
            raise ValueError(f"candidates must be unique; repeated: {repeated}")
        return self


class OutcomeEvent(Event):
    """How a decided request went. Topic ``<prefix>.outcomes``, key ``trace_id``.

    Only the trace id links it to its decision, so any service (a grader, human feedback) can
    report it.
    """

    event_id: Identifier
    trace_id: Identifier
    success: bool
    score: Probability | None = Field(
        default=None,
        description="Graded quality in [0, 1]; when given it is the reward instead of success.",
    )
    cost_usd: NonNegativeFinite | None = None
    latency_ms: NonNegativeFinite | None = None
    time_to_first_token_ms: NonNegativeFinite | None = Field(
        default=None, description="For a streamed answer: when its first token arrived."
    )
    failure_category: FailureCategory | None = None
    prompt_tokens: int | None = Field(default=None, ge=0, description="Tokens sent to a model.")
    completion_tokens: int | None = Field(
        default=None, ge=0, description="Tokens a model generated."
    )
    source: OutcomeSource = "sdk"
    occurred_at: UtcDatetime
