"""Decayed Beta posteriors and the degradation detector: seeded streams, stated tolerances."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from schemas.beta import beta_cdf, prob_below, prob_below_at_most
from stream_workers.local.simulation import bernoulli_stream as stream
from stream_workers.pipeline.posterior import DecayedBeta
from stream_workers.pipeline.posterior.detectors import BetaDropDetector

DAY = 24 * 3600.0


def exact_beta_cdf(x: float, a: int, b: int) -> float:
    n = a + b - 1
    return sum(math.comb(n, j) * x**j * (1 - x) ** (n - j) for j in range(a, n + 1))


@pytest.mark.parametrize(
    ("x", "a", "b"), [(0.3, 2, 3), (0.8, 30, 5), (0.02, 1, 40), (0.61, 120, 80)]
)
def test_incomplete_beta_matches_the_binomial_sum(x: float, a: int, b: int) -> None:
    assert beta_cdf(x, a, b) == pytest.approx(exact_beta_cdf(x, a, b), abs=1e-12)


def test_prob_below_matches_monte_carlo() -> None:
    rng = random.Random(1)
    n = 200_000
    hits = sum(rng.betavariate(36, 16) < rng.betavariate(950, 50) - 0.1 for _ in range(n))
    expected = hits / n
    # Monte Carlo standard error sqrt(p(1-p)/n) <= 0.0002 here; 4.5 sigma plus 1e-3 quadrature.
    assert (
        abs(prob_below(36, 16, 950, 50, 0.1) - expected)
        < 4.5 * math.sqrt(expected * (1 - expected) / n) + 1e-3
    )


def test_the_cheap_bound_is_never_below_the_integral() -> None:
    """The detector skips the integral when the bound is under its confidence, so the bound
    must hold wherever the detector can be: recent windows up to 10,000 outcomes against
    baselines from a few outcomes to millions, any margin it takes."""
    rng = random.Random(3)
    for _ in range(2000):
        n = rng.randint(1, 10_000)
        successes = rng.uniform(0, n)
        history = 10 ** rng.uniform(0, 6.5)
        rate = rng.random()
        a2, b2 = 1 + rate * history, 1 + (1 - rate) * history
        margin = rng.uniform(0.001, 0.9)
        args = (1 + successes, 1 + n - successes, a2, b2, margin)
        assert prob_below(*args) <= prob_below_at_most(*args) + 1e-12, args


def test_decayed_beta_is_order_independent() -> None:
    rng = random.Random(7)
    events = [(rng.choice([0.0, 1.0, 0.4]), rng.uniform(0, 3 * DAY)) for _ in range(500)]
    forward, backward, shuffled = DecayedBeta(DAY), DecayedBeta(DAY), DecayedBeta(DAY)
    for reward, at in events:
        forward.update(reward, at)
    for reward, at in reversed(events):
        backward.update(reward, at)
    mixed = events[:]
    rng.shuffle(mixed)
    for reward, at in mixed:
        shuffled.update(reward, at)
    for other in (backward, shuffled):
        assert other.alpha == pytest.approx(forward.alpha, rel=1e-9)
        assert other.beta == pytest.approx(forward.beta, rel=1e-9)
        assert other.t_ref == forward.t_ref
        assert other.n == forward.n == 500


def test_half_life_and_scores() -> None:
    posterior = DecayedBeta(DAY)
    posterior.update(1.0, 0.0)
    posterior.update(0.25, DAY)  # the first success now weighs one half
    assert posterior.alpha == pytest.approx(1 + 0.5 + 0.25)
    assert posterior.beta == pytest.approx(1 + 0.75)
    assert posterior.at(2 * DAY) == pytest.approx((1 + 0.375, 1 + 0.375))


def test_a_backfilled_old_outcome_barely_moves_a_fresh_posterior() -> None:
    posterior = DecayedBeta(DAY)
    for i in range(100):
        posterior.update(1.0, 30 * DAY + i)
    before = posterior.mean
    for i in range(100):
        posterior.update(0.0, float(i))  # 30 days older: weight 2^-30 each
    assert posterior.mean == pytest.approx(before, abs=1e-6)
    assert posterior.n == 200


def transitions(detector: BetaDropDetector, rewards: list[float]) -> list[tuple[int, str]]:
    found = []
    for i, reward in enumerate(rewards):
        change = detector.update(reward, float(i))
        if change is not None:
            found.append((i, change.state))
    return found


def test_seeded_drop_and_recovery_exact_indices() -> None:
    rewards = stream([0.95, 0.30, 0.95], [400, 100, 200], seed=11)
    detector = BetaDropDetector()
    # The drop starts at 400 and the recovery at 500: resolved on the evidence of the
    # outcomes since the alert (16 after the recovery), not once the window is clean (548).
    assert transitions(detector, rewards) == [(428, "open"), (516, "resolved")]
    window_only = BetaDropDetector(resolve_confidence=None)
    assert transitions(window_only, rewards) == [(428, "open"), (548, "resolved")]


def test_open_freezes_the_baseline_and_reports_evidence() -> None:
    detector = BetaDropDetector()
    rewards = stream([0.95, 0.30], [400, 60], seed=3)
    opened = None
    for i, reward in enumerate(rewards):
        change = detector.update(reward, float(i))
        if change is not None:
            opened = change
            break
    assert opened is not None
    assert opened.state == "open"
    assert opened.evidence >= 0.9999
    assert opened.baseline_rate > 0.9
    assert opened.recent_rate < opened.baseline_rate - 0.1
    assert opened.recent_n == 50
    assert detector.is_open
    frozen = detector.baseline.n
    for i in range(100):
        detector.update(0.0, 500.0 + i)
    assert detector.baseline.n == frozen  # bad outcomes do not become the new normal


def test_never_with_fewer_than_min_recent_outcomes() -> None:
    detector = BetaDropDetector(window=50, min_recent=20)
    for i in range(60):
        assert detector.update(1.0, float(i)) is None
    # A fresh detector: 19 straight failures after enough history are not enough.
    detector = BetaDropDetector(window=50, min_recent=20, min_baseline=0)
    assert all(detector.update(0.0, float(i)) is None for i in range(19))


def test_simulation_detection_delay_false_alarms_and_small_drops() -> None:
    # Detection: 0.95 -> 0.30 after 400 outcomes, 100 seeds; the target is a median <= 30.
    delays = []
    for seed in range(100):
        found = transitions(BetaDropDetector(), stream([0.95, 0.30], [400, 150], seed))
        opens = [i for i, state in found if state == "open"]
        assert opens, f"seed {seed}: not detected"
        assert opens[0] >= 400, f"seed {seed}: alarm before the drop at {opens[0]}"
        delays.append(opens[0] - 400)
    median = statistics.median(delays)
    # False alarms on stationary paths: 3 x 10,000 outcomes per rate; the target is < 1 per
    # 10,000, so more than 1 alarm in 30,000 would make that doubtful.
    false_alarms = {}
    for rate in (0.95, 0.7, 0.5):
        false_alarms[rate] = sum(
            len(transitions(BetaDropDetector(), stream([rate], [10_000], 100 + seed)))
            for seed in range(3)
        )
    # A drop of 0.95 -> 0.85 does not exceed min_drop: no alert in 50 seeded runs.
    small = sum(
        len(transitions(BetaDropDetector(), stream([0.95, 0.85], [400, 600], 500 + seed)))
        for seed in range(50)
    )
    print(f"median delay {median}, false alarms per 30k {false_alarms}, small-drop alerts {small}")
    assert median <= 30
    assert all(count <= 1 for count in false_alarms.values())
    assert small == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_recent": 60}, "min_recent"),
        ({"min_drop": 0}, "min_drop"),
        ({"confidence": 0.4}, "confidence"),
    ],
)
def test_bad_detector_arguments(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BetaDropDetector(**kwargs)  # type: ignore[arg-type]
