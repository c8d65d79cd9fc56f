"""Events: round trips and every validation rule, each error naming its field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas import (
    DecisionEvent,
    DegradationAlert,
    JoinedOutcome,
    OutcomeEvent,
    PathDelta,
    PathStats,
    PolicySnapshot,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def decision(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "ev-1",
        "trace_id": "trace-1",
        "goal": "summarize",
        "path": "gpt-4o",
        "candidates": ["gpt-4o", "claude-sonnet-4"],
        "reason": "exploit",
        "policy_version": 3,
        "context": {"tenant": "acme", "tier": 2, "beta": True, "weight": 0.5},
        "decided_at": "2026-01-02T03:04:05.678901Z",
        "service": "api",
        "sdk_version": "0.1.0",
    }
    return base | overrides


def outcome(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "ev-2",
        "trace_id": "trace-1",
        "success": True,
        "score": 0.75,
        "cost_usd": 0.0021,
        "latency_ms": 812.5,
        "failure_category": None,
        "prompt_tokens": 120,
        "completion_tokens": 48,
        "source": "sdk",
        "occurred_at": "2026-01-02T03:04:06Z",
    }
    return base | overrides


def snapshot(**overrides: Any) -> dict[str, Any]:
    stats = {
        "alpha": 12.5,
        "beta": 2.5,
        "n": 40,
        "recent_n": 20,
        "recent_successes": 18.0,
        "baseline_rate": 0.9,
        "mean_cost_usd": 0.01,
        "mean_latency_ms": 700.0,
        "last_outcome_at": "2026-01-02T03:04:06Z",
        "status": "healthy",
    }
    base: dict[str, Any] = {
        "goal": "summarize",
        "version": 7,
        "generated_at": "2026-01-02T03:04:07Z",
        "paths": {"gpt-4o": stats, "claude-sonnet-4": stats | {"status": "cold", "n": 20}},
    }
    return base | overrides


def alert(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "alert_id": "summarize:gpt-4o:open:3:1200",
        "goal": "summarize",
        "path": "gpt-4o",
        "state": "open",
        "recent_rate": 0.3,
        "recent_n": 30,
        "baseline_rate": 0.95,
        "baseline_n": 410.2,
        "detector": "beta-drop",
        "evidence": 0.999,
        "detected_at": "2026-01-02T03:04:08Z",
    }
    return base | overrides


def joined(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "trace_id": "trace-1",
        "goal": "summarize",
        "path": "gpt-4o",
        "reason": "explore",
        "decided_at": "2026-01-02T03:04:05Z",
        "occurred_at": "2026-01-02T03:04:06Z",
        "success": False,
    }
    return base | overrides


def delta(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "goal": "summarize",
        "path": "gpt-4o",
        "source_partition": 2,
        "position": {"decisions": 150, "outcomes": 160, "expired": 90},
        "count": 3,
        "successes": 2.25,
        "failures": 0.75,
        "cost_sum": 0.3,
        "cost_n": 3,
        "latency_sum": 2400.0,
        "latency_n": 3,
        "first_event_at": "2026-01-02T03:04:05Z",
        "last_event_at": "2026-01-02T03:04:06Z",
        "d_offsets": [100, 120, 95],
        "o_offsets": [140, 141, -1],
        "rewards": [1.0, 0.25, 1.0],
        "event_times": [1767323045.0, 1767323045.5, 1767323046.0],
        "costs": [0.1, 0.1, 0.1],
        "latencies": [800.0, 800.0, 800.0],
    }
    return base | overrides


EXAMPLES: list[tuple[type[BaseModel], Any]] = [
    (DecisionEvent, decision),
    (OutcomeEvent, outcome),
    (PolicySnapshot, snapshot),
    (DegradationAlert, alert),
    (JoinedOutcome, joined),
    (PathDelta, delta),
]


def errors_of(model: type[BaseModel], data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        model.model_validate_json(json.dumps(data))
    return [dict(e) for e in info.value.errors()]


def assert_rejected(model: type[BaseModel], data: dict[str, Any], loc: tuple[Any, ...], msg: str):
    errors = errors_of(model, data)
    locs = [e["loc"] for e in errors]
    assert loc in locs, f"expected an error at {loc}, got {errors}"
    message = next(e["msg"] for e in errors if e["loc"] == loc)
    assert msg in message
    if loc:  # model-level rules name their fields in the message itself
        # The rendered error, which is what users see, names the field.
        with pytest.raises(ValidationError, match=str(loc[0])):
            model.model_validate_json(json.dumps(data))


@pytest.mark.parametrize(("model", "example"), EXAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_json_round_trip(model: type[BaseModel], example: Any) -> None:
    parsed = model.model_validate_json(json.dumps(example()))
    again = model.model_validate_json(parsed.model_dump_json())
    assert again == parsed
    assert again.schema_version == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(("model", "example"), EXAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_python_round_trip(model: type[BaseModel], example: Any) -> None:
    parsed = model.model_validate_json(json.dumps(example()))
    assert model.model_validate(parsed.model_dump()) == parsed


@pytest.mark.parametrize(("model", "example"), EXAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_extra_fields_rejected(model: type[BaseModel], example: Any) -> None:
    assert_rejected(model, example() | {"sucess": True}, ("sucess",), "Extra inputs")


@pytest.mark.parametrize(("model", "example"), EXAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_unknown_schema_version_names_supported_ones(model: type[BaseModel], example: Any) -> None:
    errors = errors_of(model, example() | {"schema_version": 2})
    assert errors[0]["loc"] == ("schema_version",)
    assert "unsupported schema_version 2; supported versions: 1" in errors[0]["msg"]


def test_events_are_immutable() -> None:
    event = OutcomeEvent.model_validate_json(json.dumps(outcome()))
    with pytest.raises(ValidationError, match="frozen"):
        event.success = False  # type: ignore[misc]


@pytest.mark.parametrize("field", ["event_id", "trace_id", "goal", "path"])
@pytest.mark.parametrize(
    ("value", "msg"),
    [
        ("", "at least 1 character"),
        ("x" * 129, "at most 128 characters"),
        ("has space", "should match pattern"),
        ("-leading-dash", "should match pattern"),
        ("new\nline", "should match pattern"),
        ("emoji-\N{ROCKET}", "should match pattern"),
    ],
)
def test_identifier_rules(field: str, value: str, msg: str) -> None:
    data = decision(**{field: value})
    if field == "path":
        data["candidates"] = [value, "other"]
    assert_rejected(DecisionEvent, data, (field,), msg)


def test_identifier_accepts_the_safe_set_up_to_128() -> None:
    ok = "A" + "z9_.:/@+=-" * 12 + "abcdefg"
    assert len(ok) == 128
    event = DecisionEvent.model_validate_json(json.dumps(decision(trace_id=ok)))
    assert event.trace_id == ok


def test_naive_timestamp_rejected() -> None:
    assert_rejected(
        DecisionEvent, decision(decided_at="2026-01-02T03:04:05"), ("decided_at",), "timezone"
    )
    assert_rejected(
        OutcomeEvent, outcome(occurred_at="2026-01-02T03:04:05"), ("occurred_at",), "timezone"
    )


def test_naive_datetime_object_rejected() -> None:
    data = outcome() | {"occurred_at": datetime(2026, 1, 2)}
    with pytest.raises(ValidationError, match="occurred_at"):
        OutcomeEvent.model_validate(data)


def test_numeric_timestamp_rejected() -> None:
    assert_rejected(OutcomeEvent, outcome(occurred_at=1767322246), ("occurred_at",), "datetime")


def test_offset_timestamps_are_normalised_to_utc() -> None:
    event = DecisionEvent.model_validate_json(
        json.dumps(decision(decided_at="2026-01-02T05:04:05+02:00"))
    )
    assert event.decided_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert event.decided_at.tzinfo is UTC
    assert '"decided_at":"2026-01-02T03:04:05Z"' in event.model_dump_json()
    python_made = OutcomeEvent(
        event_id="e",
        trace_id="t",
        success=True,
        occurred_at=T0.astimezone(timezone(timedelta(hours=-5))),
    )
    assert python_made.occurred_at.tzinfo is UTC
    assert python_made.occurred_at == T0


@pytest.mark.parametrize("score", [-0.01, 1.01])
def test_score_outside_unit_interval_rejected(score: float) -> None:
    assert_rejected(OutcomeEvent, outcome(score=score), ("score",), "should be")


@pytest.mark.parametrize("field", ["cost_usd", "latency_ms", "prompt_tokens", "completion_tokens"])
def test_cost_and_latency_non_negative(field: str) -> None:
    assert_rejected(OutcomeEvent, outcome(**{field: -1}), (field,), "greater than or equal to 0")


@pytest.mark.parametrize("field", ["cost_usd", "latency_ms", "score"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_rejected(field: str, bad: float) -> None:
    # Python's json module writes NaN/Infinity literals, which is what a sloppy producer sends.
    with pytest.raises(ValidationError) as info:
        OutcomeEvent.model_validate_json(json.dumps(outcome(**{field: bad})))
    assert info.value.errors()[0]["loc"] == (field,)
    with pytest.raises(ValidationError, match=field):
        OutcomeEvent.model_validate(outcome() | {field: bad})


def test_success_must_be_a_real_bool() -> None:
    assert_rejected(OutcomeEvent, outcome(success="true"), ("success",), "valid boolean")
    assert_rejected(OutcomeEvent, outcome(success=1), ("success",), "valid boolean")


def test_failure_category_from_fixed_list() -> None:
    assert_rejected(
        OutcomeEvent, outcome(failure_category="sad"), ("failure_category",), "Input should be"
    )
    ok = OutcomeEvent.model_validate_json(json.dumps(outcome(failure_category="timeout")))
    assert ok.failure_category == "timeout"


def test_source_from_fixed_list() -> None:
    assert_rejected(OutcomeEvent, outcome(source="guess"), ("source",), "Input should be")


def test_reason_from_fixed_list() -> None:
    assert_rejected(DecisionEvent, decision(reason="vibes"), ("reason",), "Input should be")


def test_path_must_be_a_candidate() -> None:
    assert_rejected(DecisionEvent, decision(path="gemini"), (), "is not one of candidates")


def test_candidates_unique_and_non_empty() -> None:
    assert_rejected(
        DecisionEvent,
        decision(candidates=["gpt-4o", "gpt-4o"]),
        (),
        "candidates must be unique; repeated: ['gpt-4o']",
    )
    assert_rejected(DecisionEvent, decision(candidates=[]), ("candidates",), "at least 1 item")


def test_context_at_most_32_keys() -> None:
    big = {f"k{i}": i for i in range(33)}
    assert_rejected(DecisionEvent, decision(context=big), ("context",), "at most 32 items")
    ok = {f"k{i}": i for i in range(32)}
    assert DecisionEvent.model_validate_json(json.dumps(decision(context=ok))).context == ok


@pytest.mark.parametrize(
    ("context", "loc_tail"),
    [
        ({"nested": {"a": 1}}, "nested"),
        ({"list": [1, 2]}, "list"),
        ({"long": "x" * 257}, "long"),
        ({"null": None}, "null"),
        ({"inf": float("inf")}, "inf"),
    ],
)
def test_context_values_are_bounded_scalars(context: dict[str, Any], loc_tail: str) -> None:
    errors = errors_of(DecisionEvent, decision(context=context))
    assert all(e["loc"][:2] == ("context", loc_tail) for e in errors), errors


def test_context_keys_are_identifiers() -> None:
    errors = errors_of(DecisionEvent, decision(context={"bad key": 1}))
    assert errors[0]["loc"][:2] == ("context", "bad key")
    assert "[key]" in errors[0]["loc"]


def test_context_ints_beyond_int64_become_floats() -> None:
    # JSON numbers are doubles in most languages; an out-of-range int is read as one, not kept
    # as an unbounded Python int.
    event = DecisionEvent.model_validate_json(json.dumps(decision(context={"big": 2**64})))
    assert event.context["big"] == float(2**64)
    assert type(event.context["big"]) is float


def test_context_scalars_keep_their_types() -> None:
    event = DecisionEvent.model_validate_json(json.dumps(decision()))
    assert event.context == {"tenant": "acme", "tier": 2, "beta": True, "weight": 0.5}
    assert type(event.context["beta"]) is bool
    assert type(event.context["tier"]) is int


def test_policy_version_non_negative() -> None:
    assert_rejected(
        DecisionEvent,
        decision(policy_version=-1),
        ("policy_version",),
        "greater than or equal to 0",
    )


def test_path_stats_rules() -> None:
    good = snapshot()["paths"]["gpt-4o"]
    for field in ("alpha", "beta"):
        assert_rejected(PathStats, good | {field: 0}, (field,), "greater than 0")
    assert_rejected(PathStats, good | {"status": "fine"}, ("status",), "Input should be")
    assert_rejected(PathStats, good | {"recent_n": 41}, (), "recent_n (41) cannot exceed n (40)")
    assert_rejected(PathStats, good | {"recent_successes": 21.0}, (), "cannot exceed recent_n")
    assert_rejected(PathStats, good | {"baseline_rate": 1.5}, ("baseline_rate",), "less than")
    stats = PathStats.model_validate_json(json.dumps(good))
    assert stats.mean == pytest.approx(12.5 / 15)
    assert stats.recent_rate == pytest.approx(0.9)


def test_snapshot_rules() -> None:
    assert_rejected(PolicySnapshot, snapshot(version=0), ("version",), "greater than or equal to 1")
    bad_paths = {"bad path": snapshot()["paths"]["gpt-4o"]}
    errors = errors_of(PolicySnapshot, snapshot(paths=bad_paths))
    assert errors[0]["loc"][:2] == ("paths", "bad path")


def test_alert_rules() -> None:
    assert_rejected(DegradationAlert, alert(state="closed"), ("state",), "Input should be")
    assert_rejected(DegradationAlert, alert(recent_rate=1.2), ("recent_rate",), "less than")
    assert_rejected(DegradationAlert, alert(evidence=float("nan")), ("evidence",), "finite")


def test_delta_rules() -> None:
    assert_rejected(PathDelta, delta(count=0), ("count",), "greater than or equal to 1")
    assert_rejected(PathDelta, delta(count=2), (), "item arrays must all have count (2) entries")
    assert_rejected(PathDelta, delta(successes=3.0), (), "!= count")
    assert_rejected(
        PathDelta, delta(first_event_at="2026-01-02T03:04:07Z"), (), "first_event_at is after"
    )
    assert_rejected(PathDelta, delta(cost_n=4), (), "cannot exceed count")
    assert_rejected(PathDelta, delta(rewards=[1.5, 1.0, 1.0]), ("rewards", 0), "less than")
    assert_rejected(PathDelta, delta(d_offsets=[100, 150, 95]), (), "beyond the delta's position")
    assert_rejected(PathDelta, delta(o_offsets=[140, -2, -1]), (), "beyond the delta's position")
    bad_position = {"decisions": 10, "outcomes": 10, "expired": 11}
    assert_rejected(
        PathDelta, delta(position=bad_position), ("position",), "expired 11 > decisions"
    )


def test_joined_reward() -> None:
    plain = JoinedOutcome.model_validate_json(json.dumps(joined()))
    assert plain.reward == 0.0
    graded = JoinedOutcome.model_validate_json(json.dumps(joined(success=True, score=0.4)))
    assert graded.reward == 0.4
