"""GET /v1/feed and GET /v1/ads/nearby on the fake store: every ad served is live and within
radius_km of the user (checked with our own haversine from the coordinates we PUT), at most
`limit` of them, and a served feed can be traced by its feed_id. Also per-ad stats and health."""
from __future__ import annotations

import time

import pytest

import geo
from tests.support.api import error_of, put_ad

HERE = (52.52, 13.405)
PRIOR_MEAN = 0.02
NEAR = {"n03": (0.3, 10), "n08": (0.8, 100), "n15": (1.5, 200), "n25": (2.5, 300),
        "n40": (4.0, 45), "n48": (4.8, 135)}            # ad_id: (km from HERE, bearing)
OUTSIDE = {"b53": (5.3, 170), "f60": (6.0, 0), "f70": (7.0, 90), "f80": (8.0, 250)}
EXPIRED = {"x10": (1.0, 270)}


def place(km: float, bearing: float) -> tuple[float, float]:
    lat, lon = geo.destination_point(*HERE, bearing, km)
    return float(lat), float(lon)


@pytest.fixture
def catalogue(client, admin) -> dict[str, tuple[float, float]]:
    """The ads around HERE, as ad_id -> (lat, lon)."""
    now = time.time()
    where = {}
    for ad_id, (km, bearing) in {**NEAR, **OUTSIDE, **EXPIRED}.items():
        lat, lon = where[ad_id] = place(km, bearing)
        extra = {"created_at": now - 7200, "expires_at": now - 60} if ad_id in EXPIRED else {}
        put_ad(client, admin, ad_id, lat, lon, title=f"title {ad_id}", company=f"co {ad_id}",
               **extra)
    return where


def km_from_here(where: dict, ad_id: str) -> float:
    return float(geo.haversine_km(*HERE, *where[ad_id]))


def get_feed(client, **params) -> dict:
    response = client.get("/v1/feed", query_string={"lat": HERE[0], "lon": HERE[1], **params})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def ids_of(feed: dict) -> list[str]:
    return [a["ad_id"] for a in feed["ads"]]


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


def test_a_feed_id_resolves_to_the_feed_that_was_served(client, admin, catalogue):
    feed = get_feed(client, limit=4)
    response = client.get(f"/v1/feeds/{feed['feed_id']}", headers=admin)
    assert response.status_code == 200, response.get_data(as_text=True)
    served = response.get_json()
    assert served["feed_id"] == feed["feed_id"]
    assert served["ads"] == ids_of(feed)
    assert served["cell"] == feed["cell"]
    assert served["strategy"] == feed["strategy"]
    assert float(served["propensity"]) == feed["propensity"]


def test_a_feed_id_needs_the_admin_token(client, catalogue):
    feed = get_feed(client)
    error_of(client.get(f"/v1/feeds/{feed['feed_id']}"), 401)


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


# ---- GET /v1/ads/nearby ----------------------------------------------------------------------

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


# ---- per-ad stats, health ------------------------------------------------------------------

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


def test_healthz_is_200(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_a_cell_whose_catalogue_keeps_changing_is_a_503_not_a_stale_feed(client, admin,
                                                                        fake_store, monkeypatch):
    put_ad(client, admin, "busy-1", 52.52, 13.405)
    monkeypatch.setattr(fake_store, "write_feeds", lambda *a, **k: False)
    r = client.get("/v1/feed", query_string={"lat": "52.52", "lon": "13.405"})
    assert r.status_code == 503
    assert r.get_json()["error"]["code"] == "feed_rebuilding"
    assert r.headers["Retry-After"] == "1"
