"""Exactly-once effect without transactions, in pure logic: the join crashes at random points,
rebuilds from its checkpoint with a different interleaving, loses deltas that were not yet
acknowledged; the posterior crashes too and re-reads deltas; the frontier-filtered totals
must equal the ground truth exactly."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from schemas import DecisionEvent, JoinPosition, OutcomeEvent, PathDelta
from schemas.internal import MAX_ITEMS
from stream_workers.pipeline.join import Item, JoinConfig, PartitionJoin, build_deltas
from stream_workers.pipeline.posterior.frontier import FrontierSet

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NO_EXPIRY = JoinConfig(outcome_window=1e9, orphan_grace=1e9, duplicate_horizon=1e9)


@dataclass
class Scenario:
    decisions: list[DecisionEvent]
    outcomes: list[OutcomeEvent]
    truth_count: Counter[tuple[str, str]]
    truth_reward: Counter[tuple[str, str]]


def scenario(rng: random.Random, pairs: int, spacing: float = 0.01) -> Scenario:
    """Decision and outcome logs of one partition, with the messiness of real traffic."""
    goals = {"summarize": ["a", "b", "c"], "classify": ["x", "y"]}
    decisions: list[tuple[float, DecisionEvent]] = []
    outcomes: list[tuple[float, OutcomeEvent]] = []
    count: Counter[tuple[str, str]] = Counter()
    reward: Counter[tuple[str, str]] = Counter()
    for i in range(pairs):
        goal = rng.choice(list(goals))
        path = rng.choice(goals[goal])
        at = T0 + timedelta(seconds=i * spacing)
        trace = f"t{i}"
        decision = DecisionEvent(
            event_id=f"{trace}.d",
            trace_id=trace,
            goal=goal,
            path=path,
            candidates=tuple(goals[goal]),
            reason="exploit",
            decided_at=at,
        )
        arrival = i + rng.uniform(0, 3)
        decisions.append((arrival, decision))
        if rng.random() < 0.03:
            decisions.append((arrival + rng.uniform(0, 20), decision))  # a producer retry
        if rng.random() < 0.05:
            continue  # never reported
        score = rng.choice([None, None, 0.3, 0.9])
        first = OutcomeEvent(
            event_id=f"{trace}.o",
            trace_id=trace,
            success=rng.random() < 0.8,
            score=score,
            latency_ms=rng.uniform(10, 900),
            occurred_at=at + timedelta(seconds=0.5),
        )
        # 10 % of outcomes reach the broker before their decision.
        first_arrival = arrival - rng.uniform(0.1, 30) if rng.random() < 0.1 else arrival + 1
        outcomes.append((first_arrival, first))
        count[goal, path] += 1
        reward[goal, path] += score if score is not None else (1.0 if first.success else 0.0)
        if rng.random() < 0.03:
            outcomes.append((first_arrival + rng.uniform(0, 20), first))  # replay
        if rng.random() < 0.03:
            late = first.model_copy(update={"event_id": f"{trace}.o2", "success": True})
            outcomes.append((first_arrival + rng.uniform(0.01, 20), late))  # a second verdict
    decisions.sort(key=lambda pair: pair[0])
    outcomes.sort(key=lambda pair: pair[0])
    return Scenario([d for _, d in decisions], [o for _, o in outcomes], count, reward)


@dataclass
class Checkpoint:
    position: JoinPosition
    replay_start: tuple[int, int]
    clocks: tuple[float, float]


def feed(
    join: PartitionJoin,
    s: Scenario,
    d_range: tuple[int, int],
    o_range: tuple[int, int],
    rng: random.Random,
    on_step: object = None,
) -> None:
    """Read both logs over the given offset ranges in a random interleaving."""
    d, d_end = d_range
    o, o_end = o_range
    while d < d_end or o < o_end:
        take_d = o >= o_end or (d < d_end and rng.random() < 0.5)
        for _ in range(rng.randint(1, 40)):
            if take_d and d < d_end:
                join.on_decision(d, s.decisions[d])
                d += 1
            elif not take_d and o < o_end:
                join.on_outcome(o, s.outcomes[o])
                o += 1
        if callable(on_step) and on_step():
            return


def run_with_crashes(
    s: Scenario,
    rng: random.Random,
    crashes: int,
    config: JoinConfig,
    tick: OutcomeEvent | None = None,
) -> list:
    """Join ``s`` through crashes; ``tick``, if given, is one more outcome read at the very end."""
    durable: list[PathDelta] = []  # acknowledged by the broker: survives any crash
    checkpoint = Checkpoint(JoinPosition(decisions=0, outcomes=0, expired=0), (0, 0), (0.0, 0.0))
    crash_points = sorted(rng.sample(range(1, len(s.decisions)), crashes))
    for life in range(crashes + 1):
        position = checkpoint.position
        join = PartitionJoin(
            7,
            config,
            start=checkpoint.replay_start,
            replay_until=(position.decisions, position.outcomes),
            clocks=checkpoint.clocks,
        )
        unacked: list[PathDelta] = []
        crash_at = crash_points[life] if life < crashes else None

        def step(join: PartitionJoin = join, crash_at: int | None = crash_at) -> bool:
            nonlocal checkpoint, unacked
            join.expire(limit=rng.randint(1, 50))
            if rng.random() < 0.3:  # a flush
                unacked.extend(build_deltas(7, join.position, join.drain()))
                if rng.random() < 0.5:  # acknowledged
                    durable.extend(unacked)
                    unacked = []
                    if not join.replaying:  # then checkpointed, once replay has caught up
                        checkpoint = Checkpoint(join.position, join.replay_start, join.clocks)
            return crash_at is not None and join.position.decisions >= crash_at

        # Replay and live reading are one read per topic, interleaved as the broker delivers.
        feed(
            join,
            s,
            (checkpoint.replay_start[0], len(s.decisions)),
            (checkpoint.replay_start[1], len(s.outcomes)),
            rng,
            on_step=step,
        )
        if crash_at is None:
            if tick is not None:
                join.on_outcome(len(s.outcomes), tick)
            join.expire(limit=10**9)
            durable.extend(unacked)
            durable.extend(build_deltas(7, join.position, join.drain()))
        else:
            # kill -9: some unacknowledged deltas reached the broker, the rest are lost
            durable.extend(unacked[: rng.randint(0, len(unacked))])
    return durable


def apply_with_posterior_crashes(
    deltas: list[PathDelta], rng: random.Random, crashes: int
) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """The posterior stage: frontier filter, checkpoint with its state, crash, re-read."""
    saved = (FrontierSet().to_json(), Counter(), Counter(), 0)
    frontier, count, reward, index = FrontierSet(), Counter(), Counter(), 0
    crash_indices = set(rng.sample(range(len(deltas)), min(crashes, len(deltas))))
    while index < len(deltas):
        delta = deltas[index]
        for i in frontier.admit(delta):
            count[delta.goal, delta.path] += 1
            reward[delta.goal, delta.path] += delta.rewards[i]
        index += 1
        if rng.random() < 0.2:
            saved = (frontier.to_json(), Counter(count), Counter(reward), index)
        if index in crash_indices:
            crash_indices.discard(index)
            rows, count, reward, checkpointed = saved
            frontier, count, reward = FrontierSet.from_json(rows), Counter(count), Counter(reward)
            index = rng.randint(0, checkpointed)  # consumer offsets may lag the checkpoint
    return count, reward


@pytest.mark.parametrize("seed", range(40))
def test_totals_are_exact_across_crashes(seed: int) -> None:
    rng = random.Random(seed)
    s = scenario(rng, pairs=600)
    deltas = run_with_crashes(s, rng, crashes=rng.randint(1, 4), config=NO_EXPIRY)
    count, reward = apply_with_posterior_crashes(deltas, rng, crashes=rng.randint(0, 3))
    assert count == s.truth_count
    for key, expected in s.truth_reward.items():
        assert reward[key] == pytest.approx(expected, abs=1e-9)


def test_without_the_frontier_replays_would_double_count() -> None:
    # The same crashes, but applying every delta: the test above would catch the difference.
    rng = random.Random(3)
    s = scenario(rng, pairs=600)
    deltas = run_with_crashes(s, rng, crashes=3, config=NO_EXPIRY)
    naive = Counter()
    for delta in deltas:
        naive[delta.goal, delta.path] += delta.count
    assert sum(naive.values()) > sum(s.truth_count.values())


@pytest.mark.parametrize("seed", range(15))
def test_expired_failures_are_exact_across_crashes(seed: int) -> None:
    # Unreported decisions expire as failures once the outcome clock passes their window;
    # each must be counted exactly once however the run is interrupted.
    rng = random.Random(1000 + seed)
    s = scenario(rng, pairs=500, spacing=1.0)  # 500 s of event time: 60 s windows close
    config = JoinConfig(
        outcome_window=60.0, orphan_grace=1e9, duplicate_horizon=1e9, on_timeout="failure"
    )
    reported = {o.trace_id for o in s.outcomes}
    # A decision first read more than its window behind the outcome clock (the interleaving
    # can do that) waits orphan_grace more: an outcome read last, far ahead, closes them all.
    last_outcome = T0 + timedelta(seconds=3e9)
    tick = OutcomeEvent(event_id="tick.o", trace_id="tick", success=True, occurred_at=last_outcome)
    expiring = Counter(
        (d.goal, d.path)
        for d in {d.trace_id: d for d in s.decisions}.values()
        if d.trace_id not in reported and d.decided_at + timedelta(seconds=60) < last_outcome
    )
    assert sum(expiring.values()) > 10
    deltas = run_with_crashes(s, rng, crashes=rng.randint(1, 4), config=config, tick=tick)
    count, reward = apply_with_posterior_crashes(deltas, rng, crashes=rng.randint(0, 3))
    assert count == s.truth_count + expiring
    for key, expected in s.truth_reward.items():
        assert reward[key] == pytest.approx(expected, abs=1e-9)  # expiries add no reward


def test_a_flush_larger_than_a_delta_is_applied_whole_and_once() -> None:
    # 10,050 outcomes of one (goal, path) in one flush make two deltas. The frontier reads a
    # delta's position as "every pair below it is applied": the first delta must not claim
    # the second's items (it once did, and 50 outcomes were dropped for good).
    n = MAX_ITEMS + 50
    rng = random.Random(3)
    offsets = list(range(n))
    rng.shuffle(offsets)  # outcomes arrive in another order than their decisions
    items = [
        Item(
            "g", "p", d_off=2 * d, o_off=i, reward=1.0, event_time=1e9 + i, cost=None, latency=None
        )
        for i, d in enumerate(offsets)
    ]
    position = JoinPosition(decisions=2 * n, outcomes=n, expired=2 * n)
    deltas = build_deltas(0, position, items)
    assert [d.count for d in deltas] == [MAX_ITEMS, 50]
    assert deltas[-1].position == position
    for delta in deltas:  # each is a valid message
        assert PathDelta.model_validate_json(delta.model_dump_json()) == delta
    frontier = FrontierSet()
    assert [len(frontier.admit(d)) for d in deltas] == [MAX_ITEMS, 50]
    assert [len(frontier.admit(d)) for d in deltas] == [0, 0]  # a replay adds nothing
