"""``run()``/``arun()``: call the chosen callable path, retrying failures on paths not tried.

Both drivers share ``_Attempts``, which says what to do after each call; they differ only in
how they call (plainly, or awaiting what the path returns).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from schemas import FailureCategory

from ._calls import CallHost, cancelled, settle_failure, settle_result
from .decision import Decision, Turn
from .providers import classify_exception

__all__ = ["CallablePaths"]

_BY = "run()"


def _category(exc: BaseException) -> FailureCategory:
    if cancelled(exc):
        return "cancelled"
    if not isinstance(exc, Exception):  # SystemExit and the like
        return "other"
    category = classify_exception(exc)
    return "tool_error" if category == "other" else category


class _Attempts:
    """The attempts of one run(): at most ``max_attempts`` decisions, each among the paths
    not tried yet."""

    __slots__ = ("_host", "_left", "_remaining", "error", "index", "result", "started")

    def __init__(self, host: CallHost, count: int, max_attempts: int) -> None:
        self._host = host
        self._remaining = list(range(count))
        self._left = min(max_attempts, count)
        self.index = -1
        self.started = 0.0
        self.result: Any = None
        self.error: BaseException | None = None

    def next(self) -> Decision | None:
        """Decide the next attempt; None when none is left."""
        if self._left == 0:
            return None
        self._left -= 1
        decision = self._host.decide(tuple(self._remaining), None, _BY)
        self.index = self._host.paths.index(decision.path)
        self.started = time.perf_counter()
        return decision

    def _turn(self) -> Turn:
        return Turn(latency_ms=(time.perf_counter() - self.started) * 1000.0)

    def raised(self, decision: Decision, exc: BaseException) -> None:
        """The path raised: a failure. A cancellation (or SystemExit) ends the run."""
        settle_failure(decision, self._turn(), _category(exc), _BY)
        self._remaining.remove(self.index)
        self.result, self.error = None, exc
        if not isinstance(exc, Exception):
            self._left = 0

    def returned(self, decision: Decision, result: Any) -> bool:
        """The path returned: True when this is the run's result."""
        verdict = self._host.judge.verdict(result)
        settle_result(decision, self._turn(), verdict, _BY)
        if verdict is False:
            self._remaining.remove(self.index)
            self.result, self.error = result, None
            return False
        self.result = result
        return True

    def last(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class CallablePaths:
    """The callables of a router whose paths are functions."""

    __slots__ = ("_fns", "_host", "_max_attempts")

    def __init__(
        self, host: CallHost, fns: tuple[Callable[..., Any], ...], max_attempts: int
    ) -> None:
        self._host = host
        self._fns = fns
        self._max_attempts = max_attempts

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        attempts = _Attempts(self._host, len(self._fns), self._max_attempts)
        while (decision := attempts.next()) is not None:
            try:
                result = self._fns[attempts.index](*args, **kwargs)
            except BaseException as exc:
                attempts.raised(decision, exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            if attempts.returned(decision, result):
                return result
        return attempts.last()

    async def arun(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        attempts = _Attempts(self._host, len(self._fns), self._max_attempts)
        while (decision := attempts.next()) is not None:
            try:
                result = self._fns[attempts.index](*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except BaseException as exc:
                attempts.raised(decision, exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            if attempts.returned(decision, result):
                return result
        return attempts.last()
