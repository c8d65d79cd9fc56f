"""What the helpers that call paths for the host (``run()``, ``completion()``) use of their
router, as one narrow object; the rule that says which results are reported; and how their
sync and async twins share one implementation.

The rule: an exception, a provider failure or a cancellation is reported at once, as a
failure with its category. A returned value or a 200 answer is judged by ``success_fn`` when
there is one; without one it is reported as a success only if the router was built with
``success_on_return=True``, and otherwise waits for the caller's verdict (``router.report()``,
``decision.report()``, or an OutcomeEvent sent later by any service with the trace id).

Twins: each flow (a run(), a model call, a stream's next chunk) is written once, as a coroutine
over the I/O it is handed. The async method awaits it with asyncio's I/O; the sync method
hands it blocking I/O wrapped by ``no_wait`` and runs it with ``run_sync``: it never suspends,
so one step runs it to its end, in the caller's thread and context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, NoReturn, ParamSpec, Protocol, TypeVar

from schemas import FailureCategory

from ..decision import Decision, Turn, validate_outcome
from .ledger import Ledger, OnceLog

__all__ = ["CallHost", "Decide", "Judge", "cancelled", "no_wait", "raise_from", "run_sync"]

T = TypeVar("T")
P = ParamSpec("P")


def run_sync(flow: Coroutine[Any, Any, T]) -> T:
    """The result of ``flow``, a coroutine over blocking I/O only (``no_wait``), run to its end
    in this thread without an event loop."""
    try:
        flow.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    flow.close()
    raise RuntimeError("a flow given blocking I/O only suspended")


def no_wait(fn: Callable[P, T]) -> Callable[P, Coroutine[Any, Any, T]]:
    """``fn``, a blocking call, as a coroutine function that never suspends."""

    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return fn(*args, **kwargs)

    return call


def cancelled(exc: BaseException) -> bool:
    """The caller gave up: asyncio cancellation (also a caller's timeout around the call),
    Ctrl-C, or a generator closed before its end."""
    return isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | GeneratorExit)


def raise_from(error: BaseException, cause: BaseException) -> NoReturn:
    """Raise ``error`` (``cause`` itself, or what replaces it)."""
    if error is cause:
        raise cause
    raise error from cause


class Decide(Protocol):
    """``Router.decide``: a decision, made the current one of this thread or task."""

    def __call__(
        self,
        context: Mapping[str, Any] | None = None,
        force_path: str | None = None,
        *,
        among: Iterable[str] | None = None,
    ) -> Decision: ...


class Judge:
    """Applies ``success_fn`` (or ``success_on_return``) to what a path returned."""

    __slots__ = ("_success_fn", "_success_on_return", "_warnings")

    def __init__(
        self,
        success_fn: Callable[[Any], bool] | None,
        success_on_return: bool,
        warnings: OnceLog,
    ) -> None:
        if success_fn is not None and not callable(success_fn):
            raise ValueError(f"success_fn must be callable, got {success_fn!r}")
        if not isinstance(success_on_return, bool):
            raise ValueError(f"success_on_return must be a bool, got {success_on_return!r}")
        if success_on_return and success_fn is not None:
            raise ValueError("pass success_fn or success_on_return=True, not both")
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


class CallHost:
    """The Router, as the helpers that call its paths see it: its paths, its public
    ``decide``, the decision current in this thread or task, the ledger its decisions report
    to, and the judge of results."""

    __slots__ = ("_current", "_ledger", "decide", "judge", "paths", "warnings")

    def __init__(
        self,
        paths: tuple[str, ...],
        decide: Decide,
        current: ContextVar[Decision | None],
        ledger: Ledger,
        judge: Judge,
        warnings: OnceLog,
    ) -> None:
        self.paths = paths
        self.decide = decide
        self._current = current
        self._ledger = ledger
        self.judge = judge
        self.warnings = warnings

    def current(self) -> Decision | None:
        return self._current.get()

    def resume(self, decision: Decision, argument: str) -> None:
        """Make an open decision of this router the current one again (a conversation's next
        turn); ValueError naming ``argument`` otherwise."""
        if not self._ledger.issued(decision):
            raise ValueError(f"{argument}: decision {decision.trace_id} is not this router's")
        if decision.reported:
            raise ValueError(
                f"{argument}: decision {decision.trace_id} was already reported by "
                f"{decision.reported_by}; a conversation is one decision, reported once at its "
                "end (a router with success_fn judges each answer: report conversations "
                "yourself instead)"
            )
        self._current.set(decision)

    def fail(self, decision: Decision, turn: Turn, category: FailureCategory, by: str) -> None:
        """Record the turn and report the decision as failed; one the caller reported already
        stays as it was."""
        if decision.reported:
            return
        self._ledger.record_turn(decision, turn)
        self._ledger.emit(decision, validate_outcome(False, failure_category=category), by)

    def settle(self, decision: Decision, turn: Turn, verdict: bool | None, by: str) -> None:
        """Record the turn of a returned result; report it when the judge had a ``verdict``
        (None: it waits for the caller's report)."""
        self._ledger.record_turn(decision, turn)
        if verdict is not None:
            category: FailureCategory | None = None if verdict else "invalid_output"
            outcome = validate_outcome(verdict, failure_category=category)
            self._ledger.emit(decision, outcome, by)
