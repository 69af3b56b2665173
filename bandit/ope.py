"""Off-policy evaluation: what each strategy would have earned had it served every feed,
estimated from the log of feeds that the strategy bandit served.

The log gives, per feed, the strategy that served it, the probability that strategy had of
being chosen (its propensity) and the feed's reward (applies). A strategy's own feeds are a
biased sample (the bandit serves a strategy more where it does well), so its logged mean
answers "how did its feeds do", not "how would it do everywhere". Inverse propensity scoring
(IPS) weights each of its feeds by 1 / propensity, which makes the mean over *all* feeds
unbiased for the policy "always serve this strategy"; the self-normalised variant (SNIPS)
divides by the sum of the weights instead of the number of feeds: slightly biased, lower
variance. Intervals are normal approximations: good for the thousands of feeds an evaluation
sees, too narrow for a handful (and empty, [v, v], when every reward is the same).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """An estimated reward per feed, its confidence interval [low, high], from ``n`` feeds."""

    value: float
    low: float
    high: float
    n: int

    def contains(self, truth: float) -> bool:
        """
        >>> Estimate(0.5, 0.4, 0.6, 10).contains(0.45), Estimate(0.5, 0.4, 0.6, 10).contains(0.7)
        (True, False)
        """
        return self.low <= truth <= self.high


def z_score(level: float = LEVEL) -> float:
    """The standard normal quantile of a two-sided interval at ``level``.

    >>> round(z_score(0.95), 4)
    1.96
    """
    if not 0 < level < 1:
        raise ValueError("the confidence level must be in (0, 1)")
    return NormalDist().inv_cdf(0.5 + level / 2)


def mean_estimate(values: np.ndarray, level: float = LEVEL) -> Estimate:
    """The mean of ``values``, with a normal-approximation interval from their sample standard
    deviation; no values give NaN, one value an unbounded interval.

    >>> e = mean_estimate(np.array([0.0, 1.0, 0.0, 1.0]))
    >>> e.value, round(e.low, 4), round(e.high, 4), e.n
    (0.5, -0.0658, 1.0658, 4)
    >>> mean_estimate(np.array([2.0])).high
    inf
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    n = len(values)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(values.mean())
    half = z_score(level) * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return Estimate(mean, mean - half, mean + half, n)


def check_propensities(propensities: np.ndarray) -> np.ndarray:
    """``propensities`` as floats, or a ValueError if one is outside (0, 1] (or NaN): a
    strategy served with probability 0 or above 1 means a broken log, not a small weight.

    >>> check_propensities(np.array([0.55, 1.0]))
    array([0.55, 1.  ])
    >>> check_propensities(np.array([0.5, 0.0]))
    Traceback (most recent call last):
    ...
    ValueError: propensities must be in (0, 1]; 1 of 2 are not (the first: 0.0)
    """
    p = np.asarray(propensities, dtype=np.float64)
    bad = ~((p > 0) & (p <= 1))
    if bad.any():
        raise ValueError(f"propensities must be in (0, 1]; {int(bad.sum())} of {p.size} are not "
                         f"(the first: {float(p[bad].flat[0])!r})")
    return p


def logged_value(logged: np.ndarray, rewards: np.ndarray, target: object,
                 level: float = LEVEL) -> Estimate:
    """The on-policy value of ``target``: the mean reward of the feeds it served.

    >>> logged_value(np.array(["a", "b", "a"]), np.array([1.0, 0.0, 0.0]), "a").value
    0.5
    """
    logged, rewards = _aligned(logged, rewards)
    return mean_estimate(rewards[logged == target], level)


def importance_weights(logged: np.ndarray, propensities: np.ndarray,
                       target: object) -> np.ndarray:
    """Each feed's weight for the policy "always serve ``target``": 1 / propensity where
    ``target`` served it, else 0.

    >>> importance_weights(np.array(["a", "b", "a"]), np.array([0.5, 0.5, 0.25]), "a")
    array([2., 0., 4.])
    """
    logged, propensities = _aligned(logged, propensities)
    return (logged == target) / check_propensities(propensities)


def ips(logged: np.ndarray, rewards: np.ndarray, propensities: np.ndarray, target: object,
        level: float = LEVEL) -> Estimate:
    """Inverse propensity scoring: the mean over all feeds of weight x reward, unbiased for
    "always serve ``target``" whenever every propensity is above 0.

    >>> logged = np.array(["a", "b", "a", "b"])
    >>> e = ips(logged, np.array([1.0, 0.0, 0.0, 1.0]), np.full(4, 0.5), "a")
    >>> e.value, e.n
    (0.5, 4)
    """
    weights = importance_weights(logged, propensities, target)
    _, rewards = _aligned(logged, rewards)
    return mean_estimate(weights * rewards, level)


def snips(logged: np.ndarray, rewards: np.ndarray, propensities: np.ndarray, target: object,
          level: float = LEVEL) -> Estimate:
    """Self-normalised IPS: sum(weight x reward) / sum(weight), with a delta-method interval
    (standard error sqrt(n / (n - 1) x sum(w^2 (r - v)^2)) / sum(w)). NaN when ``target``
    served no feed.

    >>> logged = np.array(["a", "b", "a", "b"])
    >>> e = snips(logged, np.array([1.0, 0.0, 0.0, 1.0]), np.array([0.5, 0.5, 0.25, 0.5]), "a")
    >>> round(e.value, 4), e.n
    (0.3333, 4)
    """
    weights = importance_weights(logged, propensities, target)
    _, rewards = _aligned(logged, rewards)
    n, total = len(weights), float(weights.sum())
    if total == 0:
        return Estimate(math.nan, math.nan, math.nan, n)
    value = float(weights @ rewards) / total
    if n < 2:
        return Estimate(value, -math.inf, math.inf, n)
    residual = weights * (rewards - value)
    half = z_score(level) * math.sqrt(n / (n - 1) * float(residual @ residual)) / total
    return Estimate(value, value - half, value + half, n)


def _aligned(logged: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logged, values = np.asarray(logged), np.asarray(values, dtype=np.float64)
    if logged.ndim != 1 or logged.shape != values.shape:
        raise ValueError(f"the log's columns must be 1-d and aligned; got shapes {logged.shape} "
                         f"and {values.shape}")
    return logged, values
