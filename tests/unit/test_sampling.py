"""Sampling against the math: quantile tables, Thompson win rates, cold start, exploration,
and the trust invariant. Random streams are seeded; every tolerance is stated with its source.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from producer_sdk.sampling import (
    QUANTILE_KNOTS,
    Arm,
    ArmSet,
    SamplingParams,
    beta_quantiles,
    choose,
    shift,
)
from schemas.policy import MIN_SAMPLES, STALENESS


def beta_cdf(x: float, a: int, b: int) -> float:
    """Regularised incomplete beta for integer a, b: P(Binomial(a+b-1, x) >= a)."""
    n = a + b - 1
    return sum(math.comb(n, j) * x**j * (1 - x) ** (n - j) for j in range(a, n + 1))


def p_b_beats_a(a_a: int, b_a: int, a_b: int, b_b: int) -> float:
    """P(X_B > X_A) for X ~ Beta with integer parameters (closed form, E. Miller 2015)."""

    def log_beta(x: float, y: float) -> float:
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    total = 0.0
    for i in range(a_b):
        total += math.exp(
            log_beta(a_a + i, b_a + b_b)
            - math.log(b_b + i)
            - log_beta(1 + i, b_b)
            - log_beta(a_a, b_a)
        )
    return total


def arm(name: str, a: float, b: float, *, n: int = 1000, **kw: object) -> Arm:
    return Arm(name, a, b, n=n, cold=n < 20, tables=beta_quantiles(a, b), **kw)  # type: ignore[arg-type]


def binomial_tolerance(p: float, n: int, sigmas: float = 4.5) -> float:
    """4.5 standard deviations of a frequency estimated from n draws (two-sided ~7e-6)."""
    return sigmas * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize(("a", "b"), [(2, 3), (30, 5), (1, 40), (120, 80)])
def test_quantile_tables_invert_the_exact_cdf(a: int, b: int) -> None:
    main, lower, upper = beta_quantiles(a, b)
    k = QUANTILE_KNOTS
    # Every interior knot sits at its probability to within 1e-4 (numerical integration on a
    # 4096-cell grid; the quantity checked is the exact CDF, not our own integral).
    for i in range(1, k):
        assert abs(beta_cdf(main[i], a, b) - i / k) < 1e-4
    for j in range(1, k):
        assert abs(beta_cdf(lower[j], a, b) - j / k**2) < 1e-5
        assert abs(beta_cdf(upper[j], a, b) - (1 - 1 / k + j / k**2)) < 1e-5


@pytest.mark.parametrize(("a", "b"), [(30, 5), (1000, 50), (2, 300), (1.5, 1.0), (0.5, 0.5)])
def test_draws_have_the_beta_mean_and_variance(a: float, b: float) -> None:
    # A deterministic grid of 200,000 probabilities integrates the quantile function: the
    # mean and variance of the draws are then those of the table's distribution, which must
    # match Beta(a, b) to 1 % of a standard deviation (0.5 % for the spread).
    target = Arm("x", a, b, tables=beta_quantiles(a, b))
    m = 200_000
    draws = [target.draw((i + 0.5) / m) for i in range(m)]
    mean = sum(draws) / m
    sd = math.sqrt(sum((d - mean) ** 2 for d in draws) / m)
    true_mean = a / (a + b)
    true_sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    tolerance = 0.01 if min(a, b) >= 1 else 0.03  # sampled tables below 1 (poles)
    assert abs(mean - true_mean) < tolerance * true_sd
    assert abs(sd / true_sd - 1) < tolerance / 2 if min(a, b) >= 1 else tolerance


def test_bad_beta_parameters() -> None:
    with pytest.raises(ValueError, match="positive and finite"):
        beta_quantiles(0, 1)
    with pytest.raises(ValueError, match="positive and finite"):
        beta_quantiles(1, float("inf"))


@pytest.mark.parametrize(
    ("a", "b"),
    [((12, 8), (14, 8)), ((40, 10), (38, 12)), ((3, 2), (30, 20)), ((90, 10), (85, 15))],
)
def test_thompson_win_rate_matches_closed_form(a: tuple[int, int], b: tuple[int, int]) -> None:
    arms = ArmSet([arm("a", *a), arm("b", *b)], tie_margin=0.0)
    params = SamplingParams(exploration_rate=0.0, min_samples=20, tie_margin=0.0)
    rng = random.Random(20261122)
    n = 40_000
    wins = sum(choose(arms, rng, params)[0] == 1 for _ in range(n))
    expected = p_b_beats_a(a[0], a[1], b[0], b[1])
    # Binomial noise (4.5 sigma) plus the table's CDF error (<= 1e-4 per arm, see above).
    assert abs(wins / n - expected) < binomial_tolerance(expected, n) + 2e-4


def test_cold_start_is_uniform_and_says_so() -> None:
    arms = ArmSet([arm(p, 3, 1, n=3) for p in "abc"], tie_margin=0.05)
    rng = random.Random(7)
    n = 30_000
    picks = Counter()
    for _ in range(n):
        index, reason = choose(arms, rng, SamplingParams())
        assert reason == "cold_start"
        picks[index] += 1
    for index in range(3):
        assert abs(picks[index] / n - 1 / 3) < binomial_tolerance(1 / 3, n)


def test_exploration_rate_and_a_path_other_than_the_winner() -> None:
    # A dominates so completely (P(B or C beats A) < 1e-100) that the Thompson winner is A
    # every time. With a tie margin of 1 every path could be chosen (all are worth learning):
    # exactly the exploration draws leave A, split evenly over B and C.
    arms = ArmSet([arm("a", 950, 50), arm("b", 50, 950), arm("c", 50, 950)], tie_margin=1.0)
    rng = random.Random(11)
    n = 40_000
    reasons = Counter()
    picks = Counter()
    params = SamplingParams(exploration_rate=0.1, tie_margin=1.0)
    for _ in range(n):
        index, reason = choose(arms, rng, params)
        reasons[reason] += 1
        picks[index] += 1
        assert (reason == "explore") == (index != 0)
    assert abs(reasons["explore"] / n - 0.1) < binomial_tolerance(0.1, n)
    explored = picks[1] + picks[2]
    assert abs(picks[1] / explored - 0.5) < binomial_tolerance(0.5, explored)


def test_a_path_known_to_be_worse_is_not_explored() -> None:
    """B and C (0.05) never draw near the tie set of A (0.95 less 0.05): an exploration
    would be a failure bought for nothing, so every decision takes A, as "exploit"."""
    arms = ArmSet([arm("a", 950, 50), arm("b", 50, 950), arm("c", 50, 950)], tie_margin=0.05)
    rng = random.Random(11)
    assert {choose(arms, rng, SamplingParams()) for _ in range(20_000)} == {(0, "exploit")}
    # A cold path is always worth learning about, whatever its draw.
    cold = ArmSet([arm("a", 950, 50), arm("new", 1, 1, n=0)], tie_margin=0.05)
    picks = Counter(choose(cold, rng, SamplingParams()) for _ in range(20_000))
    assert abs(picks[1, "explore"] / 20_000 - 0.1) < binomial_tolerance(0.1, 20_000)


def test_exploration_prefers_cold_and_stale_paths() -> None:
    arms = ArmSet(
        [
            arm("a", 950, 50),
            arm("warm", 50, 950),
            arm("cold", 4, 2, n=5),
            arm("stale", 50, 950, stale=True),
        ],
        tie_margin=0.05,
    )
    rng = random.Random(3)
    picks = Counter(choose(arms, rng, SamplingParams(exploration_rate=0.5))[0] for _ in range(4000))
    assert picks[1] == 0  # the warm, fresh, bad path is never explored while others are cold/stale
    assert picks[2] > 0
    assert picks[3] > 0


def test_degrading_paths_get_only_the_recovery_probes() -> None:
    # "a" wins every Thompson draw but for the tables' outermost 1/K^2 of probability (the
    # alerted path's top one reaches 1.0: once per 262,144 draws), so exactly the exploration
    # draws leave it: explore goes to "fine" alone, and "alerted" gets the recovery probes.
    # A tie margin of 0.2 makes "fine" (0.80) worth exploring (its draws reach 0.75).
    arms = ArmSet(
        [arm("a", 950, 50), arm("fine", 800, 200), arm("alerted", 20, 40, degrading=True)],
        tie_margin=0.2,
    )
    rng = random.Random(4)
    n = 40_000
    # probe_start at the floor: a flat 2 % (the schedule has its own test below).
    params = SamplingParams(
        exploration_rate=0.1, recovery_probe_rate=0.02, probe_start=0.02, tie_margin=0.2
    )
    picks: Counter[tuple[int, str]] = Counter(choose(arms, rng, params) for _ in range(n))
    assert set(picks) <= {(0, "exploit"), (1, "explore"), (2, "explore"), (2, "exploit")}
    assert picks[2, "exploit"] <= 3  # tail draws: 0.15 expected in 40,000
    assert abs(picks[1, "explore"] / n - 0.1) < binomial_tolerance(0.1, n)
    assert abs(picks[2, "explore"] / n - 0.02) < binomial_tolerance(0.02, n)


def test_exploration_never_picks_an_alerted_path_even_when_it_is_the_only_other() -> None:
    arms = ArmSet([arm("a", 950, 50), arm("alerted", 20, 40, degrading=True)], tie_margin=0.05)
    rng = random.Random(9)
    n = 20_000
    params = SamplingParams(exploration_rate=0.5, recovery_probe_rate=0.0, probe_start=0.0)
    assert {choose(arms, rng, params) for _ in range(n)} == {(0, "exploit")}


@pytest.mark.parametrize(("age", "rate"), [(0, 0.04), (300, 0.01 + 0.03 / 4), (3000, 0.01)])
def test_recovery_probes_start_high_and_halve_with_the_alerts_age(age: int, rate: float) -> None:
    """The chance of a probe is probe_start when the router first saw the alert (at its
    decision 1,000 here), halving every probe_half_life decisions down to the floor."""
    arms = ArmSet(
        [arm("a", 950, 50), arm("alerted", 20, 40, degrading=True, alerted_at=1000)],
        tie_margin=0.05,
    )
    params = SamplingParams(
        exploration_rate=0.1, recovery_probe_rate=0.01, probe_start=0.04, probe_half_life=150
    )
    rng = random.Random(age)
    n = 40_000
    probes = sum(choose(arms, rng, params, decisions=1000 + age)[0] == 1 for _ in range(n))
    expected = rate if age < 3000 else 0.01 + 0.03 * 0.5**20
    assert abs(probes / n - expected) < binomial_tolerance(expected, n)


def test_exploration_goes_to_the_path_most_likely_to_be_best_after_the_winner() -> None:
    """ "b" is as good as the winner within noise, "c" is far behind: exploration takes the
    largest draw after the winner's, so "c" gets it only when its draw beats b's, about
    P(Beta(800, 200) > Beta(940, 60)) of the time: never at 40,000 decisions. b's draws
    (0.94 +- 0.008) always reach the tie set (0.95 less 0.05)."""
    arms = ArmSet([arm("a", 950, 50), arm("b", 940, 60), arm("c", 800, 200)], tie_margin=0.05)
    rng = random.Random(21)
    n = 40_000
    picks: Counter[tuple[int, str]] = Counter(choose(arms, rng, SamplingParams()) for _ in range(n))
    explored = {index for (index, reason) in picks if reason == "explore"}
    assert explored == {0, 1}  # "a" when "b" won the draw, "b" when "a" did
    assert abs(sum(c for (_, r), c in picks.items() if r == "explore") / n - 0.1) < (
        binomial_tolerance(0.1, n)
    )


def test_no_exploration_when_rate_is_zero_or_one_path() -> None:
    rng = random.Random(5)
    arms = ArmSet([arm("a", 950, 50), arm("b", 50, 950)], tie_margin=0.0)
    params = SamplingParams(exploration_rate=0.0)
    assert {choose(arms, rng, params) for _ in range(2000)} == {(0, "exploit")}
    single = ArmSet([arm("only", 5, 5)], tie_margin=0.0)
    assert {choose(single, rng, SamplingParams(exploration_rate=1.0)) for _ in range(100)} == {
        (0, "exploit")
    }


def test_trust_invariant_cost_breaks_ties_within_the_margin_only() -> None:
    params = SamplingParams(exploration_rate=0.0, tie_margin=0.05)
    rng = random.Random(13)
    # 0.95 vs 0.93 posterior means: within 5 points, so the cheaper path always wins.
    close = ArmSet(
        [arm("pricey", 950, 50, mean_cost=0.01), arm("cheap", 930, 70, mean_cost=0.001)], 0.05
    )
    assert {choose(close, rng, params)[0] for _ in range(5000)} == {1}
    # 0.95 vs 0.89: outside the margin, so cost is ignored and Thompson decides (the cheaper
    # path wins only when its draw is higher, which at these counts essentially never happens).
    far = ArmSet(
        [arm("pricey", 950, 50, mean_cost=0.01), arm("cheap", 890, 110, mean_cost=0.0)], 0.05
    )
    n = 5000
    cheap_wins = sum(choose(far, rng, params)[0] == 1 for _ in range(n))
    expected = p_b_beats_a(950, 50, 890, 110)
    assert expected < 1e-6
    assert cheap_wins == 0


def test_latency_breaks_ties_when_cost_is_equal() -> None:
    arms = ArmSet(
        [
            arm("slow", 950, 50, mean_cost=0.01, mean_latency=900.0),
            arm("fast", 940, 60, mean_cost=0.01, mean_latency=300.0),
        ],
        tie_margin=0.05,
    )
    rng = random.Random(17)
    params = SamplingParams(exploration_rate=0.0)
    assert {choose(arms, rng, params)[0] for _ in range(2000)} == {1}


def test_a_worse_paths_lucky_draw_is_not_overruled_by_cost() -> None:
    # C (mean 0.5) is far outside the margin; when its draw wins it is chosen as Thompson
    # sampling says, even though A and B are tied and cheaper ranks exist.
    arms = ArmSet(
        [
            arm("a", 19, 1, n=20, mean_cost=1.0),
            arm("b", 19, 1, n=20, mean_cost=2.0),
            arm("c", 1, 1, n=20, mean_cost=0.0),
        ],
        tie_margin=0.05,
    )
    params = SamplingParams(exploration_rate=0.0)
    rng = random.Random(19)
    n = 40_000
    c_wins = sum(choose(arms, rng, params)[0] == 2 for _ in range(n))
    # P(U > max(X_a, X_b)) with X ~ Beta(19, 1) i.i.d.: E[1 - max] where max ~ Beta(38, 1)
    expected = 1 - 38 / 39
    assert abs(c_wins / n - expected) < binomial_tolerance(expected, n) + 2e-4
    # And B (tied with A, but dearer) is never chosen.
    assert all(choose(arms, rng, params)[0] != 1 for _ in range(5000))


def test_without_cost_or_latency_ties_are_plain_thompson() -> None:
    arms = ArmSet([arm("a", 40, 10), arm("b", 38, 12)], tie_margin=0.05)
    params = SamplingParams(exploration_rate=0.0)
    rng = random.Random(23)
    n = 40_000
    wins = sum(choose(arms, rng, params)[0] == 1 for _ in range(n))
    expected = p_b_beats_a(40, 10, 38, 12)
    assert abs(wins / n - expected) < binomial_tolerance(expected, n) + 2e-4


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("exploration_rate", 1.5, "exploration_rate must be in [0, 1]"),
        ("min_samples", -1, "min_samples must be a non-negative int"),
        ("tie_margin", -0.1, "tie_margin must be in [0, 1]"),
        ("recovery_probe_rate", 1.5, "recovery_probe_rate must be in [0, 1]"),
        ("staleness", 0, "staleness must be a positive duration in seconds"),
        ("staleness", True, "staleness must be a positive duration in seconds"),
    ],
)
def test_bad_params(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SamplingParams(**{field: value})  # type: ignore[arg-type]


def test_defaults_are_the_shared_thresholds() -> None:
    params = SamplingParams()
    assert (params.min_samples, params.staleness) == (MIN_SAMPLES, STALENESS)
    assert (params.exploration_rate, params.tie_margin, params.recovery_probe_rate) == (
        0.1,
        0.05,
        0.015,
    )


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ((950, 50), (975, 52)),
        ((40, 12), (41.5, 12.5)),
        ((2700, 55), (2800, 57)),
        ((40, 12), (40, 13.2)),
        ((25, 25), (27.5, 25)),
        ((950, 50), (950, 55)),
    ],
)
def test_moved_tables_are_within_a_tenth_of_a_standard_deviation(
    source: tuple[float, float], target: tuple[float, float]
) -> None:
    """A posterior that moved by up to 10 % of its parameters keeps its old tables with an
    affine map to its new mean and standard deviation instead of new tables (3 ms each)."""
    a, b = target
    affine = shift(source, a, b)
    assert affine is not None
    offset, scale = affine
    old, exact = beta_quantiles(*source), beta_quantiles(a, b)
    moved = [[offset + scale * q for q in table] for table in old]
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    # Inside the integration window's ends (the tables' p = 0 and p = 1: +- 12 sd).
    central = max(abs(x - y) for x, y in zip(exact[0][1:-1], moved[0][1:-1], strict=True))
    tails = max(
        abs(x - y)
        for table in (1, 2)
        for x, y in zip(exact[table][1:-1], moved[table][1:-1], strict=True)
    )
    assert central < 0.045 * sd
    assert tails < 0.1 * sd
    moved_arm = Arm("m", a, b, n=1000, cold=False, tables=old, tables_of=source, affine=affine)
    assert moved_arm.draw(0.5) == pytest.approx(offset + scale * old[0][256])


def test_tables_are_computed_again_for_large_moves_and_small_posteriors() -> None:
    assert shift((950, 50), 1050, 50) is None  # alpha moved 10.5 %
    assert shift((30, 10), 30.5, 10) is None  # a + b < 50
