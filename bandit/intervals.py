"""Confidence intervals for rates (views, saves or applies per impression, applies per view).

The Wilson score interval is the set of rates p that a two-sided score test at ``level``
would not reject given k successes in n trials. Unlike the normal approximation
(p +- z sqrt(p (1 - p) / n)) it stays within [0, 1], is not empty at 0 or n successes, and
keeps close to its nominal coverage for the small counts of a quiet day or a rare strategy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.ope import LEVEL, z_score


@dataclass(frozen=True)
class Proportion:
    """Rates with their confidence intervals, element by element. Where there were no trials
    the rate is NaN and the interval [0, 1]: the data rule out no rate."""

    rate: np.ndarray
    low: np.ndarray
    high: np.ndarray


def wilson_interval(successes: np.ndarray | float, trials: np.ndarray | float,
                    level: float = LEVEL) -> Proportion:
    """Each rate successes / trials with its Wilson score interval at ``level``, for arrays
    of any (broadcastable) shape. Successes must be in [0, trials].

    >>> p = wilson_interval(np.array([0, 0, 10, 81]), np.array([0, 10, 10, 263]))
    >>> p.rate.round(4)
    array([  nan, 0.   , 1.   , 0.308])
    >>> p.low.round(4)
    array([0.    , 0.    , 0.7225, 0.2553])
    >>> p.high.round(4)
    array([1.    , 0.2775, 1.    , 0.3662])
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if not (np.isfinite(k).all() and np.isfinite(n).all()):
        raise ValueError("successes and trials must be finite")
    if (k < 0).any() or (k > n).any():
        raise ValueError("successes must be in [0, trials]")
    k, n = np.broadcast_arrays(k, n)
    z2 = z_score(level) ** 2
    some = n > 0
    safe_n = np.where(some, n, 1.0)
    centre = (k + z2 / 2) / (safe_n + z2)
    half = np.sqrt(z2) * np.sqrt(k * (safe_n - k) / safe_n + z2 / 4) / (safe_n + z2)
    rate = np.where(some, k / safe_n, np.nan)
    # exactly 0 with no successes and 1 with nothing but successes (and without trials)
    low = np.where(some & (k > 0), np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where(some & (k < n), np.clip(centre + half, 0.0, 1.0), 1.0)
    return Proportion(rate, low, high)
