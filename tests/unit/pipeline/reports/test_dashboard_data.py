"""The dashboard's data beyond what the store holds as is: active cells grouped into regions
(one map panel each, the busiest first) and the top ads with their titles, on sparse data too."""
from __future__ import annotations

import time

import numpy as np
import pytest

from devtools.demo import CITIES
from pipeline.learning.ingest import roll_in
from pipeline.learning.rollup import run_rollup
from pipeline.reports.dashboard_data import active_cells, dashboard_data, regions, titled
from tests.conftest import ADMIN_TOKEN
from tests.support.api import app_with, put_ad

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_points_near_each_other_share_a_region_and_far_ones_do_not():
    # a chain of points 30 km apart is one region; 200 km away is another
    lat = np.array([48.0, 48.27, 48.54, 50.34, 48.81])
    lon = np.full(5, 11.0)
    assert regions(lat, lon).tolist() == [0, 0, 0, 1, 0]
    assert regions(np.array([-0.01, 0.01]), np.array([-0.01, 0.01])).tolist() == [0, 0]
    assert regions(np.array([10.0]), np.array([20.0])).tolist() == [0]


def test_an_empty_store_gives_empty_panels(fake_store, settings):
    data = dashboard_data(fake_store, settings, time.time())
    assert data["cells"] == [] and data["top_ads"] == []
    assert titled(fake_store, []) == []


@pytest.fixture
def three_cities(fake_store, settings):
    """Ads in Berlin, Paris and Tokyo; 6 feeds asked in Berlin (two cells), 1 in Paris,
    3 in Tokyo; impressions of every ad shown, applies of Tokyo's first ad; rolled up."""
    app = app_with(fake_store, local_demo=True)
    client = app.test_client()
    asked = {"berlin": [(0, 0)] * 4 + [(0.01, 0.02)] * 2, "paris": [(0, 0)], "tokyo": [(0, 0)] * 3}
    events = []
    for city, offsets in asked.items():
        lat, lon, _ = CITIES[city]
        for i in range(3):
            put_ad(client, ADMIN, f"{city}-{i}", lat + i * 1e-3, lon,
                   title=f"{city.title()} job {i}")
        for n, (dlat, dlon) in enumerate(offsets):
            feed = client.get("/v1/feed", query_string={"lat": lat + dlat, "lon": lon + dlon})
            feed = feed.get_json()
            events += [{"event_id": f"{city}{n}-{ad['ad_id']}", "ad_id": ad["ad_id"],
                        "type": "impression", "position": ad["position"],
                        "feed_id": feed["feed_id"]} for ad in feed["ads"]]
            if city == "tokyo":
                events.append({"event_id": f"{city}{n}-apply", "ad_id": "tokyo-0",
                               "type": "apply", "feed_id": feed["feed_id"]})
    app.extensions["runtime"].serving_log.flush()
    assert client.post("/v1/events", json={"events": events}).status_code == 202
    for _, args, _ in app.extensions["runtime"].celery.sent:
        roll_in(fake_store, *args)
    run_rollup(fake_store, settings, time.time())
    return fake_store


def test_cells_are_grouped_by_city_busiest_first(three_cities, settings):
    cells = active_cells(three_cities, settings, time.time())
    by_region: dict[int, list] = {}
    for c in cells:
        by_region.setdefault(c["region"], []).append(c)
    assert sorted(by_region) == [0, 1, 2]
    feeds = [sum(c["feeds"] for c in by_region[r]) for r in range(3)]
    assert feeds == pytest.approx([6, 3, 1], rel=0.01)
    for region, city in enumerate(("berlin", "tokyo", "paris")):
        lat, lon, _ = CITIES[city]
        group = by_region[region]
        assert all(abs(c["lat_min"] - lat) < 0.1 and abs(c["lon_min"] - lon) < 0.1 for c in group)
    assert len(by_region[0]) == 2                     # Berlin's two cells, one panel


def test_top_ads_carry_their_titles(three_cities, settings):
    top = dashboard_data(three_cities, settings, time.time())["top_ads"]
    assert top[0]["ad_id"] == "tokyo-0" and top[0]["title"] == "Tokyo job 0"
    assert all(a["title"] == f"{a['ad_id'].split('-')[0].title()} job {a['ad_id'][-1]}"
               for a in top)
    assert all(a["company"] for a in top)
    gone = titled(three_cities, [{"ad_id": "never-heard-of"}])
    assert gone == [{"ad_id": "never-heard-of", "title": "", "company": ""}]
