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
from pipeline.feedpack import CellFeed, StringTable
from store import Store

log = logging.getLogger(__name__)

WRITE_CHUNK = 200
MAX_ATTEMPTS = 3
# Redis measures geo distance on a slightly larger sphere than geo.EARTH_RADIUS_KM;
# searching a touch wider and filtering exactly keeps every ad our own distance admits.
SEARCH_SLACK = 1.001


@dataclass(frozen=True)
class Snapshot:
    """The live catalogue and its evidence as arrays, aligned by position."""

    ad_ids: StringTable
    cards: StringTable
    xyz: np.ndarray          # (n, 3) unit vectors
    lat: np.ndarray
    lon: np.ndarray
    expires_at: np.ndarray
    impressions: np.ndarray
    applies: np.ndarray

    def __len__(self) -> int:
        return len(self.lat)


def load_snapshot(store: Store, now: float, ad_ids: Sequence[str] | None = None) -> Snapshot:
    """The listed ads (default: every indexed ad) that exist and are live at ``now``, with
    their counters."""
    found = store.ad_summaries(ad_ids)
    live = found.rows["exp"] > now
    ids = [a for a, ok in zip(found.ids, live) if ok]
    stats = store.ad_stats(ids, ("impressions", "applies"))
    rows = found.rows[live]
    return Snapshot(
        ad_ids=StringTable.of(ids),
        cards=StringTable.slices(found.buffer, found.card_starts[live],
                                 found.card_lengths[live]),
        xyz=geo.unit_vectors(rows["lat"], rows["lon"]),
        lat=rows["lat"].copy(), lon=rows["lon"].copy(), expires_at=rows["exp"].copy(),
        impressions=np.array(stats["impressions"], dtype=np.float64),
        applies=np.array(stats["applies"], dtype=np.float64))


def candidate_radius_km(cell: str, settings: Settings) -> float:
    return settings.feed_radius_km + geo.cell_half_diagonal_km(cell)


def build_cell(snapshot: Snapshot, candidates: np.ndarray, scores: np.ndarray, cell: str,
               settings: Settings, now: float) -> CellFeed:
    """One cell's feed from its candidates (positions in the snapshot) and the draws
    (shape (ads, K))."""
    orders = rank_variants(scores[candidates].T, settings.feed_length)
    listed = np.zeros(len(candidates), dtype=bool)
    listed[orders] = True
    local = np.flatnonzero(listed)                    # candidates some variant lists
    slot = np.empty(len(candidates), dtype=np.int32)
    slot[local] = np.arange(len(local), dtype=np.int32)
    shown = candidates[local]                         # snapshot positions
    return CellFeed(cell=cell, generated_at=now, ad_ids=snapshot.ad_ids.gather(shown),
                    cards=snapshot.cards.gather(shown),
                    xyz=snapshot.xyz[shown],
                    expires_at=snapshot.expires_at[shown], variants=slot[orders])


def build_feeds(snapshot: Snapshot, cells: Sequence[str], settings: Settings,
                rng: np.random.Generator, now: float) -> dict[str, bytes]:
    """Packed feeds for ``cells``. One set of K draws per ad serves every cell: each cell's
    variant k is the order of its own candidates under draw k."""
    alpha, beta = beta_posterior(snapshot.applies, snapshot.impressions,
                                 settings.prior_mean, settings.prior_strength)
    # one row of K draws per ad: a cell's candidates are then whole rows of one cache line
    scores = np.ascontiguousarray(sample_scores(alpha, beta, settings.feed_variants, rng).T)
    reach_km = [candidate_radius_km(c, settings) for c in cells]
    index = geo.PointIndex(snapshot.lat, snapshot.lon, query_radius_km=max(reach_km, default=1.0))
    feeds: dict[str, bytes] = {}
    for cell, radius_km in zip(cells, reach_km):
        lat, lon = geo.decode(cell)
        candidates = index.query(lat, lon, radius_km)
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
        if not todo:
            break
        epoch = store.catalog_epoch()
        snapshot = load_snapshot(store, now)
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


class CellUnavailable(Exception):
    """A cell's feed could not be built from a steady catalogue (it kept changing)."""


def build_one_cell(store: Store, cell: str, settings: Settings, now: float,
                   rng: np.random.Generator) -> bytes:
    """A cell's feed built on demand (a cache miss), with the same code as the beat run,
    from the ads a geo search finds around the cell, and stored. A build that the catalogue
    changed under is never served: after MAX_ATTEMPTS such builds, CellUnavailable."""
    lat, lon = geo.decode(cell)
    radius_km = candidate_radius_km(cell, settings)
    for _ in range(MAX_ATTEMPTS):
        epoch = store.catalog_epoch()
        ids = store.search_ids(lat, lon, radius_km * SEARCH_SLACK)
        snapshot = load_snapshot(store, now, ids)
        packed = build_feeds(snapshot, [cell], settings, rng, now)[cell]
        if store.write_feeds(epoch, {cell: packed}, settings.feed_ttl_s):
            return packed
    raise CellUnavailable(cell)
