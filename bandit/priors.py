"""Empirical-Bayes priors: where a new ad starts, and how much evidence it takes to move it.

Each stage of the reward model (see ``bandit.posterior``) gets a Beta prior per group (an
ad's category): its mean and its strength (its weight, in trials). Both are learnt from the
ads themselves, and both weigh ads, not events:

- The strength comes from how much the ads' rates differ (method of moments for the
  beta-binomial, Kleinman's weights): ads whose rates barely differ make a strong prior, so
  a stage that carries no signal stays at its mean instead of adding noise to every draw;
  ads that differ widely make a weak one. Rare events leave the estimate noisy, so it
  starts from the configured strength, weighed as PRIOR_ADS ads measured to that strength
  would be, and moves away from it as evidence builds up; each group's starts from the
  pooled one the same way.
- The mean of a group weighs each ad's rate by how much it says about the group: its
  trials while it has few, but never more than strength + 1 trials, since an ad is one
  draw from its group however long it runs. The ads a bandit shows most (the best) then do
  not pull everyone's prior up, as a pooled events-per-trials rate would; where ads are
  alike (a strong prior) it comes back to pooling their trials, which is right for them.
  The configured rate weighs PRIOR_ADS ads' worth (PRIOR_ADS x the configured strength in
  trials) of pseudo-evidence; a group's mean is drawn as strongly towards the other groups'
  mean, so no single ad moves a category far.
- A region (a coarser geohash) may have means of its own (``fit_regional``): a group's mean
  among the region's ads, drawn towards the group's mean everywhere by an empirical-Bayes
  weight. How far regions' means differ beyond what their ads' noise explains (a
  DerSimonian-Laird estimate, pooled over groups) sets that weight: where regions do not
  differ, every region keeps the group's mean; where they do, a region moves to its own mean
  as its ads' evidence builds up, with no fixed threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE_BOUNDS = (1e-6, 1.0 - 1e-6)
STRENGTH_BOUNDS = (2.0, 10_000.0)   # prior weight in trials: never flatter than Beta(1, 1)
MIN_TRIALS = 2.0                    # an ad with fewer trials tells nothing of the spread
PRIOR_ADS = 100.0                   # the fallback strength weighs as this many ads would


@dataclass(frozen=True)
class PriorSpec:
    """Where priors come from when there is no evidence at all, and their weight.

    ``apply_rate`` is P(apply | impression) and ``view_rate`` P(view | impression) before
    any evidence; ``strength`` is the prior's weight in impressions (the funnel's second
    stage weighs ``strength * view_rate`` views) until the spread of the ads' rates gives
    one.
    """

    apply_rate: float = 0.02
    view_rate: float = 0.10
    strength: float = 50.0

    def __post_init__(self) -> None:
        if not (0 < self.apply_rate < self.view_rate < 1) or self.strength <= 0:
            raise ValueError("need 0 < apply_rate < view_rate < 1 and a positive strength")


@dataclass(frozen=True)
class StagePrior:
    """One stage's Beta prior: a mean and a strength per group, and overall ones for ads of
    a group never seen."""

    means: np.ndarray          # (groups,)
    strengths: np.ndarray      # (groups,)
    overall_mean: float
    overall_strength: float


@dataclass(frozen=True)
class AdPriors:
    """The prior of every stage for each ad, arrays (n, stages)."""

    means: np.ndarray
    strengths: np.ndarray


@dataclass(frozen=True)
class PriorRates:
    """Empirical-Bayes priors, one column per stage of the reward model (direct:
    P(apply | impression); funnel: P(view | impression), P(apply | view)): a row per group,
    and the overall row for ads of a group never seen."""

    model: str
    groups: np.ndarray             # (groups, stages) prior means
    overall: np.ndarray            # (stages,)
    strengths: np.ndarray          # (groups, stages) prior strengths, in trials
    overall_strength: np.ndarray   # (stages,)
    regions: tuple[str, ...] = ()  # the regions with means of their own (``fit_regional``)
    regional: np.ndarray | None = None   # (regions, groups, stages) their groups' means

    def for_ads(self, groups: np.ndarray, regions: np.ndarray | None = None) -> AdPriors:
        """The prior of each ad of these groups (-1, or a group never seen: the overall);
        with ``regions`` (each ad's index into ``self.regions``; -1: none), a known group's
        mean in the ad's region."""
        groups = np.asarray(groups, dtype=np.int64)
        known = (groups >= 0) & (groups < len(self.groups))
        shape = (len(groups), len(self.overall))
        means = np.broadcast_to(self.overall, shape).copy()
        strengths = np.broadcast_to(self.overall_strength, shape).copy()
        means[known] = self.groups[groups[known]]
        strengths[known] = self.strengths[groups[known]]
        if regions is not None and self.regional is not None:
            regions = np.asarray(regions, dtype=np.int64)
            local = known & (regions >= 0) & (regions < len(self.regional))
            means[local] = self.regional[regions[local], groups[local]]
        return AdPriors(means, strengths)

    def region_index(self, names: list[str]) -> np.ndarray:
        """Each of ``names``' index into ``self.regions`` (-1: a region with no means)."""
        at = {name: i for i, name in enumerate(self.regions)}
        return np.array([at.get(n, -1) for n in names], dtype=np.int64)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(a row per group, the overall row): each stage's mean, then each stage's strength,
        as the store keeps them."""
        return (np.concatenate([self.groups, self.strengths], axis=1),
                np.concatenate([self.overall, self.overall_strength]))

    @classmethod
    def from_rows(cls, model: str, rows: np.ndarray, overall: np.ndarray,
                  fallback: PriorRates) -> PriorRates:
        """The inverse of ``rows``; NaN values (never written, or written by a version that
        kept no strengths) take the overall ones, and those the ``fallback``'s."""
        stages = len(fallback.overall)
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 2 * stages)
        overall = np.where(np.isnan(overall[:2 * stages]),
                           np.concatenate([fallback.overall, fallback.overall_strength]),
                           overall[:2 * stages])
        rows = np.where(np.isnan(rows), overall, rows)
        return cls(model, rows[:, :stages], overall[:stages], rows[:, stages:], overall[stages:])

    @classmethod
    def fallback(cls, model: str, prior: PriorSpec) -> PriorRates:
        """The priors before any evidence."""
        means, strengths = zip(*stage_fallbacks(model, prior), strict=True)
        return cls(model, np.empty((0, len(means))), np.array(means),
                   np.empty((0, len(means))), np.array(strengths))


