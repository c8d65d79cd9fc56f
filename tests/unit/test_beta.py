"""``schemas.beta.beta_ppf``: the quantiles that invert ``beta_cdf``, exact and from the grid."""

from __future__ import annotations

import math

import pytest

from schemas.beta import beta_cdf, beta_ppf

PROBABILITIES = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)
#: Flat, U-shaped, a pole at 0, a pole at 1, skewed, peaked, and a posterior of 5,200 outcomes.
PARAMETERS = [(1.0, 1.0), (0.5, 0.5), (0.3, 2.0), (2.0, 0.7), (2.5, 40.0), (91.0, 11.0)]
PARAMETERS += [(1.0, 30.0), (5000.0, 200.0)]


@pytest.mark.parametrize(("a", "b"), PARAMETERS)
def test_exact_quantiles_invert_the_cdf_to_1e_12(a: float, b: float) -> None:
    quantiles = beta_ppf(a, b, PROBABILITIES, exact=True)
    for q, x in zip(PROBABILITIES, quantiles, strict=True):
        # the quantile lies within 1e-12 of x, however steep the cdf is there
        assert beta_cdf(x - 1e-12, a, b) <= q <= beta_cdf(x + 1e-12, a, b), (q, x)
        if a >= 1.0 and b >= 1.0:
            assert beta_cdf(x, a, b) == pytest.approx(q, abs=1e-9)


@pytest.mark.parametrize(("a", "b"), [(a, b) for a, b in PARAMETERS if a >= 1.0 and b >= 1.0])
def test_grid_quantiles_are_within_1e_4_of_the_exact_ones(a: float, b: float) -> None:
    grid = beta_ppf(a, b, PROBABILITIES)
    exact = beta_ppf(a, b, PROBABILITIES, exact=True)
    assert grid == pytest.approx(exact, abs=1e-4)


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (0.5, 0.5), (2.0, 3.0)])
@pytest.mark.parametrize("exact", [False, True])
def test_probabilities_0_and_1_are_the_ends_of_the_support(a: float, b: float, exact: bool) -> None:
    assert beta_ppf(a, b, (0.0, 1.0), exact=exact) == [0.0, 1.0]


def test_uniform_quantiles_are_the_probabilities() -> None:
    assert beta_ppf(1.0, 1.0, PROBABILITIES, exact=True) == pytest.approx(PROBABILITIES, abs=1e-12)


def test_probabilities_must_be_increasing() -> None:
    with pytest.raises(ValueError, match="probabilities must be increasing"):
        beta_ppf(2.0, 3.0, (0.5, 0.1))


@pytest.mark.parametrize(
    ("a", "b"), [(0.0, 1.0), (1.0, -2.0), (math.inf, 1.0), (1.0, math.nan), (math.nan, 1.0)]
)
def test_parameters_must_be_positive_and_finite(a: float, b: float) -> None:
    with pytest.raises(ValueError, match="Beta parameters must be positive and finite"):
        beta_ppf(a, b, (0.5,))
