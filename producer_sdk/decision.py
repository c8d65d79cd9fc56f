"""The Decision handle returned by ``Router.decide()``, and validation of what is reported."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from schemas import FAILURE_CATEGORIES, FailureCategory, Reason

if TYPE_CHECKING:
    from .router import Router

__all__ = ["Decision", "Outcome", "validate_outcome"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A validated report, ready to be emitted."""

    success: bool
    score: float | None
    cost_usd: float | None
    latency_ms: float | None
    failure_category: FailureCategory | None
    prompt_tokens: int | None
    completion_tokens: int | None


def _number(name: str, value: Any, *, upper: float | None = None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if number < 0 or (upper is not None and number > upper):
        rule = f"in [0, {upper:g}]" if upper is not None else ">= 0"
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return number


def _count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


def validate_outcome(
    success: Any,
    score: Any = None,
    cost_usd: Any = None,
    latency_ms: Any = None,
    failure_category: Any = None,
    prompt_tokens: Any = None,
    completion_tokens: Any = None,
) -> Outcome:
    """Check a report's fields; ValueError names the first bad field and its rule."""
    if not isinstance(success, bool):
        raise ValueError(f"success must be a bool, got {success!r}")
    if failure_category is not None and failure_category not in FAILURE_CATEGORIES:
        raise ValueError(
            f"failure_category must be one of {', '.join(FAILURE_CATEGORIES)}; "
            f"got {failure_category!r}"
        )
    return Outcome(
        success=success,
        score=_number("score", score, upper=1.0),
        cost_usd=_number("cost_usd", cost_usd),
        latency_ms=_number("latency_ms", latency_ms),
        failure_category=failure_category,
        prompt_tokens=_count("prompt_tokens", prompt_tokens),
        completion_tokens=_count("completion_tokens", completion_tokens),
    )


class Decision:
    """Which path was chosen for one request, and why. Report how it went with ``report()``,
    from any thread or task. Only the first report of a decision is emitted."""

    __slots__ = (
        "_decided_ns",
        "_reported",
        "_router",
        "candidates",
        "path",
        "policy_version",
        "reason",
        "trace_id",
    )

    def __init__(
        self,
        router: Router,
        trace_id: str,
        path: str,
        reason: Reason,
        policy_version: int | None,
        decided_ns: int,
        candidates: tuple[str, ...],
    ) -> None:
        self._router = router
        self._reported = False
        self.trace_id = trace_id
        self.path = path
        self.reason: Reason = reason
        self.policy_version = policy_version
        self._decided_ns = decided_ns
        self.candidates = candidates

    @property
    def decided_at(self) -> datetime:
        seconds, rest = divmod(self._decided_ns, 1_000_000_000)
        return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)

    @property
    def reported(self) -> bool:
        return self._reported

    def report(
        self,
        success: bool,
        *,
        score: float | None = None,
        cost_usd: float | None = None,
        latency_ms: float | None = None,
        failure_category: FailureCategory | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> bool:
        """Emit the outcome of this decision. Returns False if it had already been reported.

        ``score`` (0..1) grades the result; when given it is the reward instead of ``success``.
        Raises ValueError naming the field for invalid values; nothing is emitted then.
        """
        outcome = validate_outcome(
            success,
            score,
            cost_usd,
            latency_ms,
            failure_category,
            prompt_tokens,
            completion_tokens,
        )
        return self._router._emit_outcome(self, outcome)

    def __repr__(self) -> str:
        return (
            f"Decision(path={self.path!r}, reason={self.reason!r}, trace_id={self.trace_id!r}, "
            f"policy_version={self.policy_version})"
        )
