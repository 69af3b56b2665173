"""Bandit maths: posteriors and Thompson ranking as pure functions over numpy arrays.

No I/O here: randomness comes in as a ``numpy.random.Generator`` and time as a number.
"""
from bandit.posterior import beta_posterior, posterior_mean
from bandit.thompson import rank_variants, sample_scores

__all__ = ["beta_posterior", "posterior_mean", "rank_variants", "sample_scores"]
