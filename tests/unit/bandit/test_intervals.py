"""The Wilson score interval: its edge cases by name, published values, and its coverage."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bandit import wilson_interval, z_score

Z2 = z_score(0.95) ** 2


def test_no_trials_give_no_rate_and_the_whole_unit_interval():
    p = wilson_interval(0, 0)
    assert math.isnan(p.rate) and (p.low, p.high) == (0.0, 1.0)


@pytest.mark.parametrize("n", [1, 10, 263, 1_000_000])
def test_no_successes_start_the_interval_at_zero(n):
    p = wilson_interval(0, n)
    assert p.rate == 0.0 and p.low == 0.0
    assert p.high == pytest.approx(Z2 / (n + Z2), rel=1e-12)


@pytest.mark.parametrize("n", [1, 10, 263, 1_000_000])
def test_all_successes_end_the_interval_at_one(n):
    p = wilson_interval(n, n)
    assert p.rate == 1.0 and p.high == 1.0
    assert p.low == pytest.approx(n / (n + Z2), rel=1e-12)


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
# method 3 (Wilson score, no continuity correction)
NEWCOMBE = [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718), (29, 29, 0.8830, 1.0)]


def test_published_values():
    k, n, low, high = map(np.array, zip(*NEWCOMBE, strict=True))
    p = wilson_interval(k, n)
    assert p.rate == pytest.approx(k / n)
    assert p.low.round(4).tolist() == low.tolist()
    assert p.high.round(4).tolist() == high.tolist()


def test_arrays_of_any_shape_broadcast_and_order_holds(rng):
    n = rng.integers(0, 500, size=(30, 4))
    k = np.floor(n * rng.uniform(size=n.shape))
    p = wilson_interval(k, n)
    assert p.rate.shape == p.low.shape == p.high.shape == (30, 4)
    some = n > 0
    assert (p.low[some] <= p.rate[some]).all() and (p.rate[some] <= p.high[some]).all()
    assert (p.low >= 0).all() and (p.high <= 1).all()
    assert np.isnan(p.rate[~some]).all()
    assert wilson_interval(np.array([1, 2, 3]), 10).high.shape == (3,)


def test_the_interval_mirrors_and_narrows():
    a, b = wilson_interval(3, 40), wilson_interval(37, 40)
    assert (a.low, a.high) == pytest.approx((1 - b.high, 1 - b.low))
    small, large = wilson_interval(3, 40), wilson_interval(300, 4000)
    assert large.high - large.low < small.high - small.low
    wide = wilson_interval(3, 40, level=0.99)
    assert wide.low < small.low and wide.high > small.high


@pytest.mark.parametrize("k, n", [(11, 10), (-1, 10), (1, -1), (math.nan, 10), (1, math.inf)])
def test_impossible_counts_are_refused(k, n):
    with pytest.raises(ValueError):
        wilson_interval(k, n)


@pytest.mark.parametrize("n", [20, 50, 100])
def test_coverage_is_close_to_the_level_for_small_samples(n):
    """Exact coverage (summed over the binomial distribution) for p in [0.01, 0.99]: about
    95 % on average and never below 90 % (the normal approximation falls to 18 % at n = 20
    for p near 0 or 1)."""
    k = np.arange(n + 1)
    p = wilson_interval(k, np.full(n + 1, n))
    coverage = []
    for truth in np.linspace(0.01, 0.99, 99):
        pmf = np.array([math.comb(n, i) * truth ** i * (1 - truth) ** (n - i) for i in k])
        coverage.append(pmf[(p.low <= truth) & (truth <= p.high)].sum())
    assert 0.94 < np.mean(coverage) < 0.96
    assert min(coverage) > 0.90
