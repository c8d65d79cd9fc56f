"""bench/low_traffic.py: the simulated clock, the half-life counted in outcomes, seeded runs."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from bench._low_traffic_sim import (
    DAY,
    PATHS,
    T0,
    WATCH,
    Trace,
    World,
    degradation,
    simulate,
    stationary,
)
from bench.low_traffic import (
    DEFAULT,
    SETUPS,
    baseline_held,
    first_alert,
    held,
    main,
    share,
    until_share,
)
from schemas import JoinPosition
from stream_workers.pipeline.join import Item, build_deltas
from stream_workers.pipeline.posterior import DecayedBeta, GoalState, PosteriorConfig
from stream_workers.pipeline.posterior.detectors import BetaDropDetector

BY_NAME = {s.name: s for s in SETUPS}
BEFORE = BY_NAME["time 24h (before)"]
COUNTED = BY_NAME["outcomes 200"]
CURRENT = BY_NAME[DEFAULT]
LN2 = math.log(2)


def evenly(posterior: DecayedBeta, per_day: float, days: float) -> DecayedBeta:
    """Outcomes at a steady pace, every tenth a failure."""
    for i in range(round(per_day * days)):
        posterior.update(0.0 if i % 10 == 9 else 1.0, i * DAY / per_day)
    return posterior


def effective(posterior: DecayedBeta) -> float:
    return posterior.alpha + posterior.beta - 2.0


@pytest.fixture(scope="module")
def quiet() -> World:
    return World(stationary(30.0), 10.0, 30.0, seed=0)


@pytest.fixture(scope="module")
def runs(quiet: World) -> dict[str, Trace]:
    """The stationary scenario at 10 requests a day for 30 days, seed 0."""
    return {setup.name: simulate(setup.config, quiet) for setup in (BEFORE, COUNTED, CURRENT)}


# -- the decay the stage runs: DecayedBeta counted in outcomes -----------------------------------


def test_time_only_half_life_holds_rate_over_ln2_at_a_steady_pace() -> None:
    # Weights 2^-(k / 10) summed over k >= 0: 1 / (1 - 2^-0.1) = 10 / ln 2 + 0.5 to 1e-3.
    posterior = evenly(DecayedBeta(DAY), 10.0, 60.0)
    assert effective(posterior) == pytest.approx(1 / (1 - 2**-0.1), rel=1e-9)
    assert 10 / LN2 < effective(posterior) < 10 / LN2 + 0.51
    # half_life_outcomes 0 is time alone, to the bit, whatever the cap.
    explicit = evenly(DecayedBeta(DAY, half_life_outcomes=0.0, max_half_life=7 * DAY), 10.0, 60.0)
    assert (explicit.s, explicit.f, explicit.n) == (posterior.s, posterior.f, posterior.n)


def test_outcome_counted_half_life_holds_what_its_count_says() -> None:
    # At 10 a day each outcome decays the older ones by 1/N half-life, not 1/10 of one.
    for count in (100.0, 200.0):
        q = 2 ** (-1 / count)
        posterior = evenly(DecayedBeta(DAY, half_life_outcomes=count), 10.0, 60.0)
        assert effective(posterior) == pytest.approx((1 - q**600) / (1 - q), rel=1e-9)
        assert effective(posterior) > count / 20 * (10 / LN2)  # 5 and 10 times time's
    # At most 7 days (the default): then the time bound, 0.1 day / 7 days per outcome, wins
    # over 1/100.
    capped = DecayedBeta(DAY, half_life_outcomes=100.0, max_half_life=7 * DAY)
    q = 2 ** (-0.1 / 7)
    assert effective(evenly(capped, 10.0, 60.0)) == pytest.approx((1 - q**600) / (1 - q))


def test_at_a_high_rate_the_outcome_counted_half_life_is_the_time_one() -> None:
    # 5,000 a day: 17 s apart, 1/5,000 of a day's half-life each, under 1/500: time decides.
    time_only = evenly(DecayedBeta(DAY), 5000.0, 2.0)
    counted = evenly(DecayedBeta(DAY, half_life_outcomes=500.0), 5000.0, 2.0)
    capped = evenly(DecayedBeta(DAY, half_life_outcomes=100.0, max_half_life=7 * DAY), 5000.0, 2.0)
    assert (counted.s, counted.f, counted.n) == (time_only.s, time_only.f, time_only.n)
    assert (capped.s, capped.f, capped.n) == (time_only.s, time_only.f, time_only.n)


def test_a_late_outcome_enters_as_if_one_newer_outcome_followed_it() -> None:
    posterior = DecayedBeta(DAY, half_life_outcomes=50.0)
    posterior.update(1.0, 0.0)
    posterior.update(1.0, 10 * DAY)  # ten days later: the first decays by 1/50 half-life only
    posterior.update(0.0, 5 * DAY)  # five days late
    assert posterior.s == pytest.approx(1 + 2 ** (-1 / 50))
    assert posterior.f == pytest.approx(2 ** (-1 / 50))
    assert posterior.at(100 * DAY) == (posterior.alpha, posterior.beta)  # no newer outcome
    capped = DecayedBeta(DAY, half_life_outcomes=50.0, max_half_life=7 * DAY)
    capped.update(1.0, 0.0)
    assert capped.at(7 * DAY) == (1.5, 1.0)  # with no newer outcome, by the week's bound
    time_only = DecayedBeta(DAY)
    time_only.update(1.0, 0.0)
    assert time_only.at(DAY) == (1.5, 1.0)
    assert time_only.at(-DAY) == (2.0, 1.0)  # no decay before t_ref


def test_reset_and_the_detectors_baseline_keep_the_counted_decay() -> None:
    pairs = [(1.0, i * DAY) for i in range(30)]
    posterior = DecayedBeta(DAY, half_life_outcomes=50.0)
    posterior.update(0.0, -DAY)
    posterior.reset(pairs)
    fresh = DecayedBeta(DAY, half_life_outcomes=50.0)
    for reward, at in pairs:
        fresh.update(reward, at)
    assert (posterior.s, posterior.f, posterior.n) == (fresh.s, fresh.f, fresh.n)
    detector = BetaDropDetector(half_life_outcomes=50.0, max_half_life=3 * DAY, min_baseline=5.0)
    assert detector.baseline == DecayedBeta(DAY, half_life_outcomes=50.0, max_half_life=3 * DAY)
    assert detector.min_baseline == 5.0


def test_the_stage_builds_and_checkpoints_the_configured_decay() -> None:
    config = PosteriorConfig(half_life_outcomes=50.0, max_half_life=7 * DAY, history=False)
    items = [
        Item("g", "a", i, i, float(i % 3 > 0), 1000.0 + i * DAY, None, None) for i in range(30)
    ]
    state = GoalState("g", config)
    for delta in build_deltas(0, JoinPosition(decisions=30, outcomes=30, expired=30), items):
        state.apply(delta)
    pure = DecayedBeta(DAY, half_life_outcomes=50.0, max_half_life=7 * DAY)
    for item in items:
        pure.update(item.reward, item.event_time)
    path = state.paths["a"]
    assert path.posterior == pure
    assert isinstance(path.detector, BetaDropDetector)
    assert (path.detector.half_life_outcomes, path.detector.max_half_life) == (50.0, 7 * DAY)
    # The checkpoint is as before: [s, f, t_ref, n]; the decay is the config's, not saved.
    saved = json.loads(json.dumps(state.to_json()))
    assert saved["paths"]["a"]["posterior"] == [pure.s, pure.f, pure.t_ref, pure.n]
    assert GoalState.from_json(saved, config).paths["a"].posterior == pure


# -- seeded runs through the SDK's policy, the join and GoalState --------------------------------


def test_the_event_clock_spans_the_days_asked(quiet: World, runs: dict[str, Trace]) -> None:
    times = quiet.times
    assert len(times) == 314  # Poisson, 10 a day for 30 days, seed 0
    assert all(a < b for a, b in itertools.pairwise(times))
    assert 0 < times[0] < 0.1
    assert 29.9 < times[-1] < 30.0
    for trace in runs.values():
        final = trace.final
        assert final is not None
        # Every outcome was joined and applied, the last within seconds of the end.
        assert sum(stats.n for stats in final.paths.values()) == len(times)
        last = max(s.last_outcome_at for s in final.paths.values() if s.last_outcome_at)
        last_request = datetime.fromtimestamp(T0 + times[-1] * DAY, UTC)
        assert timedelta(0) < last - last_request < timedelta(seconds=3)


def test_time_alone_holds_at_most_rate_over_ln2(runs: dict[str, Trace]) -> None:
    trace = runs[BEFORE.name]
    # Every request at model-a would give 1 + 10 / ln 2 = 15.4 on average (Poisson): the
    # newest outcome's weight 1 and the decayed rest. It gets three quarters of the traffic.
    # A burst gives more for a while: 13 requests in the day before day 27.6, all at model-a.
    part = share(trace, 10.0, 30.0)
    assert held(trace, 10.0, 30.0) < 1 + 10 / LN2
    assert max(trace.held[WATCH]) < 20
    assert held(trace, 10.0, 30.0) == pytest.approx(1 + part * 10 / LN2, abs=1.5)
    # Its detector's baseline never holds the 20 outcomes an alert needs.
    assert max(trace.baseline) < 20
    assert trace.alerts == []


def test_the_counted_half_lives_hold_more(runs: dict[str, Trace]) -> None:
    before = held(runs[BEFORE.name], 20.0, 30.0)
    assert held(runs[COUNTED.name], 20.0, 30.0) > 5 * before
    assert held(runs[CURRENT.name], 20.0, 30.0) > 3 * before
    assert baseline_held(runs[COUNTED.name], 20.0, 30.0) > 20
    assert baseline_held(runs[CURRENT.name], 20.0, 30.0) > 20


def test_the_stationary_runs_best_path_gets_the_most(runs: dict[str, Trace]) -> None:
    for trace in runs.values():
        counts = {path: trace.paths.count(path) for path in PATHS}
        assert counts[WATCH] == max(counts.values())
    assert share(runs[COUNTED.name], 10.0, 30.0) > 0.8
    assert share(runs[CURRENT.name], 10.0, 30.0) > 0.8


def test_a_degradation_alerts_with_the_counted_half_life_only() -> None:
    world = World(degradation(30.0), 20.0, 30.0, seed=0)  # model-a 0.90 -> 0.30 on day 10
    default, counted = simulate(BEFORE.config, world), simulate(COUNTED.config, world)
    assert default.alerts == []
    opened = first_alert(counted, "open", 10.0)
    assert opened is not None
    assert 1.0 < opened[0] < 10.0
    assert next(state for _, path, state in counted.alerts if path == WATCH) == "open"
    for trace in (default, counted, simulate(CURRENT.config, world)):
        left = until_share(trace, 10.0, below=0.2)  # traffic leaves within days either way
        assert left is not None
        assert left[0] < 5.0


def test_the_sdks_own_tables_drive_the_same_pipeline() -> None:
    world = World(stationary(5.0), 10.0, 5.0, seed=1)
    trace = simulate(CURRENT.config, world, sdk_tables=True)
    assert trace.final is not None
    assert sum(stats.n for stats in trace.final.paths.values()) == len(world.times)


# -- the script ---------------------------------------------------------------------------------


def test_main_prints_the_tables(capsys: pytest.CaptureFixture[str]) -> None:
    setups = f"{BEFORE.name},{CURRENT.name}"
    assert main(["--quick", "--rates", "10", "--setups", setups]) == 0
    out = capsys.readouterr().out
    assert "stationary, 10 requests/day, 30 days, 2 seeds" in out
    assert "degradation, 10 requests/day, 30 days, 2 seeds" in out
    assert "oracle" in out
    assert CURRENT.name in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--setups", "nope"], "--setups: unknown ['nope']"),
        (["--rates", "ten"], "--rates: not numbers"),
        (["--rates", "0"], "--rates must be > 0"),
    ],
)
def test_bad_arguments_are_named(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
