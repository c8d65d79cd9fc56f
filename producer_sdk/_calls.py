"""Router methods that call the paths for the host: run/arun (callables) and
completion/acompletion (model names on an OpenAI-compatible endpoint)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from schemas import FailureCategory

from .decision import Decision
from .errors import ProviderError
from .options import Provider
from .providers import (
    Completion,
    ProviderFailure,
    build_request,
    classify_exception,
    parse_response,
)

__all__ = ["CallsMixin"]

log = logging.getLogger("outroute.sdk")


def _exception_category(exc: BaseException) -> FailureCategory:
    category = classify_exception(exc)
    return "tool_error" if category == "other" else category


class CallsMixin:
    """Needs the Router's attributes below; kept apart so router.py stays about deciding."""

    if TYPE_CHECKING:
        goal: str
        paths: tuple[str, ...]
        _fns: tuple[Callable[..., Any], ...] | None
        _index: dict[str, int]
        max_attempts: int
        success_fn: Callable[[Any], bool] | None
        _providers: dict[str, Provider]
        _default_provider: Provider | None

        def _decide(
            self,
            among: tuple[int, ...] | None,
            context: Mapping[str, Any] | None,
            force_path: str | None,
        ) -> Decision: ...

        def _warn_once(self, key: str, message: str, *args: Any) -> None: ...

    def _init_http_state(self) -> None:
        self._http: httpx.Client | None = None
        self._ahttp: httpx.AsyncClient | None = None

    def _close_http(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            http.close()
        ahttp, self._ahttp = self._ahttp, None
        if ahttp is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                loop.create_task(ahttp.aclose())
            else:
                asyncio.run(ahttp.aclose())

    async def _aclose_http(self) -> None:
        ahttp, self._ahttp = self._ahttp, None
        if ahttp is not None:
            await ahttp.aclose()

    # -- judging -------------------------------------------------------------------------------

    def _judge(self, result: Any) -> bool:
        if self.success_fn is None:
            return True
        try:
            return bool(self.success_fn(result))
        except Exception as exc:  # a judge that fails has not judged the result a success
            self._warn_once("judge", "success_fn raised %r; counted as a failure", exc)
            return False

    # -- callables -----------------------------------------------------------------------------

    def _callables(self, method: str) -> tuple[Callable[..., Any], ...]:
        if self._fns is None:
            raise ValueError(f"{method}() needs callable paths; this router's paths are names")
        return self._fns

    def _settle(
        self, decision: Decision, started: float, result: Any, error: Exception | None
    ) -> bool:
        """Report one attempt of run()/arun(); True if it succeeded."""
        latency = (time.perf_counter() - started) * 1000.0
        if error is not None:
            decision.report(False, latency_ms=latency, failure_category=_exception_category(error))
            return False
        ok = self._judge(result)
        decision.report(ok, latency_ms=latency, failure_category=None if ok else "invalid_output")
        return ok

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Decide, call the chosen path with the arguments, judge, report; on failure try a
        path not tried yet (at most ``max_attempts`` in all, each its own decision).

        Returns the first successful result; if every attempt failed, re-raises the last
        exception, or returns the last result when the last attempt did not raise."""
        fns = self._callables("run")
        remaining = list(range(len(fns)))
        result: Any = None
        error: Exception | None = None
        for _ in range(min(self.max_attempts, len(fns))):
            decision = self._decide(tuple(remaining), None, None)
            index = self._index[decision.path]
            started = time.perf_counter()
            try:
                result, error = fns[index](*args, **kwargs), None
            except Exception as exc:
                result, error = None, exc
            if self._settle(decision, started, result, error):
                return result
            remaining.remove(index)
        if error is not None:
            raise error
        return result

    async def arun(self, *args: Any, **kwargs: Any) -> Any:
        """``run()`` for async paths (coroutine functions; plain callables work too)."""
        fns = self._callables("arun")
        remaining = list(range(len(fns)))
        result: Any = None
        error: Exception | None = None
        for _ in range(min(self.max_attempts, len(fns))):
            decision = self._decide(tuple(remaining), None, None)
            index = self._index[decision.path]
            started = time.perf_counter()
            try:
                result, error = fns[index](*args, **kwargs), None
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                result, error = None, exc
            if self._settle(decision, started, result, error):
                return result
            remaining.remove(index)
        if error is not None:
            raise error
        return result

    # -- model completions ---------------------------------------------------------------------

    def _provider(self, model: str) -> Provider:
        provider = self._providers.get(model) or self._default_provider
        if provider is None:
            provider = self._default_provider = Provider.from_openai_env()
        return provider

    def _model_decision(self, force_model: str | None) -> Decision:
        if self._fns is not None:
            raise ValueError("completion() needs model names as paths; this router has callables")
        return self._decide(None, None, force_model)

    def _finish(
        self,
        decision: Decision,
        provider: Provider,
        started: float,
        response: httpx.Response | None,
        error: BaseException | None,
    ) -> Completion:
        latency = (time.perf_counter() - started) * 1000.0
        try:
            if error is not None:
                raise ProviderFailure(
                    f"request failed: {error!r}", classify_exception(error)
                ) from error
            if response is None:
                raise ProviderFailure("no response and no error", "other")
            body, text, prompt, completion_tokens = parse_response(response)
        except ProviderFailure as failure:
            decision.report(False, latency_ms=latency, failure_category=failure.category)
            raise ProviderError(
                str(failure),
                model=decision.path,
                category=failure.category,
                trace_id=decision.trace_id,
                status_code=failure.status,
            ) from (error or failure)
        result = Completion(
            decision=decision,
            model=decision.path,
            text=text,
            response=body,
            latency_ms=latency,
            prompt_tokens=prompt,
            completion_tokens=completion_tokens,
        )
        ok = self._judge(result)
        decision.report(
            ok,
            latency_ms=latency,
            cost_usd=provider.cost(prompt, completion_tokens),
            failure_category=None if ok else "invalid_output",
            prompt_tokens=prompt,
            completion_tokens=completion_tokens,
        )
        return result

    def completion(
        self, messages: list[dict[str, Any]], force_model: str | None = None, **params: Any
    ) -> Completion:
        """Chat completion from the chosen model (``force_model`` pins one, e.g. for the next
        turn of a conversation). Provider errors are reported as failures and raised as
        ProviderError."""
        decision = self._model_decision(force_model)
        provider = self._provider(decision.path)
        url, body, headers = build_request(provider, decision.path, messages, params)
        if self._http is None:
            self._http = httpx.Client()
        started = time.perf_counter()
        try:
            response = self._http.post(url, json=body, headers=headers, timeout=provider.timeout)
        except httpx.HTTPError as exc:
            return self._finish(decision, provider, started, None, exc)
        return self._finish(decision, provider, started, response, None)

    async def acompletion(
        self, messages: list[dict[str, Any]], force_model: str | None = None, **params: Any
    ) -> Completion:
        """``completion()`` for asyncio code (one pooled AsyncClient per router)."""
        decision = self._model_decision(force_model)
        provider = self._provider(decision.path)
        url, body, headers = build_request(provider, decision.path, messages, params)
        if self._ahttp is None:
            self._ahttp = httpx.AsyncClient()
        started = time.perf_counter()
        try:
            response = await self._ahttp.post(
                url, json=body, headers=headers, timeout=provider.timeout
            )
        except httpx.HTTPError as exc:
            return self._finish(decision, provider, started, None, exc)
        return self._finish(decision, provider, started, response, None)
