"""webapp.dashboard: /dashboard loads its scripts from the app only, and its data holds what
the store holds: per-day rates by strategy, the strategy probabilities over time, the
pipeline, active cells with their boxes and traffic, top ads. (Who may see it:
test_auth.py.)"""
from __future__ import annotations

import time

import pytest

import geo
from pipeline.learning.ingest import roll_in
from pipeline.learning.regenerate import run_regenerate
from pipeline.learning.rollup import run_rollup
from tests.conftest import ADMIN_TOKEN
from tests.support.api import app_with, put_ad

HERE = {"lat": "52.52", "lon": "13.405"}


def test_the_page_loads_its_scripts_from_the_app_only(fake_store):
    client = app_with(fake_store, local_demo=True).test_client()
    html = client.get("/dashboard").get_data(as_text=True)
    for src in ("/dashboard/plotly.min.js", "/static/dashboard.js", "/static/dashboard.css"):
        assert src in html
        assert client.get(src).status_code == 200
    assert "http://" not in html and "https://" not in html
    js = client.get("/static/dashboard.js").get_data(as_text=True)
    assert "http://" not in js and "https://" not in js


def test_the_data_follows_the_store(fake_store, settings, rng):
    app = app_with(fake_store, local_demo=True)
    client = app.test_client()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for i in range(5):
        put_ad(client, admin, f"ad-{i}", 52.52 + i * 1e-3, 13.405)
    feeds = [client.get("/v1/feed", query_string=HERE).get_json() for _ in range(10)]
    app.extensions["runtime"].serving_log.flush()
    events = []
    for n, feed in enumerate(feeds):
        for ad in feed["ads"]:
            events.append({"event_id": f"i{n}-{ad['ad_id']}", "ad_id": ad["ad_id"],
                           "type": "impression", "position": ad["position"],
                           "feed_id": feed["feed_id"]})
        events.append({"event_id": f"a{n}", "ad_id": "ad-3", "type": "apply",
                       "feed_id": feed["feed_id"]})
    assert client.post("/v1/events", json={"events": events}).status_code == 202
    for _name, args, _ in app.extensions["runtime"].celery.sent:
        roll_in(fake_store, *args)
    now = time.time()
    run_rollup(fake_store, settings, now)
    run_regenerate(fake_store, settings, now, rng)
    run_regenerate(fake_store, settings, now + 60, rng)

    data = client.get("/dashboard/data").get_json()
    today = data["ctr"]["all"]
    assert len(today["days"]) == 14 and today["impressions"][-1] == 50
    assert today["apply_rate"][-1] == pytest.approx(10 / 50)
    assert today["apply_rate"][0] is None                          # no impression that day
    by_strategy = sum(data["ctr"][s]["impressions"][-1] for s in settings.feed_strategies)
    assert by_strategy == 50
    history = data["probabilities"]
    assert len(history["ts"]) == 2
    assert sum(p[-1] for p in history["strategies"].values()) == pytest.approx(1, abs=1e-3)
    assert data["pipeline"]["rollup"]["runs"] == 1 and data["pipeline"]["live_ads"] == 5
    [cell] = data["cells"]
    box = geo.decode_box(geo.encode(52.52, 13.405, settings.geohash_precision))
    assert (cell["lat_min"], cell["lon_max"]) == (box.lat_min, box.lon_max)
    assert cell["feeds"] == pytest.approx(10, rel=0.01)
    top = data["top_ads"]
    assert top[0]["ad_id"] == "ad-3" and top[0]["applies"] == 10
    assert [a["posterior_mean"] for a in top] == sorted((a["posterior_mean"] for a in top),
                                                        reverse=True)
