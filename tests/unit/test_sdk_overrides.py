"""What a router does with a goal's overrides (static sources, seeded routers, no I/O)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from producer_sdk import CacheOptions, PathOverride, Router, SamplingParams
from producer_sdk.testing import InMemorySink, StaticSnapshotSource
from schemas import PathStats, PolicySnapshot
from schemas.overrides import GoalOverrides, OverrideEntry, PinnedEntry

FAST = CacheOptions(init_wait=2.0, poll_interval=0.05)
T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def stats(a: float, b: float, n: int, **kw: Any) -> PathStats:
    return PathStats(alpha=a, beta=b, n=n, recent_n=0, recent_successes=0.0, **kw)


#: a is the best path by far, b fair, c cold, d degrading: every rule has something to do
SNAPSHOT = PolicySnapshot(
    goal="g",
    version=3,
    generated_at=datetime.now(UTC),
    paths={
        "a": stats(900, 100, 1000, status="healthy"),
        "b": stats(600, 400, 1000, status="healthy"),
        "c": stats(2, 2, 2),
        "d": stats(300, 700, 1000, status="degrading"),
    },
)


def overrides(
    disabled: tuple[str, ...] = (),
    pinned: str | None = None,
    until: datetime | None = None,
    *,
    goal: str = "g",
    version: int = 7,
) -> GoalOverrides:
    entry = OverrideEntry(by="ops", at=T0, until=until, reason="incident 12")
    return GoalOverrides(
        goal=goal,
        version=version,
        disabled=dict.fromkeys(disabled, entry),
        pinned=None if pinned is None else PinnedEntry(path=pinned, by="ops", at=T0, until=until),
    )


@pytest.fixture
def routers() -> Iterator[list[Router]]:
    made: list[Router] = []
    yield made
    for router in made:
        router.close()


def router(
    made: list[Router],
    paths: tuple[str, ...] = ("a", "b", "c", "d"),
    source: StaticSnapshotSource | None = None,
    *,
    seed: int = 42,
    sink: InMemorySink | None = None,
) -> Router:
    made.append(
        Router(
            "g",
            paths,
            event_sink=sink or InMemorySink(),
            snapshot_source=source or StaticSnapshotSource(SNAPSHOT),
            seed=seed,
            cache=FAST,
            sampling=SamplingParams(exploration_rate=0.3, recovery_probe_rate=0.05),
        )
    )
    return made[-1]


def choices(r: Router, n: int = 3000, **kw: Any) -> list[tuple[str, str]]:
    return [(d.path, d.reason) for d in (r.decide(**kw) for _ in range(n))]


def wait_for(r: Router, version: int | None, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while r.get_policy().overrides_version != version:
        if time.monotonic() > deadline:
            raise AssertionError(f"overrides version {version} not seen in {timeout} s")
        time.sleep(0.01)


def test_a_disabled_path_leaves_exactly_the_choices_of_a_router_without_it(
    routers: list[Router],
) -> None:
    """The rules run over the paths not disabled: with the same seed, a router whose path a
    is disabled decides exactly as a router that never had a (exploration, cold start and
    recovery probes included)."""
    with_override = router(routers, source=StaticSnapshotSource(SNAPSHOT, overrides(("a",))))
    without_a = router(routers, ("b", "c", "d"))
    got = choices(with_override)
    assert got == choices(without_a)
    assert {path for path, _ in got} == {"b", "c", "d"}
    assert {reason for _, reason in got} == {"exploit", "explore"}


def test_a_pin_makes_every_decision_with_reason_override(routers: list[Router]) -> None:
    sink = InMemorySink()
    r = router(routers, source=StaticSnapshotSource(SNAPSHOT, overrides(pinned="c")), sink=sink)
    assert set(choices(r, 500)) == {("c", "override")}
    event = sink.decisions[-1]
    assert (event.path, event.reason, event.candidates) == ("c", "override", ("a", "b", "c", "d"))


def test_force_path_wins_over_a_pin_and_a_disable(routers: list[Router]) -> None:
    source = StaticSnapshotSource(SNAPSHOT, overrides(("a",), pinned="b"))
    r = router(routers, source=source)
    assert choices(r, 5, force_path="a") == [("a", "forced")] * 5


def test_a_subset_without_the_pin_follows_the_rules_without_the_disabled_paths(
    routers: list[Router],
) -> None:
    """run() retries among the paths not tried yet: the pinned path failed, so the retry
    chooses among the others, never a disabled one."""
    source = StaticSnapshotSource(SNAPSHOT, overrides(("b",), pinned="a"))
    r = router(routers, source=source)
    assert set(choices(r, 10, among=["a", "c"])) == {("a", "override")}
    retries = choices(r, 2000, among=["b", "c", "d"])
    assert {path for path, _ in retries} == {"c", "d"}


def test_a_subset_of_disabled_paths_is_used_as_if_no_override_and_warned_once(
    routers: list[Router], caplog: pytest.LogCaptureFixture
) -> None:
    r = router(routers, source=StaticSnapshotSource(SNAPSHOT, overrides(("b", "c"))))
    with caplog.at_level(logging.WARNING, logger="outroute.sdk"):
        retries = choices(r, 500, among=["b", "c"])
    assert {path for path, _ in retries} == {"b", "c"}
    warnings = [m for m in caplog.messages if "is disabled by an override" in m]
    assert warnings == [
        "every path offered for goal 'g' is disabled by an override; choosing among them as "
        "if none were"
    ]


def test_a_router_whose_every_path_is_disabled_ignores_the_overrides(
    routers: list[Router], caplog: pytest.LogCaptureFixture
) -> None:
    """The writer refuses to disable every path of the goal's snapshot, but a router may
    offer only some of them."""
    source = StaticSnapshotSource(SNAPSHOT, overrides(("a", "b")))
    with caplog.at_level(logging.WARNING, logger="outroute.sdk"):
        got = choices(router(routers, ("a", "b"), source))
    assert got == choices(router(routers, ("a", "b")))
    assert sum("is disabled by an override" in m for m in caplog.messages) == 1


def test_overrides_of_paths_the_router_does_not_offer_change_nothing(
    routers: list[Router],
) -> None:
    source = StaticSnapshotSource(SNAPSHOT, overrides(("d",), pinned="c"))
    assert choices(router(routers, ("a", "b"), source)) == choices(router(routers, ("a", "b")))


def test_get_policy_shows_each_paths_override(routers: list[Router]) -> None:
    until = datetime.now(UTC) + timedelta(hours=1)
    source = StaticSnapshotSource(SNAPSHOT, overrides(("a",), pinned="b", until=until))
    view = router(routers, source=source).get_policy()
    assert view.overrides_version == 7
    assert view.path("a").override == PathOverride("disabled", "ops", T0, until, "incident 12")
    assert view.path("b").override == PathOverride("pinned", "ops", T0, until, None)
    assert view.path("c").override is None
    assert view.path("a").status == "healthy"  # the learned status is kept apart


def test_an_override_that_has_ended_is_not_applied(routers: list[Router]) -> None:
    ended = overrides(("a",), pinned="b", until=datetime.now(UTC) - timedelta(seconds=1))
    r = router(routers, source=StaticSnapshotSource(SNAPSHOT, ended))
    assert r.get_policy().overrides_version is None
    assert choices(r) == choices(router(routers))


def test_an_override_ends_by_itself_when_its_until_passes(routers: list[Router]) -> None:
    """No write happens: the policy thread compiles again when the earliest end passes."""
    until = datetime.now(UTC) + timedelta(seconds=0.5)
    r = router(routers, source=StaticSnapshotSource(SNAPSHOT, overrides(pinned="c", until=until)))
    assert r.decide().reason == "override"
    wait_for(r, None)
    assert datetime.now(UTC) >= until
    assert {reason for _, reason in choices(r, 200)} <= {"exploit", "explore"}


def test_overrides_set_later_are_followed_and_removed(routers: list[Router]) -> None:
    source = StaticSnapshotSource(SNAPSHOT)
    r = router(routers, source=source)
    assert r.get_policy().overrides_version is None
    source.set_overrides(overrides(("a",)))
    wait_for(r, 7)
    assert "a" not in {path for path, _ in choices(r, 1000)}
    source.set_overrides(None)
    wait_for(r, None)
    assert "a" in {path for path, _ in choices(r, 1000)}


@pytest.mark.parametrize(
    "bad", [b"{not json", overrides(("a",), goal="other").model_dump_json().encode()]
)
def test_invalid_overrides_keep_the_last_valid_ones(routers: list[Router], bad: bytes) -> None:
    source = StaticSnapshotSource(SNAPSHOT, overrides(("a",)))
    r = router(routers, source=source)
    cache = r._cache
    assert r.get_policy().overrides_version == 7
    invalid = cache.invalid_snapshots
    source._overrides = bad  # what a writer of another version (or a typo) could leave
    source.set(SNAPSHOT.model_copy(update={"version": 4}))
    deadline = time.monotonic() + 5
    while r.get_policy().version != 4:
        assert time.monotonic() < deadline, "the new snapshot was not compiled"
        time.sleep(0.01)
    assert r.get_policy().overrides_version == 7
    assert cache.invalid_snapshots == invalid + 1


class FlakySource(StaticSnapshotSource):
    """A static source that can go down (``down``) or lose the goal's keys (``emptied``)."""

    down = False
    emptied = False

    def fetch(self) -> bytes | None:
        if self.down:
            raise ConnectionError("redis is down")
        return None if self.emptied else super().fetch()

    def fetch_overrides(self) -> bytes | None:
        return None if self.emptied else super().fetch_overrides()


