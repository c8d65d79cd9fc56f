"""The Decision handle returned by ``Router.decide()``, and validation of what is reported."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from schemas import FAILURE_CATEGORIES, FailureCategory, Reason

__all__ = ["Decision", "Outcome", "Reporter", "Turn", "validate_outcome", "with_turns"]


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
    time_to_first_token_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """What one call of a path measured (a model turn, one run() attempt). A decision's turns
    add up, and fill the fields its report leaves out."""

    latency_ms: float
    cost_usd: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    time_to_first_token_ms: float | None = None


class Reporter(Protocol):
    """Where a Decision sends its report (the router's ledger of reports)."""

    def emit(self, decision: Decision, outcome: Outcome, by: str) -> bool: ...

    def record_turn(self, decision: Decision, turn: Turn) -> None: ...


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
    time_to_first_token_ms: Any = None,
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
        time_to_first_token_ms=_number("time_to_first_token_ms", time_to_first_token_ms),
    )


class Decision:
    """Which path was chosen for one request, and why. Report how it went with ``report()``,
    from any thread or task. Only the first report of a decision is emitted.

    A decision made by ``completion()`` or ``run()`` also carries what its calls measured
    (latency, tokens, cost, summed over the turns of a conversation); a report that leaves
    those fields out gets them from there. ``made_by`` says which made it: ``"decide()"``,
    or ``"completion()"``/``"run()"``, which decide through ``decide()`` and then say so."""

    __slots__ = (
        "_decided_ns",
        "_reported_by",
        "_reporter",
        "_turns",
        "candidates",
        "made_by",
        "path",
        "policy_version",
        "reason",
        "trace_id",
    )

    def __init__(
        self,
        reporter: Reporter,
        trace_id: str,
        path: str,
        reason: Reason,
        policy_version: int | None,
        decided_ns: int,
        candidates: tuple[str, ...],
        made_by: str = "decide()",
    ) -> None:
        self._reporter = reporter
        self._reported_by: str | None = None
        self._turns: list[Turn] = []
        self.trace_id = trace_id
        self.path = path
        self.reason: Reason = reason
        self.policy_version = policy_version
        self._decided_ns = decided_ns
        self.candidates = candidates
        self.made_by = made_by

    @property
    def decided_at(self) -> datetime:
        seconds, rest = divmod(self._decided_ns, 1_000_000_000)
        return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)

    @property
    def reported(self) -> bool:
        return self._reported_by is not None

    @property
    def reported_by(self) -> str | None:
        """Who emitted this decision's outcome: ``"report()"``, ``"completion()"``, ...; None
        while it is open."""
        return self._reported_by

    @property
    def turns(self) -> int:
        """How many calls of the path this decision served (turns of a conversation)."""
        return len(self._turns)

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
        """Emit the outcome of this decision. Returns False, and emits nothing, if it had
        already been reported (``reported_by`` says by whom).

        ``score`` (0..1) grades the result; when given it is the reward instead of ``success``.
        Fields left out are filled from the calls ``completion()``/``run()`` made for it.
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
        return self._reporter.emit(self, outcome, "report()")

    def __repr__(self) -> str:
        return (
            f"Decision(path={self.path!r}, reason={self.reason!r}, trace_id={self.trace_id!r}, "
            f"policy_version={self.policy_version})"
        )


def _total(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def with_turns(outcome: Outcome, turns: list[Turn]) -> Outcome:
    """``outcome`` with the fields it leaves out filled from the decision's turns: latency,
    cost and tokens summed; time to first token of the first streamed turn."""
    if not turns:
        return outcome
    first_token = next(
        (t.time_to_first_token_ms for t in turns if t.time_to_first_token_ms is not None), None
    )
    return Outcome(
        success=outcome.success,
        score=outcome.score,
        cost_usd=_pick(outcome.cost_usd, _total([t.cost_usd for t in turns])),
        latency_ms=_pick(outcome.latency_ms, _total([t.latency_ms for t in turns])),
        failure_category=outcome.failure_category,
        prompt_tokens=_pick(outcome.prompt_tokens, _total([t.prompt_tokens for t in turns])),
        completion_tokens=_pick(
            outcome.completion_tokens, _total([t.completion_tokens for t in turns])
        ),
        time_to_first_token_ms=_pick(outcome.time_to_first_token_ms, first_token),
    )


def _pick(given: Any, measured: Any) -> Any:
    return measured if given is None else given
