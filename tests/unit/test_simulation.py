"""The demo's simulated world: phases, shared draws, the fallback chain, tallies."""

from __future__ import annotations

import pytest

from stream_workers.local.simulation import PATHS, Tally, World, fallback_chain


def test_phases_split_the_run_and_only_the_first_path_degrades() -> None:
    world = World(100, seed=3)
    assert [world.phase(i) for i in (0, 34, 35, 69, 70, 99)] == [
        "normal",
        "normal",
        "degraded",
        "degraded",
        "recovered",
        "recovered",
    ]
    best, other = PATHS[0].name, PATHS[1].name
    assert world.success_rate(best, 50) == 0.30
    assert world.success_rate(best, 80) == PATHS[0].success
    assert world.success_rate(other, 50) == PATHS[1].success


def test_every_path_is_scored_on_the_same_draw() -> None:
    world = World(2000, seed=7)
    best, worst = PATHS[0].name, PATHS[2].name
    # Common random numbers: a request the worse path gets right, the better one does too.
    for i in range(700):  # the normal phase
        if world.outcome(worst, i):
            assert world.outcome(best, i)
    rate = sum(world.outcome(best, i) for i in range(700)) / 700
    assert rate == pytest.approx(0.95, abs=3 * (0.95 * 0.05 / 700) ** 0.5)
    assert World(2000, seed=7).outcome(best, 123) == world.outcome(best, 123)


def test_the_fallback_chain_only_moves_on_exceptions_so_it_never_moves() -> None:
    world = World(10)
    assert {fallback_chain(world, i) for i in range(10)} == {PATHS[0].name}


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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"requests": 0}, "requests"), ({"requests": 5, "degraded_success": 2.0}, "degraded_success")],
)
def test_bad_worlds(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        World(**kwargs)
