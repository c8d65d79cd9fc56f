"""The join state of one input partition: pure logic, no I/O (see docs/recovery.md).

Decisions wait for their first outcome; outcomes that arrive first wait for their decision.
Time is event time, kept as two clocks: the largest ``occurred_at`` read from the outcomes
topic and the largest ``decided_at`` read from the decisions topic. A decision's window closes
on the outcome clock (its outcome can only come from there) and an orphan's grace on the
decision clock, so reading one topic ahead of the other does not close windows early, and a
backfill lands in history.
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Final, Literal

from schemas import DecisionEvent, JoinPosition, OutcomeEvent

if TYPE_CHECKING:
    from stream_workers.settings import WorkerSettings

__all__ = ["COUNTERS", "Item", "JoinConfig", "PartitionJoin"]

#: Counter names, per goal ("" when the goal is unknown: an outcome that never met its decision).
COUNTERS: Final = (
    "decisions",
    "outcomes",
    "joined",
    "duplicates",
    "replays",
    "unreported",
    "expired_failures",
    "unmatched",
    "evicted",
    "dead_lettered",
)


@dataclass(frozen=True, slots=True)
class JoinConfig:
    """Join semantics. Durations are seconds of event time.

    The defaults are the workers' (``WorkerSettings`` takes its defaults from here);
    ``from_settings`` builds the config the settings describe.
    """

    outcome_window: float = 3600.0
    window_overrides: Mapping[str, float] = field(default_factory=dict)
    orphan_grace: float = 120.0
    on_timeout: Literal["ignore", "failure"] = "ignore"
    duplicate_horizon: float = 120.0
    max_pending: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("outcome_window", "orphan_grace", "duplicate_horizon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for goal, seconds in self.window_overrides.items():
            if not seconds > 0:
                raise ValueError(f"outcome window of goal {goal!r} must be > 0, got {seconds!r}")
        if self.on_timeout not in ("ignore", "failure"):
            raise ValueError(f"on_timeout must be 'ignore' or 'failure', got {self.on_timeout!r}")
        if self.max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {self.max_pending!r}")

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> JoinConfig:
        """Every field takes the setting of the same name."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})

    def window(self, goal: str) -> float:
        return self.window_overrides.get(goal, self.outcome_window)


@dataclass(frozen=True, slots=True)
class Item:
    """One joined outcome (or a decision that expired with ``on_timeout = failure``)."""

    goal: str
    path: str
    d_off: int
    o_off: int  # -1: expired decision
    reward: float
    event_time: float
    cost: float | None
    latency: float | None


# The long-lived entries (a pending decision lives up to its outcome window, a resolved trace
# for the duplicate horizon: millions of them at high rates) are plain tuples of atomic values,
# which the garbage collector stops tracking. As slotted dataclasses they were all tracked, and
# the full collections their number triggers paused the worker for 0.1-0.6 s every ~2 s at
# 25k events/s (measured), which dominated snapshot freshness.

#: A decision waiting for its outcome: (d_off, goal, path, expires_at, o_low, closes_at), where
#: o_low is the lowest outcome offset that could still meet it, closes_at the end of its window
#: (the event time of an ``on_timeout = failure`` item) and expires_at the outcome-clock time at
#: which it is given up: its window's end, or for a decision first read more than orphan_grace
#: after its window closed (a backfill), the outcome clock at arrival plus orphan_grace.
_Pending = tuple[int, str, str, float, int, float]
#: A joined or expired trace: (outcome_event_id, until, d_off); the event id is "" when the
#: decision expired without an outcome.
_Resolved = tuple[str, float, int]


@dataclass(slots=True)
class _Orphan:
    o_off: int
    event: OutcomeEvent
    expires_at: float


