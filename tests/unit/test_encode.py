"""The SDK's template encoder produces exactly the events the schemas describe."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from test_events_property import contexts, identifiers, non_negative, unit

from producer_sdk._impl.encode import EventEncoder, utc_timestamp
from producer_sdk.decision import validate_outcome
from schemas import FAILURE_CATEGORIES, REASONS, DecisionEvent, OutcomeEvent

nanos = st.integers(min_value=0, max_value=4_000_000_000 * 10**9)


@given(
    goal=identifiers,
    candidates=st.lists(identifiers, min_size=1, max_size=6, unique=True),
    data=st.data(),
    reason=st.sampled_from(REASONS),
    version=st.none() | st.integers(min_value=0, max_value=2**62),
    context=st.none() | contexts,
    service=st.none() | identifiers,
    ns=nanos,
)
def test_decision_encoding_round_trips(
    goal: str,
    candidates: list[str],
    data: st.DataObject,
    reason: str,
    version: int | None,
    context: dict | None,
    service: str | None,
    ns: int,
) -> None:
    encoder = EventEncoder(goal, tuple(candidates), service, "0.1.0")
    trace = data.draw(identifiers.filter(lambda s: len(s) <= 120))
    path = data.draw(st.sampled_from(candidates))
    subset = data.draw(st.booleans())
    raw = encoder.decision(
        trace,
        path,
        reason,
        version,
        context,
        ns,
        EventEncoder.candidates_json((path,)) if subset else None,
    )
    event = DecisionEvent.model_validate_json(raw)
    assert event.trace_id == trace
    assert event.event_id == f"{trace}.d"
    assert (event.goal, event.path, event.reason) == (goal, path, reason)
    assert event.candidates == ((path,) if subset else tuple(candidates))
    assert event.policy_version == version
    assert event.context == (context or {})
    assert event.service == service
    seconds, rest = divmod(ns, 10**9)
    expected = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
    assert event.decided_at == expected


@given(
    trace=identifiers.filter(lambda s: len(s) <= 120),
    success=st.booleans(),
    score=st.none() | unit,
    cost=st.none() | non_negative,
    latency=st.none() | non_negative,
    category=st.none() | st.sampled_from(FAILURE_CATEGORIES),
    tokens=st.none() | st.integers(min_value=0, max_value=10**9),
    first_token=st.none() | non_negative,
    ns=nanos,
)
def test_outcome_encoding_round_trips(
    trace: str,
    success: bool,
    score: float | None,
    cost: float | None,
    latency: float | None,
    category: str | None,
    tokens: int | None,
    first_token: float | None,
    ns: int,
) -> None:
    outcome = validate_outcome(success, score, cost, latency, category, tokens, tokens, first_token)
    encoded = EventEncoder.outcome(trace, outcome, ns)
    event = OutcomeEvent.model_validate_json(encoded)
    assert event.time_to_first_token_ms == first_token
    # Left out when unset, so that workers older than the field accept the event.
    assert (b"time_to_first_token_ms" in encoded) is (first_token is not None)
    assert (event.trace_id, event.event_id, event.source) == (trace, f"{trace}.o", "sdk")
    assert (event.success, event.score, event.cost_usd) == (success, score, cost)
    assert (event.latency_ms, event.failure_category) == (latency, category)
    assert (event.prompt_tokens, event.completion_tokens) == (tokens, tokens)


def test_timestamp_format_and_cache() -> None:
    assert utc_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert utc_timestamp(1_767_322_245_678_901_234) == "2026-01-02T02:50:45.678901Z"
    assert utc_timestamp(1_767_322_245_000_001_000) == "2026-01-02T02:50:45.000001Z"
    now = time.time_ns()
    seconds, rest = divmod(now, 10**9)
    expected = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
    assert utc_timestamp(now) == expected.isoformat().replace("+00:00", "Z")
