"""GoalState: deltas through the frontier into posteriors, snapshots, alerts, checkpoints."""

from __future__ import annotations

import json
import random

import pytest

from schemas import JoinPosition, PolicySnapshot
from stream_workers.local.simulation import bernoulli_stream
from stream_workers.pipeline.join import Item, build_deltas
from stream_workers.pipeline.posterior import DecayedBeta, GoalState, PosteriorConfig
from stream_workers.pipeline.posterior.detectors import BetaDropDetector
from stream_workers.settings import WorkerSettings

DAY = 86400.0


def deltas_for(rewards: list[tuple[str, float]], start: int = 0, partition: int = 0) -> list:
    items = [
        Item("g", path, start + i, start + i, reward, 1000.0 + start + i, 0.01, 200.0)
        for i, (path, reward) in enumerate(rewards)
    ]
    end = start + len(rewards)
    position = JoinPosition(decisions=end, outcomes=end, expired=end)
    return build_deltas(partition, position, items)


def stream(seed: int, n: int, rates: dict[str, float]) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    paths = list(rates)
    out = []
    for _ in range(n):
        path = rng.choice(paths)
        out.append((path, 1.0 if rng.random() < rates[path] else 0.0))
    return out


def test_snapshot_matches_the_pure_posteriors() -> None:
    events = stream(1, 600, {"a": 0.9, "b": 0.6, "c": 0.3})
    state = GoalState("g")
    for start in range(0, 600, 37):  # flushes of uneven sizes
        for delta in deltas_for(events[start : start + 37], start):
            state.apply(delta)
    snap = state.snapshot(now=5000.0)
    for path in "abc":
        pure = DecayedBeta(DAY)
        for i, (p, reward) in enumerate(events):
            if p == path:
                pure.update(reward, 1000.0 + i)
        stats = snap.paths[path]
        assert stats.alpha == pytest.approx(pure.alpha, rel=1e-12)
        assert stats.beta == pytest.approx(pure.beta, rel=1e-12)
        assert stats.n == sum(1 for p, _ in events if p == path)
        assert stats.mean_cost_usd == pytest.approx(0.01)
        assert stats.status == "healthy"
    assert snap.version == 1
    assert PolicySnapshot.model_validate_json(snap.model_dump_json()) == snap
    assert state.snapshot(now=5000.0).version == 2


def test_replayed_deltas_are_ignored() -> None:
    events = stream(2, 200, {"a": 0.8, "b": 0.5})
    once, twice = GoalState("g"), GoalState("g")
    deltas = deltas_for(events)
    for delta in deltas:
        once.apply(delta)
        twice.apply(delta)
        twice.apply(delta)
    assert once.snapshot(0).paths == twice.snapshot(0).paths


def test_checkpoint_round_trip_continues_exactly() -> None:
    events = stream(3, 800, {"a": 0.95, "b": 0.7})
    events += [("a", 0.0)] * 60  # a degradation, so the detector state matters
    deltas = [d for s in range(0, len(events), 50) for d in deltas_for(events[s : s + 50], s)]
    straight = GoalState("g")
    straight_alerts = [a for d in deltas for a in straight.apply(d)]
    resumed = GoalState("g")
    alerts = [a for d in deltas[:9] for a in resumed.apply(d)]
    saved = json.loads(json.dumps(resumed.to_json()))
    resumed = GoalState.from_json(saved, PosteriorConfig())
    alerts += [a for d in deltas[5:] for a in resumed.apply(d)]  # a replay overlaps
    assert [a.alert_id for a in alerts] == [a.alert_id for a in straight_alerts]
    assert resumed.snapshot(0).paths == straight.snapshot(0).paths


def test_a_degradation_opens_one_alert_restarts_the_posterior_and_resolves() -> None:
    events = [("a", 1.0 if i % 20 else 0.0) for i in range(400)]  # 0.95
    events += [("a", 0.0 if i % 10 < 7 else 1.0) for i in range(100)]  # 0.30
    events += [("a", 1.0) for _ in range(100)]  # recovered
    state = GoalState("g")
    alerts = [a for d in deltas_for(events) for a in state.apply(d)]
    assert [a.state for a in alerts] == ["open", "resolved"]
    opened = alerts[0]
    assert opened.alert_id.startswith("g:a:open:0.")
    assert 400 < int(opened.alert_id.split(".")[1]) <= 430
    assert opened.baseline_rate > 0.9
    assert opened.recent_rate < 0.8
    # Resolving restarts the posterior from the run of outcomes that showed the recovery (the
    # last three of the degraded phase were good, then nine of the recovery): traffic comes
    # back at once instead of waiting for the good outcomes to outweigh the bad ones. The
    # outcomes after the one that resolved it are kept.
    resolved = alerts[1]
    assert (resolved.alert_id, resolved.recent_n, resolved.recent_rate) == (
        "g:a:resolved:0.508.508",
        12,
        1.0,
    )
    posterior = state.paths["a"].posterior
    assert posterior.n == 12 + (len(events) - 1 - 508)
    assert posterior.f == 0.0  # none of the degradation's failures


