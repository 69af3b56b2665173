"""GET /metrics (each request is counted by ``webapp.requestlog``; feeds and events by
their views)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response

from obs.prometheus import EVENT_TYPES, StoreCollector, exposition
from pipeline.reports.health import JOBS, pipeline_state
from store import STAT_FIELDS
from webapp.apidoc import documented
from webapp.runtime import runtime

bp = Blueprint("metrics", __name__)

JOB_SIZES = {"rollup": ("counted",), "regenerate": ("written", "ads", "shards"),
             "archive": ("events_rows", "served_rows")}


@bp.get("/metrics")
@documented("Prometheus metrics: requests, feeds, events, the pipeline and the bandit",
            "meta", response={"type": "string"}, media_type="text/plain", uses_store=False)
def metrics() -> Response:
    rt = runtime()
    body, content_type = exposition(rt.settings.prometheus_multiproc_dir,
                                    StoreCollector(store_figures))
    return Response(body, content_type=content_type)


def store_figures() -> dict[str, Any]:
    """What the store knows, as the figures ``obs.prometheus.store_metrics`` exports."""
    rt = runtime()
    state = pipeline_state(rt.store, rt.settings, rt.now())
    totals = rt.store.ctr_all_time()
    strategies = rt.settings.feed_strategies
    jobs = {}
    for job in JOBS:
        s = getattr(state, job)
        if s is None:
            continue
        jobs[job] = {"finished_at": s.finished_at, "duration_s": s.duration_s, "runs": s.runs,
                     "size": {what: s.report.get(what, 0.0) for what in JOB_SIZES[job]}}
    return {
        "lag_s": state.lag_s,
        "backlog": {"inbox_batches": state.inbox_batches, "pending": state.pending_batches,
                    "undelivered": max(0, state.undelivered_batches)},
        "jobs": jobs,
        "active_cells": state.active_cells,
        "live_ads": state.live_ads,
        "sharded_run": None if state.sharded_run is None else {
            "planned": state.sharded_run.shards, "done": state.sharded_run.done,
            "durations_s": dict(state.sharded_run.durations_s)},
        "strategy_probability": rt.store.strategy_probabilities(),
        "strategy_events": {(s, t): totals.get(f"{s}:{field}", 0)
                            for s in strategies
                            for t, field in zip(EVENT_TYPES, STAT_FIELDS, strict=True)},
    }


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
