"""``completion()``/``acompletion()``: chat completions from the chosen model, plain or
streamed, as one turn of a decision (a conversation's turns share one).

``_Call`` holds what one turn decides after each step (report, raise, return); the sync and
async drivers and the two stream classes only move bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from schemas import FailureCategory

from ._calls import CallHost, Judge, cancelled, raise_from, settle_failure, settle_result
from .decision import Decision, Turn
from .errors import ProviderError
from .options import Provider
from .providers import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    ProviderFailure,
    StreamAssembler,
    build_request,
    check_request,
    check_status,
    classify_exception,
    parse_response,
)

__all__ = ["AsyncCompletionStream", "CompletionStream", "ModelCalls"]

_BY = "completion()"


class _Call:
    """One turn: the request, and what to do with each way it can end."""

    __slots__ = ("body", "decision", "headers", "judge", "provider", "started", "url")

    def __init__(
        self,
        decision: Decision,
        provider: Provider,
        judge: Judge,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
    ) -> None:
        self.decision = decision
        self.judge = judge
        self.provider = provider
        self.url, self.body, self.headers = build_request(provider, decision.path, messages, params)
        self.started = 0.0

    def request(self) -> httpx.Request:
        """The request, with the provider's timeout; the turn's clock starts now."""
        timeout = httpx.Timeout(self.provider.timeout).as_dict()
        request = httpx.Request(
            "POST", self.url, json=self.body, headers=self.headers, extensions={"timeout": timeout}
        )
        self.started = time.perf_counter()
        return request

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0 if self.started else 0.0

    def failed(self, failure: ProviderFailure) -> ProviderError:
        """Report the failure; the error to raise."""
        return self._fail(failure.category, str(failure), failure.status)

    def _fail(
        self, category: FailureCategory, message: str, status: int | None = None
    ) -> ProviderError:
        decision = self.decision
        settle_failure(decision, Turn(latency_ms=self.elapsed_ms()), category, _BY)
        return ProviderError(
            message,
            model=decision.path,
            category=category,
            trace_id=decision.trace_id,
            status_code=status,
        )

    def error(self, exc: BaseException) -> BaseException:
        """The call raised ``exc``: report it; the exception to raise instead (or ``exc``)."""
        if isinstance(exc, ProviderError):
            return exc  # reported where it was made
        if isinstance(exc, httpx.HTTPError):
            return self._fail(classify_exception(exc), f"request failed: {exc!r}")
        category: FailureCategory = "cancelled" if cancelled(exc) else "other"
        settle_failure(self.decision, Turn(latency_ms=self.elapsed_ms()), category, _BY)
        return exc

    def answered(
        self, answer: ChatCompletion, body: dict[str, Any], first_token_ms: float | None = None
    ) -> Completion:
        """A complete answer: record it, and report it if the judge has a verdict."""
        latency = self.elapsed_ms()
        usage = answer.usage
        prompt = None if usage is None else usage.prompt_tokens
        completion_tokens = None if usage is None else usage.completion_tokens
        result = Completion(
            decision=self.decision,
            model=self.decision.path,
            choices=tuple(answer.choices),
            usage=usage,
            response=body,
            latency_ms=latency,
            time_to_first_token_ms=first_token_ms,
        )
        turn = Turn(
            latency_ms=latency,
            cost_usd=self.provider.cost(prompt, completion_tokens),
            prompt_tokens=prompt,
            completion_tokens=completion_tokens,
            time_to_first_token_ms=first_token_ms,
        )
        settle_result(self.decision, turn, self.judge.verdict(result), _BY)
        return result

    def finish(self, response: httpx.Response) -> Completion:
        """A plain (not streamed) answer that has been read."""
        try:
            answer, body = parse_response(response)
        except ProviderFailure as failure:
            raise self.failed(failure) from failure
        return self.answered(answer, body)


class _Stream:
    """What a stream does with each line and with each way it can end (shared by both
    stream classes)."""

    __slots__ = ("_assembler", "_call", "completion", "finished")

    def __init__(self, call: _Call) -> None:
        self._call = call
        self._assembler = StreamAssembler()
        self.completion: Completion | None = None
        self.finished = False

    @property
    def decision(self) -> Decision:
        return self._call.decision

    def line(self, line: str) -> ChatCompletionChunk | None:
        try:
            return self._assembler.feed(line, self._call.elapsed_ms())
        except ProviderFailure as failure:
            self.finished = True
            raise self._call.failed(failure) from failure

    @property
    def done(self) -> bool:
        return self._assembler.done

    def end(self) -> None:
        self.finished = True
        try:
            answer, body = self._assembler.result()
        except ProviderFailure as failure:
            raise self._call.failed(failure) from failure
        self.completion = self._call.answered(answer, body, self._assembler.time_to_first_token_ms)

    def error(self, exc: BaseException) -> BaseException:
        self.finished = True
        return self._call.error(exc)

    def close_early(self) -> None:
        """Closed by the caller before its end: reported as cancelled."""
        if not self.finished:
            self.finished = True
            settle_failure(
                self._call.decision, Turn(latency_ms=self._call.elapsed_ms()), "cancelled", _BY
            )


class _StreamBase:
    __slots__ = ("_response", "_stream")

    def __init__(self, stream: _Stream, response: httpx.Response) -> None:
        self._stream = stream
        self._response = response

    @property
    def decision(self) -> Decision:
        return self._stream.decision

    @property
    def model(self) -> str:
        return self._stream.decision.path

    @property
    def completion(self) -> Completion:
        """The whole answer, once the stream has been read to its end."""
        if self._stream.completion is None:
            raise RuntimeError("the stream has not been read to its end")
        return self._stream.completion


class CompletionStream(_StreamBase):
    """The chunks of a streamed completion as they arrive. Iterate it, preferably in a
    ``with`` block: closing it before its end reports the decision as cancelled.
    ``completion`` is the assembled answer after the end."""

    __slots__ = ("_lines",)

    def __init__(self, stream: _Stream, response: httpx.Response) -> None:
        super().__init__(stream, response)
        self._lines: Iterator[str] = response.iter_lines()

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> ChatCompletionChunk:
        stream = self._stream
        if stream.finished:
            raise StopIteration
        try:
            for line in self._lines:
                chunk = stream.line(line)
                if chunk is not None:
                    return chunk
                if stream.done:
                    break
            stream.end()
        except BaseException as exc:
            self._response.close()
            raise_from(stream.error(exc), exc)
        self._response.close()
        raise StopIteration

    def close(self) -> None:
        self._stream.close_early()
        self._response.close()

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._stream.finished:
            self.close()


class AsyncCompletionStream(_StreamBase):
    """``CompletionStream`` for asyncio code: ``async for`` and ``async with``."""

    __slots__ = ("_lines",)

    def __init__(self, stream: _Stream, response: httpx.Response) -> None:
        super().__init__(stream, response)
        self._lines: AsyncIterator[str] = response.aiter_lines()

    def __aiter__(self) -> AsyncCompletionStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        stream = self._stream
        if stream.finished:
            raise StopAsyncIteration
        try:
            async for line in self._lines:
                chunk = stream.line(line)
                if chunk is not None:
                    return chunk
                if stream.done:
                    break
            stream.end()
        except BaseException as exc:
            await self._response.aclose()
            raise_from(stream.error(exc), exc)
        await self._response.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._stream.close_early()
        await self._response.aclose()

    async def __aenter__(self) -> AsyncCompletionStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        self._stream.close_early()  # the connection is released by the pool's own cleanup


class ModelCalls:
    """The completions of a router whose paths are model names."""

    __slots__ = ("_ahttp", "_default_provider", "_host", "_http", "_providers")

    def __init__(
        self,
        host: CallHost,
        providers: Mapping[str, Provider],
        default_provider: Provider | None,
    ) -> None:
        self._host = host
        self._providers = dict(providers)
        self._default_provider = default_provider
        self._http: httpx.Client | None = None
        self._ahttp: httpx.AsyncClient | None = None

    # -- one turn ------------------------------------------------------------------------------

    def _provider(self, model: str) -> Provider:
        provider = self._providers.get(model) or self._default_provider
        if provider is None:
            provider = self._default_provider = Provider.from_openai_env()
        return provider

    def _decision(self, force_model: str | None, continue_from: Any) -> Decision:
        host = self._host
        if continue_from is None:
            current = host.current()
            if (
                force_model is not None
                and current is not None
                and current.path == force_model
                and current.made_by == _BY
                and not current.reported
            ):
                host.warnings.warn(
                    "force_model",
                    "force_model=%r makes a new decision, and this thread's completion on that "
                    "model (trace %s) is still open: to continue a conversation as one "
                    "decision, pass continue_from= the earlier completion",
                    force_model,
                    current.trace_id,
                )
            return host.decide(None, force_model, _BY)
        if force_model is not None:
            raise ValueError("pass force_model or continue_from, not both")
        decision = (
            continue_from.decision if isinstance(continue_from, Completion) else continue_from
        )
        if not isinstance(decision, Decision):
            raise ValueError(
                f"continue_from must be a Completion or a Decision, got {continue_from!r}"
            )
        host.resume(decision, "continue_from")
        return decision

    def _begin(
        self,
        messages: Any,
        force_model: str | None,
        continue_from: Any,
        stream: bool,
        params: dict[str, Any],
    ) -> _Call:
        if not isinstance(stream, bool):
            raise ValueError(f"stream must be a bool, got {stream!r}")
        if stream:
            params = {"stream": True, "stream_options": {"include_usage": True}, **params}
            if params["stream_options"] is None:
                del params["stream_options"]
        # Arguments are checked before deciding, so a bad call leaves no open decision.
        checked = check_request(messages, params)
        decision = self._decision(force_model, continue_from)
        provider = self._provider(decision.path)
        return _Call(decision, provider, self._host.judge, checked, params)

    # -- drivers -------------------------------------------------------------------------------

    def completion(
        self,
        messages: Any,
        force_model: str | None,
        continue_from: Any,
        stream: bool,
        params: dict[str, Any],
    ) -> Completion | CompletionStream:
        call = self._begin(messages, force_model, continue_from, stream, params)
        if self._http is None:
            self._http = httpx.Client()
        try:
            response = self._http.send(call.request(), stream=stream)
            if stream and response.status_code >= 300:
                response.read()
                response.close()
        except BaseException as exc:
            raise_from(call.error(exc), exc)
        if not stream:
            return call.finish(response)
        return CompletionStream(self._open_stream(call, response), response)

    async def acompletion(
        self,
        messages: Any,
        force_model: str | None,
        continue_from: Any,
        stream: bool,
        params: dict[str, Any],
    ) -> Completion | AsyncCompletionStream:
        call = self._begin(messages, force_model, continue_from, stream, params)
        if self._ahttp is None:
            self._ahttp = httpx.AsyncClient()
        try:
            response = await self._ahttp.send(call.request(), stream=stream)
            if stream and response.status_code >= 300:
                await response.aread()
                await response.aclose()
        except BaseException as exc:
            raise_from(call.error(exc), exc)
        if not stream:
            return call.finish(response)
        return AsyncCompletionStream(self._open_stream(call, response), response)

    def _open_stream(self, call: _Call, response: httpx.Response) -> _Stream:
        try:
            check_status(response)
        except ProviderFailure as failure:
            raise call.failed(failure) from failure
        return _Stream(call)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
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

    async def aclose(self) -> None:
        ahttp, self._ahttp = self._ahttp, None
        if ahttp is not None:
            await ahttp.aclose()

    def after_fork_in_child(self) -> None:
        """The parent's connections are not this process's: forget them without closing."""
        self._http = None
        self._ahttp = None
