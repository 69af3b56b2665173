"""bandit.strategies: each strategy's orders, and the strategy bandit's probabilities."""
from __future__ import annotations

import numpy as np
import pytest

from bandit import (
    SCREEN,
    SCREENED,
    STRATEGIES,
    Candidates,
    RegionSums,
    StrategyPrior,
    choose,
    epsilon_greedy_orders,
    order_sources,
    probability_best,
    screen_keys,
    screen_order,
    screen_orders,
    strategy_orders,
    strategy_probabilities,
    with_floor,
)
from bandit.strategies import grid_sizes, sampled_best


def candidates(n: int, rng: np.random.Generator, variants: int = 4) -> Candidates:
    return Candidates(draws=rng.random((n, variants)), mean=rng.random(n),
                      created_at=rng.uniform(0, 1e6, n))


def test_each_kept_order_sorts_by_what_it_names(rng):
    cand = candidates(300, rng)
    orders = strategy_orders(STRATEGIES, cand, 50, rng)
    assert set(orders) == {"thompson", "random", "egreedy"}    # the screened ones use Thompson's
    assert all(rows.shape == (4, 50) for rows in orders.values())
    for k in range(4):
        assert orders["thompson"][k].tolist() == np.argsort(-cand.draws[:, k])[:50].tolist()
    for name, rows in orders.items():
        assert all(len(set(row.tolist())) == 50 for row in rows), name
    keys = screen_keys(STRATEGIES, cand)
    assert set(keys) == {"popular", "newest"}                   # nearest: known when served
    assert keys["popular"] is cand.mean and keys["newest"] is cand.created_at


def test_the_screened_strategies_keep_thompson_orders_even_alone(rng):
    assert order_sources(["popular"]) == ["thompson"]
    assert order_sources(["nearest", "egreedy"]) == ["thompson", "egreedy"]
    assert order_sources(["random"]) == ["random"]
    assert set(strategy_orders(["newest"], candidates(20, rng), 10, rng)) == {"thompson"}
    assert set(SCREENED) == {"popular", "newest", "nearest"}


def test_a_screened_order_keeps_each_screen_and_sorts_within_it(rng):
    """Whatever a screened strategy sorts by, screen k shows exactly the ads of screen k of
    the Thompson variant: only the order within it changes."""
    keys = rng.random((50, 35))
    by = screen_orders(keys)
    for row, key in zip(by, keys, strict=True):
        assert sorted(row.tolist()) == list(range(35))
        for start in range(0, 35, SCREEN):
            screen = row[start:start + SCREEN]
            assert set(screen.tolist()) == set(range(start, min(start + SCREEN, 35)))
            assert (np.diff(key[screen]) <= 0).all()        # highest key first
    ties = screen_orders(np.zeros((1, 12)), screen=5)
    assert ties.tolist() == [list(range(12))]              # ties keep Thompson's order


def test_random_orders_differ_between_variants_and_cover_the_candidates(rng):
    rows = strategy_orders(["random"], candidates(200, rng, variants=16), 20, rng)["random"]
    assert len({tuple(r) for r in rows}) == 16
    assert len(np.unique(rows)) > 150          # far beyond any fixed top 20


def test_an_unknown_strategy_is_refused(rng):
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy_orders(["clickbait"], candidates(5, rng), 5, rng)


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5, 1.0])
def test_epsilon_greedy_explores_about_epsilon_of_the_slots_outside_the_greedy_top(epsilon):
    rng = np.random.default_rng(11)
    mean = rng.random(1000)
    greedy = np.argsort(-mean)[:20]
    rows = epsilon_greedy_orders(mean, 400, 20, epsilon, rng)
    explored = ~np.isin(rows, greedy)
    assert explored.mean() == pytest.approx(epsilon, abs=0.03)
    for row, mask in zip(rows, explored, strict=True):
        assert len(set(row.tolist())) == 20
        kept = row[~mask].tolist()
        assert kept == greedy[:len(kept)].tolist()     # the greedy ads keep their order


def test_epsilon_greedy_with_few_candidates_never_repeats_an_ad(rng):
    rows = epsilon_greedy_orders(np.array([0.3, 0.1, 0.2]), 50, 10, 0.9, rng)
    assert rows.shape == (50, 3)
    assert all(sorted(r.tolist()) == [0, 1, 2] for r in rows)


def test_probability_best_matches_the_exact_answer_for_two_arms():
    rng = np.random.default_rng(5)
    # Beta(1,1) against Beta(1,1): a fair coin; Beta(2,1) against Beta(1,1): 2/3
    p = probability_best(np.array([[1.0, 1.0], [2.0, 1.0]]), np.ones((2, 2)), rng, 20_000)
    assert p[0].tolist() == pytest.approx([0.5, 0.5], abs=0.015)
    assert p[1].tolist() == pytest.approx([2 / 3, 1 / 3], abs=0.015)
    assert np.allclose(p.sum(axis=1), 1.0)


