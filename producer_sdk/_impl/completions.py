"""``completion()``/``acompletion()``: chat completions from the chosen model, plain or
streamed, as one turn of a decision (a conversation's turns share one).

``begin`` checks the arguments and decides; ``ModelCall`` says what to do with each way a turn
ends; ``_send`` is the one flow that sends it, handed the sync or the async client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx

from ..decision import Decision
from ..options import Provider
from ..providers import Completion, check_request
from ..streams import AsyncCompletionStream, CompletionStream
from .calls import CallHost, no_wait, raise_from, run_sync
from .model_call import BY, ModelCall, StreamReader

__all__ = ["ModelCalls"]

S = TypeVar("S", CompletionStream, AsyncCompletionStream)


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
                and current.made_by == BY
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
            decision = host.decide(force_path=force_model)
            decision.made_by = BY
            return decision
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

    def begin(
        self,
        messages: Any,
        force_model: str | None,
        continue_from: Any,
        stream: bool,
        params: dict[str, Any],
    ) -> ModelCall:
        """The turn a call is: its arguments checked, then its decision (a new one, or the one
        it continues)."""
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
        return ModelCall(self._host, decision, provider, checked, params, stream)

    # -- drivers -------------------------------------------------------------------------------

    def completion(self, call: ModelCall) -> Completion | CompletionStream:
        if self._http is None:
            self._http = httpx.Client()
        send, read = no_wait(self._http.send), no_wait(httpx.Response.read)
        return run_sync(self._send(call, send, read, CompletionStream))

    async def acompletion(self, call: ModelCall) -> Completion | AsyncCompletionStream:
        if self._ahttp is None:
            self._ahttp = httpx.AsyncClient()
        return await self._send(call, self._ahttp.send, httpx.Response.aread, AsyncCompletionStream)

    @staticmethod
    async def _send(
        call: ModelCall,
        send: Callable[..., Awaitable[httpx.Response]],
        read: Callable[[httpx.Response], Awaitable[bytes]],
        stream_class: Callable[[StreamReader, httpx.Response], S],
    ) -> Completion | S:
        """Send the turn's request; its answer, or the stream of it."""
        try:
            response = await send(call.request(), stream=call.streamed)
            if call.streamed and response.status_code >= 300:
                await read(response)  # the error's body says what it was; reading it closes it
        except BaseException as exc:
            raise_from(call.error(exc), exc)
        if not call.streamed:
            return call.finish(response)
        return stream_class(call.stream(response), response)

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
