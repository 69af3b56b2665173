"""Near the poles, where Redis's geo index ends (+-85.05112878): searches from any valid
latitude work on a real server and still find every ad within the radius."""
from __future__ import annotations

import time

import numpy as np

import geo
from config import Settings
from pipeline.catalogue import AdRecord, upsert_ads
from pipeline.serving.feed import FeedRequest, ServingLog, serve_feed
from store import GEO_LAT_LIMIT, Store
from webapp import create_app


def test_feeds_and_nearby_work_beyond_the_geo_index_latitude(real_store: Store,
                                                              real_settings: Settings):
    now = time.time()
    ad = AdRecord("north", GEO_LAT_LIMIT - 0.001, 10.0, "t", "c", "x", "", now - 1, None)
    upsert_ads(real_store, real_settings, [ad])
    user = (GEO_LAT_LIMIT + 0.02, 10.0)                  # about 2.3 km north of the ad
    assert geo.haversine_km(*user, ad.lat, ad.lon) < 5.0
    found = real_store.nearby(*user, 5.0, 10, now)
    assert [a for a, _, _ in found] == ["north"]
    body = serve_feed(real_store, real_settings, FeedRequest(*user, 10, 5.0), now,
                      np.random.default_rng(0), None, ServingLog(real_store, 1000, None)).as_dict()
    assert [a["ad_id"] for a in body["ads"]] == ["north"]
    client = create_app(real_settings).test_client()
    for lat in (89.9, -90.0, 90.0):
        for path in ("/v1/feed", "/v1/ads/nearby"):
            r = client.get(path, query_string={"lat": lat, "lon": 0.0})
            assert r.status_code == 200 and r.get_json()["ads"] == []
    r = client.get("/v1/ads/nearby", query_string={"lat": user[0], "lon": user[1]})
    assert [a["ad_id"] for a in r.get_json()["ads"]] == ["north"]
