"""What the workers publish to Redis and the SDK reads: one PolicySnapshot per goal."""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self, get_args

from pydantic import Field, model_validator

from ._base import Event
from ._types import Identifier, NonNegativeFinite, Probability, UtcDatetime

__all__ = [
    "MAX_PATHS",
    "MIN_SAMPLES",
    "PATH_STATUSES",
    "STALENESS",
    "PathStats",
    "PathStatus",
    "PolicySnapshot",
]

MAX_PATHS: Final = 256
#: A path is ``cold`` while it has fewer outcomes than this: the SDK
#: routes uniformly while every candidate is cold, the workers mark it so in the snapshot.
MIN_SAMPLES: Final = 20
#: A path is ``stale`` after this many seconds without an outcome (7 days);
#: exploration prefers stale paths.
STALENESS: Final = 7 * 24 * 3600.0

PathStatus = Literal["cold", "healthy", "degrading", "stale"]
PATH_STATUSES: Final[tuple[str, ...]] = get_args(PathStatus)

_Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class PathStats(Event):
    """The learned state of one path of a goal."""

    alpha: _Positive = Field(description="Beta posterior alpha: 1 + decayed successes.")
    beta: _Positive = Field(description="Beta posterior beta: 1 + decayed failures.")
    n: int = Field(ge=0, description="Outcomes applied to this path, undecayed.")
    recent_n: int = Field(ge=0, description="Outcomes in the detector's recent window.")
    recent_successes: NonNegativeFinite = Field(description="Reward sum in the recent window.")
    baseline_rate: Probability | None = Field(
        default=None, description="Success rate of the decayed history before the recent window."
    )
    mean_cost_usd: NonNegativeFinite | None = None
    mean_latency_ms: NonNegativeFinite | None = None
    last_outcome_at: UtcDatetime | None = None
    status: PathStatus = "cold"

    @model_validator(mode="after")
    def _recent_is_consistent(self) -> Self:
        if self.recent_n > self.n:
            raise ValueError(f"recent_n ({self.recent_n}) cannot exceed n ({self.n})")
        if self.recent_successes > self.recent_n:
            raise ValueError(
                f"recent_successes ({self.recent_successes}) cannot exceed recent_n "
                f"({self.recent_n})"
            )
        return self

    @property
    def mean(self) -> float:
        """Posterior mean success probability."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def recent_rate(self) -> float | None:
        return self.recent_successes / self.recent_n if self.recent_n else None


class PolicySnapshot(Event):
    """Redis key ``<prefix>:policy:<goal>``. ``version`` only grows, across restarts too."""

    goal: Identifier
    version: int = Field(ge=1, description="Monotonic per goal.")
    generated_at: UtcDatetime
    paths: dict[Identifier, PathStats] = Field(default_factory=dict, max_length=MAX_PATHS)
