"""Streamed completions: ``router.completion(..., stream=True)`` returns a CompletionStream,
``await router.acompletion(..., stream=True)`` an AsyncCompletionStream.

Both hand out the chunks as they arrive. What each line means, and how the decision is
reported at the end, is one flow (``StreamReader.next_chunk``); each class hands it the I/O of
its kind of response.
"""

from __future__ import annotations

import functools
from types import TracebackType

import httpx

from ._impl.calls import no_wait, run_sync
from ._impl.model_call import StreamReader
from .decision import Decision
from .providers import ChatCompletionChunk, Completion

__all__ = ["AsyncCompletionStream", "CompletionStream"]


class _StreamBase:
    __slots__ = ("_reader", "_response")

    def __init__(self, reader: StreamReader, response: httpx.Response) -> None:
        self._reader = reader
        self._response = response

    @property
    def decision(self) -> Decision:
        return self._reader.decision

    @property
    def model(self) -> str:
        return self._reader.decision.path

    @property
    def completion(self) -> Completion:
        """The whole answer, once the stream has been read to its end."""
        if self._reader.completion is None:
            raise RuntimeError("the stream has not been read to its end")
        return self._reader.completion


class CompletionStream(_StreamBase):
    """The chunks of a streamed completion as they arrive. Iterate it, preferably in a
    ``with`` block: closing it before its end reports the decision as cancelled.
    ``completion`` is the assembled answer after the end."""

    __slots__ = ("_close", "_next_line")

    def __init__(self, reader: StreamReader, response: httpx.Response) -> None:
        super().__init__(reader, response)
        self._next_line = no_wait(functools.partial(next, response.iter_lines(), None))
        self._close = no_wait(response.close)

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> ChatCompletionChunk:
        chunk = run_sync(self._reader.next_chunk(self._next_line, self._close))
        if chunk is None:
            raise StopIteration
        return chunk

    def close(self) -> None:
        self._reader.close_early()
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
        if not self._reader.finished:
            self.close()


class AsyncCompletionStream(_StreamBase):
    """``CompletionStream`` for asyncio code: ``async for`` and ``async with``."""

    __slots__ = ("_lines",)

    def __init__(self, reader: StreamReader, response: httpx.Response) -> None:
        super().__init__(reader, response)
        self._lines = response.aiter_lines()

    def __aiter__(self) -> AsyncCompletionStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        chunk = await self._reader.next_chunk(self._next_line, self._response.aclose)
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def _next_line(self) -> str | None:
        return await anext(self._lines, None)

    async def aclose(self) -> None:
        self._reader.close_early()
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
        self._reader.close_early()  # the connection is released by the pool's own cleanup
