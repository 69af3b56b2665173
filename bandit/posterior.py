"""Beta posteriors on each ad's apply rate."""
from __future__ import annotations

import numpy as np


def beta_posterior(applies: np.ndarray, impressions: np.ndarray, prior_mean: float,
                   prior_strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Beta(alpha, beta) on P(apply | impression) for each ad.

    The prior is Beta(m * s, (1 - m) * s): an ad with no evidence sits at the prior mean
    ``m`` with the weight of ``s`` impressions, instead of Beta(1, 1)'s 50 %, which would
    flood the top of every feed with new ads when real apply rates are near 2 %.
    Applies beyond impressions (late impressions) are clipped so beta stays positive.

    >>> a, b = beta_posterior(np.array([3]), np.array([100]), 0.02, 50.0)
    >>> float(a[0]), float(b[0])
    (4.0, 146.0)
    """
    if not 0.0 < prior_mean < 1.0 or prior_strength <= 0.0:
        raise ValueError("prior_mean must be in (0, 1) and prior_strength positive")
    applies = np.asarray(applies, dtype=np.float64)
    impressions = np.asarray(impressions, dtype=np.float64)
    successes = np.clip(applies, 0.0, None)
    failures = np.clip(impressions - successes, 0.0, None)
    alpha = prior_mean * prior_strength + successes
    beta = (1.0 - prior_mean) * prior_strength + failures
    return alpha, beta


def posterior_mean(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Mean of each Beta(alpha, beta).

    >>> posterior_mean(np.array([1.0]), np.array([3.0]))
    array([0.25])
    """
    return np.asarray(alpha) / (np.asarray(alpha) + np.asarray(beta))
