"""webapp.feeds on the fake store. GET /v1/feed and GET /v1/ads/nearby: every ad served is live
and within radius_km of the user (checked with our own haversine from the coordinates we PUT),
at most `limit` of them. GET /v1/recommend/{user_id}: the feed at the given location or the
user's last known one, never an ad the user applied to or hid, at O(1) Redis round trips. Per-ad
stats. And how much code a feed request runs through, so that a reader can follow it: a cached
request stays within seven files of the service's own layers, and a miss goes one way (read the
cell's inputs, build in memory, write)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

import geo
from bandit import SCREEN
from config import load_settings
from pipeline.learning.frequency import rule_of
from store import Showings, UserMemory
from tests.support import feeds
from tests.support.api import error_of, put_ad
from tests.support.feeds import (
    HERE,
    NEAR,
    get_feed,
    ids_of,
    km_from_here,
    place,
)

catalogue = feeds.catalogue       # the fixture: the ads around HERE
PRIOR_MEAN = 0.02


def test_the_feed_holds_every_live_ad_within_the_radius_and_no_other(client, catalogue):
    feed = get_feed(client)
    assert set(ids_of(feed)) == set(NEAR)
    assert len(ids_of(feed)) == len(NEAR)
    for ad in feed["ads"]:
        assert km_from_here(catalogue, ad["ad_id"]) <= 5.0
        assert ad["distance_km"] == pytest.approx(km_from_here(catalogue, ad["ad_id"]), abs=1e-3)
        assert ad["title"] == f"title {ad['ad_id']}" and ad["company"] == f"co {ad['ad_id']}"
    assert [a["position"] for a in feed["ads"]] == list(range(1, len(NEAR) + 1))
    assert feed["cell"] == geo.encode(*HERE, 6)
    assert feed["strategy"] and 0 < feed["propensity"] <= 1
    assert feed["generated_at"] <= time.time()


def test_the_feed_returns_at_most_limit_ads(client, catalogue):
    for limit in (1, 3):
        feed = get_feed(client, limit=limit)
        assert len(feed["ads"]) == limit
        assert set(ids_of(feed)) <= set(NEAR)
        assert [a["position"] for a in feed["ads"]] == list(range(1, limit + 1))


def test_a_smaller_radius_keeps_only_the_ads_within_it(client, catalogue):
    feed = get_feed(client, radius_km=1)
    assert set(ids_of(feed)) == {"n03", "n08"}
    assert all(km_from_here(catalogue, a) <= 1.0 for a in ids_of(feed))


def test_the_first_feed_of_a_cell_is_a_miss_and_the_next_a_hit(client, catalogue):
    first = get_feed(client)
    second = get_feed(client)
    assert (first["cache"], second["cache"]) == ("miss", "hit")
    assert second["cell"] == first["cell"]
    assert set(ids_of(second)) == set(NEAR)
    assert second["feed_id"] != first["feed_id"]


def test_a_deleted_ad_leaves_a_cached_feed_at_once(client, admin, catalogue):
    assert "n03" in ids_of(get_feed(client))
    assert client.delete("/v1/ads/n03", headers=admin).status_code == 204
    assert set(ids_of(get_feed(client))) == set(NEAR) - {"n03"}


def test_an_ad_moved_away_leaves_a_cached_feed_at_once(client, admin, catalogue):
    assert "n08" in ids_of(get_feed(client))
    put_ad(client, admin, "n08", *place(20.0, 0))
    feed = get_feed(client)
    assert set(ids_of(feed)) == set(NEAR) - {"n08"}
    assert all(km_from_here(catalogue, a) <= 5.0 for a in ids_of(feed))


def test_an_ad_that_expires_after_its_feed_was_built_is_not_served(app, client, admin,
                                                                   catalogue):
    runtime = app.extensions["runtime"]
    t0 = time.time()
    put_ad(client, admin, "soon", *place(0.5, 0), created_at=t0 - 60, expires_at=t0 + 100)
    runtime.now = lambda: t0
    assert "soon" in ids_of(get_feed(client))
    runtime.now = lambda: t0 + 200
    feed = get_feed(client)
    assert feed["cache"] == "hit"
    assert "soon" not in ids_of(feed)
    assert set(ids_of(feed)) == set(NEAR)


def test_a_user_never_sees_an_ad_they_applied_to_or_hid(client, admin, fake_store, catalogue):
    assert {"n15", "n25"} <= set(ids_of(get_feed(client, user_id="u-1")))
    response = client.post("/v1/events", json={"events": [
        {"event_id": "imp-1", "ad_id": "n15", "type": "impression", "user_id": "u-1"},
        {"event_id": "app-1", "ad_id": "n15", "type": "apply", "user_id": "u-1"},
        {"event_id": "hide-1", "ad_id": "n25", "type": "hide", "user_id": "u-1"}]})
    assert response.status_code == 202 and response.get_json()["accepted"] == 3
    # at once, before any task or rollup has run
    for _ in range(10):
        assert set(ids_of(get_feed(client, user_id="u-1"))) == set(NEAR) - {"n15", "n25"}
    assert {"n15", "n25"} <= set(ids_of(get_feed(client, user_id="u-2")))
    assert {"n15", "n25"} <= set(ids_of(get_feed(client)))

    for batch_id in fake_store.overdue_batches(float("inf")):
        fake_store.roll_in(batch_id)                      # what the ingest task does
    rollup = client.post("/v1/admin/rollup?wait=true", headers=admin)
    assert rollup.status_code == 200 and rollup.get_json()["counted"] == 3
    stats = client.get("/v1/stats/ads/n15").get_json()
    assert stats["counters"] == {"impressions": 1, "views": 0, "saves": 0, "applies": 1,
                                 "hides": 0}
    assert stats["posterior"]["mean"] > PRIOR_MEAN
    assert client.get("/v1/stats/ads/n25").get_json()["counters"]["hides"] == 1


def test_a_place_with_no_ads_gets_an_empty_feed(client, catalogue):
    response = client.get("/v1/feed", query_string={"lat": -33.8688, "lon": 151.2093})
    assert response.status_code == 200
    assert response.get_json()["ads"] == []


# ---- GET /v1/ads/nearby ---------------------------------------------------------------------

def get_nearby(client, **params) -> list[dict]:
    response = client.get("/v1/ads/nearby",
                          query_string={"lat": HERE[0], "lon": HERE[1], **params})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["ads"]


def test_nearby_lists_live_ads_within_the_radius_nearest_first(client, catalogue):
    ads = get_nearby(client)
    ids = [a["ad_id"] for a in ads]
    assert ids == sorted(NEAR, key=lambda a: km_from_here(catalogue, a))
    for ad in ads:
        assert ad["distance_km"] == pytest.approx(km_from_here(catalogue, ad["ad_id"]), abs=1e-3)
        assert ad["distance_km"] <= 5.0
    assert [a["distance_km"] for a in ads] == sorted(a["distance_km"] for a in ads)


def test_nearby_respects_limit_and_radius(client, catalogue):
    assert [a["ad_id"] for a in get_nearby(client, limit=2)] == ["n03", "n08"]
    assert [a["ad_id"] for a in get_nearby(client, radius_km=1)] == ["n03", "n08"]
    assert [a["ad_id"] for a in get_nearby(client, radius_km=2, limit=1)] == ["n03"]


def test_nearby_skips_expired_ads_even_when_they_are_nearest(client, admin, catalogue):
    now = time.time()
    put_ad(client, admin, "x00", *place(0.05, 0), created_at=now - 7200, expires_at=now - 1)
    ads = get_nearby(client, limit=3)
    assert [a["ad_id"] for a in ads] == ["n03", "n08", "n15"]


# ---- GET /v1/stats/ads/<ad_id> --------------------------------------------------------------

def test_stats_of_an_unknown_ad_are_404(client):
    error_of(client.get("/v1/stats/ads/never"), 404, "ad_id")


def test_stats_of_a_new_ad_are_zero_with_the_prior_mean(client, admin, settings):
    put_ad(client, admin, "new", *HERE)
    response = client.get("/v1/stats/ads/new")
    assert response.status_code == 200
    stats = response.get_json()
    assert stats["ad_id"] == "new"
    assert stats["counters"] == {"impressions": 0, "views": 0, "saves": 0, "applies": 0,
                                 "hides": 0}
    assert stats["posterior"]["mean"] == pytest.approx(PRIOR_MEAN)
    assert settings.prior_mean == PRIOR_MEAN and settings.reward_model == "funnel"
    view, apply = stats["posterior"]["stages"]
    assert view["stage"] == "view" and apply["stage"] == "apply_given_view"
    assert view["alpha"] / (view["alpha"] + view["beta"]) == pytest.approx(settings.prior_view_rate)
    assert view["alpha"] + view["beta"] == pytest.approx(settings.prior_strength)


def test_a_cell_whose_catalogue_keeps_changing_is_a_503_not_a_stale_feed(client, admin,
                                                                        fake_store, monkeypatch):
    put_ad(client, admin, "busy-1", 52.52, 13.405)
    monkeypatch.setattr(fake_store, "write_feeds", lambda *a, **k: False)
    r = client.get("/v1/feed", query_string={"lat": "52.52", "lon": "13.405"})
    assert r.status_code == 503
    assert r.get_json()["error"]["code"] == "feed_rebuilding"
    assert r.headers["Retry-After"] == "1"


# ---- GET /v1/recommend/<user_id> ------------------------------------------------------------

HOME = (48.8566, 2.3522)
AWAY = (48.8049, 2.1204)          # Versailles, 19 km from HOME


@pytest.fixture
def ads(client, admin) -> dict[str, tuple[float, float]]:
    where = {}
    for i in range(8):
        where[f"home-{i}"] = place(0.4 + 0.5 * i, 45 * i, HOME)
        where[f"away-{i}"] = place(0.4 + 0.5 * i, 45 * i, AWAY)
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
    location and reads their exclusions and the ads the frequency cap holds together (one
    pipeline), and the recommendation without a location reads location, exclusions and
    capped ads together (one pipeline), for a catalogue of 20 ads or of 2,000."""
    rng = np.random.default_rng(3)
    fake_store.exclude_for_users({"u6": {f"gone-{i}" for i in range(500)}}, 0.0,
                                 UserMemory(3600))
    fake_store.record_showings({"u6": Showings({f"ad-{i}": 3 for i in range(0, 20, 2)}, ())},
                               time.time(), rule_of(load_settings({})))
    counts = []
    for total in (20, 2000):
        for i in range(len(counts) * 20, total):
            lat, lon = place(float(rng.uniform(0, 4.5)), float(rng.uniform(0, 360)), HOME)
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
        shown = [a["ad_id"] for a in feed.get_json()["ads"]]
        assert not {f"ad-{i}" for i in range(0, 20, 2)} & set(shown[:SCREEN])
    assert counts == [(1, 1), (1, 1)]


