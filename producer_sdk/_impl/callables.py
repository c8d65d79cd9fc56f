"""``run()``/``arun()``: call the chosen callable path, retrying failures on paths not tried.

One run is one flow (``CallablePaths._run``); ``run()`` drives it with plain calls, ``arun()``
with calls whose awaitable results are awaited.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from schemas import FailureCategory

from ..decision import Turn
from ..providers import classify_exception
from .calls import CallHost, cancelled, no_wait, run_sync

__all__ = ["CallablePaths"]

_BY = "run()"

#: Calls a path with the arguments (and, for arun(), awaits what it returns).
Call = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Awaitable[Any]]


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)


async def _call_and_await(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = fn(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


def _category(exc: BaseException) -> FailureCategory:
    if cancelled(exc):
        return "cancelled"
    if not isinstance(exc, Exception):  # SystemExit and the like
        return "other"
    category = classify_exception(exc)
    return "tool_error" if category == "other" else category


def _turn(started: float) -> Turn:
    return Turn(latency_ms=(time.perf_counter() - started) * 1000.0)


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
        return run_sync(self._run(no_wait(_call), args, kwargs))

    async def arun(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return await self._run(_call_and_await, args, kwargs)

    async def _run(self, call: Call, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """At most ``max_attempts`` decisions, each among the paths not tried yet, until one
        returns a result that is not a failure. A cancellation (or SystemExit) ends the run at
        once; otherwise the last exception is raised again, or the last result returned."""
        host, paths = self._host, self._host.paths
        remaining = list(range(len(self._fns)))
        result: Any = None
        error: BaseException | None = None
        for _ in range(min(self._max_attempts, len(self._fns))):
            decision = host.decide(among=[paths[i] for i in remaining])
            decision.made_by = _BY
            index = paths.index(decision.path)
            started = time.perf_counter()
            try:
                result, error = await call(self._fns[index], args, kwargs), None
            except BaseException as exc:
                host.fail(decision, _turn(started), _category(exc), _BY)
                remaining.remove(index)
                result, error = None, exc
                if not isinstance(exc, Exception):
                    raise
                continue
            verdict = host.judge.verdict(result)
            host.settle(decision, _turn(started), verdict, _BY)
            if verdict is not False:
                return result
            remaining.remove(index)
        if error is not None:
            raise error
        return result
