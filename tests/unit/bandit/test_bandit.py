import doctest

import numpy as np
import pytest

import bandit.posterior
import bandit.thompson
from bandit import beta_posterior, posterior_mean, rank_variants, sample_scores


@pytest.mark.parametrize("module", [bandit.posterior, bandit.thompson])
def test_docstring_examples_run(module):
    assert doctest.testmod(module).failed == 0


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
    for row, order in zip(scores, ranked):
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
