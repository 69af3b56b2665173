"""Beta posteriors on each ad's apply rate, from empirical-Bayes priors (``bandit.priors``).

Two reward models:

- ``direct``: one Beta on P(apply | impression).
- ``funnel``: P(view | impression) x P(apply | view), a Beta for each stage. Views are far
  more frequent than applies, so the first stage learns fast; the second needs only views.

A save counts as ``save_weight`` of an apply. Exposure is the (position-weighted, decayed)
number of impressions; see ``bandit.decay``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from bandit.priors import AdPriors, PriorRates, PriorSpec, fit_priors, fit_regional

REWARD_MODELS = ("direct", "funnel")


def beta_posterior(applies: np.ndarray, impressions: np.ndarray, prior_mean: float | np.ndarray,
                   prior_strength: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beta(alpha, beta) on P(apply | impression) for each ad.

    The prior is Beta(m * s, (1 - m) * s): an ad with no evidence sits at the prior mean
    ``m`` with the weight of ``s`` impressions, instead of Beta(1, 1)'s 50 %, which would
    flood the top of every feed with new ads when real apply rates are near 2 %.
    ``m`` and ``s`` may be one number or one per ad. Successes beyond trials are clipped so beta
    stays positive.

    >>> a, b = beta_posterior(np.array([3]), np.array([100]), 0.02, 50.0)
    >>> float(a[0]), float(b[0])
    (4.0, 146.0)
    """
    prior_mean = np.asarray(prior_mean, dtype=np.float64)
    prior_strength = np.asarray(prior_strength, dtype=np.float64)
    if np.any((prior_mean <= 0.0) | (prior_mean >= 1.0)) or np.any(prior_strength <= 0.0):
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


def stage_evidence(evidence: Evidence, model: str,
                   save_weight: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(trials, successes) per ad of each stage of ``model``."""
    successes = evidence.successes(save_weight)
    if model == "direct":
        return [(evidence.exposure, successes)]
    if model == "funnel":
        return [(evidence.exposure, evidence.views), (evidence.views, successes)]
    raise ValueError(f"unknown reward model {model!r}; expected one of {REWARD_MODELS}")


def empirical_rates(evidence: Evidence, groups: np.ndarray, model: str, save_weight: float,
                    prior: PriorSpec) -> PriorRates:
    """The priors of every group (category) and stage, learnt from all ads' evidence
    (``bandit.priors``).

    >>> ev = Evidence(np.array([1000.0, 0.0]), np.array([100.0, 0.0]), np.zeros(2),
    ...               np.array([20.0, 0.0]))
    >>> empirical_rates(ev, np.array([0, 1]), "funnel", 0.0, PriorSpec()).groups.round(3)
    array([[0.1, 0.2],
           [0.1, 0.2]])
    """
    return fit_priors(stage_evidence(evidence, model, save_weight), groups, model, prior)


def regional_rates(evidence: Evidence, groups: np.ndarray, regions: np.ndarray,
                   names: Sequence[str], model: str, save_weight: float,
                   rates: PriorRates) -> PriorRates:
    """``rates`` with means of each group in each region of ``names`` (``regions``: each
    ad's index into them), drawn towards the group's means by an empirical-Bayes weight
    (``bandit.priors.fit_regional``)."""
    regional = fit_regional(stage_evidence(evidence, model, save_weight), groups, regions,
                            rates, len(names))
    return replace(rates, regions=tuple(names), regional=regional)


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


def ad_posterior(evidence: Evidence, priors: AdPriors, model: str,
                 save_weight: float) -> AdPosterior:
    """Each ad's posterior under ``model``, from its evidence and its prior
    (``PriorRates.for_ads``): each stage's Beta(mean x strength, (1 - mean) x strength)
    updated with the stage's trials and successes.

    >>> ev = Evidence(np.array([1000.0, 0.0]), np.array([100.0, 0.0]), np.zeros(2),
    ...               np.array([20.0, 0.0]))
    >>> rates = empirical_rates(ev, np.array([0, 0]), "funnel", 0.0, PriorSpec())
    >>> post = ad_posterior(ev, rates.for_ads(np.array([0, 0])), "funnel", 0.0)
    >>> post.alpha.shape, bool(abs(post.mean()[1] - post.mean()[0]) < 0.01)
    ((2, 2), True)
    """
    alphas, betas = [], []
    for stage, (trials, succ) in enumerate(stage_evidence(evidence, model, save_weight)):
        a, b = beta_posterior(succ, trials, priors.means[:, stage], priors.strengths[:, stage])
        alphas.append(a)
        betas.append(b)
    return AdPosterior(np.stack(alphas), np.stack(betas))
