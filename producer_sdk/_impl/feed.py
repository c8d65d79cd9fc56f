"""The threads that keep routers' policies fresh.

``RedisPolicyFeed``: one per Redis (URL and key prefix) in a process, shared by every router
that reads it, whatever its goal. One named daemon thread, one connection for reads and one
for ``<prefix>:policy-changes``, where a worker announces the goals of each write together
(one message per write, not per goal). The goals announced are read back in one MGET of
those this process routes, and each goal's read is handed to every cache of that goal. Every
``poll_interval`` (the shortest of its routers') one MGET reads every goal as a safety net,
in batches of ``_BATCH`` goals. Before, each router's thread woke for every goal's message on
``<prefix>:policy-updates`` to find its own: G goals publishing P times a second cost G*G*P
wake-ups a second in a process; now it is P per worker, and G*P goals read
(``bench/feed.py``).

``SourceThread``: a router given its own ``SnapshotSource`` (an in-memory stand-in, a custom
store) gets a thread of its own, as every router had before the shared feed.

The shared feeds live in a registry of the process, one per Redis: a feed's thread starts with
its first router and stops when its last router closes; after ``fork()`` the child starts
feeds of its own.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Final

import redis
from redis.client import PubSub

from schemas import RedisKeys

from ..cache import PolicyCache, SnapshotSource

__all__ = ["RedisPolicyFeed", "SourceThread", "shared_feed"]

log = logging.getLogger("outroute.sdk.cache")

_MAX_BACKOFF: Final = 5.0
#: How long the feed thread waits for a message at a time: a router attached meanwhile is
#: read within this bound, and stop() is this prompt.
_SLICE: Final = 0.05
#: Goals per MGET of the safety-net poll (two keys each).
_BATCH: Final = 256
#: Messages taken at most before acting on them: a flood of them cannot starve the reads.
_DRAIN: Final = 1_000


class SourceThread:
    """One cache's own thread over one :class:`SnapshotSource`."""

    def __init__(self, source_factory: Callable[[], SnapshotSource]) -> None:
        self._source_factory = source_factory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, cache: PolicyCache) -> None:
        thread = threading.Thread(
            target=self._run, args=(cache,), name=f"outroute-policy-{cache.goal}", daemon=True
        )
        thread.start()
        self._thread = thread

    def detach(self, cache: PolicyCache, timeout: float) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _wait(self, cache: PolicyCache, source: SnapshotSource) -> None:
        """Until an update is signalled or poll_interval passes, in slices short enough for
        stop to be prompt."""
        deadline = time.monotonic() + cache.options.poll_interval
        if cache.current.loaded:  # a policy never loaded has nothing to compile again
            deadline = min(deadline, cache.recompile_at)
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if source.wait_for_update(min(left, 0.1)):
                return

    def _run(self, cache: PolicyCache) -> None:
        source: SnapshotSource | None = None
        backoff = 0.1
        stop = self._stop
        while not stop.is_set():
            try:
                if source is None:
                    source = self._source_factory()
                cache.refresh(source)
                backoff = 0.1
                self._wait(cache, source)
            except Exception as exc:  # the source is down: keep the last policy, retry
                cache.failed(exc)
                due = cache.recompile_at - time.monotonic()
                stop.wait(max(0.0, min(backoff, due)))
                backoff = min(backoff * 2, _MAX_BACKOFF)
        if source is not None:
            try:
                source.close()
            except Exception:  # the router is closing; nothing to recover
                log.debug("closing the snapshot source failed", exc_info=True)


