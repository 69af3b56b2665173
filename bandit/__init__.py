"""Bandit maths: posteriors, Thompson ranking, feed strategies and the strategy bandit,
decay, rate intervals, as pure functions over numpy arrays.

No I/O here: randomness comes in as a ``numpy.random.Generator`` and time as a number.
"""
from bandit.decay import decay_factor, decay_to, exposure_weight
from bandit.intervals import Proportion, wilson_interval
from bandit.ope import (Estimate, check_propensities, importance_weights, ips, logged_value,
                        mean_estimate, snips, z_score)
from bandit.posterior import (REWARD_MODELS, AdPosterior, Evidence, PriorRates, PriorSpec,
                              ad_posterior, beta_posterior, empirical_rates, group_rates,
                              posterior_mean)
from bandit.strategies import (DEFAULT_STRATEGIES, STRATEGIES, Candidates, StrategyPrior,
                               choose, epsilon_greedy_orders, probability_best,
                               strategy_orders, strategy_probabilities, with_floor)
from bandit.thompson import rank_variants, sample_scores

__all__ = [
    "DEFAULT_STRATEGIES", "REWARD_MODELS", "STRATEGIES", "AdPosterior", "Candidates", "Estimate",
    "Evidence", "PriorRates", "PriorSpec", "Proportion", "StrategyPrior", "ad_posterior",
    "beta_posterior", "choose",
    "check_propensities", "decay_factor", "decay_to", "empirical_rates", "epsilon_greedy_orders",
    "exposure_weight", "group_rates", "importance_weights", "ips", "logged_value", "mean_estimate",
    "posterior_mean", "probability_best", "rank_variants", "sample_scores", "strategy_orders",
    "snips", "strategy_probabilities", "wilson_interval", "with_floor", "z_score",
]
