"""Assembling a streamed chat completion from its server-sent events (pure, no I/O)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from producer_sdk.providers import ProviderFailure, StreamAssembler


def data(event: dict[str, Any]) -> str:
    return "data: " + json.dumps(event)


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> str:
    choice = {"index": index, "delta": fields, "finish_reason": finish}
    return data({"id": "c", "model": "m-1", "choices": [choice]})


def feed(lines: list[str]) -> StreamAssembler:
    assembler = StreamAssembler()
    for i, line in enumerate(lines):
        assembler.feed(line, float(10 * i))
    return assembler


def test_text_usage_and_time_to_first_token() -> None:
    assembler = feed(
        [
            ": keep-alive comment",
            delta(role="assistant"),  # no token yet
            "",
            delta(content="Hel"),
            "event: message",
            delta(content="lo"),
            delta(finish="stop"),
            data({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
            "data: [DONE]",
        ]
    )
    assert assembler.done
    assert assembler.time_to_first_token_ms == 30.0  # the line with the first content
    answer, body = assembler.result()
    assert answer.choices[0].message.content == "Hello"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 2
    assert body["model"] == "m-1"


def test_choices_and_tool_calls_are_merged_by_index() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    answer, _ = feed(
        [
            delta(index=1, content="second"),
            delta(index=0, tool_calls=[call]),
            delta(index=0, tool_calls=[{"index": 0, "function": {"arguments": '{"a":'}}]),
            delta(index=0, tool_calls=[{"index": 0, "function": {"arguments": " 1}"}}]),
            delta(index=0, finish="tool_calls"),
            delta(index=1, finish="stop"),
        ]
    ).result()  # every choice finished: complete without [DONE]
    first, second = answer.choices
    assert first.message.tool_calls == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]
    assert (first.message.content, second.message.content) == ("", "second")


@pytest.mark.parametrize(
    ("lines", "category", "message"),
    [
        ([delta(content="Hel")], "connection_error", "ended before the answer was complete"),
        (["data: [DONE]"], "invalid_output", "carried no choices"),
    ],
)
def test_incomplete_streams_fail(lines: list[str], category: str, message: str) -> None:
    with pytest.raises(ProviderFailure, match=message) as info:
        feed(lines).result()
    assert info.value.category == category


@pytest.mark.parametrize(
    ("line", "category", "message"),
    [
        ("data: {not json", "invalid_output", "not a JSON object"),
        ('data: {"choices": [{"delta": {"content": 5}}]}', "invalid_output", "choices.0.delta"),
        ('data: {"error": {"message": "overloaded"}}', "provider_error", "overloaded"),
    ],
)
def test_bad_events_fail_naming_what_was_wrong(line: str, category: str, message: str) -> None:
    with pytest.raises(ProviderFailure, match=message) as info:
        StreamAssembler().feed(line, 0.0)
    assert info.value.category == category