class PartitionJoin:
    """Join state of ``decisions[p]`` and ``outcomes[p]`` for one partition ``p``."""

    def __init__(
        self,
        partition: int,
        config: JoinConfig,
        *,
        start: tuple[int, int] = (0, 0),
        replay_until: tuple[int, int] = (0, 0),
        clocks: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        """Rebuilding from a checkpoint: ``start`` is its ``replay_start``, ``replay_until``
        the decision and outcome offsets of its position, ``clocks`` its clocks.

        Events below ``replay_until`` were processed before the checkpoint: they rebuild state
        but are not counted, and a join is emitted only if one of its halves is newer. Nothing
        expires until both topics are read up to ``replay_until``."""
        self.partition = partition
        self.config = config
        self._d, self._o = start
        self._replay_d, self._replay_o = replay_until
        self.decision_time, self.outcome_time = clocks
        # OrderedDicts, not dicts: expiry and the positions read the oldest entry, and a dict
        # whose front entries were deleted scans past their dummies on every such read
        # (measured: 3 us/event grew to 27 us/event once joined traces began to expire).
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._orphans: OrderedDict[str, _Orphan] = OrderedDict()
        # Joined traces, remembered for duplicate_horizon to classify later events of them.
        self._resolved: OrderedDict[str, _Resolved] = OrderedDict()
        # (d_off, o_low, trace) of joined decisions, for replay_start; stale entries (expired
        # from _resolved) are dropped lazily when they reach the top.
        self._resolved_heap: list[tuple[int, int, str]] = []
        self._items: list[Item] = []
        self.counters: dict[str, Counter[str]] = {name: Counter() for name in COUNTERS}

    # -- reading -----------------------------------------------------------------------------

    @property
    def replaying(self) -> bool:
        """True until both topics are read up to the checkpoint rebuilt from. Do not write a
        checkpoint meanwhile: the clocks are the old checkpoint's, ahead of what was read."""
        return self._d < self._replay_d or self._o < self._replay_o

    @property
    def clocks(self) -> tuple[float, float]:
        return self.decision_time, self.outcome_time

    def skip_decision(self, offset: int) -> None:
        """A decision message that could not be read (it goes to the dead-letter topic)."""
        self._d = offset + 1
        if offset >= self._replay_d:
            self.counters["dead_lettered"][""] += 1

    def skip_outcome(self, offset: int) -> None:
        self._o = offset + 1
        if offset >= self._replay_o:
            self.counters["dead_lettered"][""] += 1

    def on_decision(self, offset: int, event: DecisionEvent) -> None:
        self._d = offset + 1
        decided = event.decided_at.timestamp()
        if decided > self.decision_time:
            self.decision_time = decided
        trace = event.trace_id
        goal = event.goal
        counters = self.counters if offset >= self._replay_d else None
        if trace in self._pending or trace in self._resolved:
            if counters is not None:
                counters["replays"][goal] += 1
            return
        if counters is not None:
            counters["decisions"][goal] += 1
        o_low = next(iter(self._orphans.values())).o_off if self._orphans else self._o
        orphan = self._orphans.pop(trace, None)
        if orphan is not None:
            self._join(offset, o_low, goal, event.path, orphan.o_off, orphan.event)
            return
        closes = decided + self.config.window(goal)
        expires = closes
        grace = self.config.orphan_grace
        if closes + grace <= self.outcome_time and counters is not None:
            # Read more than orphan_grace after its window closed (a backfill of history): wait
            # orphan_grace for its outcome rather than expire at the next flush. A decision
            # read a little late (the outcome reader ahead) expires as usual. Not while
            # replaying: the restored clocks are ahead of those it was first read at.
            expires = self.outcome_time + grace
        self._pending[trace] = (offset, goal, event.path, expires, o_low, closes)
        if len(self._pending) > self.config.max_pending:
            self._expire_front(evicted=True)

    def on_outcome(self, offset: int, event: OutcomeEvent) -> None:
        self._o = offset + 1
        occurred = event.occurred_at.timestamp()
        if occurred > self.outcome_time:
            self.outcome_time = occurred
        trace = event.trace_id
        pending = self._pending.pop(trace, None)
        if pending is not None:
            d_off, goal, path, _, o_low, _ = pending
            self._join(d_off, o_low, goal, path, offset, event)
            return
        counters = self.counters if offset >= self._replay_o else None
        orphan = self._orphans.get(trace)
        resolved = self._resolved.get(trace)
        if orphan is not None or resolved is not None:
            if counters is not None:
                if orphan is not None:
                    seen = orphan.event.event_id
                else:
                    seen = resolved[0] if resolved is not None else ""
                if not seen:  # its decision expired without an outcome: too late
                    counters["unmatched"][""] += 1
                else:
                    counters["replays" if seen == event.event_id else "duplicates"][""] += 1
            return
        expires = max(self.decision_time, occurred) + self.config.orphan_grace
        self._orphans[trace] = _Orphan(offset, event, expires)

    def _resolve(self, trace: str, outcome_event_id: str, d_off: int, o_low: int) -> None:
        """Remember a joined or expired trace, so that a replayed decision or a later outcome
        of it is recognised rather than joined again."""
        until = max(self.decision_time, self.outcome_time) + self.config.duplicate_horizon
        self._resolved[trace] = (outcome_event_id, until, d_off)
        heapq.heappush(self._resolved_heap, (d_off, o_low, trace))

    def _join(
        self, d_off: int, o_low: int, goal: str, path: str, o_off: int, event: OutcomeEvent
    ) -> None:
        self._resolve(event.trace_id, event.event_id, d_off, o_low)
        if d_off < self._replay_d and o_off < self._replay_o:
            return  # joined before the checkpoint: already emitted
        self.counters["outcomes"][goal] += 1
        self.counters["joined"][goal] += 1
        score = event.score
        reward = score if score is not None else (1.0 if event.success else 0.0)
        self._items.append(
            Item(
                goal,
                path,
                d_off,
                o_off,
                reward,
                event.occurred_at.timestamp(),
                event.cost_usd,
                event.latency_ms,
            )
        )

    # -- expiry ------------------------------------------------------------------------------

    def _expire_front(self, *, evicted: bool = False) -> None:
        trace, (d_off, goal, path, _, o_low, closes) = self._pending.popitem(last=False)
        self._resolve(trace, "", d_off, o_low)
        if evicted:
            self.counters["evicted"][goal] += 1
        if self.config.on_timeout == "failure":
            self.counters["expired_failures"][goal] += 1
            self._items.append(Item(goal, path, d_off, -1, 0.0, closes, None, None))
        elif not evicted:
            self.counters["unreported"][goal] += 1

    def expire(self, limit: int = 10_000) -> int:
        """Close the windows the clocks have passed, oldest first, at most ``limit``.

        Decisions expire in the order they were read: one with a long window at the front
        holds back later ones until it expires (they are then expired together)."""
        done = 0
        if self.replaying:
            return 0
        while self._pending and done < limit:
            if next(iter(self._pending.values()))[3] >= self.outcome_time:
                break
            self._expire_front()
            done += 1
        while self._orphans and done < limit:
            trace, orphan = next(iter(self._orphans.items()))
            if orphan.expires_at >= self.decision_time:
                break
            del self._orphans[trace]
            self.counters["unmatched"][""] += 1
            done += 1
        while self._resolved and done < limit:
            trace, resolved = next(iter(self._resolved.items()))
            if resolved[1] >= min(self.decision_time, self.outcome_time):
                break
            del self._resolved[trace]
            done += 1
        return done

    def _oldest_resolved(self) -> tuple[int, int] | None:
        heap = self._resolved_heap
        while heap:
            d_off, o_low, trace = heap[0]
            entry = self._resolved.get(trace)
            if entry is not None and entry[2] == d_off:
                return d_off, o_low
            heapq.heappop(heap)
        return None

    # -- progress ----------------------------------------------------------------------------

    @property
    def position(self) -> JoinPosition:
        expired = next(iter(self._pending.values()))[0] if self._pending else self._d
        return JoinPosition.model_construct(decisions=self._d, outcomes=self._o, expired=expired)

    @property
    def replay_start(self) -> tuple[int, int]:
        """Where a rebuild must start reading decisions and outcomes to recreate this state:
        the oldest decision still pending or joined within the duplicate horizon, and the
        lowest outcome offset noted when it was read (see docs/recovery.md)."""
        candidates = []
        if self._pending:
            d_off, _, _, _, o_low, _ = next(iter(self._pending.values()))
            candidates.append((d_off, o_low))
        oldest = self._oldest_resolved()
        if oldest is not None:
            candidates.append(oldest)
        if candidates:
            return min(candidates)
        o_low = next(iter(self._orphans.values())).o_off if self._orphans else self._o
        return self._d, o_low

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def orphans(self) -> int:
        return len(self._orphans)

    def drain(self) -> list[Item]:
        """The items joined (or expired) since the last drain, in the order they happened."""
        items, self._items = self._items, []
        return items
