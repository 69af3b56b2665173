import numpy as np
import pytest

from bandit import (
    AdPosterior,
    AdPriors,
    Evidence,
    PriorRates,
    PriorSpec,
    ad_posterior,
    beta_posterior,
    posterior_mean,
    rank_variants,
    sample_scores,
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


def test_draws_are_reproducible_for_a_seed_and_independent_across_variants():
    a, b = np.full(50, 2.0), np.full(50, 2.0)
    s1 = sample_scores(a, b, 4, np.random.default_rng(9))
    s2 = sample_scores(a, b, 4, np.random.default_rng(9))
    assert np.array_equal(s1, s2)
    assert not np.array_equal(s1[0], s1[1])


def test_rank_variants_orders_each_row_best_first_and_truncates():
    scores = np.random.default_rng(3).random((5, 300))
    ranked = rank_variants(scores, 20)
    assert ranked.shape == (5, 20)
    for row, order in zip(scores, ranked, strict=True):
        assert np.array_equal(order, np.argsort(-row)[:20])


def test_rank_variants_with_fewer_ads_than_the_length_keeps_them_all():
    ranked = rank_variants(np.array([[0.2, 0.1], [0.1, 0.3]]), 10)
    assert ranked.tolist() == [[0, 1], [1, 0]]
    assert rank_variants(np.empty((3, 0)), 10).shape == (3, 0)


def test_thompson_puts_the_clearly_better_ad_first_and_still_explores():
    applies = np.array([0.0, 0.0, 40.0, 0.0])
    impressions = np.array([0.0, 0.0, 100.0, 1000.0])
    a, b = beta_posterior(applies, impressions, 0.02, 50.0)
    ranked = rank_variants(sample_scores(a, b, 2000, np.random.default_rng(0)), 2)
    first = np.bincount(ranked[:, 0], minlength=4) / len(ranked)
    second = np.bincount(ranked[:, 1], minlength=4) / len(ranked)
    assert first[2] > 0.95                   # the proven ad wins nearly always
    assert second[0] + second[1] > 0.9       # unknown ads are explored before the proven-bad one
    assert min(second[0], second[1]) > 0.3   # and both unknown ones get their turn


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


def test_the_fallback_priors_before_any_evidence_are_the_settings():
    prior = PriorSpec(0.02, 0.1, 50.0)
    funnel = PriorRates.fallback("funnel", prior)
    assert funnel.overall.tolist() == pytest.approx([0.1, 0.2])
    assert funnel.overall_strength.tolist() == pytest.approx([50.0, 5.0])
    assert PriorRates.fallback("direct", prior).overall.tolist() == [0.02]
    with pytest.raises(ValueError):
        PriorSpec(0.2, 0.1, 50.0)
    with pytest.raises(ValueError):
        ad_posterior(Evidence.none(1), priors([0.1], [50.0]), "clicks", 0.0)
