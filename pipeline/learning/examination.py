"""The examination curve: learnt by the rollup from impressions and views by position
within each epoch (``bandit.position``), and used to weigh each impression's exposure.

An epoch is one generation of feeds: from when a regeneration wrote its feeds to when the
next one did, placed by when the event's feed was served (its feed id says; an event
without one, by its own time), so the feeds of an epoch come from one set of precomputed
variants. The rollup counts each epoch's impressions and views by ad and position. Once the
next generation has run for EPOCH_SETTLE_S (so the epoch's events are in), the epoch's
counts are set aside (events still arriving start a fresh key, folded later on their own),
turned into pair counts (a few hundred numbers, whatever the catalogue's size), added to
the decayed ones exactly once, and the curve is fitted again. POSITION_BIAS_EXPONENT, when
set, overrides the learnt curve with p ** -exponent.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bandit import exposure_weight
from bandit.position import (
    BIN_LABELS,
    BINS,
    PositionCurve,
    pair_counts,
    position_bin,
    position_curve,
)
from config import Settings
from pipeline.learning.regenerate import decayed_now
from store import Store, stat_type_index

log = logging.getLogger(__name__)

WIDTH = 2 * BINS                 # an ad's epoch row: impressions by bin, then views by bin
PAIRS_WIDTH = 2 * BINS * BINS    # the pair counts and their squares (bandit.pair_counts)
IMPRESSION, VIEW = stat_type_index("impression"), stat_type_index("view")
SETTLE_MARGIN_S = 30.0           # device posts and inbox redelivery lag behind serving


@dataclass(frozen=True)
class Examination:
    """How the rollup weighs an impression by its position, for one run."""

    curve: PositionCurve
    exponent: float | None       # POSITION_BIAS_EXPONENT, when set

    def weights(self, positions: np.ndarray) -> np.ndarray:
        if self.exponent is not None:
            return exposure_weight(positions, self.exponent)
        return self.curve.weights(positions)


def stored_curve(store: Store) -> tuple[PositionCurve, float | None]:
    """The last learnt curve and when it was learnt (the prior curve and None before the
    first)."""
    stored = store.position_curve()
    if not stored:
        return PositionCurve.prior(), None
    return PositionCurve.from_dict(stored), float(stored["updated_at"])


def current(store: Store, settings: Settings) -> Examination:
    """The weighting in force: POSITION_BIAS_EXPONENT, else the learnt curve."""
    return Examination(stored_curve(store)[0], settings.position_bias_exponent)


def report(store: Store, settings: Settings) -> dict:
    """What GET /v1/stats/position-bias answers: the weight an impression gets at each
    position bin (at the bin's first position), where it comes from, and the learnt curve
    with its interval (null before the first epoch is folded)."""
    curve, learnt_at = stored_curve(store)
    firsts = np.array([*range(1, 11), 11, 21])
    used = Examination(curve, settings.position_bias_exponent).weights(firsts)
    learnt = None if learnt_at is None else {**curve.as_dict(), "updated_at": learnt_at}
    return {"source": "learnt" if settings.position_bias_exponent is None else "setting",
            "exponent": settings.position_bias_exponent, "bins": list(BIN_LABELS),
            "weights": used.round(5).tolist(), "learnt": learnt}


def settle_s(settings: Settings) -> float:
    """How long after the next generation starts an epoch is folded: long enough for its
    events to be posted and rolled up. A straggler after that is not lost: it starts a
    fresh key for its epoch, folded later on its own (only its pairing with the epoch's
    other counts is). Waiting longer would leave the curve behind for longer."""
    return 2 * settings.rollup_interval_s + SETTLE_MARGIN_S


def epoch_ttl_s(settings: Settings) -> int:
    """An epoch's counts are dropped if never folded within this (a stopped rollup)."""
    return int(max(86_400, 4 * (settings.regen_interval_s + settle_s(settings))))


def generations(store: Store, settings: Settings, now: float) -> np.ndarray:
    """When each regeneration within reach of an event's feed wrote its feeds."""
    return store.generations(now - settings.event_max_age_s - 2 * settings.regen_interval_s)


def epoch_of(served_s: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The epoch (its generation's start, in ms; 0 before the first) of feeds served at
    ``served_s``, given the generations' ``starts``.

    >>> epoch_of(np.array([5.0, 61.0, 130.5]), np.array([60.0, 120.25])).tolist()
    [0, 60000, 120250]
    """
    served_s = np.asarray(served_s, dtype=np.float64)
    if not len(starts):
        return np.zeros(len(served_s), dtype=np.int64)
    at = np.searchsorted(starts, served_s, side="right") - 1
    return np.where(at >= 0, np.round(starts[np.maximum(at, 0)] * 1000), 0).astype(np.int64)


def position_columns(type_index: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The 1-based column each event adds to in its ad's epoch row: impressions then views
    by position bin; 0 for other events and unknown positions.

    >>> position_columns(np.array([1, 2, 4, 1]), np.array([3, 3, 3, 0])).tolist()
    [3, 15, 0, 0]
    """
    type_index = np.asarray(type_index)
    bins = position_bin(positions)
    counted = ((type_index == IMPRESSION) | (type_index == VIEW)) & (bins >= 0)
    return np.where(counted, bins + 1 + (type_index == VIEW) * BINS, 0).astype(np.int64)


def fold_epochs(store: Store, settings: Settings, now: float, starts: np.ndarray,
                rng: np.random.Generator, partition: int = 0) -> int:
    """Fold every epoch of a partition that is over into its decayed pair counts (an ad's
    counts all lie in one partition, and pairs are counted within an ad), then fit the
    curve again and store it. Returns the epochs folded."""
    folded = 0
    for epoch in store.position_epochs(partition):
        later = starts[starts * 1000 > epoch]
        if not len(later) or now - later[0] < settle_s(settings):
            continue                                          # its generation, or too soon
        while (state := store.begin_fold(epoch, partition)) > 0:
            counts = store.folding_counts(epoch, WIDTH, partition=partition)
            pairs = pair_counts(counts[:, :BINS], counts[:, BINS:])
            folded += store.fold_positions(epoch, pairs.ravel().tolist(), now,
                                           settings.stats_half_life_s, partition)
            if state == 1:
                break
    if folded:
        learn_curve(store, settings, now, rng)
    return folded


def learn_curve(store: Store, settings: Settings, now: float,
                rng: np.random.Generator) -> PositionCurve:
    """Fit the curve to the decayed pair counts (every partition's, added) and store it
    with when it was learnt."""
    pairs = decayed_now(store.position_pairs(PAIRS_WIDTH), now, settings).sum(axis=0)
    curve = position_curve(pairs.reshape(2, BINS, BINS), rng)
    store.write_position_curve({**curve.as_dict(), "updated_at": now})
    log.info("examination curve from %.0f comparisons: %s", curve.comparisons,
             " ".join(f"{v:.3f}" for v in curve.curve[:10]))
    return curve
