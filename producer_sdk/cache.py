"""PolicyCache: a daemon thread that keeps one goal's compiled policy fresh.

It reads ``<prefix>:policy:<goal>`` and the goal's overrides ``<prefix>:overrides:<goal>`` in
one round trip, subscribes to ``<prefix>:policy-updates`` (a goal name is published after each
write of either) and polls as a safety net. It compiles again when the earliest override in
force ends, so an override expires by this process's clock without a write. ``decide()`` only
reads ``PolicyCache.current``, an immutable object swapped in one assignment, so deciding never
waits for Redis. When Redis is away the last policy stays in use, overrides included; errors
are logged once per outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

import redis
from pydantic import ValidationError
from redis.client import PubSub

from schemas import PolicySnapshot, RedisKeys
from schemas.overrides import GoalOverrides

from .options import CacheOptions
from .policy import CompiledPolicy, PolicyView
from .sampling import SamplingParams

__all__ = ["PolicyCache", "RedisSnapshotSource", "SnapshotSource"]

log = logging.getLogger("outroute.sdk.cache")

_MAX_BACKOFF: Final = 5.0
_STOP_SLICE: Final = 0.1


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


class RedisSnapshotSource:
    """Snapshots of one goal from Redis: GET for the value, SUBSCRIBE for the nudge."""

    def __init__(self, url: str, keys: RedisKeys, goal: str, *, socket_timeout: float = 1.0):
        self._url = url
        self._key = keys.policy(goal)
        self._overrides_key = keys.overrides(goal)
        self._overrides: bytes | None = None
        self._channel = keys.policy_updates
        self._goal = goal.encode()
        self._socket_timeout = socket_timeout
        self._client: redis.Redis | None = None
        self._pubsub: PubSub | None = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(
                self._url,
                socket_connect_timeout=self._socket_timeout,
                socket_timeout=self._socket_timeout,
                health_check_interval=0,
            )
        return self._client

    def fetch(self) -> bytes | None:
        value, overrides = self._redis().mget(self._key, self._overrides_key)
        self._overrides = _as_bytes(overrides)
        return _as_bytes(value)

    def fetch_overrides(self) -> bytes | None:
        """The overrides read by the last ``fetch()``, in the same round trip."""
        return self._overrides

    def wait_for_update(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        try:
            if self._pubsub is None:
                pubsub = self._redis().pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call, unused-ignore]
                pubsub.subscribe(self._channel)
                self._pubsub = pubsub
            pubsub = self._pubsub
            while (left := deadline - time.monotonic()) > 0:
                message = pubsub.get_message(timeout=left)
                if message and message.get("data") == self._goal:
                    return True
        except (redis.RedisError, OSError):
            self._reset_pubsub()
            raise
        return False

    def _reset_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # closing a broken connection may fail; it is gone either way
                log.debug("closing the pub/sub connection failed", exc_info=True)

    def close(self) -> None:
        self._reset_pubsub()
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _as_bytes(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()


class PolicyCache:
    """Keeps ``current`` up to date from a :class:`SnapshotSource` in a named daemon thread."""

    def __init__(
        self,
        goal: str,
        paths: Sequence[str],
        params: SamplingParams,
        options: CacheOptions,
        source_factory: Callable[[], SnapshotSource],
    ) -> None:
        self.goal = goal
        self._paths = tuple(paths)
        self._params = params
        self._options = options
        self._source_factory = source_factory
        self.current = CompiledPolicy.never_loaded(self._paths, params.tie_margin)
        self._lock = threading.Lock()
        self._reset_thread_state()

    def _reset_thread_state(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._first_attempt = threading.Event()
        self._last_ok: float | None = None
        self._errors = 0
        self._invalid = 0
        self._failing = False
        self._vanished = False

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, wait: float | None = None) -> None:
        """Start the thread (once) and wait up to ``wait`` (default ``init_wait``) seconds for
        the first fetch to succeed or fail."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    thread = threading.Thread(
                        target=self._run, name=f"outroute-policy-{self.goal}", daemon=True
                    )
                    thread.start()
                    self._thread = thread
        self._first_attempt.wait(self._options.init_wait if wait is None else wait)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def after_fork_in_child(self) -> None:
        """The thread did not survive fork(); the next decide() starts a new one. The last
        policy stays in use meanwhile."""
        self._lock = threading.Lock()
        self._reset_thread_state()

    @property
    def stale(self) -> bool:
        if self._vanished:
            return True
        last = self._last_ok
        if last is None:
            return False
        return time.monotonic() - last > self._options.max_staleness

    @property
    def errors(self) -> int:
        return self._errors

    @property
    def invalid_snapshots(self) -> int:
        return self._invalid

    def view(self) -> PolicyView:
        return self.current.view(self.goal, stale=self.stale)

    def refresh(self, source: SnapshotSource) -> bool:
        """Fetch once and swap in a new policy if it changed. Raises if the source is down."""
        raw = source.fetch()
        fetch_overrides = getattr(source, "fetch_overrides", None)  # sources older than it
        overrides_raw = fetch_overrides() if fetch_overrides is not None else None
        self._last_ok = time.monotonic()
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
            self._recompile_if_due()
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
        overrides = self._overrides(overrides_raw, current)
        self.current = CompiledPolicy.compile(
            snapshot,
            self._paths,
            self._params,
            previous=current,
            raw=raw,
            overrides=overrides,
            overrides_raw=overrides_raw,
        )
        return True

    def _recompile_if_due(self) -> None:
        """While no new policy can be read: compile the last one again once its earliest
        override has ended (or a minute has passed), so that overrides still end on time."""
        current = self.current
        if current.loaded and time.monotonic() >= current.recompile_at:
            self.current = CompiledPolicy.compile(
                current.snapshot,
                self._paths,
                self._params,
                previous=current,
                raw=current.raw,
                overrides=current.stored_overrides,
                overrides_raw=current.overrides_raw,
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

    def _wait(self, source: SnapshotSource) -> None:
        """Until an update is signalled or poll_interval passes, in slices short enough for
        stop() to be prompt."""
        deadline = min(time.monotonic() + self._options.poll_interval, self.current.recompile_at)
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if source.wait_for_update(min(left, _STOP_SLICE)):
                return

    def _run(self) -> None:
        source: SnapshotSource | None = None
        backoff = 0.1
        stop = self._stop
        while not stop.is_set():
            try:
                if source is None:
                    source = self._source_factory()
                self.refresh(source)
                if self._failing:
                    log.warning("policy source for goal %r is reachable again", self.goal)
                    self._failing = False
                backoff = 0.1
                self._first_attempt.set()
                self._wait(source)
            except Exception as exc:  # Redis down, DNS, auth: keep the last policy, retry
                self._errors += 1
                self._first_attempt.set()
                if not self._failing:
                    log.warning(
                        "cannot read the policy for goal %r (%s); using the last one, retrying",
                        self.goal,
                        exc,
                    )
                    self._failing = True
                self._recompile_if_due()
                due = self.current.recompile_at - time.monotonic()
                stop.wait(max(0.0, min(backoff, due)))
                backoff = min(backoff * 2, _MAX_BACKOFF)
        if source is not None:
            try:
                source.close()
            except Exception:  # the process is shutting the cache down; nothing to recover
                log.debug("closing the snapshot source failed", exc_info=True)
