"""Property: any valid event survives JSON dump/validate unchanged."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas import (
    ALERT_STATES,
    FAILURE_CATEGORIES,
    OUTCOME_SOURCES,
    PATH_STATUSES,
    REASONS,
    DecisionEvent,
    DegradationAlert,
    JoinPosition,
    OutcomeEvent,
    PathDelta,
    PathStats,
    PolicySnapshot,
)

_FIRST = string.ascii_letters + string.digits
_REST = _FIRST + "_.:/@+=-"

identifiers = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_FIRST),
    st.text(alphabet=_REST, max_size=127),
)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
timestamps = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=zones
)
finite = st.floats(allow_nan=False, allow_infinity=False)
non_negative = st.floats(min_value=0.0, max_value=1e15, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0.0, max_value=1.0)
context_values = st.one_of(
    st.text(max_size=256),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    finite,
)
contexts = st.dictionaries(identifiers.filter(lambda s: len(s) <= 64), context_values, max_size=32)


@st.composite
def decisions(draw: st.DrawFn) -> DecisionEvent:
    candidates = draw(st.lists(identifiers, min_size=1, max_size=8, unique=True))
    return DecisionEvent(
        event_id=draw(identifiers),
        trace_id=draw(identifiers),
        goal=draw(identifiers),
        path=draw(st.sampled_from(candidates)),
        candidates=tuple(candidates),
        reason=draw(st.sampled_from(REASONS)),
        policy_version=draw(st.none() | st.integers(min_value=0, max_value=2**62)),
        context=draw(contexts),
        decided_at=draw(timestamps),
        service=draw(st.none() | identifiers),
        sdk_version=draw(st.none() | st.from_regex(r"\A[0-9A-Za-z.+-]{1,32}\Z")),
    )


outcomes = st.builds(
    OutcomeEvent,
    event_id=identifiers,
    trace_id=identifiers,
    success=st.booleans(),
    score=st.none() | unit,
    cost_usd=st.none() | non_negative,
    latency_ms=st.none() | non_negative,
    failure_category=st.none() | st.sampled_from(FAILURE_CATEGORIES),
    prompt_tokens=st.none() | st.integers(min_value=0, max_value=2**40),
    completion_tokens=st.none() | st.integers(min_value=0, max_value=2**40),
    source=st.sampled_from(OUTCOME_SOURCES),
    occurred_at=timestamps,
)


@st.composite
def path_stats(draw: st.DrawFn) -> PathStats:
    n = draw(st.integers(min_value=0, max_value=10**9))
    recent_n = draw(st.integers(min_value=0, max_value=n))
    return PathStats(
        alpha=draw(st.floats(min_value=1e-9, max_value=1e12)),
        beta=draw(st.floats(min_value=1e-9, max_value=1e12)),
        n=n,
        recent_n=recent_n,
        recent_successes=draw(st.floats(min_value=0.0, max_value=float(recent_n))),
        baseline_rate=draw(st.none() | unit),
        mean_cost_usd=draw(st.none() | non_negative),
        mean_latency_ms=draw(st.none() | non_negative),
        last_outcome_at=draw(st.none() | timestamps),
        status=draw(st.sampled_from(PATH_STATUSES)),
    )


snapshots = st.builds(
    PolicySnapshot,
    goal=identifiers,
    version=st.integers(min_value=1, max_value=2**62),
    generated_at=timestamps,
    paths=st.dictionaries(identifiers, path_stats(), max_size=5),
)

alerts = st.builds(
    DegradationAlert,
    alert_id=identifiers,
    goal=identifiers,
    path=identifiers,
    state=st.sampled_from(ALERT_STATES),
    recent_rate=unit,
    recent_n=st.integers(min_value=0, max_value=10**6),
    baseline_rate=unit,
    baseline_n=non_negative,
    detector=identifiers,
    evidence=finite,
    detected_at=timestamps,
)


@st.composite
def deltas(draw: st.DrawFn) -> PathDelta:
    rewards = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=1, max_size=40))
    count = len(rewards)
    successes = sum(rewards)
    first, last = sorted([draw(timestamps), draw(timestamps)])
    decisions = draw(st.integers(min_value=1, max_value=2**40))
    outcomes = draw(st.integers(min_value=1, max_value=2**40))
    maybe_cost = st.none() | non_negative
    return PathDelta(
        goal=draw(identifiers),
        path=draw(identifiers),
        source_partition=draw(st.integers(min_value=0, max_value=1023)),
        position=JoinPosition(
            decisions=decisions,
            outcomes=outcomes,
            expired=draw(st.integers(min_value=0, max_value=decisions)),
        ),
        count=count,
        successes=successes,
        failures=count - successes,
        cost_sum=draw(non_negative),
        cost_n=draw(st.integers(min_value=0, max_value=count)),
        latency_sum=draw(non_negative),
        latency_n=draw(st.integers(min_value=0, max_value=count)),
        first_event_at=first,
        last_event_at=last,
        d_offsets=tuple(draw(st.integers(0, decisions - 1)) for _ in rewards),
        o_offsets=tuple(draw(st.integers(-1, outcomes - 1)) for _ in rewards),
        rewards=tuple(rewards),
        event_times=tuple(draw(st.floats(0, 4e9)) for _ in rewards),
        costs=tuple(draw(maybe_cost) for _ in rewards),
        latencies=tuple(draw(maybe_cost) for _ in rewards),
    )


def _survives(event: BaseModel) -> None:
    model = type(event)
    raw = event.model_dump_json()
    assert model.model_validate_json(raw) == event
    assert model.model_validate_json(raw).model_dump_json() == raw
    assert model.model_validate(event.model_dump()) == event


@settings(max_examples=300)
@given(st.one_of(decisions(), outcomes, snapshots, alerts, deltas()))
def test_valid_events_survive_json_round_trip(event: Any) -> None:
    _survives(event)


@given(timestamps)
def test_timestamps_come_back_in_utc(moment: datetime) -> None:
    event = OutcomeEvent(event_id="e", trace_id="t", success=True, occurred_at=moment)
    back = OutcomeEvent.model_validate_json(event.model_dump_json())
    assert back.occurred_at == moment
    assert back.occurred_at.utcoffset() == timedelta(0)
