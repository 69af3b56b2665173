"""What /dashboard shows the feed's owners, read from the store in one pass: apply rate and
CTR per day by strategy, the strategy bandit's probabilities over time, the pipeline's state,
the active cells with their traffic grouped into regions (one map panel each), the top ads
with their titles and the examination curve."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import orjson

import geo
from bandit import STRATEGIES
from config import Settings
from pipeline.learning import examination
from pipeline.learning.regenerate import decayed_now
from pipeline.reports.adstats import top_ads
from pipeline.reports.archived_ctr import archived_ctr
from pipeline.reports.ctr import DailyCtr, daily_ctr, day_counters, days_between, utc_today
from pipeline.reports.health import JobState, pipeline_state
from store import Store, split_card

DAYS = 14
HISTORY_S = 7 * 86_400
MAX_POINTS = 500        # of the probability history: evenly thinned beyond
MAX_CELLS = 2000        # drawn on the map, the most recently requested
REGION_STEP_DEG = 0.5   # cells in the same or touching squares this wide share a map panel


def dashboard_data(store: Store, settings: Settings, now: float) -> dict[str, Any]:
    end = utc_today(now)
    start = end - timedelta(days=DAYS - 1)
    counters = day_counters(store, days_between(start, end), archived_ctr(store, settings))
    ctr = {name: _series(daily_ctr(store, start, end, strategy, counters=counters))
           for name, strategy in (("all", None), *((s, s) for s in settings.feed_strategies))}
    state = pipeline_state(store, settings, now)
    return {
        "generated_at": now,
        "ctr": ctr,
        "probabilities": _history(store.strategy_history(now - HISTORY_S)),
        "pipeline": {"lag_s": state.lag_s, "inbox_batches": state.inbox_batches,
                     "pending_batches": state.pending_batches,
                     "rollup": _job(state.rollup), "regenerate": _job(state.regenerate),
                     "active_cells": state.active_cells, "live_ads": state.live_ads},
        "cells": active_cells(store, settings, now),
        "top_ads": titled(store, top_ads(store, settings, now, 20)),
        "position_bias": examination.report(store, settings),
    }


def active_cells(store: Store, settings: Settings, now: float) -> list[dict[str, Any]]:
    """Each recently requested cell's box, its traffic (the feeds served there, decayed with
    STATS_HALF_LIFE_S: the strategy bandit's own counts) and its region: 0 for the region
    with the most feeds, 1 for the next, and so on."""
    cells = [c for c, _ in store.active_cells_since(now - settings.active_cell_ttl_s,
                                                    MAX_CELLS)]
    if not cells:
        return []
    width = len(STRATEGIES)
    feeds = decayed_now(store.strategy_stats(cells, 2 * width), now, settings)[:, :width]
    feeds = feeds.sum(axis=1)
    boxes = [geo.decode_box(cell) for cell in cells]
    region = regions(np.array([(b.lat_min + b.lat_max) / 2 for b in boxes]),
                     np.array([(b.lon_min + b.lon_max) / 2 for b in boxes]))
    busiest_first = np.argsort(-np.bincount(region, weights=feeds), kind="stable")
    rank = np.empty_like(busiest_first)
    rank[busiest_first] = np.arange(len(busiest_first))
    return [{"cell": cell, "feeds": round(float(n), 2), "region": int(rank[r]),
             "lat_min": b.lat_min, "lat_max": b.lat_max, "lon_min": b.lon_min,
             "lon_max": b.lon_max}
            for cell, n, r, b in zip(cells, feeds, region, boxes, strict=True)]


def regions(lat: np.ndarray, lon: np.ndarray, step_deg: float = REGION_STEP_DEG) -> np.ndarray:
    """Each point's region, numbered from 0 in order of first appearance: points whose
    squares of ``step_deg`` degrees are the same or touch (chains of them included) share a
    region, so a city's cells are drawn together and cities apart get panels of their own.

    >>> regions(np.array([52.52, 52.50, 48.86, 35.68, 52.53]),
    ...         np.array([13.40, 13.42, 2.35, 139.65, 13.38])).tolist()
    [0, 0, 1, 2, 0]
    """
    squares = np.floor(np.stack([lat, lon], axis=1) / step_deg).astype(np.int64)
    keys, square_of = np.unique(squares, axis=0, return_inverse=True)
    index = {(int(r), int(c)): i for i, (r, c) in enumerate(keys)}
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (r, c), i in index.items():
        for j in (index.get((r + dr, c + dc)) for dr in (-1, 0, 1) for dc in (-1, 0, 1)):
            if j is not None:
                parent[root(j)] = root(i)
    roots = np.array([root(i) for i in range(len(keys))])[square_of.ravel()]
    _, first, label = np.unique(roots, return_index=True, return_inverse=True)
    order = np.empty(len(first), dtype=np.int64)
    order[np.argsort(first, kind="stable")] = np.arange(len(first))
    return order[label.ravel()]


def titled(store: Store, ads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ads with their titles and companies (from their cards: two reads); "" for an ad
    the catalogue no longer holds."""
    found = store.ad_summaries([a["ad_id"] for a in ads])
    cards = {ad_id: orjson.loads(b"{" + card + b"}")
             for ad_id, card in (split_card(v) for v in store.ad_cards(found.rows["sn"].tolist())
                                 if v is not None)}
    return [{**a, "title": cards.get(a["ad_id"], {}).get("title", ""),
             "company": cards.get(a["ad_id"], {}).get("company", "")} for a in ads]


def _series(report: DailyCtr) -> dict[str, list[Any]]:
    return {"days": list(report.days),
            "impressions": [r.impressions for r in report.rows],
            "apply_rate": [r.apply_rate.rate for r in report.rows],
            "view_rate": [r.view_rate.rate for r in report.rows]}


def _history(rows: list[tuple[float, dict[str, float]]]) -> dict[str, Any]:
    if len(rows) > MAX_POINTS:
        keep = np.linspace(0, len(rows) - 1, MAX_POINTS).round().astype(int)
        rows = [rows[i] for i in keep]
    names = sorted({s for _, probs in rows for s in probs})
    return {"ts": [t for t, _ in rows],
            "strategies": {s: [probs.get(s) for _, probs in rows] for s in names}}


def _job(job: JobState) -> dict[str, Any]:
    return {"finished_at": job.finished_at, "age_s": job.age_s, "duration_s": job.duration_s,
            "processed": job.processed, "runs": job.runs}
