"""OpenAI-compatible chat completions over httpx: request building, error classification."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from schemas import FailureCategory

from .decision import Decision
from .options import Provider

__all__ = ["Completion", "ProviderFailure", "build_request", "classify_status", "parse_response"]


@dataclass(frozen=True, slots=True)
class Completion:
    """A chat completion and the decision that chose its model."""

    decision: Decision
    model: str
    text: str
    response: dict[str, Any]
    latency_ms: float
    prompt_tokens: int | None
    completion_tokens: int | None


class ProviderFailure(Exception):
    """Internal: a classified provider failure, turned into ProviderError by the router."""

    def __init__(self, message: str, category: FailureCategory, status: int | None = None):
        super().__init__(message)
        self.category: FailureCategory = category
        self.status = status


def build_request(
    provider: Provider, model: str, messages: Any, params: dict[str, Any]
) -> tuple[str, dict[str, Any], dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of chat messages")
    for key in ("model", "messages"):
        if key in params:
            raise ValueError(f"{key} cannot be passed as a parameter; the router sets it")
    headers = {"content-type": "application/json"}
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


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:200]
    return str(body)[:200]


def parse_response(response: httpx.Response) -> tuple[dict[str, Any], str, int | None, int | None]:
    """The body, the first choice's text and the token usage; raises ProviderFailure."""
    if response.status_code >= 300:
        category = classify_status(response.status_code)
        raise ProviderFailure(
            f"provider answered HTTP {response.status_code}: {_error_detail(response)}",
            category,
            response.status_code,
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise ProviderFailure(
            "provider answered with a body that is not JSON", "invalid_output", 200
        ) from exc
    if not isinstance(body, dict):
        raise ProviderFailure("provider answered with JSON that is not an object", "invalid_output")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProviderFailure("provider response has no choices", "invalid_output")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    text = content if isinstance(content, str) else ""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    return body, text, _tokens(usage.get("prompt_tokens")), _tokens(usage.get("completion_tokens"))


def _tokens(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
