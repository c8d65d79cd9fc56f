"""Router behaviour with the in-memory sink and snapshot sources (no I/O)."""

from __future__ import annotations

import asyncio
import importlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import producer_sdk
from producer_sdk import CacheOptions, ConnectionOptions, NoCurrentDecision, Router, SamplingParams
from producer_sdk._impl.calls import no_wait, run_sync
from producer_sdk.testing import InMemorySink, StaticSnapshotSource, UnavailableSnapshotSource
from schemas import PathStats, PolicySnapshot
from schemas.settings import OutrouteSettings

FAST = CacheOptions(init_wait=2.0, poll_interval=0.05)


def stats(a: float, b: float, n: int, **kw: Any) -> PathStats:
    return PathStats(alpha=a, beta=b, n=n, recent_n=0, recent_successes=0.0, **kw)


def snapshot(version: int = 1, **paths: PathStats) -> PolicySnapshot:
    return PolicySnapshot(goal="g", version=version, generated_at=datetime.now(UTC), paths=paths)


@pytest.fixture
def sink() -> InMemorySink:
    return InMemorySink()


@pytest.fixture
def make(sink: InMemorySink) -> Iterator[Any]:
    routers: list[Router] = []

    def factory(paths: Any = ("a", "b", "c"), source: Any = None, **kw: Any) -> Router:
        kw.setdefault("cache", FAST)
        router = Router(
            "g",
            paths,
            event_sink=sink,
            snapshot_source=source if source is not None else StaticSnapshotSource(None),
            seed=42,
            **kw,
        )
        routers.append(router)
        return router

    yield factory
    for router in routers:
        router.close()