def ad_row(ad_id: str, lat: float, lon: float):
    from pipeline.catalogue import AdRecord
    return AdRecord(ad_id, lat, lon, "t", "c", "retail", "", 0.0, None).row()


# ---- the code a feed request runs through ---------------------------------------------------

ROOT = Path(__file__).resolve().parents[3]
LAYERS = ("webapp", "pipeline", "store", "tasks", "config")   # the service's own layers
LIBRARIES = ("geo", "bandit", "obs")                          # pure maths; telemetry
FEED = "/v1/feed?lat=52.52&lon=13.405"


def files_run(call) -> set[str]:
    """The repository's files whose code runs during ``call()``."""
    seen: set[str] = set()

    def profile(frame, event, arg):
        if event == "call":
            seen.add(frame.f_code.co_filename)
    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return {Path(f).relative_to(ROOT).as_posix() for f in seen
            if f.startswith(str(ROOT)) and "/.venv/" not in f and "/tests/" not in f}


def test_a_cached_feed_reads_in_at_most_seven_files_of_the_service(client, admin):
    for i in range(3):
        put_ad(client, admin, f"ad-{i}", 52.52 + i * 0.001, 13.405)
    assert client.get(FEED).get_json()["cache"] == "miss"
    for _ in range(2):        # the second read also fills this process's cache
        assert client.get(FEED).status_code == 200
    files = files_run(lambda: client.get(FEED))
    own = sorted(f for f in files if f.startswith(LAYERS))
    assert own == ["pipeline/serving/cellfeed.py", "pipeline/serving/feed.py",
                   "webapp/feeds.py", "webapp/ratelimit.py", "webapp/requestlog.py",
                   "webapp/runtime.py", "webapp/validation.py"], own
    others = sorted(files - set(own))
    assert all(f.startswith(LIBRARIES) for f in others), others
    assert len(files) <= 14, sorted(files)        # bandit/diversity.py: the employer rule


def test_a_missed_cell_is_read_once_built_and_written_once(client, admin, fake_store):
    for i in range(3):
        put_ad(client, admin, f"ad-{i}", 52.52 + i * 0.001, 13.405)
    calls: list[str] = []
    for name in dir(type(fake_store)):
        method = getattr(fake_store, name)
        if not name.startswith("_") and callable(method):
            def record(*args, _name=name, _method=method, **kwargs):
                calls.append(_name)
                return _method(*args, **kwargs)
            setattr(fake_store, name, record)
    body = client.get(FEED).get_json()
    assert body["cache"] == "miss" and len(body["ads"]) == 3
    reads = [c for c in calls if c not in ("locate_user", "feed_id_secret", "feed_changes")]
    assert reads == ["feed_value", "cell_inputs", "write_feeds", "ad_cards"], calls
