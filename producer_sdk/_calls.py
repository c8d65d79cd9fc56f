"""What the helpers that call paths for the host (``run()``, ``completion()``) need from the
Router, as a narrow interface, and the rule that says which results are reported.

The rule: an exception, a provider failure or a cancellation is reported at once, as a
failure with its category. A returned value or a 200 answer is judged by ``success_fn`` when
there is one; without one it is reported as a success only if the router was built with
``success_on_return=True``, and otherwise waits for the caller's verdict (``router.report()``,
``decision.report()``, or an OutcomeEvent sent later by any service with the trace id).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from schemas import FailureCategory

from ._ledger import OnceLog
from .decision import Decision, Turn, validate_outcome

__all__ = ["CallHost", "Judge", "cancelled", "raise_from", "settle_failure", "settle_result"]


def cancelled(exc: BaseException) -> bool:
    """The caller gave up: asyncio cancellation (also a caller's timeout around the call),
    Ctrl-C, or a generator closed before its end."""
    return isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | GeneratorExit)


def raise_from(error: BaseException, cause: BaseException) -> NoReturn:
    """Raise ``error`` (``cause`` itself, or what replaces it)."""
    if error is cause:
        raise cause
    raise error from cause


class Judge:
    """Applies ``success_fn`` (or ``success_on_return``) to what a path returned."""

    __slots__ = ("_success_fn", "_success_on_return", "_warnings")

    def __init__(
        self,
        success_fn: Callable[[Any], bool] | None,
        success_on_return: bool,
        warnings: OnceLog,
    ) -> None:
        self._success_fn = success_fn
        self._success_on_return = success_on_return
        self._warnings = warnings

    def verdict(self, result: Any) -> bool | None:
        """True or False when this result is to be reported now; None when it waits for the
        caller's report."""
        if self._success_fn is None:
            return True if self._success_on_return else None
        try:
            return bool(self._success_fn(result))
        except Exception as exc:  # a judge that fails has not judged the result a success
            self._warnings.warn("judge", "success_fn raised %r; counted as a failure", exc)
            return False


@dataclass(frozen=True, slots=True)
class CallHost:
    """The Router, as seen by the helpers that call paths.

    ``decide(among, force_path, made_by)`` makes a decision (among path indexes, or all) and
    makes it this thread's or task's current one; ``resume(decision)`` makes an open decision
    of this router current again (ValueError otherwise); ``current()`` is the current one.
    """

    paths: tuple[str, ...]
    decide: Callable[[tuple[int, ...] | None, str | None, str], Decision]
    resume: Callable[[Decision, str], None]
    current: Callable[[], Decision | None]
    judge: Judge
    warnings: OnceLog


def settle_failure(decision: Decision, turn: Turn, category: FailureCategory, by: str) -> None:
    """Record the turn and report the decision as failed; one the caller reported already
    stays as it was."""
    if decision.reported:
        return
    decision._reporter.record_turn(decision, turn)
    decision._reporter.emit(decision, validate_outcome(False, failure_category=category), by)


def settle_result(decision: Decision, turn: Turn, verdict: bool | None, by: str) -> None:
    """Record the turn; report it when the judge had a verdict."""
    decision._reporter.record_turn(decision, turn)
    if verdict is not None:
        category: FailureCategory | None = None if verdict else "invalid_output"
        decision._reporter.emit(decision, validate_outcome(verdict, failure_category=category), by)
