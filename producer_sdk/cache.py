"""PolicyCache: one router's compiled policy, kept fresh by a feed.

A feed (``producer_sdk._impl.feed``) reads ``<prefix>:policy:<goal>`` and the goal's overrides
``<prefix>:overrides:<goal>`` in one round trip, follows ``<prefix>:policy-updates`` (a goal
name is published after each write of either) and polls as a safety net, then hands what it
read to :meth:`PolicyCache.apply`. Every router of a process that reads the same Redis shares
one feed: one thread, one connection, one subscriber. A router given its own
:class:`SnapshotSource` (an in-memory stand-in, a custom store) gets a thread of its own that
drives the same cache.

The cache compiles again when the earliest override in force ends, so an override expires by
this process's clock without a write. ``decide()`` only reads ``PolicyCache.current``, an
immutable object swapped in one assignment, so deciding never waits for Redis. When Redis is
away the last policy stays in use, overrides included; errors are logged once per outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from pydantic import ValidationError

from schemas import PolicySnapshot
from schemas.overrides import GoalOverrides

from ._impl.local import LocalEvidence
from .options import CacheOptions
from .policy import CompiledPolicy, PolicyView
from .sampling import SamplingParams

__all__ = ["FeedDriver", "PolicyCache", "SnapshotSource"]

log = logging.getLogger("outroute.sdk.cache")


class SnapshotSource(Protocol):
    """Where snapshots come from. ``fetch`` raises when the source is unavailable and returns
    None when it answered but holds no snapshot for the goal. ``fetch_overrides``, called right
    after each ``fetch``, returns the goal's overrides (``GoalOverrides`` JSON) as of that
    fetch, or None when there are none; a source without that method has no overrides."""

    def fetch(self) -> bytes | None: ...

    def fetch_overrides(self) -> bytes | None: ...

    def wait_for_update(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True as soon as an update may be available."""

    def close(self) -> None: ...


class FeedDriver(Protocol):
    """What keeps caches fresh: a process's shared Redis feed, or one source's own thread."""

    def attach(self, cache: PolicyCache) -> None:
        """Start serving ``cache``: its first read is made as soon as possible."""

    def detach(self, cache: PolicyCache, timeout: float) -> None:
        """Stop serving ``cache``; a driver left serving nothing stops its thread."""