def stage_fallbacks(model: str, prior: PriorSpec) -> list[tuple[float, float]]:
    """(mean, strength) of each stage of ``model`` before any evidence."""
    if model == "direct":
        return [(prior.apply_rate, prior.strength)]
    if model == "funnel":
        return [(prior.view_rate, prior.strength),
                (prior.apply_rate / prior.view_rate, prior.strength * prior.view_rate)]
    raise ValueError(f"unknown reward model {model!r}; expected one of ('direct', 'funnel')")


def _spread(trials: np.ndarray, rates: np.ndarray, groups: np.ndarray, size: int,
            rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the numerator and denominator of the moment estimate of the intra-class
    correlation rho = 1 / (strength + 1), with Kleinman's weights n / (1 + (n - 1) rho)."""
    used = trials >= MIN_TRIALS
    n = np.where(used, trials, 1.0)
    w = np.where(used, n / (1.0 + (n - 1.0) * rho), 0.0)
    total = np.bincount(groups, w, size)
    safe = np.where(total > 0, total, 1.0)
    mean = np.bincount(groups, w * rates, size) / safe
    squares = np.bincount(groups, w * (rates - mean[groups]) ** 2, size)
    a = w - w * w / safe[groups]
    binomial = mean * (1.0 - mean)
    numerator = (np.divide(squares, binomial, out=np.zeros(size), where=binomial > 0)
                 - np.bincount(groups, a / n, size))
    return numerator, np.bincount(groups, a * (1.0 - 1.0 / n), size)


def _strength(numerator: float | np.ndarray, denominator: float | np.ndarray) -> np.ndarray:
    """The strength from a moment estimate of rho (numerator / denominator); a dispersion
    below the binomial's (a negative numerator) is noise: it says "no spread"."""
    lo, hi = 1.0 / (STRENGTH_BOUNDS[1] + 1.0), 1.0 / (STRENGTH_BOUNDS[0] + 1.0)
    rho = np.clip(np.maximum(np.asarray(numerator), 0.0) / np.asarray(denominator), lo, hi)
    return 1.0 / rho - 1.0


def fit_stage(trials: np.ndarray, successes: np.ndarray, groups: np.ndarray,
              fallback_mean: float, fallback_strength: float,
              size: int | None = None) -> StagePrior:
    """The Beta prior of one stage per group, from each ad's trials and successes.

    Ads differ (rates 5 % and 25 %): a weak prior; they do not (every ad at 10 %): the
    strongest one allowed.

    >>> n = np.full(4000, 400.0)
    >>> differ = fit_stage(n, np.tile([20.0, 100.0], 2000), np.zeros(4000, int), 0.1, 50.0)
    >>> alike = fit_stage(n, np.full(4000, 40.0), np.zeros(4000, int), 0.1, 50.0)
    >>> round(float(differ.strengths[0])), round(float(alike.strengths[0]))
    (13, 10000)
    >>> round(float(differ.means[0]), 3), round(float(alike.means[0]), 3)
    (0.146, 0.1)
    """
    groups = np.asarray(groups, dtype=np.int64)
    size = int(groups.max()) + 1 if size is None and len(groups) else (size or 0)
    n = np.clip(np.asarray(trials, dtype=np.float64), 0.0, None)
    k = np.minimum(np.clip(np.asarray(successes, dtype=np.float64), 0.0, None), n)
    rates = np.divide(k, n, out=np.zeros_like(n), where=n > 0)
    # the fallback as pseudo-evidence: PRIOR_ADS ads with as many trials as its strength;
    # a group's own evidence then starts from the other groups' (so none counts twice)
    pseudo = PRIOR_ADS * float(fallback_strength)
    fallback_rho = 1.0 / (fallback_strength + 1.0)
    overall_strength = float(fallback_strength)
    for _ in range(4):                      # the weights depend on the strength they estimate
        numerator, denominator = _spread(n, rates, groups, size, 1.0 / (overall_strength + 1))
        overall_strength = float(_strength(max(numerator.sum(), 0.0) + pseudo * fallback_rho,
                                           denominator.sum() + pseudo))
    others = 1.0 / (_strength(np.maximum(numerator.sum() - numerator, 0.0)
                              + pseudo * fallback_rho,
                              denominator.sum() - denominator + pseudo) + 1.0)
    strength = _strength(np.maximum(numerator, 0.0) + pseudo * others, denominator + pseudo)
    # means: each ad's rate weighed by its precision about the mean, in trials: its trials
    # while it has few, at most strength + 1 (an ad is one draw from its group, however
    # long it runs), with pseudo-evidence at the fallback; a group's own mean is drawn
    # towards that of the other groups (so no ad counts twice)
    weight = (overall_strength + 1.0) * n / (n + overall_strength)
    total, total_rate = weight.sum(), (weight * rates).sum()
    overall = _mean(total_rate, total, fallback_mean, pseudo)
    own = (strength[groups] + 1.0) * n / (n + strength[groups])
    own_weight, own_rate = np.bincount(groups, own, size), np.bincount(groups, own * rates, size)
    others = _mean(total_rate - np.bincount(groups, weight * rates, size),
                   total - np.bincount(groups, weight, size), fallback_mean, pseudo)
    return StagePrior(_mean(own_rate, own_weight, others, pseudo), strength, float(overall),
                      overall_strength)


def _mean(rate_sum: np.ndarray | float, weight: np.ndarray | float,
          prior: np.ndarray | float, pseudo: float) -> np.ndarray:
    """A weighted mean rate with ``pseudo`` trials' worth of ``prior``."""
    return np.clip((rate_sum + pseudo * np.asarray(prior)) / (weight + pseudo), *RATE_BOUNDS)


def fit_regional(stages: list[tuple[np.ndarray, np.ndarray]], groups: np.ndarray,
                 regions: np.ndarray, rates: PriorRates, size: int) -> np.ndarray:
    """Each region's mean of each group and stage, shape (size, groups, stages), from each
    ad's (trials, successes) per stage, its group and its region (0 .. size - 1), drawn
    towards the group's mean in ``rates`` with an empirical-Bayes weight (see the module).

    Two regions whose ads differ (10 % and 30 %, 2,000 ads each) keep their own means; two
    that do not both stay at the group's:

    >>> n, region = np.full(4000, 200.0), np.repeat([0, 1], 2000)
    >>> one = PriorRates("direct", np.array([[0.2]]), np.array([0.2]), np.array([[50.0]]),
    ...                  np.array([50.0]))
    >>> apart = fit_regional([(n, np.where(region == 0, 20.0, 60.0))], np.zeros(4000, int),
    ...                      region, one, 2)
    >>> alike = fit_regional([(n, np.full(4000, 40.0))], np.zeros(4000, int), region, one, 2)
    >>> apart[:, 0, 0].round(2).tolist(), alike[:, 0, 0].round(2).tolist()
    ([0.1, 0.3], [0.2, 0.2])
    """
    groups = np.asarray(groups, dtype=np.int64)
    regions = np.asarray(regions, dtype=np.int64)
    count = len(rates.groups)
    out = np.broadcast_to(rates.groups, (size, count, len(stages))).copy()
    placed = (groups >= 0) & (groups < count) & (regions >= 0) & (regions < size)
    cell = regions[placed] * count + groups[placed]
    for stage, (trials, successes) in enumerate(stages):
        n = np.clip(np.asarray(trials, dtype=np.float64)[placed], 0.0, None)
        k = np.minimum(np.clip(np.asarray(successes, dtype=np.float64)[placed], 0.0, None), n)
        rates_ = np.divide(k, n, out=np.zeros_like(n), where=n > 0)
        strength = rates.strengths[groups[placed], stage]
        weight = np.where(n >= MIN_TRIALS, (strength + 1.0) * n / (n + strength), 0.0)
        total = np.bincount(cell, weight, size * count)
        mean = np.divide(np.bincount(cell, weight * rates_, size * count), total,
                         out=np.zeros(size * count), where=total > 0)
        parent = np.tile(rates.groups[:, stage], size)
        # DerSimonian-Laird: the spread of the regions' means around their group's pooled
        # mean (the same ads' weighted mean: one degree of freedom a group) beyond their
        # noise (binomial / weight), as a share of the binomial variance
        group_of = np.arange(size * count) % count
        seen = total > 0
        w1 = np.bincount(group_of, total, count)
        w2 = np.bincount(group_of, total ** 2, count)
        pooled = np.divide(np.bincount(group_of, total * mean, count), w1,
                           out=np.zeros(count), where=w1 > 0)[group_of]
        binomial = np.clip(pooled * (1.0 - pooled), 1e-12, None)
        q = float((total * (mean - pooled) ** 2 / binomial)[seen].sum())
        df = float(seen.sum() - (w1 > 0).sum())
        spread = float((w1 - np.divide(w2, w1, out=np.zeros(count), where=w1 > 0)).sum())
        share = max(q - df, 0.0) / spread if spread > 0 else 0.0
        if share <= 0:
            continue                                   # regions do not differ: the group's
        pseudo = 1.0 / share                           # the parent's weight, in trials
        shrunk = (total * mean + pseudo * parent) / (total + pseudo)
        out[:, :, stage] = np.clip(shrunk, *RATE_BOUNDS).reshape(size, count)
    return out


def fit_priors(stages: list[tuple[np.ndarray, np.ndarray]], groups: np.ndarray, model: str,
               prior: PriorSpec) -> PriorRates:
    """Every stage's prior per group, from each stage's (trials, successes) per ad."""
    fitted = [fit_stage(trials, successes, groups, mean, strength)
              for (trials, successes), (mean, strength)
              in zip(stages, stage_fallbacks(model, prior), strict=True)]
    return PriorRates(model, np.stack([f.means for f in fitted], axis=1),
                      np.array([f.overall_mean for f in fitted]),
                      np.stack([f.strengths for f in fitted], axis=1),
                      np.array([f.overall_strength for f in fitted]))
