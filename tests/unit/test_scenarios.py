"""The routing benchmark's scenarios, reference policies and measures (pure, seeded)."""

from __future__ import annotations

import math

import pytest

from bench.scenarios import (
    SCENARIOS,
    Oracle,
    PlainThompson,
    Scenario,
    ScenarioPath,
    StaticChain,
    World,
    mean_interval,
    outcomes_until_share_below,
    requests_until_share,
    run_reference,
)

BY_NAME = {s.name: s for s in SCENARIOS}


def sigma(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def test_rates_are_piecewise_linear_between_knots_and_flat_outside() -> None:
    step = ScenarioPath("p", ((0.2, 0.9), (0.2, 0.3), (0.5, 0.3), (0.5, 0.9)), 0.0, 0.0)
    assert [step.rate(f) for f in (0.0, 0.19, 0.2, 0.4, 0.5, 1.0)] == [0.9, 0.9, 0.3, 0.3, 0.9, 0.9]
    ramp = ScenarioPath("p", ((0.2, 0.9), (0.6, 0.5)), 0.0, 0.0)
    assert ramp.rate(0.4) == pytest.approx(0.7)
    assert ramp.rate(0.1) == 0.9
    assert ramp.rate(0.9) == 0.5


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ((), "at least one knot"),
        (((0.5, 0.9), (0.2, 0.3)), "must rise"),
        (((0.0, 1.2),), "must be in"),
    ],
)
def test_bad_paths_are_refused(rates: tuple[tuple[float, float], ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScenarioPath("p", rates, 0.0, 0.0)


def test_a_scenario_must_watch_one_of_its_paths() -> None:
    path = ScenarioPath("p", ((0.0, 0.5),), 0.0, 0.0)
    with pytest.raises(ValueError, match="watch 'q' is not a path"):
        Scenario("s", "", (path,), (("all", 0.0),), watch="q")


def test_every_policy_sees_the_same_draws_and_rates_hold() -> None:
    world = World(BY_NAME["sudden"], 10_000, seed=3)
    again = World(BY_NAME["sudden"], 10_000, seed=3)
    assert all(world.attempt("model-b", i) == again.attempt("model-b", i) for i in range(500))
    start = world.at(0.2)
    assert start == 2000
    before = sum(world.attempt("model-a", i).ok for i in range(start)) / start
    after = sum(world.attempt("model-a", i).ok for i in range(start, 10_000)) / 8000
    assert abs(before - 0.98) < 4.5 * sigma(0.98, start)
    assert abs(after - 0.30) < 4.5 * sigma(0.30, 8000)
    assert world.phase(start - 1) == "before"
    assert world.phase(start) == "degraded"


def test_chains_move_on_only_as_configured() -> None:
    silent = World(BY_NAME["sudden"], 2000, seed=1)
    loud = World(BY_NAME["exceptions"], 2000, seed=1)
    for i in range(400, 2000):
        first = silent.attempt("model-a", i)
        # A bad output is not an exception: the plain chain answers with model-a regardless.
        assert StaticChain(check=False).answer(silent, i) == [first]
        checked = StaticChain(check=True).answer(silent, i)
        assert checked[0] == first
        assert all(not a.ok for a in checked[:-1])
        assert len(checked) == 1 or not first.ok
        # When model-a raises, the plain chain moves on to model-b, paying for both calls.
        raised = StaticChain(check=False).answer(loud, i)
        assert [a.path for a in raised][: 2 if raised[0].raised else 1] == (
            ["model-a", "model-b"] if raised[0].raised else ["model-a"]
        )


def test_a_chain_never_learns_of_a_path_added_later() -> None:
    world = World(BY_NAME["new-path"], 1000, seed=2)
    assert world.available(299) == ("model-a", "model-b", "model-c")
    assert world.available(300)[-1] == "model-d"
    record = run_reference(world, StaticChain(check=True))
    assert "model-d" not in set(record.paths)


def test_the_oracle_follows_the_true_best_path() -> None:
    world = World(BY_NAME["recovery"], 2000, seed=4)
    record = run_reference(world, Oracle())
    expected = ["model-b" if 400 <= i < 900 else "model-a" for i in range(2000)]
    assert record.paths == expected
    new = run_reference(World(BY_NAME["new-path"], 1000, seed=4), Oracle())
    assert set(new.paths[:300]) == {"model-a"}
    assert set(new.paths[300:]) == {"model-d"}


def test_plain_thompson_learns_the_best_path_and_leaves_it_when_it_breaks() -> None:
    world = World(BY_NAME["sudden"], 8000, seed=5)
    assert world.at(0.2) == 1600
    record = run_reference(world, PlainThompson(seed=5))
    # Before the drop model-a (0.98) carries most of the traffic; thousands of requests after
    # it, at 0.30 against model-b's 0.97, its posterior is dozens of standard deviations
    # below model-b's, so it is (almost) never drawn.
    assert record.paths[1000:1600].count("model-a") > 0.8 * 600
    assert record.paths[6000:].count("model-a") < 0.01 * 2000


def test_requests_until_share() -> None:
    paths = ["a"] * 100 + ["b"] * 100
    # The window starting at 99 is the first with one "a" in 10 (at 98: two, not below 20%).
    assert requests_until_share(paths, "a", 0, below=0.2, window=10) == 99
    assert requests_until_share(paths, "b", 0, at_least=0.5, window=10) == 95
    assert requests_until_share(paths, "a", 150, at_least=0.1, window=10) is None
    assert requests_until_share(paths, "a", 195, below=0.2, window=10) is None  # no full window
    with pytest.raises(ValueError, match="exactly one"):
        requests_until_share(paths, "a", 0, window=10)


def test_outcomes_until_share_below_counts_through_the_first_low_window() -> None:
    # From 10: seven more "a", then "b" with one "a" probe at 30. The first 20 requests with
    # under 20 % "a" (at most 3) start at 15 (15, 16 and 30), so the count runs to 34: the
    # seven from 10 to 16 and the probe.
    paths = ["a"] * 17 + ["b"] * 13 + ["a"] + ["b"] * 40
    assert requests_until_share(paths, "a", 10, below=0.2, window=20) == 5
    assert outcomes_until_share_below(paths, "a", 10, 0.2) == 8
    assert outcomes_until_share_below(["a"] * 50, "a", 0, 0.2) is None


def test_mean_interval_uses_students_t() -> None:
    mean, half = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    # t(0.975, 4) = 2.7764451...; sd = sqrt(2.5)
    assert mean == 3.0
    assert half == pytest.approx(2.7764451 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    assert mean_interval([0.7]) == (0.7, 0.0)
    with pytest.raises(ValueError, match="no values"):
        mean_interval([])
