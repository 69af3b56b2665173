"""bandit.priors: empirical-Bayes priors that weigh ads, not events, and a strength learnt
from how much the ads' rates differ."""
from __future__ import annotations

import numpy as np
import pytest

from bandit import (
    AdPriors,
    Evidence,
    PriorRates,
    PriorSpec,
    ad_posterior,
    fit_priors,
    fit_stage,
)
from bandit.priors import STRENGTH_BOUNDS, fit_regional


def binomial_ads(rng: np.random.Generator, rates: np.ndarray, trials: np.ndarray):
    return trials.astype(float), rng.binomial(trials, rates).astype(float)


def test_a_stage_whose_rate_does_not_differ_across_ads_gets_a_strong_prior(rng):
    """Every ad applies at 12 % of its views: the spread is all binomial noise, so the
    stage's prior grows far stronger than any ad's evidence and the stage stops adding
    noise to the draws."""
    n = np.full(2000, 300)
    trials, successes = binomial_ads(rng, np.full(2000, 0.12), n)
    prior = fit_stage(trials, successes, np.zeros(2000, int), 0.2, 5.0)
    assert prior.overall_strength > 5 * 300
    assert prior.means[0] == pytest.approx(0.12, abs=0.005)


def test_a_stage_whose_rate_differs_widely_gets_a_weak_prior(rng):
    """True rates Beta(2, 8) (strength 10): with plenty of evidence per ad the learnt
    strength comes near 10, far from the configured 50."""
    rates = rng.beta(2.0, 8.0, 3000)
    trials, successes = binomial_ads(rng, rates, np.full(3000, 2000))
    prior = fit_stage(trials, successes, np.zeros(3000, int), 0.02, 50.0)
    assert 8.0 < prior.overall_strength < 16.0


def test_sparse_evidence_keeps_the_configured_strength(rng):
    """A handful of impressions per ad at 2 % cannot tell spread from noise: the strength
    stays near the configured one instead of swinging to either bound."""
    rates = rng.beta(1.0, 49.0, 300)
    trials, successes = binomial_ads(rng, rates, np.full(300, 10))
    prior = fit_stage(trials, successes, rng.integers(6, size=300), 0.02, 50.0)
    assert 25.0 < prior.overall_strength < 100.0
    assert (prior.strengths > 25.0).all() and (prior.strengths < 150.0).all()
    assert STRENGTH_BOUNDS[0] < prior.strengths.min() <= prior.strengths.max() < STRENGTH_BOUNDS[1]


def test_the_ads_a_bandit_shows_most_do_not_lift_their_category():
    """A bandit shows the best ads far more: 10 ads at 8 % with 20,000 impressions each,
    190 at 2 % with 200. Counting events, the category would look like 6.5 %; counting
    ads, it is what a new ad of it can expect: about 2.3 %."""
    rates = np.r_[np.full(10, 0.08), np.full(190, 0.02)]
    trials = np.r_[np.full(10, 20_000.0), np.full(190, 200.0)]
    successes = rates * trials
    pooled = successes.sum() / trials.sum()
    prior = fit_stage(trials, successes, np.zeros(200, int), 0.02, 50.0)
    assert pooled > 0.06
    assert prior.means[0] == pytest.approx(rates.mean(), abs=0.003)


def test_one_ad_cannot_move_its_category_or_the_overall_prior():
    """500 ads of a category never shown and one with 24 applies in 30 impressions: the
    category's prior mean (what its unseen ads start from) moves by well under 20 %."""
    trials = np.r_[30.0, np.zeros(499), np.zeros(500)]
    successes = np.r_[24.0, np.zeros(999)]
    groups = np.r_[np.zeros(500, int), np.ones(500, int)]
    prior = fit_stage(trials, successes, groups, 0.02, 50.0)
    assert prior.means[0] <= 0.02 * 1.2
    assert prior.overall_mean <= 0.02 * 1.2
    assert prior.means[1] == pytest.approx(prior.overall_mean)


