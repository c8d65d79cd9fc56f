"""In-memory stand-ins for the SDK's I/O, for your own tests.

sink = InMemorySink()
source = StaticSnapshotSource(snapshot)          # or StaticSnapshotSource(None): no snapshot
source.set_overrides(overrides)                  # a GoalOverrides: a path disabled, a pin
router = Router("summarize", ["a", "b"], event_sink=sink, snapshot_source=source)
d = router.decide(); d.report(success=True)
assert sink.outcomes[0].trace_id == d.trace_id
"""

from __future__ import annotations

import threading

from schemas import DecisionEvent, OutcomeEvent, PolicySnapshot
from schemas.overrides import GoalOverrides

from .emitter import EmitterStats, EventKind

__all__ = ["InMemorySink", "NullSink", "StaticSnapshotSource", "UnavailableSnapshotSource"]


class NullSink:
    """Accepts every event and keeps nothing (for benchmarks of the router's own cost)."""

    def send(self, kind: EventKind, key: bytes, value: bytes) -> bool:
        return True

    def flush(self, timeout: float) -> int:
        return 0

    def close(self, timeout: float) -> int:
        return 0

    def stats(self) -> EmitterStats:
        return EmitterStats()

    def after_fork_in_child(self) -> None:
        return None


class InMemorySink(NullSink):
    """Keeps every event, validated, in ``decisions`` and ``outcomes`` (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.decisions: list[DecisionEvent] = []
        self.outcomes: list[OutcomeEvent] = []
        self.keys: list[bytes] = []

    def send(self, kind: EventKind, key: bytes, value: bytes) -> bool:
        event: DecisionEvent | OutcomeEvent
        if kind == "decision":
            event = DecisionEvent.model_validate_json(value)
        else:
            event = OutcomeEvent.model_validate_json(value)
        if event.trace_id.encode() != key:
            raise ValueError(f"event keyed {key!r} but its trace_id is {event.trace_id!r}")
        with self._lock:
            self.keys.append(key)
            if isinstance(event, DecisionEvent):
                self.decisions.append(event)
            else:
                self.outcomes.append(event)
        return True

    def stats(self) -> EmitterStats:
        with self._lock:
            count = len(self.decisions) + len(self.outcomes)
        return EmitterStats(emitted=count, delivered=count)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()


class StaticSnapshotSource:
    """Serves one snapshot (or None: "no snapshot for this goal yet") and the goal's overrides
    (None: none); ``set()`` and ``set_overrides()`` replace them and wake the router's policy
    thread."""

    def __init__(
        self, snapshot: PolicySnapshot | None = None, overrides: GoalOverrides | None = None
    ) -> None:
        self._raw = snapshot.model_dump_json().encode() if snapshot is not None else None
        self._overrides = overrides.model_dump_json().encode() if overrides is not None else None
        self._changed = threading.Event()

    def set(self, snapshot: PolicySnapshot | None) -> None:
        self._raw = snapshot.model_dump_json().encode() if snapshot is not None else None
        self._changed.set()

    def set_overrides(self, overrides: GoalOverrides | None) -> None:
        self._overrides = overrides.model_dump_json().encode() if overrides is not None else None
        self._changed.set()

    def fetch(self) -> bytes | None:
        return self._raw

    def fetch_overrides(self) -> bytes | None:
        return self._overrides

    def wait_for_update(self, timeout: float) -> bool:
        if self._changed.wait(timeout):
            self._changed.clear()
            return True
        return False

    def close(self) -> None:
        self._changed.set()


class UnavailableSnapshotSource:
    """A snapshot source that is always down, like an unreachable Redis."""

    def fetch(self) -> bytes | None:
        raise ConnectionError("snapshot source unavailable")

    def fetch_overrides(self) -> bytes | None:
        raise ConnectionError("snapshot source unavailable")

    def wait_for_update(self, timeout: float) -> bool:
        raise ConnectionError("snapshot source unavailable")

    def close(self) -> None:
        return None
