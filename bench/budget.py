"""A feed request's CPU, step by step, next to GET /healthz's own steps.

Run against a store that ``bench.serve`` prepared (ads loaded, the request points' cells
regenerated), in a process of its own that has PROMETHEUS_MULTIPROC_DIR set before anything
imports prometheus-client, as gunicorn's workers do (its metrics then write to files). It
builds the app with the store's settings (LOG_LEVEL from the environment), serves every
point once (so the cells and cards are cached, as on a warm server), then for R rounds over
the points times each step of ``pipeline.serving.feed.serve_feed`` alone, with the very
functions it calls, and whole requests through the Flask test client. What the whole takes
beyond its steps is the framework's (Flask, werkzeug, the request hooks' own code); what a
request takes on the real server beyond the test client's whole (``bench.serve`` sets them
side by side) is gunicorn's and the socket's. Figures are the median CPU µs of this process
(``time.process_time``) per call; each step's timer costs about 0.5 µs, included.

    python -m bench.budget --redis-url redis://127.0.0.1:PORT/0 --points 500 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid

import numpy as np
from werkzeug.datastructures import MultiDict

FEED_STEPS = (
    ("query", "query parsing (feed_query: plain Python, the FeedQuery model for the rest)"),
    ("geohash", "geohash of the point"),
    ("cache", "cache lookup (load_cell: the change notices delivered are applied first)"),
    ("notices", "of which the change-notice check alone"),
    ("exclusions", "user exclusions (none: the requests name no user)"),
    ("draw", "strategy and variant draw"),
    ("filter", "the ads within reach, with their cards (the variant laid out once)"),
    ("screen", "screen (popular, newest, nearest reorder)"),
    ("rules", "feed rules (employer rule over twice the limit's candidates; no frequency cap)"),
    ("feed_id", "feed id (HMAC)"),
    ("served_log", "served log (buffered)"),
    ("render", "rendering the body"),
    ("metrics", "metrics (feed and request)"),
    ("request_id", "request id"),
    ("log", "request log line (at LOG_LEVEL)"),
)
HEALTHZ_STEPS = (
    ("handler", "the view (a JSON body)"),
    ("metrics", "metrics (request)"),
    ("request_id", "request id"),
    ("log", "request log line (at LOG_LEVEL)"),
)
NOT_SUMMED = {"notices"}          # a part of "cache", shown on its own


class Clock:
    """``with clock("step"):`` adds the block's CPU µs (this process's) to the step's list."""

    def __init__(self, steps: tuple[tuple[str, str], ...]) -> None:
        self.us: dict[str, list[float]] = {k: [] for k, _ in steps}
        self._step, self._started = "", 0.0

    def __call__(self, step: str) -> Clock:
        self._step = step
        return self

    def __enter__(self) -> None:
        self._started = time.process_time()

    def __exit__(self, *_: object) -> None:
        self.us[self._step].append((time.process_time() - self._started) * 1e6)

    def medians(self) -> dict[str, float]:
        return {k: float(np.median(v)) for k, v in self.us.items()}


