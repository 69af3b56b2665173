"""webapp.ads, the ad catalogue: PUT creates then replaces, GET shows an ad and whether it is
live, DELETE removes it; an ad stored in the first summary layout still serves. (`flask ads
import`, `demo` and `reindex`: tests/unit/webapp/test_cli.py.)"""
from __future__ import annotations

import time

import orjson

from pipeline.catalogue import AdRecord, category_code
from tests.support.api import ad_body, error_of, put_ad
from tests.support.stored_ads import first_layout, stored_ad_ids


def test_put_creates_then_replaces(client, admin, fake_store):
    created = client.put("/v1/ads/ad-1", headers=admin,
                         json=ad_body(52.52, 13.405, title="Barista", category="hospitality"))
    assert created.status_code == 201
    body = created.get_json()
    assert body["ad_id"] == "ad-1" and body["title"] == "Barista" and body["live"] is True
    assert (body["lat"], body["lon"]) == (52.52, 13.405)

    replaced = client.put("/v1/ads/ad-1", headers=admin,
                          json=ad_body(52.50, 13.40, title="Head Barista"))
    assert replaced.status_code == 200
    shown = client.get("/v1/ads/ad-1").get_json()
    assert shown["title"] == "Head Barista"
    assert (shown["lat"], shown["lon"]) == (52.50, 13.40)
    # a replacement is whole: a field the new version leaves out is gone
    assert shown["category"] == "other"
    assert stored_ad_ids(fake_store) == {"ad-1"}


def test_get_returns_the_ad_as_put(client, admin):
    now = time.time()
    put_ad(client, admin, "ad-1", 48.8566, 2.3522, title="  Line Cook  ", company="Open Kitchen",
           category="hospitality", description="Evenings.", created_at=now - 3600,
           expires_at=now + 86_400)
    response = client.get("/v1/ads/ad-1")
    assert response.status_code == 200
    ad = response.get_json()
    assert ad == {"ad_id": "ad-1", "lat": 48.8566, "lon": 2.3522, "title": "Line Cook",
                  "company": "Open Kitchen", "category": "hospitality",
                  "description": "Evenings.", "created_at": now - 3600,
                  "expires_at": now + 86_400, "live": True}


def test_put_answers_the_ad_as_get_shows_it_and_its_record_reads(client, admin, fake_store):
    now = time.time()
    put = put_ad(client, admin, "ad-1", -33.8688, 151.2093, title="Bäcker", created_at=now - 60,
                 expires_at=now + 86_400)
    got = client.get("/v1/ads/ad-1")
    assert put.get_data() == got.get_data()
    assert got.get_json() == AdRecord.from_fields("ad-1", fake_store.get_ad("ad-1")).wire(now)


def test_created_at_defaults_to_now(client, admin):
    before = time.time()
    ad = put_ad(client, admin, "ad-1", 1.0, 2.0).get_json()
    assert before <= ad["created_at"] <= time.time()
    assert ad["expires_at"] is None and ad["live"] is True


def test_an_ad_past_its_expiry_is_not_live(client, admin):
    now = time.time()
    put_ad(client, admin, "old", 52.52, 13.405, created_at=now - 7200, expires_at=now - 3600)
    put_ad(client, admin, "iso", 52.52, 13.405, created_at="2020-01-01T00:00:00+01:00",
           expires_at="2020-02-01T00:00:00Z")
    for ad_id in ("old", "iso"):
        ad = client.get(f"/v1/ads/{ad_id}").get_json()
        assert ad["live"] is False, ad
        assert ad["expires_at"] < now
    assert client.get("/v1/ads/iso").get_json()["expires_at"] == 1_580_515_200.0


def test_delete_removes_the_ad(client, admin, fake_store):
    put_ad(client, admin, "ad-1", 52.52, 13.405)
    put_ad(client, admin, "ad-2", 52.52, 13.405)
    response = client.delete("/v1/ads/ad-1", headers=admin)
    assert response.status_code == 204 and response.get_data() == b""
    error_of(client.get("/v1/ads/ad-1"), 404, "ad_id")
    error_of(client.delete("/v1/ads/ad-1", headers=admin), 404, "ad_id")
    near = client.get("/v1/ads/nearby", query_string={"lat": 52.52, "lon": 13.405}).get_json()
    assert [a["ad_id"] for a in near["ads"]] == ["ad-2"]
    assert client.get("/v1/ads/ad-2").status_code == 200


def test_get_and_delete_of_an_unknown_ad_are_404(client, admin):
    error_of(client.get("/v1/ads/never"), 404, "ad_id")
    error_of(client.delete("/v1/ads/never", headers=admin), 404, "ad_id")


def test_an_ad_at_a_valid_polar_latitude_is_not_a_500(client, admin, fake_store):
    """lat 86 is inside the contract's [-90, 90], but Redis geo sets only hold latitudes up
    to 85.05112878. The PUT must either store the ad or refuse it with a 400 on lat; it
    must not fail half-way with a 500 and leave a record the geo index does not know."""
    response = client.put("/v1/ads/polar", headers=admin, json=ad_body(86.0, 2.0))
    assert response.status_code in (201, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        error_of(response, 400, "lat")
        error_of(client.get("/v1/ads/polar"), 404, "ad_id")
        assert stored_ad_ids(fake_store) == set()
    else:
        assert client.get("/v1/ads/polar").get_json()["live"] is True


def test_summaries_of_the_first_layout_are_rewritten_and_serve_valid_feeds(client, admin,
                                                                          fake_store):
    """Ads an older version indexed (no serial, so no card of their own) are reindexed from
    their records by the first build that finds them, and served."""
    for i in range(5):
        put_ad(client, admin, f"old-{i}", 52.52 + i * 1e-3, 13.405, title=f"Job {i}",
               category="care")
        first_layout(fake_store, f"old-{i}")
    assert (fake_store.ad_summaries().rows["sn"] == 0).all()
    response = client.get("/v1/feed", query_string={"lat": 52.52, "lon": 13.405})
    assert response.status_code == 200
    body = orjson.loads(response.get_data())          # valid JSON, cards whole
    assert {a["ad_id"]: a["title"] for a in body["ads"]} == {f"old-{i}": f"Job {i}"
                                                            for i in range(5)}
    rows = fake_store.ad_summaries().rows
    assert (rows["sn"] > 0).all() and (rows["cat"] == category_code("care")).all()


