"""What ``GoalState`` asks of a degradation detector, and what a detector tells it (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from stream_workers.pipeline.posterior.decayed import HALF_LIFE_OUTCOMES, MAX_HALF_LIFE

__all__ = ["Detector", "DetectorFactory", "Transition"]


@dataclass(frozen=True, slots=True)
class Transition:
    """A detector changed state on the outcome it was just given."""

    state: Literal["open", "resolved"]
    recent_rate: float
    recent_n: int
    baseline_rate: float
    baseline_n: float
    evidence: float


class Detector(Protocol):
    """One per (goal, path), fed that path's outcomes in event-time order.

    ``GoalState`` feeds it with ``update``, restarts the path's posterior from
    ``restart_from()`` when it returns a transition, reports ``is_open``, ``recent_n``,
    ``recent()`` and ``baseline_rate`` in each snapshot, and checkpoints it with ``to_json`` /
    ``load_json``.
    """

    @property
    def name(self) -> str:
        """The kind of detector: the ``detector`` field of its alerts."""

    @property
    def is_open(self) -> bool:
        """True while an alert is open."""

    @property
    def recent_n(self) -> int:
        """How many outcomes the recent window holds."""

    @property
    def baseline_rate(self) -> float | None:
        """The rate the recent window is compared with; None before there is any."""

    def update(self, reward: float, event_time: float) -> Transition | None:
        """Take the next outcome; a transition if it opened or resolved an alert."""

    def recent(self) -> list[tuple[float, float]]:
        """The recent window as (reward, event_time), oldest first."""

    def restart_from(self) -> list[tuple[float, float]]:
        """Right after a transition: the outcomes that showed it, as (reward, event_time),
        oldest first; the path's posterior restarts from them."""

    def to_json(self) -> dict[str, Any]:
        """The detector's state (not its configuration), as JSON-compatible values."""

    def load_json(self, data: dict[str, Any]) -> None:
        """Continue from state saved by ``to_json``; the configuration stays this detector's."""


class DetectorFactory(Protocol):
    """Makes the detector of a new path, given the posterior's decay (``DecayedBeta``):
    ``half_life`` and ``max_half_life`` in seconds, ``half_life_outcomes`` in outcomes."""

    def __call__(
        self,
        *,
        half_life: float,
        half_life_outcomes: float = HALF_LIFE_OUTCOMES,
        max_half_life: float = MAX_HALF_LIFE,
    ) -> Detector: ...