def measure(redis_url: str, points: list[tuple[float, float]], rounds: int,
            limit: int = 20) -> dict:
    import geo
    from config import load_settings
    from obs.prometheus import observe_feed, observe_request
    from pipeline.serving.feed import (
        FeedAnswer,
        FeedRequest,
        Pick,
        ServingLog,
        load_cell,
        make_feed_id,
        pick_order,
        place,
        quick_ads,
        render_ads,
        rules_text,
        screened,
        served_entry,
        user_ads,
    )
    from webapp import create_app
    from webapp.errors import json_response
    from webapp.runtime import runtime
    from webapp.validation import feed_query

    settings = load_settings(redis_url=redis_url)
    app = create_app(settings)
    client = app.test_client()
    request_log = logging.getLogger("webapp.request")
    paths = [f"/v1/feed?lat={lat:.6f}&lon={lon:.6f}&limit={limit}" for lat, lon in points]
    for path in paths:                          # warm: every cell and card cached here
        assert client.get(path).status_code == 200
    feed, healthz = Clock(FEED_STEPS), Clock(HEALTHZ_STEPS)
    whole = Clock((("feed", ""), ("healthz", "")))
    with app.app_context():
        rt = runtime()
        store, cache, cards, rng = rt.store, rt.feed_cache, rt.card_cache, rt.random
        secret = rt.feed_id_secret
        served = ServingLog(store, settings.served_maxlen, None)  # buffered, never flushed
        # warm as a server that has served a while: every variant of every cell laid out
        for lat, lon in points:
            warm = FeedRequest(lat, lon, limit, settings.feed_radius_km)
            cell_feed, _ = load_cell(store, settings, geo.encode(lat, lon,
                                                                 settings.geohash_precision),
                                     time.time(), rng, cache, cards)
            for source, rows in cell_feed.orders.items():
                for variant in range(rows.shape[0]):
                    quick_ads(cell_feed, Pick(source, 1.0, variant, rows[variant], source),
                              warm, time.time(), set(), cards)
        for _ in range(rounds):
            for (lat, lon), path in zip(points, paths, strict=True):
                now = time.time()
                args = MultiDict([("lat", f"{lat:.6f}"), ("lon", f"{lon:.6f}"),
                                  ("limit", str(limit))])
                with feed("query"):
                    q = feed_query(args)
                req = FeedRequest(q.lat, q.lon, q.limit, settings.feed_radius_km, None)
                with feed("geohash"):
                    cell = geo.encode(req.lat, req.lon, settings.geohash_precision)
                with feed("cache"):
                    cell_feed, outcome = load_cell(store, settings, cell, now, rng, cache, cards)
                with feed("notices"):
                    cache._sync()             # (private: the check load_cell runs first)
                with feed("exclusions"):
                    user = user_ads(store, settings, req, now)
                with feed("draw"):
                    pick = pick_order(cell_feed, rng)
                with feed("filter"):
                    quick = quick_ads(cell_feed, pick, req, now, user.excluded, cards,
                                      limit * (2 if settings.max_per_employer else 1))
                assert quick is not None                # (no user: no exclusions)
                with feed("screen"):
                    ordered = screened(cell_feed, pick, quick)
                with feed("rules"):
                    placed = place(cell_feed, pick, ordered, user.capped,
                                   settings.max_per_employer, limit)
                    chosen = placed.chosen
                with feed("feed_id"):
                    feed_id = make_feed_id(now, cell, pick.strategy, rng, secret)
                with feed("served_log"):
                    served.add(served_entry(feed_id, now, cell, pick, cell_feed, outcome, req,
                                            chosen.cards, placed, rules_text(settings)),
                               cell, now)
                with feed("render"):
                    FeedAnswer(feed_id, cell, pick.strategy, pick.propensity,
                               cell_feed.generated_at, outcome, render_ads(chosen)).json()
                with feed("metrics"):
                    observe_feed(pick.strategy, outcome, now - cell_feed.generated_at)
                    observe_request("/v1/feed", "GET", 200, 0.002)
                with feed("request_id"), healthz("request_id"):
                    _ = uuid.uuid4().hex
                with feed("log"), healthz("log"):
                    request_log.info("request", extra={"fields": {
                        "request_id": "0" * 32, "method": "GET", "route": "/v1/feed",
                        "status": 200, "ms": 2.0, "feed_id": feed_id}})
                with healthz("handler"):
                    json_response({"status": "ok"})
                with healthz("metrics"):
                    observe_request("/healthz", "GET", 200, 0.001)
                with whole("feed"):
                    client.get(path)
                with whole("healthz"):
                    client.get("/healthz")
    steps, healthz_steps, med = feed.medians(), healthz.medians(), whole.medians()
    return {
        "feed_steps_us": steps, "healthz_steps_us": healthz_steps, "whole_us": med,
        "framework_us": {
            "feed": med["feed"] - sum(v for k, v in steps.items() if k not in NOT_SUMMED),
            "healthz": med["healthz"] - sum(healthz_steps.values())},
        "log_level": settings.log_level, "requests": len(points) * rounds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    from bench.common import request_points
    points = request_points(args.points, time.time())
    print(json.dumps(measure(args.redis_url, points, args.rounds, args.limit)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
