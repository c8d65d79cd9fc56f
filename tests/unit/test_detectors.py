"""The contract every degradation detector keeps, run over every kind in ``DETECTORS``.

Seeded streams, exact alarm indices: a drop at outcome 400 and a recovery at 500, a
stationary path, and a checkpoint taken mid-stream that continues exactly.
"""

from __future__ import annotations

import json

import pytest

from stream_workers.local.simulation import bernoulli_stream as stream
from stream_workers.pipeline.posterior.detectors import DETECTORS, Detector, DetectorFactory

DAY = 24 * 3600.0
#: 0.95 for 400 outcomes, 0.30 for 100, 0.95 again for 200.
DROP = stream([0.95, 0.30, 0.95], [400, 100, 200], seed=11)
#: 0.90 throughout, 5,000 outcomes.
STATIONARY = stream([0.90], [5000], seed=21)

#: Each kind's exact (index, state) transitions on DROP.
ALARMS: dict[str, list[tuple[int, str]]] = {
    "beta-drop": [(428, "open"), (548, "resolved")],
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
    return detector.is_open, detector.recent_n, detector.baseline_rate, recent


def test_every_kind_has_its_expectations() -> None:
    assert sorted(ALARMS) == sorted(DETECTORS)


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_a_fresh_detector_is_named_closed_and_empty(kind: str) -> None:
    detector = make(kind)
    assert detector.name == kind
    assert observed(detector) == (False, 0, None, [])


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_seeded_drop_and_recovery_exact_indices(kind: str) -> None:
    assert transitions(make(kind), DROP) == ALARMS[kind]


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_no_alarm_on_a_stationary_path(kind: str) -> None:
    assert transitions(make(kind), STATIONARY) == []


@pytest.mark.parametrize("at", [0, 30, 200, 410, 440, 520, 699])
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
