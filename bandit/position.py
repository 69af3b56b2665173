"""Position bias learnt from the data: how much less often an ad is examined further down a
feed, so that an impression there counts for less.

Intervention harvesting: between two regenerations a cell's feeds come from one posterior,
and its K Thompson variants (and users at different points of the cell) put the same ad at
different positions for reasons that have nothing to do with how that ad does next. Under
the position-based model, the views of ad a at position p are impressions x b(p) x r(a),
with an examination curve b shared by every ad. Within such an epoch, the views an ad gets
at p times its impressions at q, summed over ads (``pair_counts``), has expectation
b(p) x M(p, q) with M symmetric, so the counts at (p, q) against (q, p) compare b(p) with
b(q) with every ad's own rate cancelled out, as in a Bradley-Terry model; ``fit_curve``
finds the curve that explains all pairs at once. Comparing an ad with
itself only within an epoch matters: across epochs, where an ad is shown depends on how it
did before (Thompson moves an ad that was lucky up), and a fit over all time would mistake
that for position bias.

Positions are binned: 1 to 10 one by one, then 11-20 and 21 and beyond. The pairs are
counted as the independent views they are worth (``effective_pairs``), and each bin is
tied to the next by TIE_PAIRS pseudo-comparisons at the odds of a steep prior curve
(PRIOR_CURVE), so a bin with little data follows its neighbours, and the prior's shape,
rather than noise. The interval comes from a Poisson bootstrap of
the effective comparisons.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BINS = 12
BIN_LABELS = tuple(str(p) for p in range(1, 11)) + ("11-20", "21+")
TIE_PAIRS = 5.0          # pseudo-comparisons tying each bin to the next
# Before the data say otherwise, a steep curve: each bin's representative position ** -1.
# Erring steep errs towards exploring: an impression far down that was in fact looked at
# counts for too little, so its ad looks better than it is and gets shown higher, where the
# truth comes out; erring flat would count unseen impressions against an ad and bury it.
PRIOR_CURVE = np.array([*range(1, 11), 15, 30], dtype=np.float64) ** -1.0
ITERATIONS = 50
CURVE_BOUNDS = (0.01, 10.0)   # no position counts for nothing, none for more than ten
REPLICATES = 200         # bootstrap replicates for the interval


def position_bin(positions: np.ndarray) -> np.ndarray:
    """The bin of each 1-based position; -1 where the position is unknown (below 1).

    >>> position_bin(np.array([0, 1, 10, 11, 20, 21, 100])).tolist()
    [-1, 0, 9, 10, 10, 11, 11]
    """
    p = np.asarray(positions, dtype=np.float64)
    return np.where(p < 1, -1, np.where(p <= 10, np.floor(p) - 1,
                                        np.where(p <= 20, 10, 11))).astype(np.int64)


def pair_counts(impressions: np.ndarray, views: np.ndarray) -> np.ndarray:
    """(2, BINS, BINS) from (ads, BINS) counts of one epoch: entry [0, p, q] sums, over ads,
    the ad's views at p times its impressions at q; entry [1, p, q] the same with the
    impressions squared (what the first's variance comes to). The diagonal of the first
    counts the views at p of ads also shown elsewhere (the views the comparisons rest on).

    >>> pair_counts(np.array([[10.0, 10.0], [5.0, 0.0]]), np.array([[4.0, 2.0], [1.0, 0.0]]))[0]
    array([[ 4., 40.],
           [20.,  2.]])
    """
    n = np.asarray(impressions, dtype=np.float64)
    c = np.asarray(views, dtype=np.float64)
    out = np.stack([c.T @ n, c.T @ (n * n)])
    bins = np.arange(n.shape[1])
    elsewhere = (n.sum(axis=1, keepdims=True) - n) > 0
    out[0, bins, bins] = (c * elsewhere).sum(axis=0)
    out[1, bins, bins] = 0.0
    return out


def effective_pairs(pairs: np.ndarray) -> np.ndarray:
    """The (..., BINS, BINS) comparisons the summed ``pair_counts`` are worth as independent
    views: each pair of bins scaled by its sum over its variance, so an ad shown to many
    users counts for its views, not for its views times its impressions."""
    sums, squares = pairs[..., 0, :, :].copy(), pairs[..., 1, :, :]
    bins = np.arange(sums.shape[-1])
    sums[..., bins, bins] = 0.0
    both = sums + np.swapaxes(sums, -1, -2)
    spread = squares + np.swapaxes(squares, -1, -2)
    return sums * np.divide(both, spread, out=np.zeros_like(both), where=spread > 0)


def reuse(pairs: np.ndarray, comparisons: np.ndarray) -> np.ndarray:
    """How many comparisons each view at a bin enters on average (at least 1): a view at p
    is compared with the ad's impressions at every other position."""
    views = np.diagonal(pairs[..., 0, :, :], axis1=-2, axis2=-1)
    return np.maximum(np.divide(comparisons.sum(axis=-1), views, out=np.ones_like(views),
                                where=views > 0), 1.0)


def fit_curve(comparisons: np.ndarray) -> np.ndarray:
    """The examination curve relative to the first bin, from (..., BINS, BINS)
    ``effective_pairs``: the b that makes comparisons[p, q] / (comparisons[p, q] +
    comparisons[q, p]) closest to b(p) / (b(p) + b(q)), by maximum likelihood (Newton's
    method on log b, which the likelihood is concave in).

    >>> fit_curve(np.array([[0.0, 400.0], [200.0, 0.0]])).round(2).tolist()   # half at 2
    [1.0, 0.5]
    """
    wins = np.array(comparisons, dtype=np.float64)
    bins = wins.shape[-1]
    prior = PRIOR_CURVE[:bins]
    share = prior[:, None] / (prior[:, None] + prior[None, :])     # P(p beats q) a priori
    wins = wins + TIE_PAIRS * share * (np.eye(bins, k=1) + np.eye(bins, k=-1))
    games = wins + np.swapaxes(wins, -1, -2)
    won = wins.sum(axis=-1)
    theta = np.zeros(wins.shape[:-1])          # log b, with log b(first bin) = 0
    for _ in range(ITERATIONS):
        p = 1.0 / (1.0 + np.exp(theta[..., None, :] - theta[..., :, None]))   # P(p beats q)
        gradient = won - (games * p).sum(axis=-1)
        curvature = games * p * (1.0 - p)
        hessian = curvature - np.eye(bins) * curvature.sum(axis=-1)[..., None]
        step = np.linalg.solve(-hessian[..., 1:, 1:], gradient[..., 1:, None])[..., 0]
        theta[..., 1:] += np.clip(step, -2.0, 2.0)
        if np.abs(step).max() < 1e-10:
            break
    return np.clip(np.exp(theta), *CURVE_BOUNDS)


@dataclass(frozen=True)
class PositionCurve:
    """The examination curve by position bin, relative to position 1, with its interval."""

    curve: np.ndarray        # (BINS,)
    low: np.ndarray
    high: np.ndarray
    comparisons: float       # the effective comparisons it was learnt from (decayed)

    def weights(self, positions: np.ndarray) -> np.ndarray:
        """How much an impression at each position counts (unknown positions: fully).

        >>> PositionCurve.prior().weights(np.array([1, 2, 0])).tolist()
        [1.0, 0.5, 1.0]
        """
        bins = position_bin(positions)
        return np.where(bins >= 0, self.curve[np.maximum(bins, 0)], 1.0)

    @classmethod
    def prior(cls) -> PositionCurve:
        """Before any evidence: PRIOR_CURVE, with an interval as wide as it can be."""
        return cls(PRIOR_CURVE.copy(), np.zeros(BINS), np.ones(BINS), 0.0)

    def as_dict(self) -> dict:
        return {"bins": list(BIN_LABELS), "curve": self.curve.round(5).tolist(),
                "low": self.low.round(5).tolist(), "high": self.high.round(5).tolist(),
                "comparisons": round(self.comparisons, 3)}

    @classmethod
    def from_dict(cls, d: dict) -> PositionCurve:
        curve, low, high = (np.array(d[k], dtype=np.float64) for k in ("curve", "low", "high"))
        return cls(curve, low, high, float(d["comparisons"]))


def position_curve(pairs: np.ndarray, rng: np.random.Generator,
                   level: float = 0.95) -> PositionCurve:
    """The curve from summed ``pair_counts``, with a percentile interval from REPLICATES
    Poisson-bootstrap replicates of the views behind their effective comparisons."""
    pairs = np.asarray(pairs, dtype=np.float64)
    comparisons = effective_pairs(pairs)
    curve = fit_curve(comparisons)
    # a view enters several comparisons: resample views, not comparisons
    shared = reuse(pairs, comparisons)[:, None]
    replicates = fit_curve(shared * rng.poisson(np.maximum(comparisons, 0.0) / shared,
                                                (REPLICATES, *comparisons.shape)))
    tail = (1 - level) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail], axis=0)
    return PositionCurve(curve, np.minimum(low, curve), np.maximum(high, curve),
                         float(comparisons.sum()))
