"""pipeline.catalogue on a fakeredis store: a change to an ad voids every cell feed that
could list it."""
from __future__ import annotations

import pytest

import geo
from config import Settings, load_settings
from pipeline.catalogue import cells_listing, delete_ad
from pipeline.serving.feed import FeedRequest
from tests.conftest import NOW
from tests.support.builders import PARIS, ads_around


@pytest.fixture
def settings() -> Settings:
    """Feeds long enough to hold every candidate of these small catalogues."""
    return load_settings({}, feed_length=400)


def test_a_deleted_ad_voids_the_feeds_that_could_list_it(serve, fake_store, settings, paris, rng):
    req = FeedRequest(*PARIS, 100, 5.0)
    first = serve(req, NOW)
    victim = first["ads"][0]["ad_id"]
    assert delete_ad(fake_store, settings, victim)
    again = serve(req, NOW)
    assert again["cache"] == "miss"
    assert victim not in {a["ad_id"] for a in again["ads"]}


def test_the_cells_voided_by_a_change_include_every_cell_that_lists_the_ad(settings, rng):
    ad = ads_around(*PARIS, 1, 0.1, rng)[0]
    voided = cells_listing([(ad.lat, ad.lon)], settings)

    def reach(c: str) -> float:
        return settings.feed_radius_km + geo.cell_half_diagonal_km(c)

    nearby = geo.cells_covering(ad.lat, ad.lon, 7.0, settings.geohash_precision)
    listing = {c for c in nearby if geo.haversine_km(*geo.decode(c), ad.lat, ad.lon) <= reach(c)}
    assert listing <= voided
