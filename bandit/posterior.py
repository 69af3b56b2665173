"""Beta posteriors on each ad's apply rate, with empirical-Bayes priors.

Two reward models:

- ``direct``: one Beta on P(apply | impression).
- ``funnel``: P(view | impression) x P(apply | view), a Beta for each stage. Views are far
  more frequent than applies, so the first stage learns fast; the second needs only views.

A save counts as ``save_weight`` of an apply. Exposure is the (position-weighted, decayed)
number of impressions; see ``bandit.decay``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REWARD_MODELS = ("direct", "funnel")
_RATE_BOUNDS = (1e-6, 1.0 - 1e-6)


def beta_posterior(applies: np.ndarray, impressions: np.ndarray, prior_mean: float | np.ndarray,
                   prior_strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Beta(alpha, beta) on P(apply | impression) for each ad.

    The prior is Beta(m * s, (1 - m) * s): an ad with no evidence sits at the prior mean
    ``m`` with the weight of ``s`` impressions, instead of Beta(1, 1)'s 50 %, which would
    flood the top of every feed with new ads when real apply rates are near 2 %.
    ``m`` may be one number or one per ad. Successes beyond trials are clipped so beta
    stays positive.

    >>> a, b = beta_posterior(np.array([3]), np.array([100]), 0.02, 50.0)
    >>> float(a[0]), float(b[0])
    (4.0, 146.0)
    """
    prior_mean = np.asarray(prior_mean, dtype=np.float64)
    if np.any((prior_mean <= 0.0) | (prior_mean >= 1.0)) or prior_strength <= 0.0:
        raise ValueError("prior_mean must be in (0, 1) and prior_strength positive")
    successes = np.clip(np.asarray(applies, dtype=np.float64), 0.0, None)
    failures = np.clip(np.asarray(impressions, dtype=np.float64) - successes, 0.0, None)
    return prior_mean * prior_strength + successes, (1.0 - prior_mean) * prior_strength + failures


def posterior_mean(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Mean of each Beta(alpha, beta).

    >>> posterior_mean(np.array([1.0]), np.array([3.0]))
    array([0.25])
    """
    return np.asarray(alpha) / (np.asarray(alpha) + np.asarray(beta))


def group_rates(trials: np.ndarray, successes: np.ndarray, groups: np.ndarray,
                fallback_rate: float, strength: float) -> tuple[np.ndarray, float]:
    """Empirical-Bayes prior means: each group's (category's) success rate, shrunk towards
    the rate of all ads, itself shrunk towards ``fallback_rate``; each shrinkage has the
    weight of ``strength`` trials. Returns (rate per group, overall rate).

    ``groups`` are small non-negative integers (group codes), one per ad.

    >>> rates, overall = group_rates(np.array([1000., 1000., 0.]), np.array([100., 100., 0.]),
    ...                              np.array([0, 0, 1]), 0.02, 50.0)
    >>> rates.round(4), round(overall, 4)
    (array([0.1  , 0.098]), 0.098)
    """
    trials = np.clip(np.asarray(trials, dtype=np.float64), 0.0, None)
    successes = np.minimum(np.clip(np.asarray(successes, dtype=np.float64), 0.0, None), trials)
    groups = np.asarray(groups, dtype=np.int64)
    overall = float(np.clip((successes.sum() + fallback_rate * strength)
                            / (trials.sum() + strength), *_RATE_BOUNDS))
    size = int(groups.max()) + 1 if len(groups) else 0
    group_trials = np.bincount(groups, weights=trials, minlength=size)
    group_successes = np.bincount(groups, weights=successes, minlength=size)
    rates = (group_successes + overall * strength) / (group_trials + strength)
    return np.clip(rates, *_RATE_BOUNDS), overall


@dataclass(frozen=True)
class Evidence:
    """Each ad's (decayed) evidence, arrays aligned by ad."""

    exposure: np.ndarray     # impressions, weighted by position and age
    views: np.ndarray
    saves: np.ndarray
    applies: np.ndarray

    @classmethod
    def none(cls, n: int) -> Evidence:
        zeros = np.zeros(n)
        return cls(zeros, zeros, zeros, zeros)

    def successes(self, save_weight: float) -> np.ndarray:
        return self.applies + save_weight * self.saves


@dataclass(frozen=True)
class PriorSpec:
    """Where priors come from when there is no evidence at all, and their weight.

    ``apply_rate`` is P(apply | impression) and ``view_rate`` P(view | impression) before
    any evidence; ``strength`` is the prior's weight in impressions (the funnel's second
    stage weighs ``strength * view_rate`` views).
    """

    apply_rate: float = 0.02
    view_rate: float = 0.10
    strength: float = 50.0

    def __post_init__(self) -> None:
        if not (0 < self.apply_rate < self.view_rate < 1) or self.strength <= 0:
            raise ValueError("need 0 < apply_rate < view_rate < 1 and a positive strength")


