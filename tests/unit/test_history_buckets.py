"""History: bucket sums of admitted items, pending writes, series, health, attention order."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from schemas import DegradationAlert, JoinPosition, PathStats, PolicySnapshot
from schemas.overrides import GoalOverrides, OverrideEntry, PinnedEntry
from stream_workers.ops.history import (
    WINDOWS,
    attention,
    build_health_series,
    build_path_series,
    points,
)
from stream_workers.ops.history import _summary as summary
from stream_workers.pipeline.join import Item, build_deltas
from stream_workers.pipeline.posterior import GoalState, PosteriorConfig
from stream_workers.pipeline.posterior.history import (
    BucketSums,
    PendingHistory,
    bucket_of,
    expires_at,
    queue_writes,
)

HOUR = 3600
#: 2026-12-05 10:00:00 UTC, an hour boundary
T0 = 1_796_464_800
assert T0 % HOUR == 0


def by_bucket(sums: BucketSums) -> list[tuple[str, int, dict[str, float]]]:
    return list(sums.by_bucket())


# -- bucket sums -----------------------------------------------------------------------------


def test_bucket_of_and_expiry() -> None:
    assert bucket_of(T0 + 59.999, "m") == T0 // 60
    assert bucket_of(T0 + 60, "m") == T0 // 60 + 1
    assert bucket_of(T0 - 0.001, "h") == T0 // HOUR - 1
    assert expires_at(T0 // 60, "m") == T0 + 60 + 25 * HOUR
    assert expires_at(T0 // HOUR, "h") == T0 + HOUR + 8 * 24 * HOUR


def test_sums_per_minute_and_hour_by_event_time() -> None:
    sums = BucketSums()
    sums.add("a", T0 + 1, 1.0, 0.5, 100.0)
    sums.add("a", T0 + 59, 0.0, None, 300.0)
    sums.add("b", T0 + 61, 0.25, 1.0, None)
    sums.add("a", T0 - 1, 1.0, None, None)  # the hour before
    assert by_bucket(sums) == [
        ("m", T0 // 60 - 1, {"a|n": 1, "a|s": 1.0}),
        ("m", T0 // 60, {"a|n": 2, "a|s": 1.0, "a|cost": 0.5, "a|cost_n": 1, "a|lat": 400.0,
                         "a|lat_n": 2}),
        ("m", T0 // 60 + 1, {"b|n": 1, "b|s": 0.25, "b|cost": 1.0, "b|cost_n": 1}),
        ("h", T0 // HOUR - 1, {"a|n": 1, "a|s": 1.0}),
        ("h", T0 // HOUR, {"a|n": 2, "a|s": 1.0, "a|cost": 0.5, "a|cost_n": 1, "a|lat": 400.0,
                           "a|lat_n": 2, "b|n": 1, "b|s": 0.25, "b|cost": 1.0, "b|cost_n": 1}),
    ]  # fmt: skip


def test_sums_are_bounded_and_count_what_they_drop() -> None:
    sums = BucketSums(limit=2)
    sums.add("a", T0, 1.0, None, None)
    sums.add("b", T0, 1.0, None, None)
    sums.add("a", T0 + 5, 1.0, None, None)  # an existing (path, minute): kept
    sums.add("c", T0, 1.0, None, None)  # a third entry: dropped
    sums.add("a", T0 + 60, 1.0, None, None)  # dropped
    assert len(sums) == 2
    assert sums.dropped == 2
    taken = sums.take()
    assert (len(taken), taken.dropped, len(sums), sums.dropped) == (2, 2, 0, 0)
    assert not sums
    with pytest.raises(ValueError, match="limit must be >= 1"):
        BucketSums(limit=0)


def test_merge_adds_within_the_limit() -> None:
    one, two = BucketSums(limit=2), BucketSums()
    one.add("a", T0, 1.0, None, None)
    two.add("a", T0, 0.0, None, 10.0)
    two.add("b", T0, 1.0, None, None)
    two.add("c", T0, 1.0, None, None)
    two.add("c", T0 + 1, 1.0, None, None)
    one.merge(two)
    assert by_bucket(one)[0] == ("m", T0 // 60, {"a|n": 2, "a|s": 1.0, "a|lat": 10.0,
                                                   "a|lat_n": 1, "b|n": 1, "b|s": 1.0})  # fmt: skip
    assert one.dropped == 2  # c's two outcomes


# -- what GoalState adds ---------------------------------------------------------------------


def deltas(items: list[tuple[str, float, float]], start: int = 0) -> list:
    """Deltas of items (path, reward, event time), offsets from ``start``."""
    made = [
        Item("g", path, start + i, start + i, reward, at, 0.01, 200.0)
        for i, (path, reward, at) in enumerate(items)
    ]
    end = start + len(items)
    return build_deltas(0, JoinPosition(decisions=end, outcomes=end, expired=end), made)


def test_goal_state_adds_only_what_the_frontier_admits() -> None:
    state = GoalState("g")
    first = deltas([("a", 1.0, T0 + 10), ("a", 0.0, T0 + 20), ("b", 1.0, T0 + 70)])
    for delta in first:
        state.apply(delta)
        state.apply(delta)  # a replay adds nothing
    # a later delta overlapping the first (a restarted join re-reading): only the new item
    for delta in deltas([("b", 1.0, T0 + 70), ("a", 1.0, T0 + 30)], start=2):
        state.apply(delta)
    assert state.history is not None
    minutes = {(r, b): f for r, b, f in by_bucket(state.history.take()) if r == "m"}
    assert minutes == {
        ("m", T0 // 60): {"a|n": 3, "a|s": 2.0, "a|cost": pytest.approx(0.03), "a|cost_n": 3,
                          "a|lat": 600.0, "a|lat_n": 3},
        ("m", T0 // 60 + 1): {"b|n": 1, "b|s": 1.0, "b|cost": 0.01, "b|cost_n": 1,
                              "b|lat": 200.0, "b|lat_n": 1},
    }  # fmt: skip
    assert not state.history


def test_history_off_and_not_in_the_checkpoint() -> None:
    off = GoalState("g", PosteriorConfig(history=False))
    for delta in deltas([("a", 1.0, T0)]):
        off.apply(delta)
    assert off.history is None
    on = GoalState("g")
    for delta in deltas([("a", 1.0, T0)]):
        on.apply(delta)
    saved = on.to_json()
    assert "history" not in json.dumps(saved)
    restored = GoalState.from_json(saved, PosteriorConfig())
    assert restored.history is not None
    assert not restored.history


# -- pending writes --------------------------------------------------------------------------


def test_pending_merges_per_hash_skips_expired_and_bounds_hashes() -> None:
    now = T0 + 30
    pending = PendingHistory(limit=3)
    sums = BucketSums()
    sums.add("a", T0, 1.0, None, None)
    sums.add("a", T0 - 26 * HOUR, 1.0, None, None)  # its minute expired, its hour did not
    pending.add("g", sums, now)
    assert len(pending) == 3  # the minute of T0, the hours of T0 and of T0 - 26 h
    again = BucketSums()
    again.add("a", T0 + 1, 0.0, None, None)  # merges into pending hashes
    again.add("b", T0 + 60, 1.0, None, None)  # a new minute: over the limit, dropped
    pending.add("g", again, now)
    assert pending.dropped == {"m": 1, "h": 0}
    assert pending.goals() == ["g"]
    first = pending.of("g", 2)
    assert first == [
        ("m", T0 // 60, {"a|n": 2, "a|s": 1.0}),
        ("h", T0 // HOUR - 26, {"a|n": 1, "a|s": 1.0}),
    ]
    pending.written("g", first)
    assert pending.of("g", 10) == [("h", T0 // HOUR, {"a|n": 2, "a|s": 1.0, "b|n": 1,
                                                      "b|s": 1.0})]  # fmt: skip
    pending.written("g", pending.of("g", 10))
    assert (len(pending), pending.goals()) == (0, [])


# -- series ----------------------------------------------------------------------------------


def test_points_of_each_window() -> None:
    now = T0 + 30 * 60 + 5  # 10:30:05
    starts, buckets = points("hour", now)
    assert (len(starts), starts[0], starts[-1]) == (60, T0 - 29 * 60, T0 + 30 * 60)
    assert buckets == list(range(starts[0] // 60, now // 60 + 1))
    starts, buckets = points("day", now)
    assert (len(starts), starts[-1], starts[0]) == (144, T0 + 30 * 60, T0 + 30 * 60 - 143 * 600)
    assert (buckets[0], buckets[-1], len(buckets)) == (starts[0] // 60, now // 60, 1431)
    starts, buckets = points("week", now)
    assert (len(starts), starts[-1]) == (168, T0)
    assert buckets == [s // HOUR for s in starts]
    assert {w: s.step for w, s in WINDOWS.items()} == {"hour": 60, "day": 600, "week": 3600}
    with pytest.raises(ValueError, match="window must be one of hour, day, week, got 'month'"):
        points("month", now)


def test_path_series_aggregates_and_copes_with_missing_buckets() -> None:
    now = T0 + 5 * 60 + 30  # 10:05:30
    minute = T0 // 60
    buckets = {
        minute: {b"a|n": b"3", b"a|s": b"2", b"a|cost": b"0.3", b"a|cost_n": b"3", b"b|n": b"1"},
        minute + 5: {"a|n": "1", "a|lat": "250.5", "a|lat_n": "1", "b|n": "3", "b|s": "1.5"},
        minute + 2: {b"a|x": b"9", b"nopipe": b"1"},  # fields of another version: ignored
        minute - 600: {b"a|n": b"7"},  # outside the window: ignored
    }
    series = build_path_series("g", "hour", now, buckets, paths=["c"])
    assert (series.times[-1], series.step_s) == (T0 + 5 * 60, 60)
    assert list(series.paths) == ["a", "b", "c"]
    a, b, c = series.paths["a"], series.paths["b"], series.paths["c"]
    at, last = 54, 59  # points of 10:00 and 10:05
    assert (a.n[at], a.success_rate[at], a.share[at]) == (3, 2 / 3, 0.75)
    assert a.mean_cost_usd[at] == pytest.approx(0.1)
    assert (a.mean_latency_ms[at], b.n[at], b.success_rate[at], b.share[at]) == (None, 1, 0.0, 0.25)
    assert (a.n[last], a.success_rate[last], a.share[last], a.mean_latency_ms[last]) == (
        1, 0.0, 0.25, 250.5)  # fmt: skip
    assert (b.success_rate[last], b.share[last]) == (0.5, 0.75)
    assert (series.total_n[at], series.total_n[last]) == (4, 4)
    assert sum(series.total_n) == 8
    assert c.n == [0] * 60
    assert c.success_rate == [None] * 60
    # no share where nothing was reported; 0 where the other paths had traffic
    assert [k for k, share in enumerate(c.share) if share is not None] == [at, last]
    assert (c.share[at], c.share[last]) == (0.0, 0.0)
    assert (a.n[at + 1], a.success_rate[at + 1], a.share[at + 1]) == (0, None, None)
    data = series.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["paths"]["a"]["n"][at] == 3


def test_day_points_sum_ten_minutes() -> None:
    now = T0 + 25 * 60
    minute = T0 // 60
    buckets = {minute + k: {b"a|n": b"1", b"a|s": b"1"} for k in range(10)}
    buckets[minute + 10] = {b"a|n": b"2"}
    series = build_path_series("g", "day", now, buckets)
    assert series.paths["a"].n[-3:] == [10, 2, 0]
    assert series.paths["a"].success_rate[-3:] == [1.0, 0.0, None]


def test_health_series_per_point() -> None:
    now = T0 + 2 * 60 + 1
    minute = T0 // 60
    minutes = {
        minute: {b"outcomes": b"120", b"unreported": b"3", b"dead_lettered": b"1"},
        minute + 2: {b"outcomes": b"30", b"duplicates": b"2", b"surprise": b"5"},
    }
    hour = build_health_series("g", "hour", now, minutes)
    assert hour.counts["outcomes"][-3:] == [120, 0, 30]
    assert (hour.counts["unreported"][-3], hour.counts["duplicates"][-1]) == (3, 2)
    assert hour.outcomes_per_min[-3:] == [120.0, 0.0, 30.0]
    assert "surprise" not in hour.counts
    day = build_health_series("g", "day", now, minutes)
    assert (day.counts["outcomes"][-1], day.outcomes_per_min[-1]) == (150, 15.0)
    assert sum(day.counts["dead_lettered"]) == 1
    assert json.loads(json.dumps(day.to_json())) == day.to_json()
    week = build_health_series("g", "week", now, {T0 // HOUR: {b"outcomes": b"600"}})
    assert (week.step_s, week.times[-1], week.counts["outcomes"][-1]) == (3600, T0, 600)
    assert week.outcomes_per_min[-1] == 10.0


# -- attention -------------------------------------------------------------------------------


def test_attention_weights_and_reasons() -> None:
    quiet: dict[str, int] = {}
    assert attention({"a": "healthy", "b": "cold"}, None, 5.0, quiet, 0) == (0, [])
    score, reasons = attention(
        {"b": "degrading", "a": "stale", "c": "disabled"},
        "a",
        300.0,
        {"dead_lettered": 2, "decisions": 40, "unreported": 20},
        7,
    )
    assert score == 100 + 50 + 20 + 20 + 10 + 5 + 5
    assert reasons == [
        "path b is degrading",
        "snapshot 300 s old while outcomes arrive: the workers are behind",
        "2 messages dead-lettered",
        "20 of 40 decisions never reported",
        "path a is stale",
        "path c is disabled by an override",
        "pinned to a by an override",
    ]
    # an old snapshot of a goal without traffic is not behind; few decisions are not judged
    assert attention({}, None, 900.0, {"decisions": 19, "unreported": 19}, 0) == (0, [])
    assert attention({}, None, 900.0, {"dead_lettered": 1}, 0)[1] == ["1 message dead-lettered"]


def utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def snapshot_json(goal: str, statuses: dict[str, str], at: float) -> str:
    paths = {
        p: PathStats(alpha=2, beta=2, n=30, recent_n=0, recent_successes=0, status=s)  # type: ignore[arg-type]
        for p, s in statuses.items()
    }
    generated = datetime.fromtimestamp(at, UTC)
    return PolicySnapshot(
        goal=goal, version=7, generated_at=generated, paths=paths
    ).model_dump_json()


def alert_json(path: str, state: str, at: float) -> str:
    return DegradationAlert(
        alert_id=f"g:{path}:{state}:{at}",
        goal="g",
        path=path,
        state=state,  # type: ignore[arg-type]
        recent_rate=0.3,
        recent_n=30,
        baseline_rate=0.9,
        baseline_n=500,
        detector="beta-drop",
        evidence=0.999,
        detected_at=datetime.fromtimestamp(at, UTC),
    ).model_dump_json()


def test_summary_reads_statuses_overrides_alerts_and_health() -> None:
    now = float(T0 + 600)
    snapshot = snapshot_json("g", {"a": "degrading", "b": "healthy", "c": "healthy"}, now - 2)
    overrides = GoalOverrides(
        goal="g",
        version=3,
        disabled={
            "b": OverrideEntry(reason="bad", by="ops", at=utc(T0), until=utc(now + 60)),
            "c": OverrideEntry(by="ops", at=utc(T0 - HOUR), until=utc(now)),  # ended
        },
        pinned=PinnedEntry(path="a", by="ops", at=utc(T0), until=utc(now - 1)),  # ended
    ).model_dump_json()
    alerts = [  # newest first: a's newest is open, c's was resolved
        alert_json("a", "open", now - 10),
        alert_json("c", "resolved", now - 20),
        alert_json("c", "open", now - 30),
        "not an alert",
    ]
    minute = int(now // 60)
    health = {minute: {b"outcomes": b"5"}, minute - 3: {b"outcomes": b"2", b"unreported": b"1"}}
    got = summary("g", now, snapshot, overrides, alerts, health)
    assert got.paths == {"a": "degrading", "b": "disabled", "c": "healthy"}
    assert (got.version, got.snapshot_age_s, got.pinned) == (7, 2.0, None)
    assert [(a["path"], a["state"]) for a in got.open_alerts] == [("a", "open")]
    assert (got.health["outcomes"], got.health["unreported"]) == (7, 1)
    assert (got.attention, got.reasons) == (
        105,
        ["path a is degrading", "path b is disabled by an override"],
    )
    assert json.loads(json.dumps(got.to_json())) == got.to_json()
    # no snapshot, unreadable overrides: still a summary
    empty = summary("g", now, None, b"{not json", [], {})
    assert (empty.version, empty.snapshot_age_s, empty.paths, empty.attention) == (
        None, None, {}, 0)  # fmt: skip


class Recorder:
    """Records what would be sent to Redis."""

    def __init__(self) -> None:
        self.commands: list[tuple[object, ...]] = []

    def hincrby(self, name: str, key: str, amount: int = 1) -> None:
        self.commands.append(("hincrby", name, key, amount))

    def hincrbyfloat(self, name: str, key: str, amount: float = 1.0) -> None:
        self.commands.append(("hincrbyfloat", name, key, amount))

    def expireat(self, name: str, when: int) -> None:
        self.commands.append(("expireat", name, when))


def test_queue_writes_counts_as_integers_and_expires_every_hash() -> None:
    pipe = Recorder()
    hashes = [
        ("m", T0 // 60, {"a|n": 2, "a|s": 1.5, "a|lat_n": 1, "a|lat": 20.0}),
        ("m", T0 // 60 - 26 * 60, {"a|n": 1}),  # past its retention: left out
        ("h", T0 // HOUR, {"a|cost_n": 1, "a|cost": 0.25}),
    ]
    queued = queue_writes(pipe, lambda res, bucket: f"k:{res}:{bucket}", hashes, T0 + 30)
    minute, hour = f"k:m:{T0 // 60}", f"k:h:{T0 // HOUR}"
    assert pipe.commands == [
        ("hincrby", minute, "a|n", 2),
        ("hincrbyfloat", minute, "a|s", 1.5),
        ("hincrby", minute, "a|lat_n", 1),
        ("hincrbyfloat", minute, "a|lat", 20.0),
        ("expireat", minute, T0 + 60 + 25 * HOUR),
        ("hincrby", hour, "a|cost_n", 1),
        ("hincrbyfloat", hour, "a|cost", 0.25),
        ("expireat", hour, T0 + HOUR + 8 * 24 * HOUR),
    ]
    assert queued == len(pipe.commands)


def test_summary_of_a_pinned_goal() -> None:
    now = float(T0 + 600)
    pinned = GoalOverrides(
        goal="g", version=1, pinned=PinnedEntry(path="b", by="ops", at=utc(T0), until=None)
    ).model_dump_json()
    snapshot = snapshot_json("g", {"a": "healthy", "b": "healthy"}, now - 1)
    got = summary("g", now, snapshot, pinned, [], {})
    assert (got.pinned, got.paths, got.attention) == ("b", {"a": "healthy", "b": "healthy"}, 5)
    assert got.reasons == ["pinned to b by an override"]
