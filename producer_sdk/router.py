"""The Router: decide a path per request in microseconds, report how it went.

``decide()`` reads an immutable policy that a background thread keeps fresh from Redis, samples
a path, and hands the DecisionEvent to the emitter; it does no I/O and never raises for a valid
router. Kafka or Redis trouble degrades to counted drops and a stale policy, never to an error
in the host's request. ``run()`` and ``completion()`` call the paths for the host; they are
small objects of their own (``producer_sdk._impl``) built on the public ``decide()``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import functools
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, overload

from schemas import Reason
from schemas.settings import OutrouteSettings

from ._impl.arguments import (
    check_among,
    check_context,
    check_force_path,
    check_identifier,
    check_max_attempts,
    feed_driver,
    normalize_paths,
)
from ._impl.callables import CallablePaths
from ._impl.calls import CallHost, Judge
from ._impl.completions import ModelCalls
from ._impl.encode import EventEncoder
from ._impl.ledger import Ledger, OnceLog
from ._impl.local import LocalEvidence, reward_of
from .cache import PolicyCache, SnapshotSource
from .decision import Decision, Outcome
from .emitter import EventSink, KafkaEventSink
from .errors import NoCurrentDecision
from .options import CacheOptions, ConnectionOptions, EmitterOptions, Provider
from .policy import PolicyView
from .providers import Completion
from .sampling import SamplingParams
from .streams import AsyncCompletionStream, CompletionStream

__all__ = ["SDK_VERSION", "Router", "RouterStats"]

log = logging.getLogger("outroute.sdk")

SDK_VERSION: Final = "0.1.0"
_FLUSH_TIMEOUT: Final = 5.0


@dataclass(frozen=True, slots=True)
class RouterStats:
    """Counters of one router in this process (they start again at zero after fork)."""

    decisions: int
    reports: int
    duplicate_reports: int
    emitted: int
    delivered: int
    pending: int
    dropped: int
    failed: int
    policy_loaded: bool
    policy_version: int | None
    policy_stale: bool
    policy_errors: int


class Router:
    """Routes one goal's requests across its paths. Thread-safe; one per goal per process.

    ``paths`` are names (model names for ``completion()``) or callables for ``run()``. The
    settings come as one value object per concern, each optional: ``connection`` (where Kafka
    and Redis are), ``sampling``, ``emitter``, ``cache``.
    """

    def __init__(
        self,
        goal: str,
        paths: Iterable[str] | Iterable[Callable[..., Any]] | Iterable[tuple[str, Any]],
        *,
        success_fn: Callable[[Any], bool] | None = None,
        success_on_return: bool = False,
        max_attempts: int = 2,
        service: str | None = None,
        connection: OutrouteSettings | None = None,
        sampling: SamplingParams | None = None,
        emitter: EmitterOptions | None = None,
        cache: CacheOptions | None = None,
        providers: Mapping[str, Provider] | None = None,
        default_provider: Provider | None = None,
        event_sink: EventSink | None = None,
        snapshot_source: SnapshotSource | Callable[[], SnapshotSource] | None = None,
        seed: int | None = None,
    ) -> None:
        self.goal = check_identifier("goal", goal)
        self.paths, fns = normalize_paths(paths)
        self.max_attempts = check_max_attempts(max_attempts)
        self.service = None if service is None else check_identifier("service", service)
        self.success_fn = success_fn
        self.success_on_return = success_on_return
        self._warnings = OnceLog()
        judge = Judge(success_fn, success_on_return, self._warnings)
        self.params = sampling or SamplingParams()
        connection = connection or ConnectionOptions()
        emitter = emitter or EmitterOptions()
        self._exit_flush_timeout = emitter.exit_flush_timeout
        # A sink passed in may serve several routers (one producer for many goals): it is
        # flushed on close, and closed by whoever made it.
        self._owns_sink = event_sink is None
        self._sink: EventSink = event_sink or KafkaEventSink(
            connection.kafka_client_config(), connection.topics(), emitter
        )
        local = None
        if self.params.local_outcomes:
            local = LocalEvidence(self.paths, self.params.min_samples)
        self._cache = PolicyCache(
            self.goal,
            self.paths,
            self.params,
            cache or CacheOptions(),
            feed_driver(snapshot_source, connection),
            local=local,
            decisions=lambda: self._decisions,
        )
        self._index = {name: i for i, name in enumerate(self.paths)}
        self._encoder = EventEncoder(self.goal, self.paths, service, SDK_VERSION)
        self._rng = random.Random(seed)
        self._current: contextvars.ContextVar[Decision | None] = contextvars.ContextVar(
            f"outroute_decision_{self.goal}_{id(self)}", default=None
        )
        self._closed = False
        self._ledger = Ledger(
            self._encoder, self._sink, self._warnings, self._learned if local else None
        )
        self._init_process_state()
        host = CallHost(self.paths, self.decide, self._current, self._ledger, judge, self._warnings)
        self._callables = None if fns is None else CallablePaths(host, fns, max_attempts)
        self._models = ModelCalls(host, providers or {}, default_provider) if fns is None else None
        ref = weakref.ref(self)
        self._atexit = functools.partial(_close_at_exit, ref)
        atexit.register(self._atexit)
        os.register_at_fork(after_in_child=functools.partial(_after_fork_in_child, ref))

    def _init_process_state(self) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._id_prefix = os.urandom(6).hex() + "-"
        self._decisions = 0

    @classmethod
    def from_env(cls, goal: str, paths: Any, **kwargs: Any) -> Router:
        """A router connected as ``OUTROUTE_*`` variables say (``ConnectionOptions.from_env()``);
        the other keyword arguments are the constructor's."""
        return cls(goal, paths, connection=ConnectionOptions.from_env(), **kwargs)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, wait: float | None = None) -> Router:
        """Attach to the policy feed and wait (at most ``wait``, default ``init_wait`` seconds)
        for a first snapshot. ``decide()`` does this by itself on first use."""
        try:
            self._cache.start(wait)
        except RuntimeError as exc:  # cannot start a thread (interpreter shutting down)
            self._warnings.warn("start", "cannot start the policy feed: %s", exc)
        self._started = True
        return self

    def flush(self, timeout: float = _FLUSH_TIMEOUT) -> int:
        """Wait up to ``timeout`` seconds for queued events; return how many are still pending."""
        return self._sink.flush(timeout)

    def close(self, timeout: float = _FLUSH_TIMEOUT) -> int:
        """Flush (bounded), detach from the policy feed, close HTTP clients. Idempotent. Returns the
        number of events left undelivered. An ``event_sink`` passed in is flushed, not closed:
        it may serve other routers."""
        if self._closed:
            return 0
        self._closed = True
        atexit.unregister(self._atexit)
        pending = self._sink.close(timeout) if self._owns_sink else self._sink.flush(timeout)
        self._cache.stop(timeout=1.0)
        if self._models is not None:
            self._models.close()
        if pending:
            log.warning("router %r closed with %d events undelivered", self.goal, pending)
        return pending

    async def aclose(self, timeout: float = _FLUSH_TIMEOUT) -> int:
        """``close()`` for asyncio code: the bounded flush runs in a worker thread."""
        if self._models is not None:
            await self._models.aclose()
        return await asyncio.to_thread(self.close, timeout)

    def __enter__(self) -> Router:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Router:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _after_fork_in_child(self) -> None:
        self._init_process_state()
        self._warnings.after_fork_in_child()
        self._ledger.after_fork_in_child()
        if self._models is not None:
            self._models.after_fork_in_child()
        self._sink.after_fork_in_child()
        self._cache.after_fork_in_child()

    # -- deciding and reporting ------------------------------------------------------------------

    def decide(
        self,
        context: Mapping[str, Any] | None = None,
        force_path: str | None = None,
        *,
        among: Iterable[str] | None = None,
    ) -> Decision:
        """Choose a path for one request, and make its decision the current one of this thread
        or asyncio task (what ``report()`` reports). No I/O; never raises for a valid router.

        ``among`` offers only some of the paths (``run()`` retries among the paths not tried
        yet this way); the event's candidates are those, in the router's order. Raises
        ValueError only for invalid arguments (a ``force_path`` or a name in ``among`` that is
        not a path offered, a context that is not a flat dict of at most 32 scalar labels).
        """
        if context is not None:
            context = check_context(context)
        subset = None if among is None else check_among(among, self._index)
        if not self._started:
            self.start()
        policy = self._cache.current
        candidates = self.paths if subset is None else tuple(self.paths[i] for i in subset)
        forced = None
        if force_path is not None:
            forced = check_force_path(force_path, candidates, subset is not None)
        with self._lock:
            self._decisions += 1
            serial = self._decisions
        reason: Reason
        if forced is not None:
            path, reason = forced, "forced"
        else:
            i, reason = policy.choose(
                subset, self._rng, self.params, self._overrides_ignored, serial
            )
            path = candidates[i]
        trace_id = f"{self._id_prefix}{serial:x}"
        ns = time.time_ns()
        decision = Decision(self._ledger, trace_id, path, reason, policy.version, ns, candidates)
        self._current.set(decision)
        try:
            payload = self._encoder.decision(
                trace_id,
                path,
                reason,
                policy.version,
                context,
                ns,
                None if subset is None else self._encoder.candidates_json(candidates),
            )
            self._sink.send("decision", trace_id.encode(), payload)
        except Exception as exc:  # never into the host: an emitter bug must not fail requests
            self._warnings.warn("send", "could not emit a decision event: %r", exc)
        return decision

    def _learned(self, path: str, outcome: Outcome, occurred_at: float) -> None:
        """An outcome this router reported: into its own view until the snapshot counts it."""
        local = self._cache.local
        reward = reward_of(outcome.success, outcome.score)
        if local is not None and local.add(self._index[path], reward, occurred_at):
            self._cache.local_changed()

    def _overrides_ignored(self) -> None:
        self._warnings.warn(
            "overrides",
            "every path offered for goal %r is disabled by an override; choosing among them "
            "as if none were",
            self.goal,
        )

    def report(self, success: bool, **fields: Any) -> bool:
        """Report the outcome of the decision made last in this thread or asyncio task.

        Raises NoCurrentDecision when there is none; use ``Decision.report`` to report from
        elsewhere."""
        decision = self._current.get()
        if decision is None:
            raise NoCurrentDecision(
                f"no decision of router {self.goal!r} in this thread or task; call decide() "
                "first, or report on the Decision it returned"
            )
        return decision.report(success, **fields)

    # -- calling the paths for you -------------------------------------------------------------

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Decide, call the chosen path with the arguments, and return what it returns.

        An exception, or a result that ``success_fn`` rejects, is reported as a failure and
        the next attempt picks among the paths not tried yet (at most ``max_attempts``
        decisions); without ``success_fn`` a result waits for your ``report()`` (or counts as
        a success with ``success_on_return=True``). When every attempt failed, the last
        exception is re-raised (or the last result returned). A cancellation or Ctrl-C is
        reported as ``cancelled`` and re-raised."""
        return self._callable_paths("run").run(args, kwargs)

    async def arun(self, *args: Any, **kwargs: Any) -> Any:
        """``run()`` for async paths (coroutine functions; plain callables work too)."""
        return await self._callable_paths("arun").arun(args, kwargs)

    @overload
    def completion(
        self,
        messages: list[Any],
        force_model: str | None = None,
        *,
        continue_from: Completion | Decision | None = None,
        stream: Literal[False] = False,
        **params: Any,
    ) -> Completion: ...

    @overload
    def completion(
        self,
        messages: list[Any],
        force_model: str | None = None,
        *,
        continue_from: Completion | Decision | None = None,
        stream: Literal[True],
        **params: Any,
    ) -> CompletionStream: ...

    def completion(
        self,
        messages: list[Any],
        force_model: str | None = None,
        *,
        continue_from: Completion | Decision | None = None,
        stream: bool = False,
        **params: Any,
    ) -> Completion | CompletionStream:
        """A chat completion from the chosen model; ``params`` go into the request body.

        Provider failures are reported and raised as ProviderError; an answer is judged by
        ``success_fn``, or waits for your ``report()``. ``continue_from=`` an earlier
        completion (or an open Decision) makes this call a further turn of that decision;
        ``force_model`` pins a model for a new decision (reason ``forced``); ``stream=True``
        returns a CompletionStream of chunks."""
        models = self._model_calls("completion")
        return models.completion(models.begin(messages, force_model, continue_from, stream, params))

    @overload
    async def acompletion(
        self,
        messages: list[Any],
        force_model: str | None = None,
        *,
        continue_from: Completion | Decision | None = None,
        stream: Literal[False] = False,
        **params: Any,
    ) -> Completion: ...

    @overload
    async def acompletion(
        self,
        messages: list[Any],
        force_model: str | None = None,
        *,
        continue_from: Completion | Decision | None = None,
        stream: Literal[True],
        **params: Any,
    ) -> AsyncCompletionStream: ...

    async def acompletion(
        self,
        messages: list[Any],
        force_model: str | None = None,
        *,
        continue_from: Completion | Decision | None = None,
        stream: bool = False,
        **params: Any,
    ) -> Completion | AsyncCompletionStream:
        """``completion()`` for asyncio code (one pooled AsyncClient per router); with
        ``stream=True`` it returns an AsyncCompletionStream. A cancellation (or a timeout
        around it) is reported once, as ``cancelled``."""
        models = self._model_calls("acompletion")
        call = models.begin(messages, force_model, continue_from, stream, params)
        return await models.acompletion(call)

    def _callable_paths(self, method: str) -> CallablePaths:
        if self._callables is None:
            raise ValueError(f"{method}() needs callable paths; this router's paths are names")
        return self._callables

    def _model_calls(self, method: str) -> ModelCalls:
        if self._models is None:
            raise ValueError(f"{method}() needs model names as paths; this router has callables")
        return self._models

    # -- inspection ----------------------------------------------------------------------------

    def get_policy(self) -> PolicyView:
        """The policy decisions are made with: per path posterior mean, n, status, last seen,
        and the operator's override in force (disabled or pinned, by whom, until when)."""
        if not self._started:
            self.start()
        return self._cache.view()

    def stats(self) -> RouterStats:
        sink = self._sink.stats()
        policy = self._cache.current
        with self._lock:
            decisions = self._decisions
        reports, duplicates = self._ledger.counts()
        return RouterStats(
            decisions=decisions,
            reports=reports,
            duplicate_reports=duplicates,
            emitted=sink.emitted,
            delivered=sink.delivered,
            pending=sink.pending,
            dropped=sink.dropped,
            failed=sink.failed,
            policy_loaded=policy.loaded,
            policy_version=policy.version,
            policy_stale=self._cache.stale,
            policy_errors=self._cache.errors,
        )

    def __repr__(self) -> str:
        return f"Router(goal={self.goal!r}, paths={list(self.paths)})"


def _close_at_exit(ref: weakref.ref[Router]) -> None:
    router = ref()
    if router is not None:
        router.close(timeout=router._exit_flush_timeout)


def _after_fork_in_child(ref: weakref.ref[Router]) -> None:
    router = ref()
    if router is not None and not router._closed:
        router._after_fork_in_child()
