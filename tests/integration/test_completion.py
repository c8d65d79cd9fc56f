"""completion()/acompletion() against a real OpenAI-compatible HTTP server on loopback.

Each test checks the events one by one: the outcome learned is the caller's verdict, a
provider failure is reported once, a conversation is one decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from _openai_server import OpenAIServer, openai_server

from producer_sdk import CompletionStream, Provider, ProviderError, Router
from producer_sdk.testing import InMemorySink, StaticSnapshotSource

HELLO = [{"role": "user", "content": "hello"}]
COST = (12 * 0.5 + 5 * 1.5) / 1000  # one turn's tokens at the test prices


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with openai_server() as server:
        yield server


def router(server: OpenAIServer, paths: list[str], sink: InMemorySink, **kw: Any) -> Router:
    provider = Provider(
        base_url=server.base_url,
        api_key="sk-test",
        price_per_1k_prompt=0.5,
        price_per_1k_completion=1.5,
    )
    kw.setdefault("default_provider", provider)
    return Router("chat", paths, event_sink=sink, snapshot_source=StaticSnapshotSource(None), **kw)


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# -- the caller's verdict ----------------------------------------------------------------------


def test_a_200_answer_waits_for_the_callers_verdict(server: OpenAIServer) -> None:
    sink = InMemorySink()
    with router(server, ["useless"], sink) as r:
        resp = r.completion(HELLO, temperature=0.2)
        assert sink.outcomes == []  # HTTP 200 is not a verdict on the answer
        assert resp.choices[0].message.content == "I cannot help with that."
        assert r.report(success=False, failure_category="invalid_output") is True
        assert r.stats().duplicate_reports == 0
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test"
    assert request["body"] == {"model": "useless", "messages": HELLO, "temperature": 0.2}
    [decision] = sink.decisions
    assert (decision.trace_id, decision.path) == (resp.decision.trace_id, "useless")
    [outcome] = sink.outcomes
    assert (outcome.trace_id, outcome.success) == (decision.trace_id, False)
    assert outcome.failure_category == "invalid_output"
    # What completion() measured fills the fields the report left out.
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (12, 5)
    assert outcome.cost_usd == pytest.approx(COST)
    assert outcome.latency_ms == pytest.approx(resp.latency_ms)
    assert outcome.time_to_first_token_ms is None


def test_the_response_has_the_openai_shape(server: OpenAIServer) -> None:
    sink = InMemorySink()
    with router(server, ["good-model"], sink) as r:
        resp = r.completion(HELLO)
        assert resp.decision.report(True, score=0.75) is True
    assert resp.model == "good-model"  # the path; what the provider calls it is kept too
    assert resp.response["model"] == "good-model-2026"
    assert resp.choices[0].message.content == resp.text == "hi from good-model"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (12, 5)
    assert [(o.success, o.score, o.latency_ms) for o in sink.outcomes] == [
        (True, 0.75, pytest.approx(resp.latency_ms))
    ]


def test_success_fn_judges_answers_and_success_on_return_counts_them(
    server: OpenAIServer,
) -> None:
    sink = InMemorySink()
    with router(server, ["alpha", "beta"], sink, success_fn=lambda c: "beta" in c.text) as r:
        first = r.completion(HELLO, force_model="alpha")
        second = r.completion(HELLO, force_model="beta")
        with pytest.raises(ValueError, match="force_path 'gamma' is not one of paths"):
            r.completion(HELLO, force_model="gamma")
    assert (first.decision.reason, second.decision.reason) == ("forced", "forced")
    assert [(o.trace_id, o.success, o.failure_category) for o in sink.outcomes] == [
        (first.decision.trace_id, False, "invalid_output"),
        (second.decision.trace_id, True, None),
    ]
    sink2 = InMemorySink()
    with router(server, ["alpha"], sink2, success_on_return=True) as r:
        r.completion(HELLO)
    assert [(o.success, o.cost_usd) for o in sink2.outcomes] == [(True, pytest.approx(COST))]


@pytest.mark.parametrize(
    ("model", "category", "status"),
    [
        ("ratelimited", "rate_limited", 429),
        ("broken", "provider_error", 500),
        ("unauthorized", "auth_error", 401),
        ("garbage", "invalid_output", None),
        ("nochoices", "invalid_output", None),
    ],
)
def test_provider_failures_are_reported_once_then_raised(
    server: OpenAIServer,
    caplog: pytest.LogCaptureFixture,
    model: str,
    category: str,
    status: int | None,
) -> None:
    sink = InMemorySink()
    with router(server, [model], sink) as r:
        with pytest.raises(ProviderError) as info:
            r.completion(HELLO)
        # The hosted router's documented pattern reports success after completion() and nothing
        # in except; a caller who reports the failure again is told it was taken already.
        assert r.report(success=False) is False
        assert r.stats().duplicate_reports == 1
    error = info.value
    assert (error.model, error.category, error.status_code) == (model, category, status)
    assert error.trace_id == sink.decisions[0].trace_id
    [outcome] = sink.outcomes
    assert (outcome.trace_id, outcome.success) == (error.trace_id, False)
    assert outcome.failure_category == category
    assert outcome.latency_ms is not None
    [warning] = warnings(caplog, "already reported")
    assert "already reported by completion()" in warning
    assert "pass success_fn to judge answers there, or report once" in warning


def test_timeout_and_connection_refused(server: OpenAIServer) -> None:
    sink = InMemorySink()
    slow = Provider(base_url=server.base_url, timeout=0.2)
    with router(server, ["slow"], sink, providers={"slow": slow}) as r:
        with pytest.raises(ProviderError) as info:
            r.completion(HELLO)
        assert info.value.category == "timeout"
    sink2 = InMemorySink()
    nowhere = Provider(base_url="http://127.0.0.1:1/v1")
    with router(server, ["m"], sink2, default_provider=nowhere) as r:
        with pytest.raises(ProviderError) as info:
            r.completion(HELLO)
        assert info.value.category == "connection_error"
    assert [(o.success, o.failure_category) for o in sink.outcomes] == [(False, "timeout")]
    assert [(o.success, o.failure_category) for o in sink2.outcomes] == [
        (False, "connection_error")
    ]


def test_bad_arguments_are_rejected_before_any_decision(server: OpenAIServer) -> None:
    sink = InMemorySink()
    with router(server, ["m"], sink) as r:
        with pytest.raises(ValueError, match="messages must be a non-empty list"):
            r.completion([])
        with pytest.raises(ValueError, match="model cannot be passed"):
            r.completion(HELLO, model="other")
        with pytest.raises(ValueError, match=r"messages\[1\] must be a chat message"):
            r.completion([HELLO[0], "hi"])
        with pytest.raises(ValueError, match="stream must be a bool"):
            r.completion(HELLO, stream="yes")  # type: ignore[call-overload]
    assert server.requests == []
    assert sink.decisions == []


def test_provider_headers_are_sent(server: OpenAIServer) -> None:
    sink = InMemorySink()
    azure = Provider(base_url=server.base_url, headers={"api-key": "azure-key"})
    with router(server, ["m"], sink, default_provider=azure) as r:
        r.completion(HELLO)
    assert server.requests[0]["headers"]["api-key"] == "azure-key"
    with pytest.raises(ValueError, match="headers must map header names"):
        Provider(headers={"x": 1})  # type: ignore[dict-item]


def test_completion_needs_model_names() -> None:
    r = Router("chat", [("f", lambda: 1)], event_sink=InMemorySink())
    with pytest.raises(ValueError, match="completion\\(\\) needs model names"):
        r.completion(HELLO)


# -- conversations -----------------------------------------------------------------------------


def test_a_conversation_is_one_decision_and_one_outcome(server: OpenAIServer) -> None:
    sink = InMemorySink()
    with router(server, ["gpt-a", "gpt-b"], sink) as r:
        conversation: list[Any] = [{"role": "user", "content": "I need help"}]
        first = r.completion(conversation)
        conversation.append(first.choices[0].message)  # a Message goes back as it came
        conversation.append({"role": "user", "content": "That didn't work"})
        second = r.completion(conversation, continue_from=first)
        assert r.report(success=False, failure_category="user_rejected") is True
    assert second.decision is first.decision
    assert first.decision.turns == 2
    [decision] = sink.decisions
    assert decision.trace_id == first.decision.trace_id
    assert [q["body"]["model"] for q in server.requests] == [decision.path] * 2
    assert server.requests[1]["body"]["messages"][1] == {
        "role": "assistant",
        "content": f"hi from {decision.path}",
    }
    [outcome] = sink.outcomes
    assert (outcome.trace_id, outcome.success) == (decision.trace_id, False)
    assert outcome.failure_category == "user_rejected"
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (24, 10)
    assert outcome.cost_usd == pytest.approx(2 * COST)
    assert outcome.latency_ms == pytest.approx(first.latency_ms + second.latency_ms)


def test_continue_from_refuses_what_cannot_be_continued(server: OpenAIServer) -> None:
    sink = InMemorySink()
    with router(server, ["m"], sink) as r, router(server, ["m"], InMemorySink()) as other:
        first = r.completion(HELLO)
        with pytest.raises(ValueError, match="force_model or continue_from, not both"):
            r.completion(HELLO, continue_from=first, force_model="m")
        with pytest.raises(ValueError, match="is not this router's"):
            other.completion(HELLO, continue_from=first)
        with pytest.raises(ValueError, match="continue_from must be a Completion or a Decision"):
            r.completion(HELLO, continue_from="m")  # type: ignore[call-overload]
        first.decision.report(True)
        with pytest.raises(ValueError, match="already reported by report\\(\\)"):
            r.completion(HELLO, continue_from=first)
    assert len(server.requests) == 1
    assert len(sink.outcomes) == 1


def test_a_failed_turn_ends_the_conversation_as_a_failure(server: OpenAIServer) -> None:
    sink = InMemorySink()
    with router(server, ["flaky"], sink) as r:
        first = r.completion(HELLO)
        with pytest.raises(ProviderError) as info:
            r.completion([*HELLO, {"role": "user", "content": "more"}], continue_from=first)
    assert info.value.trace_id == first.decision.trace_id
    [outcome] = sink.outcomes
    assert (outcome.success, outcome.failure_category) == (False, "provider_error")
    assert outcome.prompt_tokens == 12  # the answered turn's, with both turns' latency
    assert outcome.latency_ms is not None
    assert outcome.latency_ms > first.latency_ms


def test_force_model_on_an_open_conversation_warns_and_makes_a_new_decision(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    sink = InMemorySink()
    with router(server, ["gpt-a", "gpt-b"], sink) as r:
        first = r.completion(HELLO)
        second = r.completion(HELLO, force_model=first.model)
        r.completion(HELLO, force_model=first.model)
        r.report(True)
    assert second.decision.trace_id != first.decision.trace_id
    assert [d.reason for d in sink.decisions][1:] == ["forced", "forced"]
    [warning] = warnings(caplog, "makes a new decision")
    assert "pass continue_from=" in warning
    # Forced decisions are real outcomes of that model: the last one is reported.
    assert [o.trace_id for o in sink.outcomes] == [sink.decisions[2].trace_id]


# -- streaming ---------------------------------------------------------------------------------


def test_a_stream_yields_chunks_and_waits_for_the_verdict(server: OpenAIServer) -> None:
    sink = InMemorySink()
    with router(server, ["streamer"], sink) as r:
        with r.completion(HELLO, stream=True) as stream:
            assert stream.model == "streamer"
            pieces = [c.choices[0].delta.content for c in stream if c.choices]
        assert pieces == ["hi", " from", " streamer", None]
        assert stream.completion.text == "hi from streamer"
        assert stream.completion.usage is not None
        assert stream.completion.usage.completion_tokens == 5
        assert sink.outcomes == []
        assert r.report(True) is True
    body = server.requests[0]["body"]
    assert (body["stream"], body["stream_options"]) == (True, {"include_usage": True})
    [outcome] = sink.outcomes
    assert outcome.trace_id == stream.decision.trace_id == sink.decisions[0].trace_id
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (12, 5)
    ttft, total = outcome.time_to_first_token_ms, outcome.latency_ms
    assert ttft is not None
    assert total is not None
    assert 0 < ttft <= total
    assert ttft == stream.completion.time_to_first_token_ms


@pytest.mark.parametrize(
    ("model", "category", "received"),
    [
        ("cutter", "connection_error", ["hi", " from"]),  # connection dropped
        ("erring", "provider_error", ["hi"]),  # an error event mid-answer
        ("staller", "timeout", ["hi"]),  # nothing more within the read timeout
    ],
)
def test_a_stream_that_fails_midway_is_reported_once(
    server: OpenAIServer, model: str, category: str, received: list[str]
) -> None:
    sink = InMemorySink()
    provider = Provider(base_url=server.base_url, timeout=0.5)
    with router(server, [model], sink, default_provider=provider) as r:
        pieces: list[str | None] = []

        def read(stream: CompletionStream) -> None:
            with stream:
                pieces.extend(chunk.choices[0].delta.content for chunk in stream)

        stream = r.completion(HELLO, stream=True)
        with pytest.raises(ProviderError) as info:
            read(stream)
        assert pieces == received
        assert info.value.category == category
        assert r.report(True) is False
        with pytest.raises(RuntimeError, match="not been read to its end"):
            _ = stream.completion
    assert [(o.success, o.failure_category) for o in sink.outcomes] == [(False, category)]


def test_a_stream_refused_up_front_raises_at_the_call(server: OpenAIServer) -> None:
    sink = InMemorySink()
    with router(server, ["ratelimited"], sink) as r, pytest.raises(ProviderError) as info:
        r.completion(HELLO, stream=True)
    assert (info.value.category, info.value.status_code) == ("rate_limited", 429)
    assert [(o.success, o.failure_category) for o in sink.outcomes] == [(False, "rate_limited")]


def test_a_stream_closed_before_its_end_is_cancelled(server: OpenAIServer) -> None:
    sink = InMemorySink()
    with router(server, ["streamer"], sink) as r:
        with r.completion(HELLO, stream=True) as stream:
            next(iter(stream))
        assert r.report(True) is False
    assert [(o.success, o.failure_category) for o in sink.outcomes] == [(False, "cancelled")]


def test_async_stream_and_conversation(server: OpenAIServer) -> None:
    sink = InMemorySink()

    async def main() -> tuple[str, int]:
        async with router(server, ["streamer"], sink) as r:
            first = await r.acompletion(HELLO)
            async with await r.acompletion(HELLO, continue_from=first, stream=True) as stream:
                text = "".join(
                    [c.choices[0].delta.content or "" async for c in stream if c.choices]
                )
            r.report(True)
            return text, first.decision.turns

    text, turns = asyncio.run(main())
    assert (text, turns) == ("hi from streamer", 2)
    assert len(sink.decisions) == 1
    [outcome] = sink.outcomes
    assert (outcome.success, outcome.prompt_tokens) == (True, 24)
    assert outcome.time_to_first_token_ms is not None


# -- asyncio -----------------------------------------------------------------------------------


def test_acompletion_many_tasks_each_report_their_own(server: OpenAIServer) -> None:
    sink = InMemorySink()

    async def one(r: Router, i: int) -> str:
        resp = await r.acompletion([{"role": "user", "content": str(i)}])
        r.report(success=i % 2 == 0)  # this task's decision, not another's
        return resp.decision.trace_id

    async def main() -> list[str]:
        async with router(server, ["one", "two"], sink) as r:
            return await asyncio.gather(*(one(r, i) for i in range(10)))

    traces = asyncio.run(main())
    assert len(sink.outcomes) == 10
    verdicts = {o.trace_id: o.success for o in sink.outcomes}
    assert [verdicts[t] for t in traces] == [i % 2 == 0 for i in range(10)]


def test_a_cancelled_acompletion_is_reported_once_as_cancelled(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    sink = InMemorySink()

    async def main() -> None:
        async with router(server, ["slow"], sink) as r:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await r.acompletion(HELLO)
            assert r.report(True) is False
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(r.acompletion(HELLO), 0.1)

    with caplog.at_level(logging.WARNING, "outroute.sdk"):
        asyncio.run(main())
    assert [(o.success, o.failure_category) for o in sink.outcomes] == [
        (False, "cancelled"),
        (False, "cancelled"),
    ]
    assert [o.trace_id for o in sink.outcomes] == [d.trace_id for d in sink.decisions]