def test_a_resolve_restarts_the_posterior_from_the_recovery_run() -> None:
    # The routing benchmark's recovery, 0.98 -> 0.30 -> 0.98, flushed in deltas of 10: the
    # posterior right after the resolve holds the 18 outcomes that resolved it (two failed)
    # and the two still waiting for the detector, not the window's fifty, 34 of them
    # failures (restarting from the window and those two gave a mean of 18 / 54 = 0.33).
    events = [("a", r) for r in bernoulli_stream([0.98, 0.30, 0.98], [400, 100, 100], seed=11)]
    state = GoalState("g")
    for start in range(0, len(events), 10):
        alerts = [a for d in deltas_for(events[start : start + 10], start) for a in state.apply(d)]
        if any(a.state == "resolved" for a in alerts):
            break
    assert [(a.alert_id, a.recent_n) for a in alerts] == [("g:a:resolved:0.517.517", 18)]
    posterior = state.paths["a"].posterior
    pure = DecayedBeta(DAY)
    pure.reset([(r, 1000.0 + i) for i, (_, r) in enumerate(events[500:520], 500)])
    assert (posterior.n, posterior.alpha, posterior.beta) == (20, pure.alpha, pure.beta)
    assert posterior.mean > 0.86  # 19 / 22
    assert state.snapshot(0).paths["a"].status == "healthy"


def test_a_checkpoint_of_the_previous_version_resolves_the_open_alert() -> None:
    # Saved mid-alert by a detector without the recovery test: it starts one on loading.
    events = [("a", r) for r in bernoulli_stream([0.98, 0.30, 0.98], [400, 100, 100], seed=11)]
    deltas = [d for s in range(0, len(events), 50) for d in deltas_for(events[s : s + 50], s)]
    resumed = GoalState("g")
    alerts = [a for d in deltas[:9] for a in resumed.apply(d)]
    saved = json.loads(json.dumps(resumed.to_json()))
    del saved["paths"]["a"]["detector"]["recovery"]
    resumed = GoalState.from_json(saved, PosteriorConfig())
    alerts += [a for d in deltas[9:] for a in resumed.apply(d)]
    assert [a.alert_id for a in alerts] == ["g:a:open:0.422.422", "g:a:resolved:0.511.511"]


def test_statuses() -> None:
    state = GoalState("g", PosteriorConfig(staleness=100.0))
    for delta in deltas_for([("warm", 1.0)] * 30 + [("cold", 1.0)] * 5):
        state.apply(delta)
    snap = state.snapshot(now=1000.0 + 40)
    assert snap.paths["warm"].status == "healthy"
    assert snap.paths["cold"].status == "cold"
    assert state.snapshot(now=1000.0 + 200).paths["warm"].status == "stale"


def test_delta_of_another_goal_is_refused() -> None:
    delta = deltas_for([("a", 1.0)])[0].model_copy(update={"goal": "other"})
    with pytest.raises(ValueError, match="goal 'other' given to goal 'g'"):
        GoalState("g").apply(delta)


