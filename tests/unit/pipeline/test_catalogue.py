"""pipeline.catalogue on a fakeredis store: a change to an ad voids every cell feed that
could list it, and a reindex never brings back an ad deleted while it runs. (Through the
API: tests/unit/webapp/test_ads.py; `flask ads reindex`: tests/unit/webapp/test_cli.py.)"""
from __future__ import annotations

import time

import pytest

import geo
from config import Settings, load_settings
from pipeline.catalogue import (
    AdRecord,
    cells_listing,
    delete_ad,
    employer_code,
    reindex,
    upsert_ads,
)
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


def test_reindex_never_brings_back_an_ad_deleted_while_it_runs(fake_store, settings,
                                                               monkeypatch):
    upsert_ads(fake_store, settings, [AdRecord("a1", 52.52, 13.405, "t", "c", "care", "", 0.0,
                                               None)])
    real = fake_store.rebuild_indexes
    raced = []

    def delete_during(ad_ids, rows_of, evidence_at):
        def racing_rows_of(records):
            if not raced:                         # the ad goes between the read and the write
                raced.append(1)
                delete_ad(fake_store, settings, "a1")
            return rows_of(records)
        return real(ad_ids, racing_rows_of, evidence_at)

    monkeypatch.setattr(fake_store, "rebuild_indexes", delete_during)
    assert reindex(fake_store, settings, time.time()) == (0, 1)
    assert fake_store.get_ad("a1") is None
    assert fake_store.live_ad_ids() == [] and fake_store.ad_summaries().ids == []


def test_an_ads_summary_holds_its_employer_compared_without_case_or_spacing(fake_store,
                                                                          settings):
    body = {"lat": 48.85, "lon": 2.35, "title": "Cook"}
    upsert_ads(fake_store, settings, [
        AdRecord.from_wire("a", {**body, "company": "Café  de Flore"}, NOW),
        AdRecord.from_wire("b", {**body, "company": "café de flore "}, NOW),
        AdRecord.from_wire("c", {**body, "company": "Café de la Paix"}, NOW),
        AdRecord.from_wire("d", {**body, "company": ""}, NOW)])
    found = fake_store.ad_summaries(["a", "b", "c", "d"])
    emp = dict(zip([i.decode() for i in found.ids], found.rows["emp"].tolist(), strict=True))
    assert emp["a"] == emp["b"] == employer_code("CAFÉ DE FLORE") != emp["c"]
    assert emp["d"] == 0 and emp["a"] != 0
