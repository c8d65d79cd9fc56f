"""Fast JSON encoding of the SDK's events (the hot path of decide() and report()).

The parts that never change for a router (goal, candidates, service, versions) are encoded
once. Identifiers need no escaping: their character set (schemas IDENTIFIER_PATTERN) contains no
quote, backslash or control character. Free-form values (context) go through pydantic-core.
Tests check that every encoded event validates as its schema and round-trips.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_json

from ..decision import Outcome

__all__ = ["EventEncoder", "utc_timestamp"]

_cached_second = -1
_cached_prefix = ""


def utc_timestamp(ns: int) -> str:
    """``ns`` (Unix epoch nanoseconds) as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    global _cached_second, _cached_prefix  # a cache of one immutable pair; races are harmless
    second, rest = divmod(ns, 1_000_000_000)
    if second != _cached_second:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _cached_second, _cached_prefix = second, prefix
        return f"{prefix}.{rest // 1000:06d}Z"
    return f"{_cached_prefix}.{rest // 1000:06d}Z"


def _json_number(value: float | int | None) -> str:
    return "null" if value is None else repr(value)


class EventEncoder:
    """Encodes one router's DecisionEvents and OutcomeEvents to JSON bytes."""

    __slots__ = ("_all_candidates", "_goal", "_tail")

    def __init__(self, goal: str, candidates: tuple[str, ...], service: str | None, sdk: str):
        self._goal = goal
        self._all_candidates = self.candidates_json(candidates)
        service_json = "null" if service is None else f'"{service}"'
        self._tail = f',"service":{service_json},"sdk_version":"{sdk}"}}'

    @staticmethod
    def candidates_json(candidates: tuple[str, ...]) -> str:
        return "[" + ",".join(f'"{c}"' for c in candidates) + "]"

    def decision(
        self,
        trace_id: str,
        path: str,
        reason: str,
        policy_version: int | None,
        context: Mapping[str, Any] | None,
        decided_ns: int,
        candidates_json: str | None = None,
    ) -> bytes:
        version = "null" if policy_version is None else str(policy_version)
        ctx = to_json(context).decode() if context else "{}"
        return (
            f'{{"schema_version":1,"event_id":"{trace_id}.d","trace_id":"{trace_id}",'
            f'"goal":"{self._goal}","path":"{path}",'
            f'"candidates":{candidates_json or self._all_candidates},"reason":"{reason}",'
            f'"policy_version":{version},"context":{ctx},'
            f'"decided_at":"{utc_timestamp(decided_ns)}"{self._tail}'
        ).encode()

    @staticmethod
    def outcome(trace_id: str, outcome: Outcome, occurred_ns: int | None = None) -> bytes:
        category = outcome.failure_category
        category_json = "null" if category is None else f'"{category}"'
        # Only when set: a worker older than the field would reject the event.
        ttft = outcome.time_to_first_token_ms
        first_token = "" if ttft is None else f'"time_to_first_token_ms":{ttft!r},'
        at = utc_timestamp(time.time_ns() if occurred_ns is None else occurred_ns)
        return (
            f'{{"schema_version":1,"event_id":"{trace_id}.o","trace_id":"{trace_id}",'
            f'"success":{"true" if outcome.success else "false"},'
            f'"score":{_json_number(outcome.score)},'
            f'"cost_usd":{_json_number(outcome.cost_usd)},'
            f'"latency_ms":{_json_number(outcome.latency_ms)},{first_token}'
            f'"failure_category":{category_json},'
            f'"prompt_tokens":{_json_number(outcome.prompt_tokens)},'
            f'"completion_tokens":{_json_number(outcome.completion_tokens)},'
            f'"source":"sdk","occurred_at":"{at}"}}'
        ).encode()
