"""Regeneration: Thompson-ranked feeds precomputed per geohash cell.

For each active cell, the candidates are the live ads within FEED_RADIUS_KM plus the cell's
half-diagonal of its centre: every ad within the radius of any point in the cell. Each of
FEED_VARIANTS independent posterior draws orders them; the top FEED_LENGTH of every order
and the ads they name are packed into one value per cell.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import geo
from bandit import beta_posterior, rank_variants, sample_scores
from config import Settings
from pipeline.feedpack import CellFeed
from store import NO_EXPIRY, Store

log = logging.getLogger(__name__)

SNAPSHOT_FIELDS = ("lat", "lon", "expires_at")
WRITE_CHUNK = 200
MAX_ATTEMPTS = 3
# Redis measures geo distance on a slightly larger sphere than geo.EARTH_RADIUS_KM;
# searching a touch wider and filtering exactly keeps every ad our own distance admits.
SEARCH_SLACK = 1.001


@dataclass(frozen=True)
class Snapshot:
    """The live catalogue and its evidence as arrays, aligned by position."""

    ad_ids: list[str]
    lat: np.ndarray
    lon: np.ndarray
    expires_at: np.ndarray
    impressions: np.ndarray
    applies: np.ndarray

    def __len__(self) -> int:
        return len(self.ad_ids)


def load_snapshot(store: Store, ad_ids: Sequence[str], now: float, *,
                  whole_stats: bool = False) -> Snapshot:
    """The listed ads that exist and are live at ``now``, with their counters."""
    records = store.ad_records(ad_ids, SNAPSHOT_FIELDS)
    keep = [i for i, r in enumerate(records)
            if r[0] is not None and r[1] is not None
            and float(r[2] or NO_EXPIRY) > now]
    ids = [ad_ids[i] for i in keep]
    rows = [records[i] for i in keep]
    if whole_stats:
        stats = store.all_ad_stats()
        impressions = [stats["impressions"].get(a, 0) for a in ids]
        applies = [stats["applies"].get(a, 0) for a in ids]
    else:
        stats_lists = store.ad_stats(ids)
        impressions, applies = stats_lists["impressions"], stats_lists["applies"]
    return Snapshot(
        ad_ids=ids,
        lat=np.array([float(r[0]) for r in rows], dtype=np.float64),
        lon=np.array([float(r[1]) for r in rows], dtype=np.float64),
        expires_at=np.array([float(r[2] or NO_EXPIRY) for r in rows], dtype=np.float64),
        impressions=np.array(impressions, dtype=np.float64),
        applies=np.array(applies, dtype=np.float64),
    )


def candidate_radius_km(cell: str, settings: Settings) -> float:
    return settings.feed_radius_km + geo.cell_half_diagonal_km(cell)


def build_cell(snapshot: Snapshot, candidates: np.ndarray, scores: np.ndarray, cell: str,
               settings: Settings, now: float) -> CellFeed:
    """One cell's feed from its candidates (positions in the snapshot) and the draws."""
    orders = rank_variants(scores[:, candidates], settings.feed_length)
    picked = candidates[orders]                       # snapshot positions, (K, L)
    shown, variants = np.unique(picked, return_inverse=True)
    return CellFeed.build(cell, now, [snapshot.ad_ids[i] for i in shown], snapshot.lat[shown],
                          snapshot.lon[shown], snapshot.expires_at[shown],
                          variants.reshape(picked.shape))


def build_feeds(snapshot: Snapshot, cells: Sequence[str], settings: Settings,
                rng: np.random.Generator, now: float) -> dict[str, bytes]:
    """Packed feeds for ``cells``. One set of K draws per ad serves every cell: each cell's
    variant k is the order of its own candidates under draw k."""
    alpha, beta = beta_posterior(snapshot.applies, snapshot.impressions,
                                 settings.prior_mean, settings.prior_strength)
    scores = sample_scores(alpha, beta, settings.feed_variants, rng)
    radius_km = max((candidate_radius_km(c, settings) for c in cells), default=0.0)
    index = geo.PointIndex(snapshot.lat, snapshot.lon, query_radius_km=radius_km or 1.0)
    feeds: dict[str, bytes] = {}
    for cell in cells:
        lat, lon = geo.decode(cell)
        candidates = index.query(lat, lon, candidate_radius_km(cell, settings))
        feeds[cell] = build_cell(snapshot, candidates, scores, cell, settings, now).pack()
    return feeds


def run_regenerate(store: Store, settings: Settings, now: float,
                   rng: np.random.Generator) -> dict[str, float | int]:
    """Rebuild the feed of every active cell. Cells idle past ACTIVE_CELL_TTL_S are dropped
    from the active set and stop being rebuilt. A catalogue change during the run (an ad
    removed or moved) voids the feeds not yet written; they are rebuilt from a fresh
    snapshot, up to MAX_ATTEMPTS times."""
    started = time.perf_counter()
    todo = store.active_cells(since=now - settings.active_cell_ttl_s)
    cells_total = len(todo)
    written = 0
    ads = 0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        epoch = store.catalog_epoch()
        snapshot = load_snapshot(store, store.live_ad_ids(), now, whole_stats=True)
        ads = len(snapshot)
        feeds = build_feeds(snapshot, todo, settings, rng, now)
        for i in range(0, len(todo), WRITE_CHUNK):
            chunk = {c: feeds[c] for c in todo[i:i + WRITE_CHUNK]}
            if not store.write_feeds(epoch, chunk, settings.feed_ttl_s):
                todo = todo[i:]
                log.info("catalogue changed during regeneration; rebuilding %d cells "
                         "(attempt %d)", len(todo), attempt)
                break
            written += len(chunk)
        else:
            todo = []
            break
    report = {"cells": cells_total, "written": written, "skipped": len(todo), "ads": ads,
              "duration_s": round(time.perf_counter() - started, 4), "finished_at": now}
    store.record_job("regenerate", report)
    return report


def build_one_cell(store: Store, cell: str, settings: Settings, now: float,
                   rng: np.random.Generator) -> bytes:
    """A cell's feed built on demand (a cache miss), with the same code as the beat run,
    from the ads a geo search finds around the cell. Stored unless the catalogue moved."""
    lat, lon = geo.decode(cell)
    radius_km = candidate_radius_km(cell, settings)
    packed = b""
    for _ in range(MAX_ATTEMPTS):
        epoch = store.catalog_epoch()
        ids = store.search_ids(lat, lon, radius_km * SEARCH_SLACK)
        snapshot = load_snapshot(store, ids, now)
        packed = build_feeds(snapshot, [cell], settings, rng, now)[cell]
        if store.write_feeds(epoch, {cell: packed}, settings.feed_ttl_s):
            break
    return packed
