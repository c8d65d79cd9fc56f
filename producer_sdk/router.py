"""The Router: decide a path per request in microseconds, report how it went.

``decide()`` reads an immutable policy that a background thread keeps fresh from Redis, samples
a path, and hands the DecisionEvent to the emitter; it does no I/O and never raises for a valid
router. Kafka or Redis trouble degrades to counted drops and a stale policy, never to an error
in the host's request.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import functools
import logging
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Final, Literal, overload

from pydantic import TypeAdapter, ValidationError

from schemas import RedisKeys, Topics
from schemas._types import IDENTIFIER_MAX, IDENTIFIER_PATTERN, Context
from schemas.events import MAX_CANDIDATES
from schemas.settings import DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_REDIS_URL, OutrouteSettings

from ._callables import CallablePaths
from ._calls import CallHost, Judge
from ._completions import AsyncCompletionStream, CompletionStream, ModelCalls
from ._encode import EventEncoder
from ._ledger import Ledger, OnceLog
from .cache import PolicyCache, RedisSnapshotSource, SnapshotSource
from .decision import Decision
from .emitter import EventSink, KafkaEventSink
from .options import CacheOptions, EmitterOptions, Provider
from .policy import PolicyView
from .providers import Completion
from .sampling import ArmSet, SamplingParams, choose

__all__ = ["SDK_VERSION", "Router", "RouterStats"]

log = logging.getLogger("outroute.sdk")

SDK_VERSION: Final = "0.1.0"
_IDENTIFIER: Final = re.compile(IDENTIFIER_PATTERN)
_CONTEXT: Final = TypeAdapter(Context)


def check_identifier(name: str, value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= IDENTIFIER_MAX:
        raise ValueError(f"{name} must be a string of 1-{IDENTIFIER_MAX} characters, got {value!r}")
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"{name} {value!r} has characters outside letters, digits and _.:/@+=- "
            "(or does not start with a letter or digit)"
        )
    return value


def _normalize_paths(paths: Any) -> tuple[tuple[str, ...], tuple[Callable[..., Any], ...] | None]:
    if isinstance(paths, str | bytes) or not isinstance(paths, Iterable):
        raise ValueError(f"paths must be a list of names or callables, got {paths!r}")
    items = list(paths)
    if not items:
        raise ValueError("paths must not be empty")
    if len(items) > MAX_CANDIDATES:
        raise ValueError(f"paths may hold at most {MAX_CANDIDATES} entries, got {len(items)}")
    names: list[str] = []
    fns: list[Callable[..., Any]] = []
    for item in items:
        if isinstance(item, str):
            names.append(check_identifier("path", item))
        elif isinstance(item, tuple) and len(item) == 2 and callable(item[1]):
            names.append(check_identifier("path name", item[0]))
            fns.append(item[1])
        elif callable(item):
            qualname = getattr(item, "__qualname__", None)
            if not isinstance(qualname, str) or not _IDENTIFIER.match(qualname):
                raise ValueError(
                    f"cannot name callable path {item!r} by its __qualname__ {qualname!r}; "
                    "pass (name, fn) pairs instead"
                )
            names.append(qualname)
            fns.append(item)
        else:
            raise ValueError(f"each path must be a name (str) or a callable, got {item!r}")
    if fns and len(fns) != len(names):
        raise ValueError("paths must be all names (str) or all callables, not a mix")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"paths must be unique; repeated: {repeated}")
    return tuple(names), (tuple(fns) if fns else None)


def _seconds(name: str, value: timedelta | float) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ValueError(f"{name} must be a positive duration, got {value!r}")
    return float(seconds)


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
    """Routes one goal's requests across its paths. Thread-safe; one per goal per process."""

    def __init__(
        self,
        goal: str,
        paths: Iterable[str] | Iterable[Callable[..., Any]] | Iterable[tuple[str, Any]],
        *,
        success_fn: Callable[[Any], bool] | None = None,
        success_on_return: bool = False,
        exploration_rate: float = 0.1,
        min_samples: int = 20,
        staleness: timedelta | float = timedelta(days=7),
        tie_margin: float = 0.05,
        recovery_probe_rate: float = 0.01,
        kafka_bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS,
        redis_url: str = DEFAULT_REDIS_URL,
        topic_prefix: str = "outroute",
        service: str | None = None,
        redis_key_prefix: str = "outroute",
        kafka_config: Mapping[str, str] | None = None,
        max_attempts: int = 2,
        emitter: EmitterOptions | None = None,
        cache: CacheOptions | None = None,
        providers: Mapping[str, Provider] | None = None,
        default_provider: Provider | None = None,
        event_sink: EventSink | None = None,
        snapshot_source: SnapshotSource | Callable[[], SnapshotSource] | None = None,
        seed: int | None = None,
    ) -> None:
        self.goal = check_identifier("goal", goal)
        self.paths, self._fns = _normalize_paths(paths)
        if success_fn is not None and not callable(success_fn):
            raise ValueError(f"success_fn must be callable, got {success_fn!r}")
        if not isinstance(success_on_return, bool):
            raise ValueError(f"success_on_return must be a bool, got {success_on_return!r}")
        if success_on_return and success_fn is not None:
            raise ValueError("pass success_fn or success_on_return=True, not both")
        self.success_fn = success_fn
        self.success_on_return = success_on_return
        self.params = SamplingParams(exploration_rate, min_samples, tie_margin, recovery_probe_rate)
        if service is not None:
            check_identifier("service", service)
        self.service = service
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        self.max_attempts = max_attempts
        settings = OutrouteSettings(  # validates the connection settings, naming the field
            bootstrap_servers=kafka_bootstrap_servers,
            kafka_config=dict(kafka_config or {}),
            redis_url=redis_url,
            topic_prefix=topic_prefix,
            redis_key_prefix=redis_key_prefix,
        )
        self._emitter_options = emitter or EmitterOptions()
        self._cache_options = replace(
            cache or CacheOptions(), path_staleness=_seconds("staleness", staleness)
        )
        # A sink passed in may serve several routers (one producer for many goals): it is
        # flushed on close, and closed by whoever made it.
        self._owns_sink = event_sink is None
        self._sink: EventSink = event_sink or KafkaEventSink(
            settings.kafka_client_config(), Topics(topic_prefix), self._emitter_options
        )
        if snapshot_source is None:
            url, keys = settings.redis_url.get_secret_value(), RedisKeys(redis_key_prefix)

            def source_factory() -> SnapshotSource:
                return RedisSnapshotSource(url, keys, self.goal)

        elif callable(snapshot_source) and not hasattr(snapshot_source, "fetch"):
            source_factory = snapshot_source
        else:
            source = snapshot_source

            def source_factory() -> SnapshotSource:
                return source  # type: ignore[return-value]

        self._cache = PolicyCache(
            self.goal, self.paths, self.params, self._cache_options, source_factory
        )
        self._index = {name: i for i, name in enumerate(self.paths)}
        self._encoder = EventEncoder(self.goal, self.paths, service, SDK_VERSION)
        self._rng = random.Random(seed)
        self._current: contextvars.ContextVar[Decision | None] = contextvars.ContextVar(
            f"outroute_decision_{self.goal}_{id(self)}", default=None
        )
        self._closed = False
        self._warnings = OnceLog()
        self._ledger = Ledger(self._encoder, self._sink, self._warnings)
        self._init_process_state()
        host = CallHost(
            paths=self.paths,
            decide=self._decide_for,
            resume=self._resume,
            current=self._current.get,
            judge=Judge(success_fn, success_on_return, self._warnings),
            warnings=self._warnings,
        )
        self._callables = (
            None if self._fns is None else CallablePaths(host, self._fns, max_attempts)
        )
        self._models = (
            ModelCalls(host, providers or {}, default_provider) if self._fns is None else None
        )
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
        """Connection settings from ``OUTROUTE_*`` variables; keyword arguments win."""
        settings = OutrouteSettings.from_env()
        env: dict[str, Any] = {
            "kafka_bootstrap_servers": settings.bootstrap_servers,
            "kafka_config": {k: v.get_secret_value() for k, v in settings.kafka_config.items()},
            "redis_url": settings.redis_url.get_secret_value(),
            "topic_prefix": settings.topic_prefix,
            "redis_key_prefix": settings.redis_key_prefix,
        }
        return cls(goal, paths, **{**env, **kwargs})

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, wait: float | None = None) -> Router:
        """Start the policy thread and wait (at most ``wait``, default ``init_wait`` seconds)
        for a first snapshot. ``decide()`` does this by itself on first use."""
        try:
            self._cache.start(wait)
        except RuntimeError as exc:  # cannot start a thread (interpreter shutting down)
            self._warnings.warn("start", "cannot start the policy thread: %s", exc)
        self._started = True
        return self

    def flush(self, timeout: float = 5.0) -> int:
        """Wait up to ``timeout`` seconds for queued events; return how many are still pending."""
        return self._sink.flush(timeout)

    def close(self, timeout: float = 5.0) -> int:
        """Flush (bounded), stop the policy thread, close HTTP clients. Idempotent. Returns the
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

    def __enter__(self) -> Router:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Router:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self, timeout: float = 5.0) -> int:
        """``close()`` for asyncio code: the bounded flush runs in a worker thread."""
        if self._models is not None:
            await self._models.aclose()
        return await asyncio.to_thread(self.close, timeout)

    # -- deciding ------------------------------------------------------------------------------

    def decide(
        self, context: Mapping[str, Any] | None = None, force_path: str | None = None
    ) -> Decision:
        """Choose a path for one request. No I/O; never raises for a valid router.

        Raises ValueError only for invalid arguments (an unknown ``force_path``, a context that
        is not a flat dict of at most 32 scalar labels).
        """
        return self._decide(None, context, force_path)

    def _decide(
        self,
        among: tuple[int, ...] | None,
        context: Mapping[str, Any] | None,
        force_path: str | None,
        made_by: str = "decide()",
    ) -> Decision:
        if context is not None:
            try:
                context = _CONTEXT.validate_python(context, strict=True)
            except ValidationError as exc:
                raise ValueError(f"context is invalid: {exc}") from exc
        if not self._started:
            self.start()
        policy = self._cache.current
        names = self.paths
        if force_path is not None:
            index = self._index.get(force_path) if isinstance(force_path, str) else None
            if index is None:
                raise ValueError(f"force_path {force_path!r} is not one of paths {list(names)}")
            path, reason = force_path, "forced"
            candidates = names if among is None else tuple(names[i] for i in among)
        elif among is None:
            candidates = names
            if policy.loaded:
                i, reason = choose(policy.arm_set, self._rng, self.params)
            else:
                i, reason = 0, "fallback"
            path = names[i]
        else:
            candidates = tuple(names[i] for i in among)
            if policy.loaded:
                arms = policy.arm_set.arms
                subset = ArmSet([arms[i] for i in among], self.params.tie_margin)
                i, reason = choose(subset, self._rng, self.params)
            else:
                i, reason = 0, "fallback"
            path = candidates[i]
        with self._lock:
            self._decisions += 1
            serial = self._decisions
        trace_id = f"{self._id_prefix}{serial:x}"
        version = policy.version
        ns = time.time_ns()
        decision = Decision(
            self._ledger,
            trace_id,
            path,
            reason,  # type: ignore[arg-type]
            version,
            ns,
            candidates,
            made_by,
        )
        self._current.set(decision)
        try:
            payload = self._encoder.decision(
                trace_id,
                path,
                reason,
                version,
                context,
                ns,
                None if among is None else self._encoder.candidates_json(candidates),
            )
            self._sink.send("decision", trace_id.encode(), payload)
        except Exception as exc:  # never into the host: an emitter bug must not fail requests
            self._warnings.warn("send", "could not emit a decision event: %r", exc)
        return decision

    def report(self, success: bool, **fields: Any) -> bool:
        """Report the outcome of the decision made last in this thread or asyncio task.

        Raises NoCurrentDecision when there is none; use ``Decision.report`` to report from
        elsewhere."""
        from .errors import NoCurrentDecision

        decision = self._current.get()
        if decision is None:
            raise NoCurrentDecision(
                f"no decision of router {self.goal!r} in this thread or task; call decide() "
                "first, or report on the Decision it returned"
            )
        return decision.report(success, **fields)

    def _decide_for(
        self, among: tuple[int, ...] | None, force_path: str | None, made_by: str
    ) -> Decision:
        return self._decide(among, None, force_path, made_by)

    def _resume(self, decision: Decision, argument: str) -> None:
        if decision._reporter is not self._ledger:
            raise ValueError(f"{argument}: decision {decision.trace_id} is not this router's")
        if decision.reported:
            raise ValueError(
                f"{argument}: decision {decision.trace_id} was already reported by "
                f"{decision.reported_by}; a conversation is one decision, reported once at its "
                "end (a router with success_fn judges each answer: report conversations "
                "yourself instead)"
            )
        self._current.set(decision)

    # -- calling the paths for you -------------------------------------------------------------

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Decide, call the chosen path with the arguments, and return what it returns.

        An exception is reported as a failure and the next attempt picks among the paths not
        tried yet (at most ``max_attempts`` decisions). A returned value is judged by
        ``success_fn`` (a rejected one is a failure, and retried); without one it is returned
        and its decision waits for your ``router.report()`` (or counts as a success with
        ``success_on_return=True``). If every attempt failed, the last exception is re-raised,
        or the last result returned when the last attempt did not raise. A cancellation or
        Ctrl-C is reported as ``cancelled`` and re-raised."""
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

        Provider failures (an HTTP error status, a timeout, a connection error, a body that is
        not a chat completion) are reported as failures and raised as ProviderError. An answer
        is judged by ``success_fn``; without one its decision waits for your verdict:
        ``router.report(...)`` or ``resp.decision.report(...)``.

        ``continue_from=`` an earlier completion (or an open Decision) makes this call a
        further turn of that decision: same trace id, same model, one report at the end, with
        latency, tokens and cost summed over the turns. ``force_model`` pins a model for a new,
        separate decision (reason ``forced``). ``stream=True`` returns a CompletionStream of
        chunks."""
        models = self._model_calls("completion")
        return models.completion(messages, force_model, continue_from, stream, params)

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
        return await models.acompletion(messages, force_model, continue_from, stream, params)

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
        """The policy decisions are made with: per path posterior mean, n, status, last seen."""
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

    def _after_fork_in_child(self) -> None:
        self._init_process_state()
        self._warnings.after_fork_in_child()
        self._ledger.after_fork_in_child()
        if self._models is not None:
            self._models.after_fork_in_child()
        self._sink.after_fork_in_child()
        self._cache.after_fork_in_child()


def _close_at_exit(ref: weakref.ref[Router]) -> None:
    router = ref()
    if router is not None:
        router.close(timeout=router._emitter_options.exit_flush_timeout)


def _after_fork_in_child(ref: weakref.ref[Router]) -> None:
    router = ref()
    if router is not None and not router._closed:
        router._after_fork_in_child()