# -- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ([], "paths must not be empty"),
        (["a", "a"], r"paths must be unique; repeated: \['a'\]"),
        (["a", len], "not a mix"),
        ("abc", "must be a list"),
        (["bad name"], "path 'bad name' has characters outside"),
        ([lambda: 1], "pass \\(name, fn\\) pairs"),
        ([f"p{i}" for i in range(65)], "at most 64"),
        ([3], "must be a name \\(str\\) or a callable"),
    ],
)
def test_bad_paths_are_value_errors(paths: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Router("g", paths, event_sink=InMemorySink())


def summarize_fast() -> str:
    return "x"


class Summaries:
    def careful(self) -> str:
        return "y"


def test_callable_paths_are_named_by_qualname_or_pair() -> None:
    paths = [summarize_fast, Summaries.careful, ("slow", lambda: "z")]
    router = Router("g", paths, event_sink=InMemorySink())
    assert router.paths == ("summarize_fast", "Summaries.careful", "slow")


def test_nested_function_qualname_is_rejected_with_a_hint() -> None:
    # "<locals>" is not a valid identifier: the message says what to do instead.
    def make() -> Any:
        def inner() -> None:
            return None

        return inner

    with pytest.raises(ValueError, match="pass \\(name, fn\\) pairs"):
        Router("g", [make()], event_sink=InMemorySink())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (lambda: {"goal": "bad goal"}, "goal 'bad goal'"),
        (lambda: {"sampling": SamplingParams(exploration_rate=1.5)}, "exploration_rate"),
        (lambda: {"sampling": SamplingParams(min_samples=-1)}, "min_samples"),
        (lambda: {"sampling": SamplingParams(tie_margin=2)}, "tie_margin"),
        (
            lambda: {"sampling": SamplingParams(staleness=0)},
            "staleness must be a positive duration",
        ),
        (lambda: {"max_attempts": 0}, "max_attempts"),
        (
            lambda: {"connection": ConnectionOptions(bootstrap_servers="nohost")},
            "bootstrap_servers",
        ),
        (lambda: {"connection": ConnectionOptions(redis_url="http://x")}, "redis_url"),
        (lambda: {"connection": ConnectionOptions(topic_prefix="a b")}, "topic_prefix"),
        (lambda: {"service": "my service"}, "service 'my service'"),
        (lambda: {"success_fn": 3}, "success_fn must be callable"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: Callable[[], dict[str, Any]], message: str) -> None:
    def build(given: dict[str, Any]) -> Router:
        args = {"goal": "g", "paths": ["a"], **given}
        return Router(args.pop("goal"), args.pop("paths"), event_sink=InMemorySink(), **args)

    with pytest.raises(ValueError, match=message):
        build(kwargs())  # the value objects check their own fields, naming them


def test_constructor_starts_nothing() -> None:
    before = {t.name for t in threading.enumerate()}
    router = Router("g", ["a"], event_sink=InMemorySink())
    assert {t.name for t in threading.enumerate()} == before
    router.close()


# -- the sampling rules through the router ------------------------------------------------------


def test_forced_path(make: Any, sink: InMemorySink) -> None:
    router = make()
    decision = router.decide(force_path="c")
    assert (decision.path, decision.reason) == ("c", "forced")
    assert sink.decisions[-1].reason == "forced"
    with pytest.raises(ValueError, match="force_path 'zzz' is not one of paths"):
        router.decide(force_path="zzz")


def test_fallback_to_first_path_when_no_snapshot_could_be_loaded(
    make: Any, sink: InMemorySink
) -> None:
    router = make(source=UnavailableSnapshotSource(), cache=CacheOptions(init_wait=0.2))
    decisions = [router.decide() for _ in range(50)]
    assert {(d.path, d.reason) for d in decisions} == {("a", "fallback")}
    assert len(sink.decisions) == 50  # events are still emitted
    assert router.stats().policy_loaded is False
    assert router.stats().policy_errors >= 1


class HangingSnapshotSource:
    """A source whose fetch hangs until released, like a Redis that accepts and never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.fetches = 0

    def fetch(self) -> bytes | None:
        self.fetches += 1
        self.release.wait()
        raise ConnectionError("released")

    def wait_for_update(self, timeout: float) -> bool:
        self.release.wait(timeout)
        return False

    def close(self) -> None:
        self.release.set()


def test_decide_does_not_wait_for_a_fetch_that_hangs(make: Any) -> None:
    # The first decide() waits at most init_wait for the first fetch; with a fetch that never
    # returns, an unbounded wait would hang here until the test's timeout fails it.
    source = HangingSnapshotSource()
    router = make(source=source, cache=CacheOptions(init_wait=0.05))
    try:
        decisions = [router.decide() for _ in range(20)]
        assert {(d.path, d.reason) for d in decisions} == {("a", "fallback")}
        assert source.fetches == 1  # still inside the first fetch, which never answered
        assert not source.release.is_set()
    finally:
        source.release.set()


def test_cold_start_when_redis_answers_without_a_snapshot(make: Any) -> None:
    router = make(source=StaticSnapshotSource(None))
    decisions = [router.decide() for _ in range(300)]
    assert {d.reason for d in decisions} == {"cold_start"}
    assert {d.path for d in decisions} == {"a", "b", "c"}


def test_unknown_paths_are_cold(make: Any) -> None:
    source = StaticSnapshotSource(snapshot(a=stats(900, 100, 1000), other=stats(5, 5, 50)))
    router = make(source=source, sampling=SamplingParams(exploration_rate=0.5))
    view = router.get_policy()
    assert view.version == 1
    assert [(p.name, p.n, p.status) for p in view.paths][1:] == [("b", 0, "cold"), ("c", 0, "cold")]
    assert view.path("b").mean == 0.5
    explored = [d.path for d in (router.decide() for _ in range(500)) if d.reason == "explore"]
    assert set(explored) == {"b", "c"}


def test_exploit_follows_the_snapshot(make: Any) -> None:
    source = StaticSnapshotSource(
        snapshot(a=stats(10, 990, 1000), b=stats(990, 10, 1000), c=stats(10, 990, 1000))
    )
    router = make(source=source, sampling=SamplingParams(exploration_rate=0.0))
    assert {(d.path, d.reason) for d in (router.decide() for _ in range(200))} == {("b", "exploit")}


def test_new_snapshot_is_picked_up(make: Any) -> None:
    source = StaticSnapshotSource(snapshot(1, a=stats(990, 10, 1000), b=stats(10, 990, 1000)))
    router = make(paths=["a", "b"], source=source, sampling=SamplingParams(exploration_rate=0.0))
    assert router.decide().path == "a"
    source.set(snapshot(2, a=stats(10, 990, 1000), b=stats(990, 10, 1000)))
    deadline = time.monotonic() + 2
    while router.get_policy().version != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert router.get_policy().version == 2
    decision = router.decide()
    assert (decision.path, decision.policy_version) == ("b", 2)


def test_a_snapshot_gone_from_redis_leaves_the_last_policy_in_use_marked_stale(
    make: Any,
) -> None:
    source = StaticSnapshotSource(snapshot(3, a=stats(10, 990, 1000), b=stats(990, 10, 1000)))
    router = make(paths=["a", "b"], source=source, sampling=SamplingParams(exploration_rate=0.0))
    assert (router.decide().path, router.get_policy().stale) == ("b", False)
    source.set(None)  # Redis restarted empty
    deadline = time.monotonic() + 5
    while not router.get_policy().stale and time.monotonic() < deadline:
        time.sleep(0.01)
    assert router.get_policy().stale
    decisions = [router.decide() for _ in range(50)]
    assert {(d.path, d.reason, d.policy_version) for d in decisions} == {("b", "exploit", 3)}
    source.set(snapshot(4, a=stats(10, 990, 1000), b=stats(990, 10, 1000)))
    while router.get_policy().version != 4 and time.monotonic() < deadline + 5:
        time.sleep(0.01)
    assert (router.get_policy().version, router.get_policy().stale) == (4, False)


def test_snapshot_of_another_goal_or_invalid_is_ignored(make: Any) -> None:
    class Raw:
        def __init__(self, raw: bytes) -> None:
            self.raw = raw

        def fetch(self) -> bytes:
            return self.raw

        def wait_for_update(self, timeout: float) -> bool:
            time.sleep(min(timeout, 0.01))
            return False

        def close(self) -> None:
            return None

    other = snapshot().model_copy(update={"goal": "other"})
    for raw in (b"{not json", other.model_dump_json().encode()):
        router = make(source=Raw(raw))
        assert router.decide().reason == "fallback"
        assert router.get_policy().loaded is False


def test_stale_paths_come_from_last_outcome_time(make: Any) -> None:
    old = datetime.now(UTC) - timedelta(days=8)
    source = StaticSnapshotSource(
        snapshot(a=stats(900, 100, 1000, last_outcome_at=old), b=stats(900, 100, 1000))
    )
    router = make(paths=["a", "b"], source=source)
    assert router.get_policy().path("a").status == "stale"


def test_staleness_is_a_sampling_knob(make: Any) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    source = StaticSnapshotSource(
        snapshot(a=stats(900, 100, 1000, last_outcome_at=old, status="healthy"))
    )
    assert make(paths=["a"], source=source).get_policy().path("a").status == "healthy"
    sampling = SamplingParams(staleness=3600.0)
    assert make(paths=["a"], source=source, sampling=sampling).get_policy().path("a").status == (
        "stale"
    )


def test_decide_among_some_paths(make: Any, sink: InMemorySink) -> None:
    source = StaticSnapshotSource(
        snapshot(a=stats(990, 10, 1000), b=stats(500, 500, 1000), c=stats(10, 990, 1000))
    )
    router = make(source=source, sampling=SamplingParams(exploration_rate=0.0))
    decisions = [router.decide(among=["c", "b"]) for _ in range(50)]
    assert {(d.path, d.reason, d.candidates) for d in decisions} == {("b", "exploit", ("b", "c"))}
    assert {e.candidates for e in sink.decisions} == {("b", "c")}
    assert router.decide(force_path="c", among=["c"]).candidates == ("c",)
    with pytest.raises(ValueError, match="force_path 'a' is not one of the paths offered"):
        router.decide(force_path="a", among=["b", "c"])
    with pytest.raises(ValueError, match="among: 'zzz' is not one of paths"):
        router.decide(among=["zzz"])
    with pytest.raises(ValueError, match="among must name at least one path"):
        router.decide(among=[])
    fallback = make(source=UnavailableSnapshotSource(), cache=CacheOptions(init_wait=0.2))
    assert fallback.decide(among=["c", "b"]).path == "b"  # the first of them, in path order


# -- reporting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"success": True, "score": 1.5}, r"score must be in \[0, 1\]"),
        ({"success": True, "cost_usd": -0.01}, "cost_usd must be >= 0"),
        ({"success": True, "latency_ms": math.nan}, "latency_ms must be finite"),
        ({"success": False, "failure_category": "bad luck"}, "failure_category must be one of"),
        ({"success": "yes"}, "success must be a bool"),
        ({"success": 1}, "success must be a bool"),
        ({"success": True, "prompt_tokens": -3}, "prompt_tokens must be a non-negative int"),
        ({"success": True, "score": True}, "score must be a number"),
    ],
)
def test_bad_reports_raise_and_emit_nothing(
    make: Any, sink: InMemorySink, fields: dict[str, Any], message: str
) -> None:
    decision = make().decide()
    success = fields.pop("success")
    with pytest.raises(ValueError, match=message):
        decision.report(success, **fields)
    assert sink.outcomes == []
    assert not decision.reported
    assert decision.report(True)  # a valid report afterwards still goes through
    assert len(sink.outcomes) == 1


def test_report_emits_the_outcome_once(make: Any, sink: InMemorySink) -> None:
    router = make()
    decision = router.decide(context={"tenant": "acme"})
    assert decision.report(
        False, score=0.25, cost_usd=0.002, latency_ms=812.5, failure_category="invalid_output"
    )
    assert not decision.report(True)
    assert len(sink.outcomes) == 1
    outcome = sink.outcomes[0]
    assert (outcome.trace_id, outcome.success, outcome.score) == (decision.trace_id, False, 0.25)
    assert (outcome.cost_usd, outcome.latency_ms) == (0.002, 812.5)
    assert outcome.failure_category == "invalid_output"
    assert sink.decisions[0].context == {"tenant": "acme"}
    assert sink.keys[0] == decision.trace_id.encode()
    assert router.stats().duplicate_reports == 1
    assert router.stats().reports == 1


def test_bad_context_is_a_value_error(make: Any, sink: InMemorySink) -> None:
    router = make()
    with pytest.raises(ValueError, match="context is invalid"):
        router.decide(context={"nested": {"a": 1}})
    with pytest.raises(ValueError, match="context is invalid"):
        router.decide(context={f"k{i}": i for i in range(33)})
    assert sink.decisions == []


def test_router_report_uses_this_threads_decision(make: Any, sink: InMemorySink) -> None:
    router = make()
    with pytest.raises(NoCurrentDecision, match="call decide\\(\\) first"):
        router.report(True)
    decision = router.decide()
    router.report(True, latency_ms=1.0)
    assert sink.outcomes[0].trace_id == decision.trace_id


def test_forty_threads_each_report_their_own_decision(make: Any, sink: InMemorySink) -> None:
    router = make()
    barrier = threading.Barrier(40)
    mine: dict[int, str] = {}

    def worker(i: int) -> None:
        decision = router.decide()
        mine[i] = decision.trace_id
        barrier.wait()  # every thread has decided before any reports
        router.report(True, latency_ms=float(i))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    by_trace = {o.trace_id: o.latency_ms for o in sink.outcomes}
    assert len(by_trace) == 40
    assert all(by_trace[mine[i]] == float(i) for i in range(40))


def test_two_hundred_tasks_each_report_their_own_decision(make: Any, sink: InMemorySink) -> None:
    router = make()
    mine: dict[int, str] = {}

    async def task(i: int, all_decided: asyncio.Event, count: list[int]) -> None:
        decision = router.decide()
        mine[i] = decision.trace_id
        count[0] += 1
        if count[0] == 200:
            all_decided.set()
        await all_decided.wait()
        router.report(True, latency_ms=float(i))

    async def main() -> None:
        all_decided = asyncio.Event()
        count = [0]
        await asyncio.gather(*(task(i, all_decided, count) for i in range(200)))

    asyncio.run(main())
    by_trace = {o.trace_id: o.latency_ms for o in sink.outcomes}
    assert len(by_trace) == 200
    assert all(by_trace[mine[i]] == float(i) for i in range(200))


# -- run / arun --------------------------------------------------------------------------------


def test_run_tries_another_path_after_an_exception(make: Any, sink: InMemorySink) -> None:
    calls: list[str] = []

    def broken(x: int) -> int:
        calls.append("broken")
        raise TimeoutError("slow")

    def works(x: int) -> int:
        calls.append("works")
        return x * 2

    router = make(
        paths=[("broken", broken), ("works", works)],
        source=StaticSnapshotSource(
            snapshot(broken=stats(990, 10, 1000), works=stats(10, 990, 1000))
        ),
        sampling=SamplingParams(exploration_rate=0.0),
    )
    assert router.run(21) == 42
    assert calls == ["broken", "works"]
    # The exception is a failure at once; the returned value waits for the caller's verdict.
    assert [(o.success, o.failure_category) for o in sink.outcomes] == [(False, "timeout")]
    assert [d.candidates for d in sink.decisions] == [("broken", "works"), ("works",)]
    assert router.report(False, failure_category="user_rejected") is True
    second = sink.outcomes[1]
    assert (second.trace_id, second.success) == (sink.decisions[1].trace_id, False)
    assert second.failure_category == "user_rejected"
    assert second.latency_ms is not None  # measured by run(), filled in for the report


def test_success_on_return_reports_returned_values(make: Any, sink: InMemorySink) -> None:
    router = make(paths=[("only", lambda: "x")], success_on_return=True)
    assert router.run() == "x"
    assert [(o.success, o.failure_category) for o in sink.outcomes] == [(True, None)]
    with pytest.raises(ValueError, match="success_fn or success_on_return=True, not both"):
        make(paths=[("only", lambda: "x")], success_on_return=True, success_fn=bool)
    with pytest.raises(ValueError, match="success_on_return must be a bool"):
        make(paths=[("only", lambda: "x")], success_on_return="yes")


def test_a_second_report_is_refused_counted_and_warned_once(
    make: Any, sink: InMemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    def fails() -> None:
        raise ConnectionError("down")

    router = make(paths=[("x", fails)], max_attempts=1)
    with pytest.raises(ConnectionError):
        router.run()
    assert router.report(True) is False  # run() already reported the failure
    assert router.report(True) is False
    assert router.stats().duplicate_reports == 2
    assert [o.success for o in sink.outcomes] == [False]
    warnings = [r.getMessage() for r in caplog.records if "already reported" in r.getMessage()]
    assert len(warnings) == 1
    assert "already reported by run()" in warnings[0]
    assert "pass success_fn to judge results there, or report once" in warnings[0]
    decision = router.decide()  # reported twice by the caller: another case, another warning
    decision.report(True)
    decision.report(True)
    warnings = [r.getMessage() for r in caplog.records if "already reported" in r.getMessage()]
    assert len(warnings) == 2
    assert "already reported by report()" in warnings[1]
    assert decision.reported_by == "report()"


def test_ctrl_c_in_a_path_is_reported_as_cancelled_and_not_retried(
    make: Any, sink: InMemorySink
) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    router = make(paths=[("x", interrupted), ("y", interrupted)])
    with pytest.raises(KeyboardInterrupt):
        router.run()
    assert len(sink.decisions) == 1
    assert [(o.success, o.failure_category) for o in sink.outcomes] == [(False, "cancelled")]


def test_arun_cancelled_by_a_callers_timeout_is_reported_once(
    make: Any, sink: InMemorySink
) -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    router = make(paths=[("hangs", hangs), ("also", hangs)])

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(router.arun(), 0.05)  # runs it in a task of its own
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):  # cancels this task: the decision is current here
                await router.arun()
        assert router.report(True) is False  # the cancellation was the outcome

    asyncio.run(main())
    assert len(sink.decisions) == 2
    assert [(o.success, o.failure_category) for o in sink.outcomes] == [(False, "cancelled")] * 2
    assert router.stats().duplicate_reports == 1


def test_run_judges_results_and_reraises_the_last_exception(make: Any, sink: InMemorySink) -> None:
    def bad_output() -> str:
        return "garbage"

    def explodes() -> str:
        raise RuntimeError("boom")

    router = make(
        paths=[("bad_output", bad_output), ("explodes", explodes)],
        success_fn=lambda r: r == "good",
        source=StaticSnapshotSource(
            snapshot(bad_output=stats(990, 10, 1000), explodes=stats(10, 990, 1000))
        ),
        sampling=SamplingParams(exploration_rate=0.0),
    )
    with pytest.raises(RuntimeError, match="boom"):
        router.run()
    assert [(o.success, o.failure_category) for o in sink.outcomes] == [
        (False, "invalid_output"),
        (False, "tool_error"),
    ]


def test_run_returns_the_last_result_when_nothing_raised(make: Any) -> None:
    router = make(
        paths=[("one", lambda: 1), ("two", lambda: 2)],
        success_fn=lambda r: False,
        max_attempts=5,
    )
    assert router.run() in (1, 2)
    assert router.stats().decisions == 2  # at most one attempt per path


def test_success_fn_that_raises_is_a_failure(make: Any, sink: InMemorySink) -> None:
    def judge(result: Any) -> bool:
        raise KeyError("no")

    router = make(paths=[("only", lambda: "x")], success_fn=judge)
    assert router.run() == "x"  # last result, nothing raised
    assert sink.outcomes[0].success is False


def test_max_attempts_one(make: Any, sink: InMemorySink) -> None:
    def fails() -> None:
        raise ConnectionError("down")

    router = make(paths=[("x", fails), ("y", fails)], max_attempts=1)
    with pytest.raises(ConnectionError):
        router.run()
    assert len(sink.decisions) == 1
    assert sink.outcomes[0].failure_category == "connection_error"


def test_run_needs_callables(make: Any) -> None:
    with pytest.raises(ValueError, match="run\\(\\) needs callable paths"):
        make().run()


def test_arun_awaits_async_paths(make: Any, sink: InMemorySink) -> None:
    async def fails(x: int) -> int:
        raise TimeoutError

    async def doubles(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    router = make(
        paths=[("fails", fails), ("doubles", doubles)],
        source=StaticSnapshotSource(
            snapshot(fails=stats(990, 10, 1000), doubles=stats(10, 990, 1000))
        ),
        sampling=SamplingParams(exploration_rate=0.0),
    )
    assert asyncio.run(router.arun(4)) == 8
    assert [o.success for o in sink.outcomes] == [False]  # 8 waits for the caller's verdict


def test_sync_twins_run_the_async_flow_without_a_loop_and_refuse_one_that_waits() -> None:
    async def plain(x: int) -> int:
        return x + 1

    async def waits() -> None:
        await asyncio.sleep(0)

    assert run_sync(no_wait(lambda: 41)()) == 41
    assert run_sync(plain(1)) == 2
    with pytest.raises(RuntimeError, match="suspended"):
        run_sync(waits())


# -- lifecycle ---------------------------------------------------------------------------------


def test_close_is_idempotent_and_decide_still_works_after(make: Any) -> None:
    router = make()
    router.decide()
    assert router.close() == 0
    assert router.close() == 0
    router.decide()  # never raises into the host


def test_a_sink_passed_in_is_flushed_on_close_but_left_open_for_other_routers() -> None:
    class Recording(InMemorySink):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        def flush(self, timeout: float) -> int:
            self.calls.append("flush")
            return 0

        def close(self, timeout: float) -> int:
            self.calls.append("close")
            return 0

    shared = Recording()
    source = StaticSnapshotSource(None)
    first = Router("g1", ["a"], event_sink=shared, snapshot_source=source)
    second = Router("g2", ["a"], event_sink=shared, snapshot_source=source)
    first.decide().report(True)
    first.close()
    second.decide().report(True)
    second.close()
    assert shared.calls == ["flush", "flush"]
    assert [d.goal for d in shared.decisions] == ["g1", "g2"]


def test_context_manager_starts_and_closes(sink: InMemorySink) -> None:
    with Router("g", ["a"], event_sink=sink, snapshot_source=StaticSnapshotSource(None)) as r:
        assert r.get_policy().loaded
        r.decide().report(True)
    names = {t.name for t in threading.enumerate()}
    assert "outroute-policy-g" not in names


def test_stats_count_what_happened(make: Any) -> None:
    router = make()
    for _ in range(5):
        router.decide().report(True)
    router.decide()
    s = router.stats()
    assert (s.decisions, s.reports, s.emitted, s.delivered, s.dropped) == (6, 5, 11, 11, 0)


def test_from_env_reads_connection_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTROUTE_BOOTSTRAP_SERVERS", "kafka-1:9093")
    monkeypatch.setenv("OUTROUTE_TOPIC_PREFIX", "prod")
    monkeypatch.setenv("OUTROUTE_KAFKA_CONFIG", '{"security.protocol": "SASL_SSL"}')
    monkeypatch.setenv("OUTROUTE_REDIS_URL", "redis://:pw@cache:6379/1")
    router = Router.from_env("g", ["a", "b"], sampling=SamplingParams(exploration_rate=0.2))
    sink = router._sink
    assert sink._config == {  # type: ignore[attr-defined]
        "security.protocol": "SASL_SSL",
        "bootstrap.servers": "kafka-1:9093",
    }
    assert sink._topics == {"decision": "prod.decisions", "outcome": "prod.outcomes"}  # type: ignore[attr-defined]
    assert router.params.exploration_rate == 0.2
    # Keyword arguments win over the environment.
    other = Router("g", ["a"], connection=ConnectionOptions.from_env(topic_prefix="staging"))
    assert other._sink._topics["decision"] == "staging.decisions"  # type: ignore[attr-defined]
    router.close(0)
    other.close(0)


def test_plain_constructor_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTROUTE_TOPIC_PREFIX", "prod")
    router = Router("g", ["a"])
    assert router._sink._topics["decision"] == "outroute.decisions"  # type: ignore[attr-defined]
    router.close(0)


def test_connection_options_read_the_environment_only_from_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTROUTE_TOPIC_PREFIX", "prod")
    monkeypatch.setenv("OUTROUTE_PARTITIONS", "many")  # not read: no error
    assert ConnectionOptions(redis_key_prefix="keys").topic_prefix == "outroute"
    monkeypatch.setenv("OUTROUTE_PARTITIONS", "3")
    from_env = ConnectionOptions.from_env(redis_key_prefix="keys")
    assert (from_env.topic_prefix, from_env.redis_key_prefix, from_env.partitions) == (
        "prod",
        "keys",
        3,
    )


def test_any_outroute_settings_is_a_connection() -> None:
    settings = OutrouteSettings.model_validate({"topic_prefix": "shared"})
    router = Router("g", ["a"], connection=settings)
    assert router._sink._topics["outcome"] == "shared.outcomes"  # type: ignore[attr-defined]
    router.close(0)


# -- the public surface ----------------------------------------------------------------------


def test_the_public_names_are_these() -> None:
    """What services import; a change here is a change of the SDK's API (docs/sdk.md)."""
    assert producer_sdk.__all__ == [
        "SDK_VERSION",
        "AsyncCompletionStream",
        "CacheOptions",
        "Completion",
        "CompletionStream",
        "ConnectionOptions",
        "Decision",
        "EmitterOptions",
        "EmitterStats",
        "EventSink",
        "KafkaEventSink",
        "NoCurrentDecision",
        "PathOverride",
        "PathView",
        "PolicyView",
        "Provider",
        "ProviderError",
        "Router",
        "RouterError",
        "RouterStats",
        "SamplingParams",
        "SnapshotSource",
    ]


@pytest.mark.parametrize(
    "module",
    [
        "cache",
        "decision",
        "emitter",
        "errors",
        "options",
        "policy",
        "providers",
        "router",
        "sampling",
        "streams",
        "testing",
    ],
)
def test_public_modules_export_sorted_real_names_and_no_internals(module: str) -> None:
    public = importlib.import_module(f"producer_sdk.{module}")
    names = public.__all__
    assert list(names) == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        defined_in = getattr(getattr(public, name), "__module__", "")
        assert not defined_in.startswith("producer_sdk._impl"), f"{module}.{name}"
