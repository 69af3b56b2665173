"""GET /v1/recommend/{user_id}: the feed at the given location or the user's last known one,
never an ad the user applied to or hid, at O(1) Redis round trips."""
from __future__ import annotations

import numpy as np
import pytest

import geo
from store import UserMemory
from tests.support.api import error_of, put_ad

HOME = (48.8566, 2.3522)
AWAY = (48.8049, 2.1204)          # Versailles, 19 km from HOME


def place(origin: tuple[float, float], km: float, bearing: float) -> tuple[float, float]:
    lat, lon = geo.destination_point(*origin, bearing, km)
    return float(lat), float(lon)


@pytest.fixture
def ads(client, admin) -> dict[str, tuple[float, float]]:
    where = {}
    for i in range(8):
        where[f"home-{i}"] = place(HOME, 0.4 + 0.5 * i, 45 * i)
        where[f"away-{i}"] = place(AWAY, 0.4 + 0.5 * i, 45 * i)
    for ad_id, (lat, lon) in where.items():
        put_ad(client, admin, ad_id, lat, lon)
    return where


def recommend(client, user_id: str, **params):
    return client.get(f"/v1/recommend/{user_id}", query_string=params)


def flush(app) -> None:
    app.extensions["runtime"].serving_log.flush()


def test_with_a_location_it_is_the_feed_there_for_that_user(client, app, ads):
    response = recommend(client, "u1", lat=HOME[0], lon=HOME[1], limit=5)
    assert response.status_code == 200
    body = response.get_json()
    assert body["user_id"] == "u1" and body["location_source"] == "given"
    assert body["cell"] == geo.encode(*HOME, 6)
    assert "lat" not in response.get_data(as_text=True)       # no user's location is echoed
    assert len(body["ads"]) == 5
    assert all(a["ad_id"].startswith("home-") for a in body["ads"])
    assert body["strategy"] in ("thompson", "popular", "newest", "nearest")
    assert 0.02 <= body["propensity"] <= 1


def test_without_a_location_it_uses_the_last_known_one_from_the_very_next_request(client, ads):
    """The location is written with the request that gives it, not with the buffered log:
    the next request, straight after, already finds it (nothing is flushed here)."""
    assert recommend(client, "u2", lat=AWAY[0], lon=AWAY[1]).status_code == 200
    body = recommend(client, "u2").get_json()
    assert body["location_source"] == "last_known" and body["cell"] == geo.encode(*AWAY, 6)
    assert {a["ad_id"] for a in body["ads"]} == {f"away-{i}" for i in range(8)}
    # a feed asked with a user_id moves the user's last known location too
    client.get("/v1/feed", query_string={"lat": HOME[0], "lon": HOME[1], "user_id": "u2"})
    assert all(a["ad_id"].startswith("home-") for a in recommend(client, "u2").get_json()["ads"])


def test_a_feed_without_a_user_id_stores_no_location(client, ads, keyspace):
    client.get("/v1/feed", query_string={"lat": HOME[0], "lon": HOME[1]})
    assert not [k for k in keyspace() if k.startswith(b"user:")]


def test_a_user_with_no_known_location_is_a_404(client, ads):
    err = error_of(recommend(client, "stranger"), 404, "user_id")
    assert err["code"] == "location_unknown"


@pytest.mark.parametrize("params, field", [
    ({"lat": HOME[0]}, "lon"), ({"lon": HOME[1]}, "lat"), ({"lat": 91, "lon": 0}, "lat"),
    ({"lat": HOME[0], "lon": HOME[1], "limit": 0}, "limit"),
    ({"lat": HOME[0], "lon": HOME[1], "radius_km": 6}, "radius_km"),
])
def test_bad_parameters_are_a_400_naming_the_field(client, ads, params, field):
    error_of(recommend(client, "u3", **params), 400, field)


@pytest.mark.parametrize("user_id", ["a b", "x" * 65, "ü", "{ev}"])
def test_a_bad_user_id_is_a_400_and_never_a_key(client, ads, keyspace, user_id):
    before = keyspace()
    err = error_of(recommend(client, user_id, lat=HOME[0], lon=HOME[1]), 400, "user_id")
    assert err["code"] == "invalid_identifier"
    assert keyspace() == before


def test_ads_applied_to_or_hidden_never_come_back_to_that_user(client, app, ads):
    recommend(client, "u4", lat=HOME[0], lon=HOME[1])
    events = [{"event_id": "a1", "ad_id": "home-0", "type": "apply", "user_id": "u4"},
              {"event_id": "h1", "ad_id": "home-3", "type": "hide", "user_id": "u4"},
              {"event_id": "v1", "ad_id": "home-5", "type": "view", "user_id": "u4"}]
    assert client.post("/v1/events", json={"events": events}).status_code == 202
    for _ in range(30):
        shown = {a["ad_id"] for a in recommend(client, "u4", limit=100).get_json()["ads"]}
        assert shown == {f"home-{i}" for i in range(8)} - {"home-0", "home-3"}
    others = {a["ad_id"] for a in recommend(client, "u5", lat=HOME[0], lon=HOME[1],
                                            limit=100).get_json()["ads"]}
    assert {"home-0", "home-3"} <= others


def test_the_per_user_work_is_one_round_trip_whatever_the_catalogue(client, app, admin,
                                                                    fake_store, round_trips):
    """With the cell cached in the web process: the feed with a user_id writes the user's
    location and reads their exclusions together (one pipeline), and the recommendation
    without a location reads location and exclusions together (one pipeline), for a
    catalogue of 20 ads or of 2,000."""
    rng = np.random.default_rng(3)
    fake_store.exclude_for_users({"u6": {f"gone-{i}" for i in range(500)}}, 0.0,
                                 UserMemory(3600))
    counts = []
    for total in (20, 2000):
        for i in range(len(counts) * 20, total):
            lat, lon = place(HOME, float(rng.uniform(0, 4.5)), float(rng.uniform(0, 360)))
            fake_store.put_ads([ad_row(f"ad-{i}", lat, lon)], lambda old: [])
        fake_store.delete_ad("none", lambda old: [geo.encode(*HOME, 6)])   # drop the cache
        assert recommend(client, "u6", lat=HOME[0], lon=HOME[1]).status_code == 200  # builds
        assert recommend(client, "u6", lat=HOME[0], lon=HOME[1]).get_json()["cache"] == "hit"
        flush(app)
        before = len(round_trips)
        assert recommend(client, "u6").get_json()["cache"] == "hit"
        by_location = len(round_trips) - before
        before = len(round_trips)
        feed = client.get("/v1/feed", query_string={"lat": HOME[0], "lon": HOME[1],
                                                    "user_id": "u6"})
        assert feed.status_code == 200 and feed.get_json()["cache"] == "hit"
        counts.append((by_location, len(round_trips) - before))
    assert counts == [(1, 1), (1, 1)]


def ad_row(ad_id: str, lat: float, lon: float):
    from pipeline.catalogue import AdRecord
    return AdRecord(ad_id, lat, lon, "t", "c", "retail", "", 0.0, None).row()
