"""One model call as a turn of a decision: what it does with each way it can end (report,
raise, return), plain or streamed. No I/O of its own: the flows that send the request and
read a stream's lines are handed the sync or the async client's (``calls``, "Twins").
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from schemas import FailureCategory

from ..decision import Decision, Turn
from ..errors import ProviderError
from ..options import Provider
from ..providers import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    ProviderFailure,
    StreamAssembler,
    build_request,
    check_status,
    classify_exception,
    parse_response,
)
from .calls import CallHost, cancelled, raise_from

__all__ = ["BY", "ModelCall", "StreamReader"]

#: Who reports a model call's outcome.
BY = "completion()"


class ModelCall:
    """One turn: the request, and what to do with each way it can end."""

    __slots__ = ("_host", "body", "decision", "headers", "provider", "started", "streamed", "url")

    def __init__(
        self,
        host: CallHost,
        decision: Decision,
        provider: Provider,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        streamed: bool,
    ) -> None:
        self._host = host
        self.decision = decision
        self.provider = provider
        self.streamed = streamed
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

    def _turn(self) -> Turn:
        return Turn(latency_ms=self.elapsed_ms())

    def failed(self, failure: ProviderFailure) -> ProviderError:
        """Report the failure; the error to raise."""
        return self._fail(failure.category, str(failure), failure.status)

    def _fail(
        self, category: FailureCategory, message: str, status: int | None = None
    ) -> ProviderError:
        decision = self.decision
        self._host.fail(decision, self._turn(), category, BY)
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
        self._host.fail(self.decision, self._turn(), "cancelled" if cancelled(exc) else "other", BY)
        return exc

    def cancelled(self) -> None:
        """Given up by the caller (a stream closed before its end): reported as cancelled."""
        self._host.fail(self.decision, self._turn(), "cancelled", BY)

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
        self._host.settle(self.decision, turn, self._host.judge.verdict(result), BY)
        return result

    def finish(self, response: httpx.Response) -> Completion:
        """A plain (not streamed) answer that has been read."""
        try:
            answer, body = parse_response(response)
        except ProviderFailure as failure:
            raise self.failed(failure) from failure
        return self.answered(answer, body)

    def stream(self, response: httpx.Response) -> StreamReader:
        """A streamed answer whose status has arrived (and, for an error, its body)."""
        try:
            check_status(response)
        except ProviderFailure as failure:
            raise self.failed(failure) from failure
        return StreamReader(self)


class StreamReader:
    """What a stream does with each line and with each way it can end. ``next_chunk`` is the
    one flow of both stream classes (``producer_sdk.streams``); each hands it the I/O of its
    kind of response."""

    __slots__ = ("_assembler", "_call", "completion", "finished")

    def __init__(self, call: ModelCall) -> None:
        self._call = call
        self._assembler = StreamAssembler()
        self.completion: Completion | None = None
        self.finished = False

    @property
    def decision(self) -> Decision:
        return self._call.decision

    def feed(self, line: str | None) -> ChatCompletionChunk | None:
        """The chunk ``line`` carries, or None. At the end of the answer (the ``[DONE]``
        marker, or ``line`` None: no more lines) the answer is assembled and reported, and
        ``finished`` is true. Raises ProviderError, reported, when the stream failed."""
        if line is not None:
            try:
                chunk = self._assembler.feed(line, self._call.elapsed_ms())
            except ProviderFailure as failure:
                self.finished = True
                raise self._call.failed(failure) from failure
            if chunk is not None or not self._assembler.done:
                return chunk
        self.finished = True
        try:
            answer, body = self._assembler.result()
        except ProviderFailure as failure:
            raise self._call.failed(failure) from failure
        first_token_ms = self._assembler.time_to_first_token_ms
        self.completion = self._call.answered(answer, body, first_token_ms)
        return None

    def error(self, exc: BaseException) -> BaseException:
        """Reading failed with ``exc``: report it; the exception to raise."""
        self.finished = True
        return self._call.error(exc)

    async def next_chunk(
        self,
        next_line: Callable[[], Awaitable[str | None]],
        close: Callable[[], Awaitable[None]],
    ) -> ChatCompletionChunk | None:
        """The next chunk, or None after the last (both stream classes): ``next_line`` reads a
        line (None when there is none left), ``close`` releases the response at the end or
        when reading fails."""
        try:
            while not self.finished:
                chunk = self.feed(await next_line())
                if chunk is not None:
                    return chunk
        except BaseException as exc:
            await close()
            raise_from(self.error(exc), exc)
        await close()
        return None

    def close_early(self) -> None:
        """Closed by the caller before its end: reported as cancelled."""
        if not self.finished:
            self.finished = True
            self._call.cancelled()
