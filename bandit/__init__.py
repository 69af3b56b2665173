"""Bandit maths: posteriors, Thompson ranking, feed strategies and the strategy bandit,
decay, rate intervals, as pure functions over numpy arrays.

No I/O here: randomness comes in as a ``numpy.random.Generator`` and time as a number.
"""
from bandit.decay import decay_factor, decay_to, exposure_weight
from bandit.intervals import Proportion, wilson_interval
from bandit.ope import (
    Estimate,
    check_propensities,
    importance_weights,
    ips,
    logged_value,
    mean_estimate,
    snips,
    z_score,
)
from bandit.posterior import (
    REWARD_MODELS,
    AdPosterior,
    Evidence,
    ad_posterior,
    beta_posterior,
    empirical_rates,
    posterior_mean,
    regional_rates,
    stage_evidence,
)
from bandit.priors import AdPriors, PriorRates, PriorSpec, StagePrior, fit_priors, fit_stage
from bandit.strategies import (
    DEFAULT_STRATEGIES,
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
from bandit.thompson import rank_variants, sample_scores

__all__ = [
    "DEFAULT_STRATEGIES", "REWARD_MODELS", "SCREEN", "SCREENED", "STRATEGIES", "ad_posterior",
    "AdPosterior", "AdPriors", "beta_posterior", "Candidates", "check_propensities", "choose",
    "decay_factor", "decay_to", "empirical_rates", "epsilon_greedy_orders", "Estimate", "Evidence",
    "exposure_weight", "fit_priors", "fit_stage", "importance_weights", "ips", "logged_value",
    "mean_estimate", "order_sources", "posterior_mean", "PriorRates", "PriorSpec",
    "probability_best", "Proportion", "rank_variants", "RegionSums", "regional_rates",
    "sample_scores", "screen_keys",
    "screen_order", "screen_orders", "snips", "stage_evidence", "StagePrior", "strategy_orders",
    "strategy_probabilities", "StrategyPrior", "wilson_interval", "with_floor", "z_score",
]
