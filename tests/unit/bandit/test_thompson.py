"""bandit.thompson: one posterior draw per ad and variant, and each variant's order."""
from __future__ import annotations

import numpy as np

from bandit import beta_posterior, rank_variants, sample_scores


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