@pytest.mark.parametrize("trouble", ["down", "emptied"])
def test_an_override_ends_on_time_while_redis_cannot_give_a_new_policy(
    routers: list[Router], trouble: str
) -> None:
    """Redis unreachable, or restarted empty: the last policy stays in use, overrides
    included, and they still end by this process's clock."""
    until = datetime.now(UTC) + timedelta(seconds=0.5)
    source = FlakySource(SNAPSHOT, overrides(pinned="c", until=until))
    r = router(routers, source=source)
    assert r.decide().reason == "override"
    setattr(source, trouble, True)
    source.set(SNAPSHOT)  # wakes the policy thread
    wait_for(r, None)
    assert r.get_policy().version == SNAPSHOT.version
    assert {reason for _, reason in choices(r, 200)} <= {"exploit", "explore"}


def test_run_retries_after_a_failing_pinned_path_skip_the_disabled_ones(
    routers: list[Router],
) -> None:
    def broken() -> str:
        raise RuntimeError("provider down")

    sink = InMemorySink()
    calls = [("a", broken), ("b", lambda: "b"), ("c", lambda: "c"), ("d", lambda: "d")]
    source = StaticSnapshotSource(SNAPSHOT, overrides(("b",), pinned="a"))
    routers.append(Router("g", calls, event_sink=sink, snapshot_source=source, seed=3, cache=FAST))
    r = routers[-1]
    answers = {r.run() for _ in range(200)}
    assert answers == {"c", "d"}
    first = [e for e in sink.decisions if e.candidates == ("a", "b", "c", "d")]
    retries = [e for e in sink.decisions if e.candidates == ("b", "c", "d")]
    assert {(e.path, e.reason) for e in first} == {("a", "override")}
    assert len(retries) == 200
    assert {e.path for e in retries} == {"c", "d"}
