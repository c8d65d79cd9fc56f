"""OpenAI-compatible chat completions on the wire: requests, the response types, error
classification, and the assembly of a streamed answer.

The response types are small pydantic models of the fields the SDK and its users read
(``choices[i].message.content``, ``usage``, ...); every other field a provider sends is kept on
them (``extra="allow"``) and in ``Completion.response``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from schemas import FailureCategory

from .decision import Decision
from .options import Provider

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "Choice",
    "ChunkChoice",
    "Completion",
    "Delta",
    "Message",
    "ProviderFailure",
    "StreamAssembler",
    "Usage",
    "build_request",
    "check_request",
    "check_status",
    "classify_exception",
    "classify_status",
    "parse_response",
]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Message(_Wire):
    """A chat message as a provider returns it; append it to the next turn's messages."""

    role: str = "assistant"
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class Usage(_Wire):
    """Token counts; a count a provider leaves out or garbles is None."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    @field_validator("prompt_tokens", "completion_tokens", "total_tokens", mode="before")
    @classmethod
    def _count_or_none(cls, value: Any) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        return None


class Choice(_Wire):
    index: int = 0
    message: Message
    finish_reason: str | None = None


class ChatCompletion(_Wire):
    """The body of a ``/chat/completions`` answer."""

    id: str | None = None
    model: str | None = None
    choices: list[Choice] = Field(min_length=1)
    usage: Usage | None = None


class Delta(_Wire):
    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(_Wire):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: str | None = None


class ChatCompletionChunk(_Wire):
    """One ``data:`` event of a streamed answer."""

    id: str | None = None
    model: str | None = None
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None

    @property
    def text(self) -> str:
        """The first choice's new text; "" for a chunk without one (the usage chunk at the
        end has no choices)."""
        return (self.choices[0].delta.content or "") if self.choices else ""


@dataclass(frozen=True, slots=True)
class Completion:
    """A chat completion, and the decision that chose its model.

    ``model`` is the path (the model name routed to; pass the completion as ``continue_from``
    to keep it for the next turn); ``response["model"]`` is what the provider calls it.
    """

    decision: Decision
    model: str
    choices: tuple[Choice, ...]
    usage: Usage | None
    response: dict[str, Any]
    latency_ms: float
    time_to_first_token_ms: float | None = None

    @property
    def text(self) -> str:
        """The first choice's text ("" when it has none, e.g. a tool call)."""
        return self.choices[0].message.content or ""

    @property
    def prompt_tokens(self) -> int | None:
        return None if self.usage is None else self.usage.prompt_tokens

    @property
    def completion_tokens(self) -> int | None:
        return None if self.usage is None else self.usage.completion_tokens


class ProviderFailure(Exception):
    """Internal: a classified provider failure, turned into ProviderError by the router."""

    def __init__(self, message: str, category: FailureCategory, status: int | None = None):
        super().__init__(message)
        self.category: FailureCategory = category
        self.status = status


def _message(index: int, message: Any) -> Any:
    if isinstance(message, BaseModel):
        return message.model_dump(exclude_none=True)
    if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
        raise ValueError(
            f"messages[{index}] must be a chat message (a dict with a 'role'), got {message!r}"
        )
    return dict(message)


def check_request(messages: Any, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The messages as JSON-ready dicts; ValueError naming what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of chat messages")
    for key in ("model", "messages"):
        if key in params:
            raise ValueError(f"{key} cannot be passed as a parameter; the router sets it")
    return [_message(i, m) for i, m in enumerate(messages)]


def build_request(
    provider: Provider, model: str, messages: list[dict[str, Any]], params: dict[str, Any]
) -> tuple[str, dict[str, Any], dict[str, str]]:
    headers = {"content-type": "application/json", **dict(provider.headers)}
    if provider.api_key is not None:
        secret = provider.api_key
        key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        headers["authorization"] = f"Bearer {key}"
    url = f"{provider.base_url.rstrip('/')}/chat/completions"
    return url, {"model": model, "messages": messages, **params}, headers


def classify_status(status: int) -> FailureCategory:
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth_error"
    if status in (400, 404, 409, 413, 422):
        return "invalid_request"
    if status == 408:
        return "timeout"
    return "provider_error"


def classify_exception(exc: BaseException) -> FailureCategory:
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout"
    if isinstance(exc, httpx.TransportError | ConnectionError):
        return "connection_error"
    return "other"


def _error_detail(body: Any, text: str) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:200]
    return text[:200] if body is None else str(body)[:200]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def check_status(response: httpx.Response) -> None:
    """Raise ProviderFailure for a non-2xx answer (its body must have been read)."""
    if response.status_code >= 300:
        detail = _error_detail(_json(response.text), response.text)
        raise ProviderFailure(
            f"provider answered HTTP {response.status_code}: {detail}",
            classify_status(response.status_code),
            response.status_code,
        )


