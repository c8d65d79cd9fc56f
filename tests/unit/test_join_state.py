"""PartitionJoin rules and counters, event by event."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest

from schemas import DecisionEvent, OutcomeEvent
from stream_workers.pipeline.join import JoinConfig, PartitionJoin, build_deltas
from stream_workers.settings import WorkerSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def dec(
    trace: str, at: float = 0.0, goal: str = "g", path: str = "a", eid: str = ""
) -> DecisionEvent:
    return DecisionEvent(
        event_id=eid or f"{trace}.d",
        trace_id=trace,
        goal=goal,
        path=path,
        candidates=("a", "b"),
        reason="exploit",
        decided_at=T0 + timedelta(seconds=at),
    )


def out(
    trace: str, at: float = 1.0, success: bool = True, eid: str = "", **kw: object
) -> OutcomeEvent:
    return OutcomeEvent(
        event_id=eid or f"{trace}.o",
        trace_id=trace,
        success=success,
        occurred_at=T0 + timedelta(seconds=at),
        **kw,  # type: ignore[arg-type]
    )


def counts(join: PartitionJoin) -> dict[str, int]:
    return {name: sum(c.values()) for name, c in join.counters.items() if sum(c.values())}


def test_decision_then_outcome_joins_once() -> None:
    join = PartitionJoin(0, JoinConfig())
    join.on_decision(0, dec("t1"))
    join.on_outcome(0, out("t1", score=0.25, cost_usd=0.01, latency_ms=80.0))
    [item] = join.drain()
    assert (item.goal, item.path, item.d_off, item.o_off) == ("g", "a", 0, 0)
    assert (item.reward, item.cost, item.latency) == (0.25, 0.01, 80.0)
    assert counts(join) == {"decisions": 1, "outcomes": 1, "joined": 1}
    assert join.position.model_dump() == {
        "schema_version": 1,
        "decisions": 1,
        "outcomes": 1,
        "expired": 1,
    }


def test_outcome_before_decision_waits_as_an_orphan() -> None:
    join = PartitionJoin(0, JoinConfig())
    join.on_outcome(0, out("t1", success=False))
    assert join.orphans == 1
    join.on_decision(0, dec("t1"))
    [item] = join.drain()
    assert (item.d_off, item.o_off, item.reward) == (0, 0, 0.0)
    assert join.orphans == 0


def test_first_outcome_wins_and_later_ones_are_counted() -> None:
    join = PartitionJoin(0, JoinConfig())
    join.on_decision(0, dec("t1"))
    join.on_outcome(0, out("t1", success=False))
    join.on_outcome(1, out("t1"))  # a replay of the same event
    join.on_outcome(2, out("t1", eid="t1.other", success=True))  # a second verdict
    join.on_decision(1, dec("t1"))  # a replayed decision
    assert [i.reward for i in join.drain()] == [0.0]
    assert counts(join) == {
        "decisions": 1,
        "outcomes": 1,
        "joined": 1,
        "replays": 2,
        "duplicates": 1,
    }


def test_duplicate_outcomes_of_an_orphan() -> None:
    join = PartitionJoin(0, JoinConfig())
    join.on_outcome(0, out("t1"))
    join.on_outcome(1, out("t1"))
    join.on_outcome(2, out("t1", eid="x"))
    assert counts(join) == {"replays": 1, "duplicates": 1}


def test_unreported_decisions_expire_on_the_outcome_clock() -> None:
    join = PartitionJoin(0, JoinConfig(outcome_window=60.0))
    join.on_decision(0, dec("old", at=0.0))
    join.on_decision(1, dec("new", at=100.0))  # the decision clock alone does not expire it
    assert join.expire() == 0
    join.on_outcome(0, out("other", at=61.0))  # an orphan, but it moves the outcome clock
    assert join.expire() == 1
    assert counts(join)["unreported"] == 1
    assert join.position.expired == 1  # "new" is now the oldest pending decision
    join.on_outcome(1, out("old", at=62.0))  # too late
    assert counts(join)["unmatched"] == 1


def test_a_decision_read_after_its_window_closed_waits_orphan_grace() -> None:
    # A backfilled decision is hours old on the outcome clock; its outcome may be read a batch
    # later. It is held orphan_grace past the clock at arrival, then given up as usual.
    join = PartitionJoin(0, JoinConfig(outcome_window=60.0, orphan_grace=120.0))
    join.on_outcome(0, out("live", at=10_000.0))
    join.on_decision(0, dec("old", at=0.0))
    assert join.expire() == 0
    join.on_outcome(1, out("old", at=5.0))
    assert counts(join)["joined"] == 1
    join.on_decision(1, dec("older", at=1.0))
    join.on_outcome(2, out("x", at=10_120.0))
    assert join.expire() == 0  # exactly at the grace: not yet
    join.on_outcome(3, out("y", at=10_121.0))
    assert join.expire() == 1
    assert counts(join)["unreported"] == 1


def test_a_late_decision_that_expires_as_a_failure_keeps_its_window_time() -> None:
    join = PartitionJoin(0, JoinConfig(outcome_window=60.0, on_timeout="failure"))
    join.on_outcome(0, out("live", at=10_000.0))
    join.on_decision(0, dec("old", at=0.0))
    join.on_outcome(1, out("z", at=10_200.0))
    join.expire()
    [item] = join.drain()
    assert item.event_time == (T0 + timedelta(seconds=60)).timestamp()


def test_on_timeout_failure_emits_a_failure_item() -> None:
    join = PartitionJoin(0, JoinConfig(outcome_window=60.0, on_timeout="failure"))
    join.on_decision(0, dec("t1", at=0.0, goal="g2", path="b"))
    join.on_outcome(0, out("x", at=61.0))
    join.expire()
    [item] = join.drain()
    assert (item.goal, item.path, item.d_off, item.o_off, item.reward) == ("g2", "b", 0, -1, 0.0)
    assert item.event_time == (T0 + timedelta(seconds=60)).timestamp()
    assert counts(join)["expired_failures"] == 1


def test_orphans_expire_on_the_decision_clock() -> None:
    join = PartitionJoin(0, JoinConfig(orphan_grace=120.0))
    join.on_outcome(0, out("lost", at=0.0))
    join.on_outcome(1, out("later", at=500.0))  # the outcome clock alone does not expire it
    assert join.expire() == 0
    join.on_decision(0, dec("x", at=121.0))
    join.expire()
    assert counts(join)["unmatched"] == 1
    assert join.orphans == 1


def test_per_goal_windows() -> None:
    config = JoinConfig(outcome_window=3600.0, window_overrides={"fast": 10.0})
    join = PartitionJoin(0, config)
    join.on_decision(0, dec("t1", goal="fast"))
    join.on_outcome(0, out("x", at=11.0))
    join.expire()
    assert counts(join)["unreported"] == 1


def test_max_pending_evicts_the_oldest() -> None:
    join = PartitionJoin(0, JoinConfig(max_pending=2))
    for i in range(3):
        join.on_decision(i, dec(f"t{i}"))
    assert join.pending == 2
    assert counts(join)["evicted"] == 1
    join.on_outcome(0, out("t0"))
    assert counts(join)["unmatched"] == 1  # its decision was evicted


def test_skipped_messages_advance_and_count() -> None:
    join = PartitionJoin(0, JoinConfig())
    join.skip_decision(0)
    join.skip_outcome(4)
    assert (join.position.decisions, join.position.outcomes) == (1, 5)
    assert counts(join) == {"dead_lettered": 2}


def test_replayed_events_rebuild_state_without_counting_or_emitting() -> None:
    join = PartitionJoin(0, JoinConfig(), start=(0, 0), replay_until=(2, 1))
    join.on_decision(0, dec("t0"))
    join.on_outcome(0, out("t0"))  # joined before the checkpoint: not emitted again
    assert join.replaying
    join.on_decision(1, dec("t1"))
    assert not join.replaying  # both topics are read up to the checkpoint
    join.on_outcome(1, out("t1"))  # newer than the checkpoint: a new join
    assert [(i.d_off, i.o_off) for i in join.drain()] == [(1, 1)]
    assert counts(join) == {"outcomes": 1, "joined": 1}


def test_nothing_expires_while_replaying() -> None:
    restored = (0.0, T0.timestamp() + 1e6)  # the checkpoint's clocks, far ahead
    join = PartitionJoin(0, JoinConfig(outcome_window=1.0), replay_until=(1, 5), clocks=restored)
    join.on_decision(0, dec("t0"))
    assert join.expire() == 0
    for o in range(5):
        join.on_outcome(o, out(f"x{o}"))
    assert join.expire() >= 1


def test_deltas_group_by_goal_and_path_in_order() -> None:
    join = PartitionJoin(3, JoinConfig())
    for i, (goal, path) in enumerate([("g", "a"), ("h", "b"), ("g", "a")]):
        join.on_decision(i, dec(f"t{i}", goal=goal, path=path))
        join.on_outcome(i, out(f"t{i}", success=i != 2, latency_ms=10.0 * i))
    deltas = build_deltas(3, join.position, join.drain())
    assert [(d.goal, d.path, d.count) for d in deltas] == [("g", "a", 2), ("h", "b", 1)]
    first = deltas[0]
    assert (first.successes, first.failures, first.d_offsets) == (1.0, 1.0, (0, 2))
    assert (first.latency_sum, first.latency_n, first.source_partition) == (20.0, 2, 3)
    again = type(first).model_validate_json(first.model_dump_json())  # valid on the wire
    assert again == first


@pytest.mark.parametrize(
    ("field", "value"),
    [("outcome_window", 0), ("orphan_grace", -1), ("on_timeout", "maybe"), ("max_pending", 0)],
)
def test_bad_config(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        JoinConfig(**{field: value})  # type: ignore[arg-type]


def test_config_from_settings_takes_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in fields(JoinConfig):
        monkeypatch.delenv(f"OUTROUTE_{field.name.upper()}", raising=False)
    assert JoinConfig.from_settings(WorkerSettings()) == JoinConfig()
    settings = WorkerSettings(
        outcome_window=60.0,
        window_overrides={"fast": 5.0},
        orphan_grace=7.0,
        on_timeout="failure",
        duplicate_horizon=9.0,
        max_pending=3,
    )
    assert JoinConfig.from_settings(settings) == JoinConfig(
        outcome_window=60.0,
        window_overrides={"fast": 5.0},
        orphan_grace=7.0,
        on_timeout="failure",
        duplicate_horizon=9.0,
        max_pending=3,
    )
