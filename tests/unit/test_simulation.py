"""The demo's world: phases, shared draws, the fallback chain, tallies."""

from __future__ import annotations

import pytest

from stream_workers.local.simulation import DEMO, Scenario, ScenarioPath, StaticChain, Tally, World

BEST, MEDIUM, WORST = (p.name for p in DEMO.paths)


def test_phases_split_the_run_and_only_the_first_path_degrades() -> None:
    world = World(DEMO, 100, seed=3)
    assert [world.phase(i) for i in (0, 34, 35, 69, 70, 99)] == [
        "normal",
        "normal",
        "degraded",
        "degraded",
        "recovered",
        "recovered",
    ]
    assert world.rate(BEST, 50) == 0.30
    assert world.rate(BEST, 80) == world.rate(BEST, 10) == 0.95
    assert world.rate(MEDIUM, 50) == world.rate(MEDIUM, 10) == 0.88


def test_every_path_of_the_demo_is_scored_on_the_same_draw() -> None:
    world = World(DEMO, 2000, seed=7)
    # Common random numbers: a request the worse path gets right, the better one does too.
    for i in range(700):  # the normal phase
        if world.attempt(WORST, i).ok:
            assert world.attempt(BEST, i).ok
    rate = sum(world.attempt(BEST, i).ok for i in range(700)) / 700
    assert rate == pytest.approx(0.95, abs=3 * (0.95 * 0.05 / 700) ** 0.5)
    assert World(DEMO, 2000, seed=7).attempt(BEST, 123) == world.attempt(BEST, 123)


def test_without_shared_draws_each_path_has_its_own() -> None:
    paths = (ScenarioPath("a", ((0.0, 0.5),), 0.0, 0.0), ScenarioPath("b", ((0.0, 0.5),), 0.0, 0.0))
    world = World(Scenario("s", "", paths, (("all", 0.0),), watch="a"), 4000, seed=1)
    both = sum(world.attempt("a", i).ok and world.attempt("b", i).ok for i in range(4000))
    # Independent draws: P(both) = 0.25, sd sqrt(0.25 * 0.75 / 4000) = 0.0068; shared: 0.5.
    assert both / 4000 == pytest.approx(0.25, abs=4 * 0.0069)


def test_the_fallback_chain_only_moves_on_exceptions_so_it_never_moves() -> None:
    world = World(DEMO, 100)
    chain = StaticChain(check=False)
    assert {a.path for i in range(100) for a in chain.answer(world, i)} == {BEST}


def test_tally() -> None:
    tally = Tally()
    assert tally.rate() is None
    tally.add("normal", "a", True, 0.5)
    tally.add("normal", "b", False, 0.25)
    tally.add("degraded", "a", True, 0.0)
    assert tally.rate("normal") == 0.5
    assert tally.rate("degraded") == 1.0
    assert tally.rate("recovered") is None
    assert tally.rate() == pytest.approx(2 / 3)
    assert tally.cost_usd == 0.75
    assert tally.traffic["normal", "a"] == 1


@pytest.mark.parametrize("requests", [0, -1, 2.5, True])
def test_bad_worlds(requests: object) -> None:
    with pytest.raises(ValueError, match="requests must be an int >= 1"):
        World(DEMO, requests)  # type: ignore[arg-type]