def _invalid(what: str, exc: ValidationError) -> ProviderFailure:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return ProviderFailure(f"{what}: {where}: {first['msg']}", "invalid_output")


def parse_response(response: httpx.Response) -> tuple[ChatCompletion, dict[str, Any]]:
    """The validated answer and its raw body; raises ProviderFailure."""
    check_status(response)
    body = _json(response.text)
    if body is None:
        raise ProviderFailure("provider answered with a body that is not JSON", "invalid_output")
    if not isinstance(body, dict):
        raise ProviderFailure("provider answered with JSON that is not an object", "invalid_output")
    try:
        return ChatCompletion.model_validate(body), body
    except ValidationError as exc:
        raise _invalid("provider response is not a chat completion", exc) from exc


class StreamAssembler:
    """Reads the lines of a server-sent event stream of chunks, and assembles the answer.

    Pure: the caller feeds lines and the time each arrived (ms since the request was sent).
    """

    __slots__ = ("_choices", "_id", "_model", "_usage", "done", "time_to_first_token_ms")

    def __init__(self) -> None:
        self._choices: dict[int, dict[str, Any]] = {}
        self._id: str | None = None
        self._model: str | None = None
        self._usage: Usage | None = None
        self.done = False
        self.time_to_first_token_ms: float | None = None

    def feed(self, line: str, elapsed_ms: float) -> ChatCompletionChunk | None:
        """The chunk this line carries, or None (blank lines, comments, other fields, the end
        marker ``[DONE]``, after which ``done`` is true). Raises ProviderFailure."""
        if not line.startswith("data:"):
            return None
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return None
        payload = _json(data)
        if isinstance(payload, dict) and "error" in payload and "choices" not in payload:
            detail = _error_detail(payload, data)
            raise ProviderFailure(f"provider failed mid-stream: {detail}", "provider_error")
        if not isinstance(payload, dict):
            raise ProviderFailure(
                f"stream event is not a JSON object: {data[:200]}", "invalid_output"
            )
        try:
            chunk = ChatCompletionChunk.model_validate(payload)
        except ValidationError as exc:
            raise _invalid("stream event is not a chat completion chunk", exc) from exc
        self._take(chunk, elapsed_ms)
        return chunk

    def _take(self, chunk: ChatCompletionChunk, elapsed_ms: float) -> None:
        self._id = self._id or chunk.id
        self._model = self._model or chunk.model
        if chunk.usage is not None:
            self._usage = chunk.usage
        for part in chunk.choices:
            choice = self._choices.setdefault(
                part.index, {"role": "assistant", "content": [], "tools": {}, "finish": None}
            )
            delta = part.delta
            if delta.role:
                choice["role"] = delta.role
            if delta.content:
                choice["content"].append(delta.content)
            for call in delta.tool_calls or ():
                _merge_tool_call(choice["tools"], call)
            if (delta.content or delta.tool_calls) and self.time_to_first_token_ms is None:
                self.time_to_first_token_ms = elapsed_ms
            if part.finish_reason is not None:
                choice["finish"] = part.finish_reason

    def result(self) -> tuple[ChatCompletion, dict[str, Any]]:
        """The assembled answer; ProviderFailure when the stream ended before it was complete
        (no ``[DONE]`` and a choice without a finish reason)."""
        finished = self._choices and all(c["finish"] for c in self._choices.values())
        if not (self.done or finished):
            raise ProviderFailure("stream ended before the answer was complete", "connection_error")
        if not self._choices:
            raise ProviderFailure("stream carried no choices", "invalid_output")
        choices = []
        for index in sorted(self._choices):
            choice = self._choices[index]
            message: dict[str, Any] = {
                "role": choice["role"],
                "content": "".join(choice["content"]),
            }
            if choice["tools"]:
                message["tool_calls"] = [choice["tools"][i] for i in sorted(choice["tools"])]
            choices.append({"index": index, "message": message, "finish_reason": choice["finish"]})
        body: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion",
            "model": self._model,
            "choices": choices,
            "usage": None if self._usage is None else self._usage.model_dump(),
        }
        return ChatCompletion.model_validate(body), body


def _merge_tool_call(calls: dict[int, dict[str, Any]], part: dict[str, Any]) -> None:
    index = part.get("index", 0)
    if not isinstance(index, int):
        return
    call = calls.setdefault(index, {"type": "function", "function": {"arguments": ""}})
    for key in ("id", "type"):
        if isinstance(part.get(key), str):
            call[key] = part[key]
    function = part.get("function")
    if isinstance(function, dict):
        if isinstance(function.get("name"), str):
            call["function"]["name"] = function["name"]
        if isinstance(function.get("arguments"), str):
            call["function"]["arguments"] += function["arguments"]
