"""The servers bench.servers compares (gunicorn sync, gunicorn gthread, granian's WSGI mode)
serve the same app: a feed, a 400 for a bad query and the metrics each counts, so that the
figures compare servers, not answers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import requests

import geo
from devtools.procs import WEB_SERVERS, start_web
from pipeline.catalogue import upsert_ads
from pipeline.learning.regenerate import run_regenerate
from tests.support.builders import PARIS, ads_around


@pytest.fixture
def paris_feeds(real_store, real_settings):
    rng = np.random.default_rng(3)
    upsert_ads(real_store, real_settings, ads_around(*PARIS, 40, 2.0, rng))
    now = 1_800_000_000.0
    real_store.mark_active({geo.encode(*PARIS, real_settings.geohash_precision): now})
    run_regenerate(real_store, real_settings, now, rng)


@pytest.mark.slow
@pytest.mark.parametrize("server", WEB_SERVERS)
def test_each_server_serves_the_feed_its_errors_and_its_metrics(env, tmp_path: Path, server,
                                                                paris_feeds):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    proc, base = start_web({**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}, tmp_path,
                           server=server, name=f"web-{server}")
    try:
        feed = requests.get(f"{base}/v1/feed", params={"lat": PARIS[0], "lon": PARIS[1],
                                                       "limit": 10}, timeout=10)
        assert feed.status_code == 200, feed.text
        body = feed.json()
        assert len(body["ads"]) == 10
        assert [a["position"] for a in body["ads"]] == list(range(1, 11))
        assert all(a["distance_km"] <= 5.0 for a in body["ads"])
        bad = requests.get(f"{base}/v1/feed", params={"lat": 91, "lon": 0}, timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "lat"
        text = requests.get(f"{base}/metrics", timeout=10).text
        assert 'recommender_http_requests_total{method="GET",route="/v1/feed",status="200"}' \
            in text
    finally:
        proc.stop()