class PolicyCache:
    """Keeps ``current`` up to date from what a :class:`FeedDriver` reads, and from the
    router's own outcomes (``local``: see ``producer_sdk._impl.local``). ``decisions`` counts
    the router's decisions: the clock of its recovery probes."""

    def __init__(
        self,
        goal: str,
        paths: Sequence[str],
        params: SamplingParams,
        options: CacheOptions,
        driver: Callable[[], FeedDriver],
        *,
        local: LocalEvidence | None = None,
        decisions: Callable[[], int] = lambda: 0,
    ) -> None:
        self.goal = goal
        self.options = options
        self.local = local
        self._paths = tuple(paths)
        self._params = params
        self._driver_factory = driver
        self._decisions = decisions
        self.current = CompiledPolicy.never_loaded(self._paths, params.tie_margin)
        self._lock = threading.Lock()
        self._compiling = threading.Lock()
        self._alerted_at: dict[str, int] = {}
        self._reset_feed_state()

    def _reset_feed_state(self) -> None:
        self._driver: FeedDriver | None = None
        self._first_attempt = threading.Event()
        self._last_ok: float | None = None
        self._errors = 0
        self._invalid = 0
        self._failing = False
        self._vanished = False

    @property
    def started(self) -> bool:
        return self._driver is not None

    def start(self, wait: float | None = None) -> None:
        """Attach to the feed (once) and wait up to ``wait`` (default ``init_wait``) seconds
        for the first read to succeed or fail."""
        if self._driver is None:
            with self._lock:
                if self._driver is None:
                    driver = self._driver_factory()
                    driver.attach(self)
                    self._driver = driver
        self._first_attempt.wait(self.options.init_wait if wait is None else wait)

    def stop(self, timeout: float = 5.0) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.detach(self, timeout)

    def after_fork_in_child(self) -> None:
        """The feed's thread did not survive fork(); the next decide() attaches to a feed of
        the child's. The last policy stays in use meanwhile."""
        self._lock = threading.Lock()
        self._compiling = threading.Lock()
        self._alerted_at.clear()  # the child counts its decisions from zero
        if self.local is not None:
            self.local.after_fork_in_child()
        self._reset_feed_state()

    @property
    def stale(self) -> bool:
        if self._vanished:
            return True
        last = self._last_ok
        if last is None:
            return False
        return time.monotonic() - last > self.options.max_staleness

    @property
    def errors(self) -> int:
        return self._errors

    @property
    def invalid_snapshots(self) -> int:
        return self._invalid

    @property
    def recompile_at(self) -> float:
        """When the current policy must be compiled again (monotonic seconds)."""
        return self.current.recompile_at

    def view(self) -> PolicyView:
        return self.current.view(self.goal, stale=self.stale)

    # -- what drivers call -------------------------------------------------------------------

    def refresh(self, source: SnapshotSource) -> bool:
        """Fetch once from ``source`` and apply it. Raises if the source is down."""
        raw = source.fetch()
        fetch_overrides = getattr(source, "fetch_overrides", None)  # sources older than it
        return self.apply(raw, fetch_overrides() if fetch_overrides is not None else None)

    def apply(self, raw: bytes | None, overrides_raw: bytes | None) -> bool:
        """A read of the goal's snapshot and overrides (None: no such key): swap in a new
        policy if it changed. True when a new policy was compiled."""
        self._last_ok = time.monotonic()
        if self._failing:
            log.warning("policy source for goal %r is reachable again", self.goal)
            self._failing = False
        try:
            return self._apply(raw, overrides_raw)
        finally:
            self._first_attempt.set()

    def _apply(self, raw: bytes | None, overrides_raw: bytes | None) -> bool:
        current = self.current
        if (
            current.loaded
            and raw == current.raw
            and overrides_raw == current.overrides_raw
            and time.monotonic() < current.recompile_at
        ):
            # Unchanged. Compiled again once a minute so that path staleness stays true, and
            # when the earliest override in force ends.
            return False
        if raw is None and current.raw is not None:
            # The key is gone (a Redis restarted empty, a flush): what was learned is not.
            if not self._vanished:
                self._vanished = True
                log.warning(
                    "the policy snapshot of goal %r is gone from Redis; deciding with the last "
                    "one (marked stale) until the workers write it again",
                    self.goal,
                )
            self.recompile_if_due()
            return False
        self._vanished = False
        snapshot = None
        if raw is not None:
            try:
                snapshot = PolicySnapshot.model_validate_json(raw)
            except ValidationError as exc:
                self._invalid += 1
                log.error("ignoring an invalid snapshot for goal %r: %s", self.goal, exc)
                return False
            if snapshot.goal != self.goal:
                self._invalid += 1
                log.error("ignoring a snapshot of goal %r under goal %r", snapshot.goal, self.goal)
                return False
        self._compile(snapshot, raw, self._overrides(overrides_raw, current), overrides_raw)
        return True

    def _compile(
        self,
        snapshot: PolicySnapshot | None,
        raw: bytes | None,
        overrides: GoalOverrides | None,
        overrides_raw: bytes | None,
    ) -> None:
        """Swap in the policy of this snapshot and overrides, with the router's own outcomes
        folded in; the feed's thread and reporting threads (an alarm) take turns."""
        with self._compiling:
            known = snapshot.paths if snapshot is not None else {}
            local = self.local.arms(known) if self.local is not None else None
            alerted = {
                name
                for k, name in enumerate(self._paths)
                if (name in known and known[name].status == "degrading")
                or (local is not None and local[k].alarm is not None)
            }
            seen = self._alerted_at
            for name in [name for name in seen if name not in alerted]:
                del seen[name]
            for name in alerted:
                if name not in seen:
                    seen[name] = self._decisions()
            self.current = CompiledPolicy.compile(
                snapshot,
                self._paths,
                self._params,
                previous=self.current,
                raw=raw,
                overrides=overrides,
                overrides_raw=overrides_raw,
                local=local,
                alerted_at=seen,
            )

    def local_changed(self) -> None:
        """The router's own outcomes raised or ended an alarm: compile now."""
        current = self.current
        if current.loaded:
            self._compile(
                current.snapshot, current.raw, current.stored_overrides, current.overrides_raw
            )

    def failed(self, exc: BaseException) -> None:
        """The source could not be read: keep the last policy (logged once per outage)."""
        self._errors += 1
        if not self._failing:
            log.warning(
                "cannot read the policy for goal %r (%s); using the last one, retrying",
                self.goal,
                exc,
            )
            self._failing = True
        self.recompile_if_due()
        self._first_attempt.set()

    def recompile_if_due(self) -> None:
        """While no new policy can be read: compile the last one again once its earliest
        override has ended (or a minute has passed), so that overrides still end on time."""
        current = self.current
        if current.loaded and time.monotonic() >= current.recompile_at:
            self._compile(
                current.snapshot, current.raw, current.stored_overrides, current.overrides_raw
            )

    def _overrides(self, raw: bytes | None, current: CompiledPolicy) -> GoalOverrides | None:
        """The overrides in ``raw``; when it is invalid, the last ones (logged, counted)."""
        if raw is None:
            return None
        problem = None
        try:
            overrides = GoalOverrides.model_validate_json(raw)
        except ValidationError as exc:
            problem = str(exc)
        else:
            if overrides.goal == self.goal:
                return overrides
            problem = f"they are the overrides of goal {overrides.goal!r}"
        self._invalid += 1
        log.error("ignoring invalid overrides for goal %r: %s", self.goal, problem)
        return current.stored_overrides
