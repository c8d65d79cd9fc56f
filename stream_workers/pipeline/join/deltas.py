"""Coalescing joined items into per-(goal, path) PathDeltas (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from schemas import JoinPosition, PathDelta
from schemas.internal import MAX_ITEMS
from stream_workers.pipeline.join.state import Item

__all__ = ["build_deltas"]


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def build_deltas(partition: int, position: JoinPosition, items: Iterable[Item]) -> list[PathDelta]:
    """One delta per (goal, path) in first-seen order, items in the order they happened.

    A group larger than MAX_ITEMS is split by decision offset into consecutive deltas. Only
    the last carries ``position``: the posterior's frontier takes a delta's position as "every
    pair below it is applied", so an earlier chunk claims only the decisions below its own
    highest offset + 1, and the items of the later chunks (all above) are still new to it.
    """
    groups: dict[tuple[str, str], list[Item]] = {}
    for item in items:
        groups.setdefault((item.goal, item.path), []).append(item)
    deltas = []
    for (goal, path), group in groups.items():
        if len(group) <= MAX_ITEMS:
            deltas.append(_delta(partition, position, goal, path, group))
            continue
        group = sorted(group, key=lambda i: i.d_off)  # a decision is joined at most once
        for start in range(0, len(group), MAX_ITEMS):
            chunk = group[start : start + MAX_ITEMS]
            last = start + MAX_ITEMS >= len(group)
            deltas.append(
                _delta(partition, position if last else _below(position, chunk), goal, path, chunk)
            )
    return deltas


def _below(position: JoinPosition, chunk: list[Item]) -> JoinPosition:
    """The position that covers ``chunk`` and no decision after it."""
    decisions = chunk[-1].d_off + 1
    return JoinPosition(
        decisions=decisions, outcomes=position.outcomes, expired=min(position.expired, decisions)
    )


def _delta(
    partition: int, position: JoinPosition, goal: str, path: str, items: list[Item]
) -> PathDelta:
    rewards = tuple(i.reward for i in items)
    successes = sum(rewards)
    costs = tuple(i.cost for i in items)
    latencies = tuple(i.latency for i in items)
    known_costs = [c for c in costs if c is not None]
    known_latencies = [x for x in latencies if x is not None]
    times = tuple(i.event_time for i in items)
    # Built from our own validated events: construct without re-validating (hot path).
    return PathDelta.model_construct(
        schema_version=1,
        goal=goal,
        path=path,
        source_partition=partition,
        position=position,
        count=len(items),
        successes=successes,
        failures=len(items) - successes,
        cost_sum=sum(known_costs),
        cost_n=len(known_costs),
        latency_sum=sum(known_latencies),
        latency_n=len(known_latencies),
        first_event_at=_utc(min(times)),
        last_event_at=_utc(max(times)),
        d_offsets=tuple(i.d_off for i in items),
        o_offsets=tuple(i.o_off for i in items),
        rewards=rewards,
        event_times=times,
        costs=costs,
        latencies=latencies,
    )
