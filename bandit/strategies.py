"""Feed strategies, and the second bandit that picks one for each feed.

A strategy orders what a user sees of a cell's candidate ads:

- ``thompson``: by one independent draw from each ad's posterior (K variants, so users of
  one cell see different orders); explores new ads in proportion to how likely they are
  to be the best.
- ``popular``, ``newest``, ``nearest``: the ads of a Thompson variant, each screen of
  SCREEN ads reordered by posterior mean (the best guess today), by creation time, or by
  distance from the user. They choose how a screen is ordered, never which ads are on it,
  so whichever strategy the second bandit favours, every screen explores as Thompson
  sampling would: a greedy or a performance-blind order cannot starve the exploration the
  first bandit depends on (the "trap" of a few strong ads among many weak ones).
- ``random``: uniformly random orders (K variants); a baseline, and the cleanest data
  for off-policy evaluation.
- ``egreedy``: the popular order over all candidates, each slot replaced with probability
  epsilon by a random other candidate (K variants); a baseline.

"Bandit Master": each strategy is an arm of a second Thompson bandit, with a Beta
posterior on the applies per feed it served. The probability that each strategy is the
best (Monte Carlo over the posteriors), with an exploration floor, is the probability it
is served with: its propensity, logged with the feed for off-policy evaluation.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bandit.posterior import beta_posterior, posterior_mean
from bandit.thompson import rank_variants

STRATEGIES = ("thompson", "popular", "newest", "nearest", "random", "egreedy")
DEFAULT_STRATEGIES = ("thompson", "popular", "newest", "nearest")
SCREENED = ("popular", "newest", "nearest")   # reorder the screens of a Thompson variant
SCREEN = 10                                   # ads a phone shows at once
PROBABILITY_DRAWS = 1000


@dataclass(frozen=True)
class Candidates:
    """What the strategies need of a cell's candidate ads, aligned by candidate."""

    draws: np.ndarray        # (n, K) posterior draws
    mean: np.ndarray         # (n,) posterior means
    created_at: np.ndarray   # (n,)

    def __len__(self) -> int:
        return len(self.mean)


def order_sources(strategies: Sequence[str]) -> list[str]:
    """The strategies whose orders a cell's feed keeps: the screened ones serve from
    Thompson's.

    >>> order_sources(["popular", "nearest", "random"])
    ['thompson', 'random']
    """
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown strategy {sorted(unknown)[0]!r}; expected one of {STRATEGIES}")
    sources = ["thompson"] if any(s == "thompson" or s in SCREENED for s in strategies) else []
    return sources + [s for s in strategies if s not in SCREENED and s != "thompson"]


def screen_keys(strategies: Sequence[str], cand: Candidates) -> dict[str, np.ndarray]:
    """What each screened strategy that orders by a property of the ad sorts by (higher
    first): ``nearest`` sorts by the distance from the user, known only at serve time."""
    keys = {"popular": cand.mean, "newest": cand.created_at}
    return {s: keys[s] for s in strategies if s in keys}


