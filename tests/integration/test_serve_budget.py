"""bench.budget: a feed request's CPU, step by step, measured on a real store with the
functions serve_feed calls, next to /healthz's steps, and the page bench.serve writes."""
from __future__ import annotations

import time

import numpy as np

import geo
from bench.budget import FEED_STEPS, HEALTHZ_STEPS, NOT_SUMMED
from bench.common import load_catalogue, request_points
from bench.serve import budget_markdown, cpu_budget
from pipeline.learning.regenerate import run_regenerate


def test_every_step_of_a_feed_and_of_healthz_is_measured_and_the_page_lists_them(
        real_store, real_settings, tmp_path):
    """(In a process of its own, as bench.serve runs it: the app it builds keeps a thread
    that writes its served log, which must not outlive the measure into other tests.)"""
    now = time.time()
    load_catalogue(real_store, 2_000, now)
    points = request_points(20, now)
    real_store.mark_active({geo.encode(lat, lon, real_settings.geohash_precision): now
                            for lat, lon in points})
    run_regenerate(real_store, real_settings, now, np.random.default_rng(1))
    got = cpu_budget(real_settings.redis_url, len(points), 1, tmp_path)

    assert set(got["feed_steps_us"]) == {k for k, _ in FEED_STEPS}
    assert set(got["healthz_steps_us"]) == {k for k, _ in HEALTHZ_STEPS}
    assert all(v >= 0 for v in [*got["feed_steps_us"].values(),
                                *got["healthz_steps_us"].values()])
    assert got["requests"] == 20
    # a whole request costs more than the steps it was measured without the framework
    summed = sum(v for k, v in got["feed_steps_us"].items() if k not in NOT_SUMMED)
    assert got["whole_us"]["feed"] > 0 and got["whole_us"]["healthz"] > 0
    assert got["framework_us"]["feed"] == got["whole_us"]["feed"] - summed
    assert got["feed_steps_us"]["notices"] <= got["feed_steps_us"]["cache"] + 50

    size = {"ads": 2_000, "budget": got, "series": {
        "feed": {"cpu_us_per_request": {"gunicorn": 600.0}},
        "trivial": {"cpu_us_per_request": {"gunicorn": 240.0}}}}
    page = "".join(budget_markdown({"sizes": [size]}))
    for _, label in (*FEED_STEPS, HEALTHZ_STEPS[0]):
        assert label in page
    assert "| feed / healthz, CPU a request on the server (target 1.25) | 2.50 |" in page
    assert "**600**" in page and "**240**" in page
