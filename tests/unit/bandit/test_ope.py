"""Off-policy estimators on simulated logs whose true values are known."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from bandit import (
    Estimate,
    check_propensities,
    importance_weights,
    ips,
    logged_value,
    mean_estimate,
    snips,
)

# one context: the logging policy of the issue, over four strategies
ONE_CONTEXT = (np.array([[0.55, 0.15, 0.15, 0.15]]), np.array([[0.30, 0.45, 0.20, 0.35]]),
               np.array([1.0]))
# two equally common contexts whose policies favour different strategies, with rates that
# differ by context: a strategy's own feeds come mostly from the context that favours it
TWO_CONTEXTS = (np.array([[0.55, 0.15, 0.15, 0.15], [0.15, 0.15, 0.15, 0.55]]),
                np.array([[0.30, 0.20, 0.40, 0.10], [0.10, 0.30, 0.20, 0.50]]),
                np.array([0.5, 0.5]))
STRATEGY_CODES = range(4)


@dataclass(frozen=True)
class SimulatedLog:
    strategy: np.ndarray
    reward: np.ndarray
    propensity: np.ndarray
    target_value: np.ndarray     # per strategy: the mean reward had it served every feed
    logged_truth: np.ndarray     # per strategy: the mean reward of the feeds it serves
    policy_value: float          # the logging policy's mean reward


def simulate(n: int, rng: np.random.Generator, probs: np.ndarray, rates: np.ndarray,
             context_p: np.ndarray) -> SimulatedLog:
    """``n`` feeds: a context, a strategy drawn with that context's probabilities, a
    Bernoulli reward at the (context, strategy) rate."""
    context = rng.choice(len(context_p), size=n, p=context_p)
    strategy = (rng.random(n)[:, None] > np.cumsum(probs[context], axis=1)).sum(axis=1)
    reward = (rng.random(n) < rates[context, strategy]).astype(np.float64)
    served = context_p[:, None] * probs
    return SimulatedLog(strategy, reward, probs[context, strategy], context_p @ rates,
                        (served * rates).sum(axis=0) / served.sum(axis=0),
                        float((served * rates).sum()))


def all_estimates(log: SimulatedLog, code: int) -> dict[str, Estimate]:
    return {"logged": logged_value(log.strategy, log.reward, code),
            "ips": ips(log.strategy, log.reward, log.propensity, code),
            "snips": snips(log.strategy, log.reward, log.propensity, code)}


def truths(log: SimulatedLog, code: int) -> dict[str, float]:
    return {"logged": log.logged_truth[code], "ips": log.target_value[code],
            "snips": log.target_value[code]}


@pytest.mark.parametrize("setting", [ONE_CONTEXT, TWO_CONTEXTS], ids=["one", "two_contexts"])
def test_each_interval_contains_the_true_value_on_a_simulated_log(setting):
    log = simulate(20_000, np.random.default_rng(7), *setting)
    for code in STRATEGY_CODES:
        for name, estimate in all_estimates(log, code).items():
            truth = truths(log, code)[name]
            assert estimate.contains(truth), (code, name, estimate, truth)
            assert estimate.high - estimate.low < 0.1, (code, name, estimate)
    assert mean_estimate(log.reward).contains(log.policy_value)


def test_the_estimates_count_the_feeds_they_use():
    log = simulate(5_000, np.random.default_rng(3), *ONE_CONTEXT)
    for code in STRATEGY_CODES:
        est = all_estimates(log, code)
        assert est["logged"].n == int((log.strategy == code).sum())
        assert est["ips"].n == est["snips"].n == 5_000


def test_95_percent_intervals_cover_the_truth_about_95_percent_of_the_time():
    seeds = 200
    hits = {name: np.zeros(4) for name in ("logged", "ips", "snips")}
    for seed in range(seeds):
        log = simulate(2_000, np.random.default_rng(seed), *TWO_CONTEXTS)
        for code in STRATEGY_CODES:
            for name, estimate in all_estimates(log, code).items():
                hits[name][code] += estimate.contains(truths(log, code)[name])
    for name, counts in hits.items():
        coverage = counts / seeds
        assert (coverage >= 0.90).all(), (name, coverage)
        assert (coverage <= 0.995).all(), (name, coverage)   # not uselessly wide either


def test_the_logged_value_is_biased_when_propensities_follow_the_context_and_ips_is_not():
    log = simulate(50_000, np.random.default_rng(12), *TWO_CONTEXTS)
    assert abs(log.logged_truth[0] - log.target_value[0]) > 0.05   # the setting is confounded
    est = all_estimates(log, 0)
    assert not est["logged"].contains(log.target_value[0])
    assert est["ips"].contains(log.target_value[0])
    assert est["snips"].contains(log.target_value[0])


def test_snips_varies_less_than_ips_across_logs():
    values = np.array([[[e.value for e in all_estimates(log, code).values()]
                        for code in STRATEGY_CODES]
                       for log in (simulate(2_000, np.random.default_rng(seed), *ONE_CONTEXT)
                                   for seed in range(200))])          # (seed, strategy, est)
    logged, ips_values, snips_values = values[..., 0], values[..., 1], values[..., 2]
    assert (snips_values.var(axis=0) < ips_values.var(axis=0)).all()
    assert np.allclose(ips_values.mean(axis=0), ONE_CONTEXT[1][0], atol=0.02)
    assert np.isfinite(logged).all()


def test_snips_intervals_are_narrower_than_ips_on_the_same_log():
    log = simulate(20_000, np.random.default_rng(5), *ONE_CONTEXT)
    for code in STRATEGY_CODES:
        est = all_estimates(log, code)
        assert est["snips"].high - est["snips"].low < est["ips"].high - est["ips"].low


@pytest.mark.parametrize("bad", [0.0, -0.2, 1.5, math.nan, math.inf])
def test_propensities_outside_0_1_are_refused(bad):
    logged = np.array([0, 1, 0])
    rewards = np.array([1.0, 0.0, 0.0])
    propensities = np.array([0.5, bad, 0.5])
    for estimator in (ips, snips):
        with pytest.raises(ValueError, match=r"propensities must be in \(0, 1\]"):
            estimator(logged, rewards, propensities, 0)
    with pytest.raises(ValueError):
        importance_weights(logged, propensities, 0)
    with pytest.raises(ValueError):
        check_propensities(propensities)


def test_an_on_policy_log_gives_the_plain_mean_three_ways():
    logged = np.zeros(6, dtype=int)
    rewards = np.array([1.0, 0.0, 2.0, 0.0, 1.0, 0.0])
    ones = np.ones(6)
    expected = mean_estimate(rewards)
    assert logged_value(logged, rewards, 0) == expected
    assert ips(logged, rewards, ones, 0) == expected
    assert snips(logged, rewards, ones, 0).value == pytest.approx(expected.value)


def test_strategy_names_work_as_well_as_codes():
    names = np.array(["thompson", "popular", "thompson"])
    rewards = np.array([1.0, 0.0, 0.0])
    p = np.array([0.5, 0.5, 0.5])
    assert ips(names, rewards, p, "thompson") == ips(np.array([0, 1, 0]), rewards, p, 0)


def test_a_strategy_that_served_nothing():
    logged, rewards, p = np.array([1, 1]), np.array([1.0, 0.0]), np.array([0.9, 0.9])
    assert logged_value(logged, rewards, 0).n == 0
    assert math.isnan(logged_value(logged, rewards, 0).value)
    assert ips(logged, rewards, p, 0) == Estimate(0.0, 0.0, 0.0, 2)
    assert math.isnan(snips(logged, rewards, p, 0).value)


def test_one_feed_gives_an_unbounded_interval():
    one = ips(np.array([0]), np.array([1.0]), np.array([0.5]), 0)
    assert (one.value, one.low, one.high) == (2.0, -math.inf, math.inf)
    assert snips(np.array([0]), np.array([1.0]), np.array([0.5]), 0).high == math.inf


def test_misaligned_columns_are_refused():
    with pytest.raises(ValueError, match="aligned"):
        ips(np.array([0, 1]), np.array([1.0]), np.array([0.5, 0.5]), 0)
    with pytest.raises(ValueError, match="aligned"):
        logged_value(np.array([[0, 1]]), np.array([[1.0, 0.0]]), 0)


def test_a_wider_level_gives_a_wider_interval():
    rewards = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    narrow, wide = mean_estimate(rewards, 0.8), mean_estimate(rewards, 0.99)
    assert wide.low < narrow.low < narrow.value < narrow.high < wide.high
    with pytest.raises(ValueError):
        mean_estimate(rewards, 1.0)