def screen_orders(keys: np.ndarray, screen: int = SCREEN) -> np.ndarray:
    """For each row of ``keys``, the permutation that sorts every run of ``screen``
    consecutive entries by key, highest first, ties in their given order: what is on each
    screen stays, only its order changes.

    >>> screen_orders(np.array([[1.0, 3.0, 2.0, 9.0, 8.0]]), screen=3).tolist()
    [[1, 2, 0, 3, 4]]
    """
    keys = np.asarray(keys, dtype=np.float64)
    rows, n = keys.shape
    block = np.broadcast_to(np.arange(n) // screen, (rows, n))
    row = np.broadcast_to(np.arange(rows)[:, None], (rows, n))
    flat = np.lexsort((-keys.ravel(), block.ravel(), row.ravel()))
    return flat.reshape(rows, n) - np.arange(rows)[:, None] * n


def screen_order(keys: Sequence[float], screen: int = SCREEN) -> list[int]:
    """``screen_orders`` of one short row, without arrays (a feed's few dozen ads, once a
    request).

    >>> screen_order([1.0, 3.0, 2.0, 9.0, 8.0], screen=3)
    [1, 2, 0, 3, 4]
    """
    key = keys.__getitem__
    if len(keys) <= screen:
        return sorted(range(len(keys)), key=key, reverse=True)   # (a stable sort, reversed)
    out: list[int] = []
    for start in range(0, len(keys), screen):
        out += sorted(range(start, min(start + screen, len(keys))), key=key, reverse=True)
    return out


def strategy_orders(strategies: Sequence[str], cand: Candidates, length: int,
                    rng: np.random.Generator, epsilon: float = 0.1) -> dict[str, np.ndarray]:
    """The orders a cell's feed keeps (``order_sources``): for each, a (K, min(length, n))
    array of candidate positions, best first.

    >>> c = Candidates(np.array([[0.1], [0.3]]), np.array([0.2, 0.1]), np.array([5.0, 9.0]))
    >>> {k: v.tolist() for k, v in strategy_orders(["thompson", "popular", "newest", "nearest"],
    ...                                            c, 10, np.random.default_rng(0)).items()}
    {'thompson': [[1, 0]]}
    """
    variants = cand.draws.shape[1]
    out: dict[str, np.ndarray] = {}
    for name in order_sources(strategies):
        if name == "thompson":
            out[name] = rank_variants(cand.draws.T, length)
        elif name == "random":
            out[name] = rank_variants(rng.random((variants, len(cand))), length)
        else:
            out[name] = epsilon_greedy_orders(cand.mean, variants, length, epsilon, rng)
    return out


def epsilon_greedy_orders(mean: np.ndarray, variants: int, length: int, epsilon: float,
                          rng: np.random.Generator) -> np.ndarray:
    """``variants`` orders: the greedy order by ``mean``, each slot taken with probability
    ``epsilon`` by a random candidate from outside the greedy top ``length``.

    >>> epsilon_greedy_orders(np.array([0.1, 0.5, 0.3]), 2, 3, 0.0, np.random.default_rng(0))
    array([[1, 2, 0],
           [1, 2, 0]])
    """
    greedy = rank_variants(np.asarray(mean)[None, :], length)[0]
    keep = len(greedy)
    rest = np.setdiff1d(np.arange(len(mean)), greedy)
    explore = rng.random((variants, keep)) < epsilon
    explore &= np.cumsum(explore, axis=1) <= len(rest)
    if not explore.any():
        return np.broadcast_to(greedy, (variants, keep)).copy()
    picks = rest[rank_variants(rng.random((variants, len(rest))), keep)]
    pick_at = np.clip(np.cumsum(explore, axis=1) - 1, 0, None)
    greedy_at = np.clip(np.cumsum(~explore, axis=1) - 1, 0, None)
    return np.where(explore, np.take_along_axis(picks, np.minimum(pick_at, picks.shape[1] - 1),
                                                axis=1), greedy[greedy_at])


def probability_best(alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator,
                     draws: int = PROBABILITY_DRAWS) -> np.ndarray:
    """For Beta posteriors over the last axis (the strategies), the probability that each
    has the highest rate.

    Computed by quadrature (``quadrature_best``) wherever every density is bounded (alpha
    and beta at least 1) and a grid of at most ``MAX_GRID`` points resolves the narrowest;
    elsewhere estimated from ``draws`` joint draws.

    >>> p = probability_best(np.array([[50.0, 5.0]]), np.array([[50.0, 95.0]]),
    ...                      np.random.default_rng(0))
    >>> p.round(6).tolist()
    [[1.0, 0.0]]
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    a, b = alpha.reshape(-1, alpha.shape[-1]), beta.reshape(-1, beta.shape[-1])
    out = np.empty(a.shape)
    grids = grid_sizes(a, b)
    for size in np.unique(grids).tolist():
        rows = grids == size
        out[rows] = (quadrature_best(a[rows], b[rows], size) if size
                     else sampled_best(a[rows], b[rows], rng, draws))
    return out.reshape(alpha.shape)


MAX_GRID = 2048          # most points a quadrature grid takes; past it, draws
STEPS_PER_SD = 3         # grid points per standard deviation of the narrowest density
SPAN_SDS = 9             # the grid reaches this many standard deviations past every mean


def grid_sizes(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The quadrature grid each row (arms on the last axis) needs, a power of two from 64,
    or 0 where quadrature does not fit (an unbounded density, or too narrow a one)."""
    mean, sd = _beta_moments(alpha, beta)
    low, high = _span(mean, sd)
    need = STEPS_PER_SD * (high - low) / np.maximum(sd.min(axis=-1), 1e-300)
    size = 2.0 ** np.ceil(np.log2(np.clip(need, 64, None)))
    bounded = (alpha >= 1).all(axis=-1) & (beta >= 1).all(axis=-1)
    return np.where(bounded & (size <= MAX_GRID), size, 0).astype(np.int64)


def quadrature_best(alpha: np.ndarray, beta: np.ndarray, size: int) -> np.ndarray:
    """P(arm i has the highest rate) for rows of Beta densities (rows, arms): the sum over a
    grid of ``size`` cells spanning every density of P(arm i's rate is in the cell) x the
    product over the other arms of P(their rate is below it), with each density's mass per
    cell from its log-density at the cell's middle (normalised on the grid, so no Beta
    function is needed) and its CDF at the middle as the mass below plus half the cell's.

    >>> quadrature_best(np.array([[2.0, 1.0]]), np.array([[1.0, 1.0]]), 256).round(4).tolist()
    [[0.6667, 0.3333]]
    """
    mean, sd = _beta_moments(alpha, beta)
    low, high = _span(mean, sd)
    x = low[:, None] + (np.arange(size) + 0.5) * ((high - low) / size)[:, None]
    log_mass = ((alpha - 1)[:, :, None] * np.log(x)[:, None, :]
                + (beta - 1)[:, :, None] * np.log1p(-x)[:, None, :])
    mass = np.exp(log_mass - log_mass.max(axis=-1, keepdims=True))    # (rows, arms, size)
    mass /= mass.sum(axis=-1, keepdims=True)
    log_below = np.log(np.maximum(np.cumsum(mass, axis=-1) - mass / 2, 1e-300))
    others_below = np.exp(log_below.sum(axis=1, keepdims=True) - log_below)
    best = (mass * others_below).sum(axis=-1)
    return best / best.sum(axis=-1, keepdims=True)


def sampled_best(alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator,
                 draws: int) -> np.ndarray:
    """``probability_best`` estimated from ``draws`` joint draws of every row's arms."""
    samples = rng.beta(alpha[..., None], beta[..., None], size=alpha.shape + (draws,))
    best = samples.argmax(axis=-2)                               # (..., draws)
    arms = np.arange(alpha.shape[-1]).reshape(-1, 1)
    return (best[..., None, :] == arms).mean(axis=-1)


def _beta_moments(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    total = alpha + beta
    return alpha / total, np.sqrt(alpha * beta / (total * total * (total + 1)))


def _span(mean: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A row's grid: from the lowest mean less SPAN_SDS of its sd to the highest plus."""
    return (np.clip((mean - SPAN_SDS * sd).min(axis=-1), 0.0, 1.0),
            np.clip((mean + SPAN_SDS * sd).max(axis=-1), 0.0, 1.0))


def with_floor(probabilities: np.ndarray, floor: float) -> np.ndarray:
    """Probabilities mixed with the uniform so that each is at least ``floor``.

    >>> with_floor(np.array([1.0, 0.0, 0.0, 0.0]), 0.05)
    array([0.85, 0.05, 0.05, 0.05])
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    arms = probabilities.shape[-1]
    if not 0 <= floor * arms <= 1:
        raise ValueError("floor times the number of strategies must be in [0, 1]")
    return floor + (1.0 - floor * arms) * probabilities


def choose(probabilities: np.ndarray, u: float) -> int:
    """The index that ``u`` (uniform in [0, 1)) picks with the given probabilities.

    >>> choose(np.array([0.2, 0.5, 0.3]), 0.1), choose(np.array([0.2, 0.5, 0.3]), 0.69)
    (0, 1)
    """
    cumulative = np.cumsum(probabilities)
    index = int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))
    return min(index, len(cumulative) - 1)


@dataclass(frozen=True)
class StrategyPrior:
    """How the strategy bandit starts and when a cell may stand on its own data."""

    reward_rate: float = 0.05    # applies per feed before any evidence
    strength: float = 20.0       # prior weight, in feeds
    cell_min_feeds: float = 200  # a cell with fewer (decayed) feeds uses the global posterior
    floor: float = 0.05          # every strategy keeps at least this probability


@dataclass(frozen=True)
class RegionSums:
    """The strategy bandit's sums of the regions the cells lie in (a coarser geohash): each
    cell's region (an index into the rows; -1: none), and each region's served feeds and
    applies per strategy, shape (regions, strategies)."""

    of_cell: np.ndarray
    served: np.ndarray
    applies: np.ndarray


def strategy_probabilities(cell_served: np.ndarray, cell_applies: np.ndarray,
                           global_served: np.ndarray, global_applies: np.ndarray,
                           prior: StrategyPrior, rng: np.random.Generator,
                           draws: int = PROBABILITY_DRAWS,
                           regions: RegionSums | None = None) -> np.ndarray:
    """Each cell's probability of serving each strategy, shape (cells, strategies).

    Evidence is pooled cell -> region -> global. The global posterior starts from the pooled
    rate of all strategies; a region's from the global posterior mean of each strategy, and
    a cell's from its region's posterior mean (the global one while the region has fewer
    than ``cell_min_feeds`` served feeds). A cell with fewer than ``cell_min_feeds`` takes
    its region's probabilities as they are, or the global ones while the region has too few
    too. Without ``regions``: cell -> global.

    >>> prior = StrategyPrior(strength=20.0, cell_min_feeds=200, floor=0.0)
    >>> regions = RegionSums(np.array([0, 1]), np.array([[900.0, 900.0], [900.0, 900.0]]),
    ...                      np.array([[90.0, 10.0], [10.0, 90.0]]))
    >>> p = strategy_probabilities(np.zeros((2, 2)), np.zeros((2, 2)), np.full(2, 1800.0),
    ...                            np.full(2, 100.0), prior, np.random.default_rng(0),
    ...                            regions=regions)
    >>> p.round(2).tolist()                     # new cells: their regions' best, not 50/50
    [[1.0, 0.0], [0.0, 1.0]]
    """
    cell_served = np.asarray(cell_served, dtype=np.float64)
    cell_applies = np.asarray(cell_applies, dtype=np.float64)
    global_served = np.asarray(global_served, dtype=np.float64)
    global_applies = np.asarray(global_applies, dtype=np.float64)
    pooled = ((global_applies.sum() + prior.reward_rate * prior.strength)
              / (global_served.sum() + prior.strength))
    pooled = float(np.clip(pooled, 1e-6, 1 - 1e-6))
    g_alpha, g_beta = beta_posterior(global_applies, global_served, pooled, prior.strength)
    global_probs = with_floor(probability_best(g_alpha, g_beta, rng, draws), prior.floor)
    g_mean = np.clip(posterior_mean(g_alpha, g_beta), 1e-6, 1 - 1e-6)
    out = np.broadcast_to(global_probs, cell_served.shape).copy()
    parent = np.broadcast_to(g_mean, cell_served.shape).copy()   # each cell's prior mean
    if regions is not None and len(regions.served):
        served = np.asarray(regions.served, dtype=np.float64)
        known = served.sum(axis=1) >= prior.cell_min_feeds
        if known.any():
            r_alpha, r_beta = beta_posterior(np.asarray(regions.applies)[known], served[known],
                                             g_mean, prior.strength)
            rows = np.full(len(served), -1)
            rows[known] = np.arange(int(known.sum()))
            of_cell = np.asarray(regions.of_cell, dtype=np.int64)
            at = np.where(of_cell >= 0, rows[np.maximum(of_cell, 0)], -1)
            backed = at >= 0
            r_probs = with_floor(probability_best(r_alpha, r_beta, rng, draws), prior.floor)
            out[backed] = r_probs[at[backed]]
            parent[backed] = np.clip(posterior_mean(r_alpha, r_beta), 1e-6, 1 - 1e-6)[at[backed]]
    own = cell_served.sum(axis=1) >= prior.cell_min_feeds
    if own.any():
        c_alpha, c_beta = beta_posterior(cell_applies[own], cell_served[own], parent[own],
                                         prior.strength)
        out[own] = with_floor(probability_best(c_alpha, c_beta, rng, draws), prior.floor)
    return out
