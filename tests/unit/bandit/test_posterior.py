"""bandit.posterior: Beta posteriors from an ad's evidence, the funnel's two stages, and
where an ad without evidence starts."""
from __future__ import annotations

import numpy as np
import pytest

from bandit import (
    AdPosterior,
    AdPriors,
    Evidence,
    PriorSpec,
    ad_posterior,
    beta_posterior,
    empirical_rates,
    posterior_mean,
)


def test_an_ad_without_evidence_sits_at_the_prior_mean():
    a, b = beta_posterior(np.zeros(3), np.zeros(3), 0.02, 50.0)
    assert np.allclose(posterior_mean(a, b), 0.02)


def test_evidence_moves_the_posterior_towards_the_observed_rate():
    a, b = beta_posterior(np.array([200.0]), np.array([1000.0]), 0.02, 50.0)
    assert posterior_mean(a, b)[0] == pytest.approx(201 / 1050)


def test_more_applies_than_impressions_still_gives_a_valid_beta():
    a, b = beta_posterior(np.array([5.0]), np.array([2.0]), 0.02, 50.0)
    assert a[0] > 0 and b[0] > 0


def test_bad_priors_are_refused():
    with pytest.raises(ValueError):
        beta_posterior(np.zeros(1), np.zeros(1), 1.0, 50.0)
    with pytest.raises(ValueError):
        beta_posterior(np.zeros(1), np.zeros(1), 0.1, 0.0)
    with pytest.raises(ValueError):
        beta_posterior(np.zeros(2), np.zeros(2), 0.1, np.array([5.0, -1.0]))


def priors(means: list[float], strengths: list[float]) -> AdPriors:
    return AdPriors(np.array([means]), np.array([strengths]))


def test_the_funnel_multiplies_the_view_rate_and_the_apply_rate_given_a_view():
    ev = Evidence(exposure=np.array([10_000.0]), views=np.array([1_000.0]),
                  saves=np.array([100.0]), applies=np.array([200.0]))
    funnel = ad_posterior(ev, priors([0.1, 0.2], [50.0, 5.0]), "funnel", 0.0)
    assert funnel.alpha.shape == (2, 1)
    assert funnel.mean()[0] == pytest.approx((1005 / 10050) * (201 / 1005), rel=1e-9)
    direct = ad_posterior(ev, priors([0.02], [50.0]), "direct", 0.0)
    assert direct.mean()[0] == pytest.approx(201 / 10050)
    with_saves = ad_posterior(ev, priors([0.02], [50.0]), "direct", 0.5)
    assert with_saves.mean()[0] == pytest.approx(251 / 10050)


def test_funnel_draws_are_products_of_the_stages_draws():
    post = AdPosterior(np.array([[20.0, 2.0], [5.0, 5.0]]), np.array([[80.0, 8.0], [5.0, 5.0]]))
    draws = post.sample(20_000, np.random.default_rng(1))
    assert draws.shape == (2, 20_000)
    assert draws.mean(axis=1) == pytest.approx(post.mean(), rel=0.02)
    assert draws[1].std() > draws[0].std()         # less evidence, wider


def thompson_ranks_of_last(evidence: Evidence, priors: AdPriors,
                           rng: np.random.Generator, draws: int = 4000) -> np.ndarray:
    """How many ads outrank the last one, in each of ``draws`` Thompson draws."""
    post = ad_posterior(evidence, priors, "funnel", 0.25)
    scores = post.sample(draws, rng)
    return (scores > scores[-1]).sum(axis=0)


def test_a_fresh_ad_neither_floods_the_top_nor_is_buried(rng):
    """200 established ads (about 2 % applies per impression, the best near 9 %) and one
    with no evidence. From its category's rate it comes first in about 1 % of the feeds
    (Beta(1, 1) would put it first in 9 of 10) and in the top 20 about as often as an
    average ad (about 10 %)."""
    n = 200
    view_rate, apply_rate = rng.beta(4, 36, n), rng.beta(2, 8, n)
    exposure = np.full(n, 3000.0)
    views = np.round(exposure * view_rate)
    evidence = Evidence(np.append(exposure, 0), np.append(views, 0), np.zeros(n + 1),
                        np.append(np.round(views * apply_rate), 0))
    groups = np.zeros(n + 1, dtype=int)
    rates = empirical_rates(evidence, groups, "funnel", 0.25, PriorSpec())
    rank = thompson_ranks_of_last(evidence, rates.for_ads(groups), rng)
    assert (rank == 0).mean() < 0.05                    # does not flood the top
    assert 0.05 < (rank < 20).mean() < 0.3              # is not buried either
    assert 0.3 * n < np.median(rank) < 0.8 * n
    # the same catalogue with Beta(1, 1) on P(apply | impression): the new ad floods the top
    flat = ad_posterior(evidence, AdPriors(np.full((n + 1, 1), 0.5), np.full((n + 1, 1), 2.0)),
                        "direct", 0.25).sample(4000, rng)
    assert ((flat > flat[-1]).sum(axis=0) == 0).mean() > 0.8
