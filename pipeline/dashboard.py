"""What /dashboard shows the feed's owners, read from the store in one pass: apply rate and
CTR per day by strategy, the strategy bandit's probabilities over time, the pipeline's state,
the active cells with their traffic, the top ads and the examination curve."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np

import geo
from bandit import STRATEGIES
from config import Settings
from pipeline import examination
from pipeline.adstats import top_ads
from pipeline.ctr import daily_ctr, utc_today
from pipeline.health import pipeline_state
from pipeline.regenerate import decayed_now
from store import Store

DAYS = 14
HISTORY_S = 7 * 86_400
MAX_POINTS = 500        # of the probability history: evenly thinned beyond
MAX_CELLS = 2000        # drawn on the map, the most recently requested


def dashboard_data(store: Store, settings: Settings, now: float) -> dict[str, Any]:
    end = utc_today(now)
    start = end - timedelta(days=DAYS - 1)
    ctr = {name: _series(daily_ctr(store, start, end, strategy))
           for name, strategy in (("all", None), *((s, s) for s in settings.feed_strategies))}
    state = pipeline_state(store, settings, now)
    return {
        "generated_at": now,
        "ctr": ctr,
        "probabilities": _history(store.strategy_history(now - HISTORY_S)),
        "pipeline": {"lag_s": state.lag_s, "inbox_batches": state.inbox_batches,
                     "pending_events": state.pending_events,
                     "rollup": _job(state.rollup), "regenerate": _job(state.regenerate),
                     "active_cells": state.active_cells, "live_ads": state.live_ads},
        "cells": active_cells(store, settings, now),
        "top_ads": top_ads(store, settings, now, 20),
        "position_bias": examination.report(store, settings),
    }


def active_cells(store: Store, settings: Settings, now: float) -> list[dict[str, Any]]:
    """Each recently requested cell's box and its traffic: the feeds served there, decayed
    with STATS_HALF_LIFE_S (the strategy bandit's own counts)."""
    cells = [c for c, _ in store.active_cells_since(now - settings.active_cell_ttl_s,
                                                    MAX_CELLS)]
    if not cells:
        return []
    width = len(STRATEGIES)
    served = decayed_now(store.strategy_stats(cells, 2 * width), now, settings)[:, :width]
    out = []
    for cell, feeds in zip(cells, served.sum(axis=1)):
        box = geo.decode_box(cell)
        out.append({"cell": cell, "feeds": round(float(feeds), 2),
                    "lat_min": box.lat_min, "lat_max": box.lat_max,
                    "lon_min": box.lon_min, "lon_max": box.lon_max})
    return out


def _series(report) -> dict[str, list]:
    return {"days": list(report.days),
            "impressions": [r.impressions for r in report.rows],
            "apply_rate": [r.apply_rate.rate for r in report.rows],
            "view_rate": [r.view_rate.rate for r in report.rows]}


def _history(rows: list[tuple[float, dict[str, float]]]) -> dict[str, list]:
    if len(rows) > MAX_POINTS:
        keep = np.linspace(0, len(rows) - 1, MAX_POINTS).round().astype(int)
        rows = [rows[i] for i in keep]
    names = sorted({s for _, probs in rows for s in probs})
    return {"ts": [t for t, _ in rows],
            "strategies": {s: [probs.get(s) for _, probs in rows] for s in names}}


def _job(job) -> dict[str, Any]:
    return {"finished_at": job.finished_at, "age_s": job.age_s, "duration_s": job.duration_s,
            "processed": job.processed, "runs": job.runs}
