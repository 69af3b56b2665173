"""Forgetting old evidence, and discounting impressions shown far down a feed.

Evidence decays with a half-life: an event ``half_life_s`` old weighs half as much as one
happening now, so the bandit follows a market that changes. The store keeps each ad's
decayed sums with the time they were last brought up to date; ``decay_to`` brings them to
any later time. (The rollup's Lua script applies the same formula when it adds events.)

Position bias: a user examines the ads at the top of a feed more often than those further
down, so an impression at position p is counted as ``p ** -exponent`` of an exposure. An
exponent of 0 counts every impression fully.
"""
from __future__ import annotations

import numpy as np


def decay_factor(age_s: float | np.ndarray, half_life_s: float) -> np.ndarray:
    """The weight left after ``age_s`` seconds (negative ages count as 0).

    >>> decay_factor(np.array([0.0, 3600.0, 7200.0, -5.0]), 3600.0)
    array([1.  , 0.5 , 0.25, 1.  ])
    """
    if half_life_s <= 0:
        raise ValueError("half_life_s must be positive")
    return np.exp2(-np.maximum(np.asarray(age_s, dtype=np.float64), 0.0) / half_life_s)


def decay_to(values: np.ndarray, updated_at: np.ndarray, now: float,
             half_life_s: float) -> np.ndarray:
    """Sums last updated at ``updated_at`` (one time per row), as they stand at ``now``.

    >>> decay_to(np.array([[4.0, 2.0], [8.0, 8.0]]), np.array([0.0, 10.0]), 10.0, 10.0)
    array([[2., 1.],
           [8., 8.]])
    """
    factor = decay_factor(now - np.asarray(updated_at, dtype=np.float64), half_life_s)
    return np.asarray(values, dtype=np.float64) * factor.reshape(-1, *([1] * (np.ndim(values) - 1)))


def exposure_weight(positions: np.ndarray, exponent: float) -> np.ndarray:
    """How much an impression at each (1-based) position counts; positions below 1 (unknown)
    count fully.

    >>> exposure_weight(np.array([1, 4, 0]), 0.5)
    array([1. , 0.5, 1. ])
    """
    if exponent < 0:
        raise ValueError("exponent must be non-negative")
    positions = np.asarray(positions, dtype=np.float64)
    return np.where(positions >= 1, np.maximum(positions, 1.0) ** -exponent, 1.0)
