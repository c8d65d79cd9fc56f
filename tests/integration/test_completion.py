"""completion()/acompletion() against a real OpenAI-compatible HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from producer_sdk import Provider, ProviderError, Router
from producer_sdk.testing import InMemorySink, StaticSnapshotSource


class FakeProvider(BaseHTTPRequestHandler):
    """Behaves according to the requested model name."""

    requests: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        FakeProvider.requests.append(
            {"path": self.path, "auth": self.headers.get("authorization"), "body": body}
        )
        model = body["model"]
        if model == "slow":
            time.sleep(1.0)
        status, payload = {
            "ratelimited": (429, {"error": {"message": "slow down"}}),
            "broken": (500, {"error": {"message": "upstream exploded"}}),
            "unauthorized": (401, {"error": {"message": "bad key"}}),
            "garbage": (200, "this is not json"),
            "nochoices": (200, {"id": "x", "choices": []}),
        }.get(
            model,
            (
                200,
                {
                    "id": "chatcmpl-1",
                    "model": f"{model}-2026",
                    "choices": [{"message": {"role": "assistant", "content": f"hi from {model}"}}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
                },
            ),
        )
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def base_url() -> Iterator[str]:
    FakeProvider.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def router(base_url: str, paths: list[str], sink: InMemorySink, **kw: Any) -> Router:
    provider = Provider(
        base_url=base_url,
        api_key="sk-test",
        price_per_1k_prompt=0.5,
        price_per_1k_completion=1.5,
    )
    kw.setdefault("default_provider", provider)
    return Router("chat", paths, event_sink=sink, snapshot_source=StaticSnapshotSource(None), **kw)


def test_completion_reports_latency_tokens_and_cost(base_url: str) -> None:
    sink = InMemorySink()
    with router(base_url, ["good-model"], sink) as r:
        result = r.completion([{"role": "user", "content": "hello"}], temperature=0.2)
    assert result.text == "hi from good-model"
    assert result.model == "good-model"
    assert (result.prompt_tokens, result.completion_tokens) == (12, 5)
    request = FakeProvider.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test"
    assert request["body"] == {
        "model": "good-model",
        "messages": [{"role": "user", "content": "hello"}],
        "temperature": 0.2,
    }
    outcome = sink.outcomes[0]
    assert outcome.trace_id == result.decision.trace_id
    assert outcome.success is True
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (12, 5)
    assert outcome.cost_usd == pytest.approx((12 * 0.5 + 5 * 1.5) / 1000)
    assert outcome.latency_ms is not None
    assert 0 < outcome.latency_ms < 5000


@pytest.mark.parametrize(
    ("model", "category", "status"),
    [
        ("ratelimited", "rate_limited", 429),
        ("broken", "provider_error", 500),
        ("unauthorized", "auth_error", 401),
        ("garbage", "invalid_output", 200),
        ("nochoices", "invalid_output", None),
    ],
)
def test_provider_errors_are_reported_then_raised(
    base_url: str, model: str, category: str, status: int | None
) -> None:
    sink = InMemorySink()
    with router(base_url, [model], sink) as r, pytest.raises(ProviderError) as info:
        r.completion([{"role": "user", "content": "x"}])
    error = info.value
    assert (error.model, error.category, error.status_code) == (model, category, status)
    assert error.trace_id == sink.decisions[0].trace_id
    assert [(o.success, o.failure_category) for o in sink.outcomes] == [(False, category)]


def test_timeout_and_connection_refused(base_url: str) -> None:
    sink = InMemorySink()
    slow = Provider(base_url=base_url, timeout=0.2)
    with router(base_url, ["slow"], sink, providers={"slow": slow}) as r:
        with pytest.raises(ProviderError) as info:
            r.completion([{"role": "user", "content": "x"}])
        assert info.value.category == "timeout"
    sink2 = InMemorySink()
    nowhere = Provider(base_url="http://127.0.0.1:1/v1")
    with router(base_url, ["m"], sink2, default_provider=nowhere) as r:
        with pytest.raises(ProviderError) as info:
            r.completion([{"role": "user", "content": "x"}])
        assert info.value.category == "connection_error"
    assert sink.outcomes[0].failure_category == "timeout"
    assert sink2.outcomes[0].failure_category == "connection_error"


def test_force_model_and_success_fn(base_url: str) -> None:
    sink = InMemorySink()
    with router(base_url, ["alpha", "beta"], sink, success_fn=lambda c: "beta" in c.text) as r:
        first = r.completion([{"role": "user", "content": "x"}], force_model="alpha")
        second = r.completion([{"role": "user", "content": "y"}], force_model="beta")
        with pytest.raises(ValueError, match="force_path 'gamma' is not one of paths"):
            r.completion([{"role": "user", "content": "z"}], force_model="gamma")
    assert (first.decision.reason, second.decision.reason) == ("forced", "forced")
    assert [(o.success, o.failure_category) for o in sink.outcomes] == [
        (False, "invalid_output"),
        (True, None),
    ]


def test_bad_messages_are_rejected_before_any_call(base_url: str) -> None:
    sink = InMemorySink()
    with router(base_url, ["m"], sink) as r:
        with pytest.raises(ValueError, match="messages must be a non-empty list"):
            r.completion([])
        with pytest.raises(ValueError, match="model cannot be passed"):
            r.completion([{"role": "user", "content": "x"}], model="other")
    assert FakeProvider.requests == []


def test_acompletion(base_url: str) -> None:
    sink = InMemorySink()

    async def main() -> list[str]:
        async with router(base_url, ["one", "two"], sink) as r:
            results = await asyncio.gather(
                *(r.acompletion([{"role": "user", "content": str(i)}]) for i in range(10))
            )
        return [c.text for c in results]

    texts = asyncio.run(main())
    assert all(t in ("hi from one", "hi from two") for t in texts)
    assert len(sink.outcomes) == 10
    assert all(o.success for o in sink.outcomes)


def test_completion_needs_model_names() -> None:
    r = Router("chat", [("f", lambda: 1)], event_sink=InMemorySink())
    with pytest.raises(ValueError, match="completion\\(\\) needs model names"):
        r.completion([{"role": "user", "content": "x"}])