class RedisPolicyFeed:
    """Every router's policy from one Redis, in one thread (see the module docstring)."""

    def __init__(
        self,
        url: str,
        keys: RedisKeys,
        *,
        socket_timeout: float = 1.0,
    ) -> None:
        self.url = url
        self._keys = keys
        self._socket_timeout = socket_timeout
        self._lock = threading.Lock()
        self._caches: dict[str, list[PolicyCache]] = {}
        self._unread: set[str] = set()  # goals attached since the last read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: what the thread did, for benchmarks and tests
        self.messages = 0
        self.reads = 0

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    @property
    def goals(self) -> int:
        with self._lock:
            return len(self._caches)

    def attach(self, cache: PolicyCache) -> None:
        with self._lock:
            self._caches.setdefault(cache.goal, []).append(cache)
            self._unread.add(cache.goal)
            if self._thread is None:
                self._stop = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="outroute-policy-feed", daemon=True
                )
                thread.start()
                self._thread = thread

    def detach(self, cache: PolicyCache, timeout: float) -> None:
        with self._lock:
            caches = self._caches.get(cache.goal, [])
            if cache in caches:
                caches.remove(cache)
            if not caches:
                self._caches.pop(cache.goal, None)
            if self._caches or self._thread is None:
                return
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout)

    # -- the thread ----------------------------------------------------------------------------

    def _connect(self) -> tuple[redis.Redis, PubSub]:
        client = redis.Redis.from_url(
            self.url,
            socket_connect_timeout=self._socket_timeout,
            socket_timeout=self._socket_timeout,
            health_check_interval=0,
        )
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call, unused-ignore]
            pubsub.subscribe(self._keys.policy_changes)
        except BaseException:
            _close(client)
            raise
        return client, pubsub

    def _snapshot(self) -> tuple[dict[str, list[PolicyCache]], set[str], float]:
        """The caches by goal, the goals attached since the last read (taken), and the
        shortest poll interval."""
        with self._lock:
            caches = {goal: list(group) for goal, group in self._caches.items()}
            unread, self._unread = self._unread, set()
        poll = min(
            (c.options.poll_interval for group in caches.values() for c in group), default=1.0
        )
        return caches, unread, poll

    def _read(
        self, client: redis.Redis, goals: list[str], caches: dict[str, list[PolicyCache]]
    ) -> None:
        """One MGET per batch of goals; each goal's snapshot and overrides to its caches."""
        keys = self._keys
        for start in range(0, len(goals), _BATCH):
            batch = goals[start : start + _BATCH]
            names = [key for goal in batch for key in (keys.policy(goal), keys.overrides(goal))]
            values = client.mget(names)
            self.reads += 1
            for k, goal in enumerate(batch):
                raw, overrides = _as_bytes(values[2 * k]), _as_bytes(values[2 * k + 1])
                for cache in caches.get(goal, ()):
                    try:
                        cache.apply(raw, overrides)
                    except Exception:  # one router's bug must not starve the others
                        log.exception("applying the policy of goal %r failed", goal)

    def _announced(self, pubsub: PubSub, wait: float) -> set[str]:
        """The goals announced within ``wait`` seconds: the first message waited for, then
        those already there (at most ``_DRAIN``)."""
        goals: set[str] = set()
        message = pubsub.get_message(timeout=wait)
        taken = 0
        while message is not None:
            data = message.get("data")
            if isinstance(data, bytes):
                data = data.decode(errors="replace")
            if isinstance(data, str):
                goals.update(data.split("\n"))
            taken += 1
            if taken >= _DRAIN:
                break
            message = pubsub.get_message(timeout=0.0)
        self.messages += taken
        return goals

    def _run(self, stop: threading.Event) -> None:
        backoff = 0.1
        last_poll = -float("inf")  # read every goal at once on the first pass
        connection: tuple[redis.Redis, PubSub] | None = None
        while not stop.is_set():
            caches: dict[str, list[PolicyCache]] = {}
            try:
                caches, unread, poll = self._snapshot()
                if connection is None:
                    connection = self._connect()
                client, pubsub = connection
                now = time.monotonic()
                if now >= last_poll + poll:  # poll: the shortest interval of the routers now
                    due = list(caches)
                    last_poll = now
                else:
                    due = [goal for goal in unread if goal in caches]
                if due:
                    self._read(client, due, caches)
                announced = self._announced(pubsub, _SLICE)
                mine = [goal for goal in announced if goal in caches]
                if mine:
                    self._read(client, mine, caches)
                self._recompile_due(caches)
                backoff = 0.1
            except Exception as exc:  # Redis down, DNS, auth: keep the last policies, retry
                if connection is not None:
                    _close(*reversed(connection))
                    connection = None
                for group in caches.values():
                    for cache in group:
                        cache.failed(exc)
                with self._lock:
                    self._unread.update(caches)
                # ... but no later than the earliest override in force ends
                ends = min(
                    (
                        c.recompile_at
                        for group in caches.values()
                        for c in group
                        if c.current.loaded
                    ),
                    default=math.inf,
                )
                stop.wait(max(0.0, min(backoff, ends - time.monotonic())))
                backoff = min(backoff * 2, _MAX_BACKOFF)
                last_poll = -float("inf")
        if connection is not None:
            _close(*reversed(connection))

    @staticmethod
    def _recompile_due(caches: dict[str, list[PolicyCache]]) -> None:
        now = time.monotonic()
        for group in caches.values():
            for cache in group:
                if now >= cache.recompile_at:
                    cache.recompile_if_due()


def _close(*connections: redis.Redis | PubSub) -> None:
    for connection in connections:
        try:
            connection.close()
        except Exception:  # closing a broken connection may fail; it is gone either way
            log.debug("closing a Redis connection failed", exc_info=True)


def _as_bytes(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()


class _Registry:
    """The process's shared feeds, one per (URL, key prefix)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: dict[tuple[str, str], RedisPolicyFeed] = {}

    def feed(self, url: str, keys: RedisKeys) -> RedisPolicyFeed:
        key = (url, keys.prefix)
        with self._lock:
            feed = self._feeds.get(key)
            if feed is None:
                feed = self._feeds[key] = RedisPolicyFeed(url, keys)
            return feed

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._feeds = {}


_REGISTRY: Final = _Registry()
os.register_at_fork(after_in_child=_REGISTRY.after_fork_in_child)


def shared_feed(url: str, keys: RedisKeys) -> RedisPolicyFeed:
    """The process's feed of the Redis at ``url`` under ``keys``' prefix."""
    return _REGISTRY.feed(url, keys)
