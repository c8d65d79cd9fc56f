"""One router's record of what was reported: the first report of a decision is emitted, later
ones are counted and warned about, and a decision's turns add up until it is reported."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..decision import Decision, Outcome, Turn, with_turns
from ..emitter import EventSink
from .encode import EventEncoder

__all__ = ["Ledger", "OnceLog"]

log = logging.getLogger("outroute.sdk")

#: What to do instead, by who reported first (the warning names the case).
_HINTS = {
    "report()": "report each decision once",
    "completion()": "it reports failures and cancellations itself; pass success_fn to judge "
    "answers there, or report once",
    "run()": "it reports exceptions and cancellations itself; pass success_fn to judge results "
    "there, or report once",
}


class OnceLog:
    """Warnings logged once per key (per router, and again after fork)."""

    __slots__ = ("_lock", "_warned")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def warn(self, key: str, message: str, *args: Any) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning(message, *args)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._warned = set()


class Ledger:
    """Implements the Reporter protocol of ``Decision`` for one router."""

    __slots__ = ("_encoder", "_learned", "_lock", "_sink", "_warnings", "duplicates", "reports")

    def __init__(
        self,
        encoder: EventEncoder,
        sink: EventSink,
        warnings: OnceLog,
        learned: Callable[[str, Outcome, float], None] | None = None,
    ) -> None:
        self._encoder = encoder
        self._sink = sink
        self._warnings = warnings
        #: told of each outcome emitted, with its occurred_at (Unix seconds): the router's own
        #: view of its outcomes
        self._learned = learned
        self._lock = threading.Lock()
        self.reports = 0
        self.duplicates = 0

    def counts(self) -> tuple[int, int]:
        """(reports emitted, duplicate reports ignored)."""
        with self._lock:
            return self.reports, self.duplicates

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self.reports = 0
        self.duplicates = 0

    def issued(self, decision: Decision) -> bool:
        """Whether ``decision`` is one of this router's."""
        return decision._reporter is self

    def record_turn(self, decision: Decision, turn: Turn) -> None:
        with self._lock:
            if decision._reported_by is None:
                decision._turns.append(turn)

    def emit(self, decision: Decision, outcome: Outcome, by: str) -> bool:
        with self._lock:
            first = decision._reported_by
            if first is None:
                decision._reported_by = by
                self.reports += 1
                outcome = with_turns(outcome, decision._turns)
            else:
                self.duplicates += 1
        if first is not None:
            self._warnings.warn(
                f"duplicate:{first}",
                "decision %s was already reported by %s; the report by %s is ignored (%s)",
                decision.trace_id,
                first,
                by,
                _HINTS.get(first, "report each decision once"),
            )
            return False
        occurred_ns = time.time_ns()
        try:
            payload = self._encoder.outcome(decision.trace_id, outcome, occurred_ns)
            self._sink.send("outcome", decision.trace_id.encode(), payload)
        except Exception as exc:  # never into the host
            self._warnings.warn("send", "could not emit an outcome event: %r", exc)
        if self._learned is not None:
            try:
                # occurred_at as the event carries it (microseconds), as the workers count it
                self._learned(decision.path, outcome, (occurred_ns // 1000) / 1e6)
            except Exception as exc:  # never into the host
                self._warnings.warn("local", "could not learn from an outcome: %r", exc)
        return True
