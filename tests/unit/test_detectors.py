"""The contract every degradation detector keeps, run over every kind in ``DETECTORS``, then
``BetaDropDetector``'s recovery test.

Seeded streams, exact alarm indices: a drop at outcome 400 and a recovery at 500, a
stationary path, what the posterior restarts from, and a checkpoint taken mid-stream that
continues exactly.
"""

from __future__ import annotations

import json

import pytest

from stream_workers.local.simulation import bernoulli_stream as stream
from stream_workers.pipeline.posterior.detectors import (
    DETECTORS,
    BetaDropDetector,
    Detector,
    DetectorFactory,
)

DAY = 24 * 3600.0
#: 0.95 for 400 outcomes, 0.30 for 100, 0.95 again for 200.
DROP = stream([0.95, 0.30, 0.95], [400, 100, 200], seed=11)
#: 0.90 throughout, 5,000 outcomes.
STATIONARY = stream([0.90], [5000], seed=21)

#: Each kind's exact (index, state) transitions on DROP.
ALARMS: dict[str, list[tuple[int, str]]] = {
    "beta-drop": [(428, "open"), (516, "resolved")],
}


def make(kind: str) -> Detector:
    factory: DetectorFactory = DETECTORS[kind]
    return factory(half_life=DAY)


def transitions(detector: Detector, rewards: list[float], start: int = 0) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for i, reward in enumerate(rewards, start):
        change = detector.update(reward, float(i))
        if change is not None:
            assert change.state == ("open" if detector.is_open else "resolved")
            found.append((i, change.state))
    return found


def observed(detector: Detector) -> tuple[object, ...]:
    """Everything GoalState reads from a detector."""
    recent = detector.recent()
    assert len(recent) == detector.recent_n
    return (
        detector.is_open,
        detector.recent_n,
        detector.baseline_rate,
        recent,
        detector.restart_from(),
    )


def test_every_kind_has_its_expectations() -> None:
    assert sorted(ALARMS) == sorted(DETECTORS)


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_a_fresh_detector_is_named_closed_and_empty(kind: str) -> None:
    detector = make(kind)
    assert detector.name == kind
    assert observed(detector) == (False, 0, None, [], [])


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_seeded_drop_and_recovery_exact_indices(kind: str) -> None:
    assert transitions(make(kind), DROP) == ALARMS[kind]


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_no_alarm_on_a_stationary_path(kind: str) -> None:
    assert transitions(make(kind), STATIONARY) == []


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_the_posterior_restarts_from_the_latest_outcomes(kind: str) -> None:
    detector = make(kind)
    for i, reward in enumerate(DROP):
        if detector.update(reward, float(i)) is not None:
            restart = detector.restart_from()
            assert restart, i
            assert restart == [(DROP[k], float(k)) for k in range(i + 1 - len(restart), i + 1)]


@pytest.mark.parametrize("at", [0, 30, 200, 410, 440, 503, 520, 699])
@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_checkpoint_mid_stream_continues_exactly(kind: str, at: int) -> None:
    straight = make(kind)
    before = transitions(straight, DROP[:at])
    resumed = make(kind)
    resumed.load_json(json.loads(json.dumps(straight.to_json())))
    assert observed(resumed) == observed(straight)
    for i, reward in enumerate(DROP[at:], at):
        assert resumed.update(reward, float(i)) == straight.update(reward, float(i)), i
        assert observed(resumed) == observed(straight), i
    assert before == [(i, s) for i, s in ALARMS[kind] if i < at]


# -- BetaDropDetector: resolving on evidence ---------------------------------------------------

#: 0.98 for 400 outcomes, 0.30 for 100, 0.98 again for 100: the routing benchmark's recovery.
RECOVERY = stream([0.98, 0.30, 0.98], [400, 100, 100], seed=11)


def test_a_recovered_path_resolves_after_a_handful_of_outcomes() -> None:
    detector = BetaDropDetector(half_life=DAY)
    assert transitions(detector, RECOVERY) == [(422, "open"), (517, "resolved")]
    detector = BetaDropDetector(half_life=DAY)
    changes = [detector.update(reward, float(i)) for i, reward in enumerate(RECOVERY[:518])]
    opened, resolved = changes[422], changes[517]
    assert opened is not None
    assert resolved is not None
    # The 18 outcomes since the recovery at 500 (two of them failures) resolved it: the run
    # the alert reports, that the recent window is cut to and the posterior restarts from.
    assert (resolved.recent_n, resolved.recent_rate) == (18, 16 / 18)
    assert resolved.baseline_rate == opened.baseline_rate  # the baseline frozen at open
    assert resolved.evidence >= 0.9999  # P(back) over the run, at least resolve_confidence
    run = [(RECOVERY[i], float(i)) for i in range(500, 518)]
    assert detector.restart_from() == detector.recent() == run
    assert not detector.is_open


def test_the_window_rule_alone_resolves_as_before() -> None:
    # With the test off, the window's rate must come back within min_drop / 2 of the
    # baseline: about a window of good outcomes (49 here, 48 on DROP).
    for rewards, alarms in (
        (RECOVERY, [(422, "open"), (549, "resolved")]),
        (DROP, [(428, "open"), (548, "resolved")]),
    ):
        detector = BetaDropDetector(half_life=DAY, resolve_confidence=None)
        assert transitions(detector, rewards) == alarms
        assert detector.to_json()["recovery"] is None


def test_a_path_still_degraded_does_not_resolve() -> None:
    # 40 seeds x 2,500 outcomes at 0.30 after 400 at 0.98: each opens once and stays open,
    # no false resolve in 100,000 outcomes. Ville's inequality bounds a test whose H0 is at
    # or above the true rate: each outcome starts at most one run, which reaches the
    # threshold with probability at most (1 - c) / c = 1e-4 at the default c = 0.9999, so
    # at most 10 are expected here; bench/detector.py measures 0.30 per 10,000.
    for seed in range(300, 340):
        found = transitions(
            BetaDropDetector(half_life=DAY), stream([0.98, 0.30], [400, 2500], seed)
        )
        assert [state for _, state in found] == ["open"], seed
        assert found[0][0] >= 400, seed


def test_a_state_saved_before_the_recovery_test_opens_one_now() -> None:
    straight = BetaDropDetector(half_life=DAY)
    assert transitions(straight, DROP[:450]) == [(428, "open")]
    saved = json.loads(json.dumps(straight.to_json()))
    del saved["recovery"]  # the previous version's checkpoint
    resumed = BetaDropDetector(half_life=DAY)
    resumed.load_json(saved)
    rate = resumed.recent_rate
    assert (resumed.is_open, rate) == (True, 0.36)
    # A test opened now: at zero, H0 the recent window's rate, nothing seen since.
    assert resumed.to_json()["recovery"] == [0.0, 0, rate, rate, 0.0, 0]
    assert transitions(resumed, DROP[450:], start=450) == [(511, "resolved")]
    # A closed detector's old state continues exactly.
    closed = BetaDropDetector(half_life=DAY)
    transitions(closed, DROP[:200])
    saved = closed.to_json()
    del saved["recovery"]
    resumed = BetaDropDetector(half_life=DAY)
    resumed.load_json(saved)
    assert transitions(resumed, DROP[200:], start=200) == ALARMS["beta-drop"]


@pytest.mark.parametrize("value", [0.5, 1.0])
def test_bad_resolve_confidence(value: float) -> None:
    with pytest.raises(ValueError, match="resolve_confidence must be None or in"):
        BetaDropDetector(resolve_confidence=value)