@dataclass(frozen=True)
class PriorRates:
    """Empirical-Bayes prior means, one column per stage of the reward model (direct:
    P(apply | impression); funnel: P(view | impression), P(apply | view)): a row per group,
    and the overall row for ads of a group never seen."""

    model: str
    groups: np.ndarray       # (groups, stages)
    overall: np.ndarray      # (stages,)

    def for_ads(self, groups: np.ndarray) -> np.ndarray:
        """(n, stages) prior means for ads of these groups (-1: unknown group)."""
        groups = np.asarray(groups, dtype=np.int64)
        known = (groups >= 0) & (groups < len(self.groups))
        out = np.broadcast_to(self.overall, (len(groups), len(self.overall))).copy()
        out[known] = self.groups[groups[known]]
        return out

    @classmethod
    def fallback(cls, model: str, prior: PriorSpec) -> PriorRates:
        """The rates before any evidence."""
        overall = (np.array([prior.apply_rate]) if model == "direct"
                   else np.array([prior.view_rate, prior.apply_rate / prior.view_rate]))
        return cls(model, np.empty((0, len(overall))), overall)


def _stages(evidence: Evidence, model: str, save_weight: float,
            prior: PriorSpec) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """(trials, successes, fallback rate, prior strength) of each stage of ``model``."""
    successes = evidence.successes(save_weight)
    if model == "direct":
        return [(evidence.exposure, successes, prior.apply_rate, prior.strength)]
    if model == "funnel":
        return [(evidence.exposure, evidence.views, prior.view_rate, prior.strength),
                (evidence.views, successes, prior.apply_rate / prior.view_rate,
                 prior.strength * prior.view_rate)]
    raise ValueError(f"unknown reward model {model!r}; expected one of {REWARD_MODELS}")


def empirical_rates(evidence: Evidence, groups: np.ndarray, model: str, save_weight: float,
                    prior: PriorSpec) -> PriorRates:
    """The prior means of every group (category), learnt from all ads' evidence.

    >>> ev = Evidence(np.array([1000.0, 0.0]), np.array([100.0, 0.0]), np.zeros(2),
    ...               np.array([20.0, 0.0]))
    >>> empirical_rates(ev, np.array([0, 1]), "funnel", 0.0, PriorSpec()).groups.round(3)
    array([[0.1, 0.2],
           [0.1, 0.2]])
    """
    columns = [group_rates(trials, succ, groups, fallback, strength)
               for trials, succ, fallback, strength in _stages(evidence, model, save_weight, prior)]
    return PriorRates(model, np.stack([rates for rates, _ in columns], axis=1),
                      np.array([overall for _, overall in columns]))


@dataclass(frozen=True)
class AdPosterior:
    """Beta posteriors per ad: one stage (direct) or two multiplied (funnel)."""

    alpha: np.ndarray        # (stages, n)
    beta: np.ndarray

    def __len__(self) -> int:
        return self.alpha.shape[1]

    def mean(self) -> np.ndarray:
        """Posterior mean apply rate per ad (stages are independent, so means multiply)."""
        return np.prod(self.alpha / (self.alpha + self.beta), axis=0)

    def sample(self, draws: int, rng: np.random.Generator) -> np.ndarray:
        """An (n, draws) array of independent draws of each ad's apply rate, one row per
        ad (a cell's candidates are then whole rows)."""
        if draws < 1:
            raise ValueError("draws must be at least 1")
        out = rng.beta(self.alpha[0][:, None], self.beta[0][:, None], size=(len(self), draws))
        for stage in range(1, self.alpha.shape[0]):
            out *= rng.beta(self.alpha[stage][:, None], self.beta[stage][:, None],
                            size=(len(self), draws))
        return out


def ad_posterior(evidence: Evidence, prior_means: np.ndarray, model: str, save_weight: float,
                 prior: PriorSpec) -> AdPosterior:
    """Each ad's posterior under ``model``, from its evidence and its (n, stages) prior
    means (``PriorRates.for_ads``), each stage's prior weighing its strength in trials.

    >>> ev = Evidence(np.array([1000.0, 0.0]), np.array([100.0, 0.0]), np.zeros(2),
    ...               np.array([20.0, 0.0]))
    >>> rates = empirical_rates(ev, np.array([0, 0]), "funnel", 0.0, PriorSpec())
    >>> post = ad_posterior(ev, rates.for_ads(np.array([0, 0])), "funnel", 0.0, PriorSpec())
    >>> post.alpha.shape, bool(abs(post.mean()[1] - post.mean()[0]) < 0.01)
    ((2, 2), True)
    """
    alphas, betas = [], []
    for stage, (trials, succ, _, strength) in enumerate(_stages(evidence, model, save_weight,
                                                                 prior)):
        a, b = beta_posterior(succ, trials, prior_means[:, stage], strength)
        alphas.append(a)
        betas.append(b)
    return AdPosterior(np.stack(alphas), np.stack(betas))