@pytest.mark.parametrize(
    "config",
    [PosteriorConfig(), PosteriorConfig(source_partitions=2)],
    ids=["fixed lag", "watermark"],
)
def test_detector_sees_event_time_order_across_source_partitions(config: PosteriorConfig) -> None:
    # A degradation seen through two source partitions, 10 ms apart in event time, each
    # delivering chunks of 50 (0.5 s); partition 1 lags one chunk behind partition 0, within
    # the join's 1 s skew bound. The alerts must be those of the ordered stream.
    events = [1.0 if i % 20 else 0.0 for i in range(400)]
    events += [0.0 if i % 10 < 7 else 1.0 for i in range(100)]
    events += [1.0] * 100

    def chunk(parity: int, start: int, end: int) -> list:
        items = [
            Item("g", "a", i, i, events[i], 1000.0 + i * 0.01, None, None)
            for i in range(max(0, start), min(end, len(events)))
            if i % 2 == parity
        ]
        if not items:
            return []
        top = max(i.d_off for i in items) + 1
        return build_deltas(parity, JoinPosition(decisions=top, outcomes=top, expired=top), items)

    ordered = GoalState("g", config)
    expected: list[str] = []
    for i in range(0, 600, 25):
        for delta in chunk(0, i, i + 25) + chunk(1, i, i + 25):
            expected += [a.state for a in ordered.apply(delta, wall=0.0)]
    expected += [a.state for a in ordered.release(wall=0.0, everything=True)]
    assert expected == ["open", "resolved"]

    skewed = GoalState("g", config)
    states: list[str] = []
    for k in range(0, 650, 50):
        for delta in chunk(0, k, k + 50) + chunk(1, k - 50, k):
            states += [a.state for a in skewed.apply(delta, wall=0.0)]
    states += [a.state for a in skewed.release(wall=0.0, everything=True)]
    assert states == ["open", "resolved"]
    got, want = skewed.snapshot(0).paths["a"], ordered.snapshot(0).paths["a"]
    # The same outcomes in another order: equal up to float rounding of the decayed sums.
    assert (got.alpha, got.beta) == (pytest.approx(want.alpha), pytest.approx(want.beta))
    assert got.model_copy(update={"alpha": 0, "beta": 0}) == want.model_copy(
        update={"alpha": 0, "beta": 0}
    )


def test_items_wait_for_every_active_partition_then_for_the_wall_clock_lag() -> None:
    state = GoalState("g", PosteriorConfig(source_partitions=2))
    for delta in deltas_for([("a", 1.0)] * 30, partition=0):  # event times 1000..1029
        state.apply(delta, wall=100.0)
    # Partition 1 has not been heard from: the last 2 s of event time wait.
    assert state.paths["a"].detector.recent_n == 28
    for delta in deltas_for([("a", 1.0)] * 10, start=30, partition=1):  # 1030..1039
        state.apply(delta, wall=100.5)
    for delta in deltas_for([("a", 1.0)], start=40, partition=0):  # 1040
        state.apply(delta, wall=100.6)
    # Partition 1 has reached 1039, partition 0 1040: items up to 1039 go (2 s of event time
    # would hold back 1038 and 1039 too); 1040 waits for partition 1, which may still send
    # older items.
    assert state.paths["a"].detector.recent_n == 40
    state.release(wall=102.0)
    assert state.paths["a"].detector.recent_n == 40
    # Partition 1 has sent nothing for 2 s of wall time: it no longer holds items back.
    state.release(wall=102.6)
    assert state.paths["a"].detector.recent_n == 41


def test_config_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HALF_LIFE", "DETECTOR_WINDOW", "MIN_DROP", "MIN_SAMPLES", "STALENESS"):
        monkeypatch.delenv(f"OUTROUTE_{name}", raising=False)
    monkeypatch.delenv("OUTROUTE_PARTITIONS", raising=False)
    config, default = PosteriorConfig.from_settings(WorkerSettings()), PosteriorConfig()
    assert (config.half_life, config.min_samples, config.staleness, config.source_partitions) == (
        default.half_life,
        default.min_samples,
        default.staleness,
        WorkerSettings().partitions,
    )
    built, fresh = config.detector(half_life=DAY), BetaDropDetector()
    assert isinstance(built, BetaDropDetector)
    assert (built.window, built.min_drop, built.confidence, built.min_recent) == (
        fresh.window,
        fresh.min_drop,
        fresh.confidence,
        fresh.min_recent,
    )
    settings = WorkerSettings(
        half_life=60.0, detector_window=80, min_drop=0.2, min_samples=5, staleness=9.0, partitions=3
    )
    config = PosteriorConfig.from_settings(settings)
    assert (config.half_life, config.min_samples, config.staleness, config.source_partitions) == (
        60.0,
        5,
        9.0,
        3,
    )
    state = GoalState("g", config)
    state.apply(deltas_for([("a", 1.0)])[0])
    detector = state.paths["a"].detector
    assert isinstance(detector, BetaDropDetector)
    assert (detector.window, detector.min_drop, detector.half_life) == (80, 0.2, 60.0)