def test_categories_that_differ_keep_their_own_means(rng):
    rates = np.r_[np.full(300, 0.05), np.full(300, 0.01)]
    trials, successes = binomial_ads(rng, rates, np.full(600, 2000))
    groups = np.r_[np.zeros(300, int), np.ones(300, int)]
    prior = fit_stage(trials, successes, groups, 0.02, 50.0)
    assert prior.means.tolist() == pytest.approx([0.05, 0.01], abs=0.003)


def test_no_evidence_at_all_gives_the_fallback():
    prior = fit_stage(np.zeros(5), np.zeros(5), np.array([0, 0, 1, 1, 2]), 0.1, 50.0)
    assert prior.overall_mean == pytest.approx(0.1)
    assert prior.means.tolist() == pytest.approx([0.1] * 3)
    assert prior.strengths.tolist() == pytest.approx([50.0] * 3)
    empty = fit_stage(np.zeros(0), np.zeros(0), np.zeros(0, int), 0.1, 50.0)
    assert empty.means.shape == (0,) and empty.overall_mean == pytest.approx(0.1)


def test_stored_rows_round_trip_and_rows_without_strengths_take_the_fallback():
    fallback = PriorRates.fallback("funnel", PriorSpec())
    learnt = PriorRates("funnel", np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([0.2, 0.3]),
                        np.array([[40.0, 900.0], [60.0, 800.0]]), np.array([50.0, 850.0]))
    rows, overall = learnt.rows()
    back = PriorRates.from_rows("funnel", rows, overall, fallback)
    assert back.groups.tolist() == learnt.groups.tolist()
    assert back.strengths.tolist() == learnt.strengths.tolist()
    assert back.overall_strength.tolist() == learnt.overall_strength.tolist()
    # a row written before strengths were learnt: means kept, strengths from the fallback
    old = np.array([[0.1, 0.2, np.nan, np.nan]])
    older = PriorRates.from_rows("funnel", old, np.array([0.2, 0.3, np.nan, np.nan]), fallback)
    assert older.groups.tolist() == [[0.1, 0.2]]
    assert older.strengths.tolist() == [fallback.overall_strength.tolist()]
    ads = older.for_ads(np.array([0, -1, 5]))
    assert ads.means.tolist() == [[0.1, 0.2], [0.2, 0.3], [0.2, 0.3]]


def test_the_fallback_priors_before_any_evidence_are_the_settings():
    prior = PriorSpec(0.02, 0.1, 50.0)
    funnel = PriorRates.fallback("funnel", prior)
    assert funnel.overall.tolist() == pytest.approx([0.1, 0.2])
    assert funnel.overall_strength.tolist() == pytest.approx([50.0, 5.0])
    assert PriorRates.fallback("direct", prior).overall.tolist() == [0.02]
    with pytest.raises(ValueError):
        PriorSpec(0.2, 0.1, 50.0)
    with pytest.raises(ValueError):
        ad_posterior(Evidence.none(1), AdPriors(np.array([[0.1]]), np.array([[50.0]])),
                     "clicks", 0.0)


def test_regions_that_do_not_differ_keep_their_categorys_means():
    """Forty categories with different rates, four regions alike: each region keeps (within
    a small part of the ads' noise) every category's mean, however far the categories' means
    were drawn towards each other. (Seed 3: one where the noise spreads the regions a little
    more than chance would, so the estimate is not exactly zero.)"""
    rng = np.random.default_rng(3)
    true = rng.uniform(0.03, 0.2, 40)
    group = np.repeat(np.arange(40), 200)
    region = np.tile(np.repeat(np.arange(4), 50), 40)
    trials = np.full(len(group), 100.0)
    successes = rng.binomial(100, true[group]).astype(float)
    rates = fit_priors([(trials, successes)], group, "direct", PriorSpec(strength=50.0))
    regional = fit_regional([(trials, successes)], group, region, rates, 4)
    cell = region * 40 + group
    raw = (np.bincount(cell, successes, 160) / np.bincount(cell, trials, 160)).reshape(4, 40)
    noise = np.abs(raw - rates.groups[None, :, 0]).mean()
    assert np.abs(regional[:, :, 0] - rates.groups[None, :, 0]).max() < 0.2 * noise
