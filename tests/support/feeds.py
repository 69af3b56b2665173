"""A catalogue around one point, written through the API, for the tests of GET /v1/feed and
of a served feed's provenance: ads within the feed radius, outside it and expired. A test
module binds the fixture by name: ``catalogue = feeds.catalogue``."""
from __future__ import annotations

import time

import pytest

import geo
from tests.support.api import put_ad

HERE = (52.52, 13.405)
NEAR = {"n03": (0.3, 10), "n08": (0.8, 100), "n15": (1.5, 200), "n25": (2.5, 300),
        "n40": (4.0, 45), "n48": (4.8, 135)}            # ad_id: (km from HERE, bearing)
OUTSIDE = {"b53": (5.3, 170), "f60": (6.0, 0), "f70": (7.0, 90), "f80": (8.0, 250)}
EXPIRED = {"x10": (1.0, 270)}


def place(km: float, bearing: float,
          origin: tuple[float, float] = HERE) -> tuple[float, float]:
    """The point ``km`` from ``origin`` at ``bearing`` degrees."""
    lat, lon = geo.destination_point(*origin, bearing, km)
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