def test_probability_best_by_quadrature_agrees_with_many_draws():
    """Cells' strategy posteriors as the bandit sees them (tens to thousands of feeds each,
    apply rates of 1-20 %, arms near and far apart): the quadrature's answer is within a
    few thousandths of 250,000 joint draws', every row sums to one, and rows that cannot be
    computed on a grid (a density unbounded at 0, or one far narrower than the others'
    spread) are estimated from draws instead."""
    rng = np.random.default_rng(12)
    served = rng.integers(20, 3_000, (40, 4)).astype(float)
    rates = rng.uniform(0.01, 0.2, (40, 1)) * rng.uniform(0.5, 1.5, (40, 4))
    applies = rng.binomial(served.astype(int), rates).astype(float)
    alpha, beta = applies + 1.0, served - applies + 19.0
    assert (grid_sizes(alpha, beta) > 0).all()
    exact = probability_best(alpha, beta, rng)
    sampled = sampled_best(alpha, beta, rng, 250_000)
    assert np.abs(exact - sampled).max() < 0.006
    assert np.allclose(exact.sum(axis=1), 1.0)

    awkward_alpha = np.array([[0.3, 2.0], [2.0, 5000.0]])
    awkward_beta = np.array([[30.0, 40.0], [40.0, 1e6]])
    assert grid_sizes(awkward_alpha, awkward_beta).tolist() == [0, 0]
    p = probability_best(awkward_alpha, awkward_beta, np.random.default_rng(1), 50_000)
    again = sampled_best(awkward_alpha, awkward_beta, np.random.default_rng(2), 50_000)
    assert np.abs(p - again).max() < 0.01


def test_with_floor_keeps_every_arm_at_the_floor_and_sums_to_one():
    p = with_floor(np.array([[0.97, 0.01, 0.02, 0.0], [0.25, 0.25, 0.25, 0.25]]), 0.05)
    assert (p >= 0.05 - 1e-12).all() and np.allclose(p.sum(axis=1), 1)
    assert p[1].tolist() == pytest.approx([0.25] * 4)
    with pytest.raises(ValueError):
        with_floor(np.array([0.5, 0.5]), 0.6)


def test_choose_picks_each_index_with_its_probability():
    rng = np.random.default_rng(2)
    probs = np.array([0.6, 0.05, 0.3, 0.05])
    picks = np.array([choose(probs, u) for u in rng.random(40_000)])
    assert (np.bincount(picks, minlength=4) / len(picks)).tolist() == pytest.approx(
        probs.tolist(), abs=0.01)
    assert choose(probs, 0.999999999) == 3


def test_a_cell_with_little_data_falls_back_to_the_global_probabilities():
    rng = np.random.default_rng(8)
    prior = StrategyPrior(cell_min_feeds=200, floor=0.05)
    global_served, global_applies = np.array([5000.0, 5000.0]), np.array([600.0, 300.0])
    cell_served = np.array([[150.0, 40.0], [1000.0, 1000.0], [0.0, 0.0]])
    cell_applies = np.array([[0.0, 40.0], [50.0, 200.0], [0.0, 0.0]])
    p = strategy_probabilities(cell_served, cell_applies, global_served, global_applies, prior,
                               rng, 4000)
    assert p[0].tolist() == p[2].tolist()                  # too little data: the global answer
    assert p[0].tolist() == pytest.approx([0.95, 0.05], abs=0.01)
    assert p[1].tolist() == pytest.approx([0.05, 0.95], abs=0.01)   # enough: its own


def test_with_no_evidence_every_strategy_is_equally_likely():
    rng = np.random.default_rng(9)
    p = strategy_probabilities(np.zeros((1, 4)), np.zeros((1, 4)), np.zeros(4), np.zeros(4),
                               StrategyPrior(), rng, 20_000)
    assert p[0].tolist() == pytest.approx([0.25] * 4, abs=0.015)


@pytest.mark.parametrize("seed", range(20))
def test_screen_order_of_one_row_is_screen_orders(seed: int):
    """The feed's one-row screen (plain Python) orders exactly as the array one, ties
    (rounded keys) included, for every length a feed can have."""
    rng = np.random.default_rng(seed)
    for n in (0, 1, 9, 10, 11, 20, 37, 100):
        keys = np.round(rng.normal(size=n), 1)
        for screen in (3, 10):
            assert screen_order(keys.tolist(), screen) == \
                screen_orders(keys[None, :], screen)[0].tolist()


def test_evidence_pools_cell_then_region_then_global():
    """Region 0 favours strategy 1, region 1 has too few feeds to speak, the world cannot
    tell the strategies apart. A new cell of region 0 takes its region's probabilities, one
    of region 1 (or of no region) the global ones; a cell with a little evidence of its own
    starts from its region's means, so it leans the region's way more than it would from the
    global ones."""
    prior = StrategyPrior(strength=20.0, cell_min_feeds=200, floor=0.0)
    regions = RegionSums(np.array([0, 1, -1, 0]),
                         np.array([[1000.0, 1000.0], [50.0, 50.0]]),
                         np.array([[50.0, 150.0], [10.0, 1.0]]))
    cells_served = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [110.0, 110.0]])
    cells_applies = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [11.0, 9.0]])
    world = (np.array([2000.0, 2000.0]), np.array([200.0, 200.0]))
    p = strategy_probabilities(cells_served, cells_applies, *world, prior,
                               np.random.default_rng(0), regions=regions)
    flat = strategy_probabilities(cells_served, cells_applies, *world, prior,
                                  np.random.default_rng(0))
    assert p[0, 1] > 0.99
    assert p[1].tolist() == pytest.approx(flat[1].tolist()) and p[1, 1] == pytest.approx(0.5,
                                                                                       abs=0.01)
    assert p[2].tolist() == pytest.approx(flat[2].tolist())
    assert p[3, 1] > flat[3, 1] + 0.1          # its own data says strategy 0; its region, 1
