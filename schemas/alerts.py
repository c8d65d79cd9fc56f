"""What ops receive when a path degrades and when it recovers."""

from __future__ import annotations

from typing import Final, Literal, get_args

from pydantic import Field

from ._base import Event
from ._types import Identifier, NonNegativeFinite, Probability, UtcDatetime

__all__ = ["ALERT_STATES", "AlertState", "DegradationAlert"]

AlertState = Literal["open", "resolved"]
ALERT_STATES: Final[tuple[str, ...]] = get_args(AlertState)


class DegradationAlert(Event):
    """Topic ``<prefix>.alerts``, key ``goal``; mirrored to a capped Redis list per goal.

    ``alert_id`` is deterministic (goal, path, state and the position that triggered it), so an
    alert re-emitted after a worker restart has the same id and consumers can drop it.
    """

    alert_id: Identifier
    goal: Identifier
    path: Identifier
    state: AlertState
    recent_rate: Probability
    recent_n: int = Field(ge=0)
    baseline_rate: Probability
    baseline_n: NonNegativeFinite = Field(description="Decayed outcome count of the baseline.")
    detector: Identifier = Field(description="Name of the detector that raised it.")
    evidence: float = Field(
        allow_inf_nan=False,
        description="The detector's evidence: a probability of degradation or a test statistic.",
    )
    detected_at: UtcDatetime
