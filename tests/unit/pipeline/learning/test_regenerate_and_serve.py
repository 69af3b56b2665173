"""Regeneration and serving on a fakeredis store: what a feed may hold, and when."""
from __future__ import annotations

import numpy as np
import pytest

import geo
from config import Settings, load_settings
from pipeline.catalogue import cells_listing, delete_ad, upsert_ads
from pipeline.learning.regenerate import build_one_cell, run_regenerate
from pipeline.serving.cellfeed import CellFeed
from pipeline.serving.feed import FeedRequest, ServingLog, serve_feed
from store import Keys, Store, UserMemory
from tests.conftest import NOW
from tests.support.builders import ads_around

PARIS = (48.8566, 2.3522)


@pytest.fixture
def settings() -> Settings:
    """Feeds long enough to hold every candidate of these small catalogues."""
    return load_settings({}, feed_length=400)


@pytest.fixture
def serve(fake_store: Store, settings: Settings, rng):
    """serve_feed without a process cache, its log flushed after each request."""
    log = ServingLog(fake_store, settings.served_maxlen, flush_s=None)

    def run(req: FeedRequest, now: float) -> dict:
        body = serve_feed(fake_store, settings, req, now, rng, None, log).as_dict()
        log.flush()
        return body
    return run


@pytest.fixture
def paris(fake_store: Store, settings: Settings, rng):
    ads = ads_around(*PARIS, 300, 9.0, rng)
    upsert_ads(fake_store, settings, ads)
    return {a.ad_id: a for a in ads}


def test_a_cell_feed_holds_every_ad_within_reach_of_any_point_in_the_cell(
        fake_store, settings, paris, rng):
    cell = geo.encode(*PARIS, settings.geohash_precision)
    feed = CellFeed.unpack(build_one_cell(fake_store, cell, settings, NOW, rng))
    reach = settings.feed_radius_km + geo.cell_half_diagonal_km(cell)
    c_lat, c_lon = geo.decode(cell)
    expected = {a for a, r in paris.items()
                if geo.haversine_km(c_lat, c_lon, r.lat, r.lon) <= reach}
    assert set(feed.ad_ids.all()) == expected      # fewer ads than FEED_LENGTH: all of them
    assert feed.strategies == settings.feed_strategies
    assert list(feed.orders) == ["thompson"]        # the screened strategies serve from it
    assert feed.orders["thompson"].shape == (settings.feed_variants, len(expected))
    assert set(feed.keys) == {"popular", "newest"}
    assert all(key.shape == (len(expected),) for key in feed.keys.values())


def test_every_served_ad_is_live_and_within_the_radius(serve, fake_store, settings, paris, rng):
    box = geo.decode_box(geo.encode(*PARIS, settings.geohash_precision))
    for lat, lon in [(box.lat_min, box.lon_min), (box.lat_max, box.lon_max), PARIS]:
        for radius_km in (5.0, 2.5, 0.5):
            body = serve(FeedRequest(lat, lon, 100, radius_km), NOW)
            for ad in body["ads"]:
                rec = paris[ad["ad_id"]]
                assert geo.haversine_km(lat, lon, rec.lat, rec.lon) <= radius_km
            within = sum(geo.haversine_km(lat, lon, r.lat, r.lon) <= radius_km
                         for r in paris.values())
            assert len(body["ads"]) == min(100, within)
            assert [a["position"] for a in body["ads"]] == list(range(1, len(body["ads"]) + 1))


def test_an_ad_expiring_after_generation_is_not_served_from_the_stale_feed(serve,
        fake_store, settings, rng):
    ads = ads_around(*PARIS, 5, 1.0, rng, expires_at=NOW + 60)
    upsert_ads(fake_store, settings, ads)
    req = FeedRequest(*PARIS, 20, 5.0)
    assert len(serve(req, NOW)["ads"]) == 5
    later = serve(req, NOW + 61)
    assert later["cache"] == "hit" and later["ads"] == []


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


def test_regeneration_rebuilds_active_cells_and_forgets_idle_ones(fake_store, settings, paris, rng):
    active = geo.encode(*PARIS, settings.geohash_precision)
    idle = geo.encode(48.80, 2.30, settings.geohash_precision)
    fake_store.mark_active({active: NOW, idle: NOW - settings.active_cell_ttl_s - 1})
    report = run_regenerate(fake_store, settings, NOW, rng)
    assert report["cells"] == 1 and report["written"] == 1 and report["ads"] == 300
    assert fake_store.r.exists(Keys.feed(active)) and not fake_store.r.exists(Keys.feed(idle))
    assert fake_store.job_status("regenerate")["written"] == "1"


def test_a_catalogue_change_during_regeneration_is_never_written_over(
        fake_store, settings, paris, rng, monkeypatch):
    cell = geo.encode(*PARIS, settings.geohash_precision)
    fake_store.mark_active({cell: NOW})
    victim = next(iter(paris))
    import pipeline.learning.regenerate as regen
    real_build = regen.build_feeds
    calls = []

    def build_then_delete(*args, **kwargs):
        feeds = real_build(*args, **kwargs)
        if not calls:                       # the ad goes while the first build is under way
            delete_ad(fake_store, settings, victim)
        calls.append(1)
        return feeds

    monkeypatch.setattr(regen, "build_feeds", build_then_delete)
    report = run_regenerate(fake_store, settings, NOW, rng)
    assert len(calls) == 2 and report["written"] == 1
    feed = CellFeed.unpack(fake_store.r.get(Keys.feed(cell)))
    assert victim not in feed.ad_ids.all()


def test_thompson_variants_differ_but_share_the_cells_ads(fake_store, settings, paris, rng):
    cell = geo.encode(*PARIS, settings.geohash_precision)
    feed = CellFeed.unpack(build_one_cell(fake_store, cell, settings, NOW, rng))
    orders = {tuple(v[:10]) for v in feed.orders["thompson"]}
    assert len(orders) > 1
    assert feed.orders["thompson"].max() < len(feed)


def test_an_ad_a_user_applied_to_is_left_out_of_their_feed(serve, fake_store, settings, paris, rng):
    req = FeedRequest(*PARIS, 100, 5.0, user_id="u1")
    shown = [a["ad_id"] for a in serve(req, NOW)["ads"]]
    fake_store.exclude_for_users({"u1": {shown[0]}}, NOW, UserMemory(60))
    again = [a["ad_id"] for a in serve(req, NOW)["ads"]]
    assert shown[0] not in again and len(again) >= len(shown) - 1


@pytest.mark.parametrize("strategies, kept, bound", [
    (("thompson",), {"thompson"}, 3 * 10),
    (("thompson", "popular", "newest", "nearest"), {"thompson"}, 3 * 10),
    (("random", "egreedy"), {"random", "egreedy"}, 3 * 10 + 3 * 10),
])
def test_a_cell_feed_is_bounded_by_its_orders(fake_store, rng, strategies, kept, bound):
    settings = load_settings({}, feed_length=10, feed_variants=3, feed_strategies=strategies)
    upsert_ads(fake_store, settings, ads_around(*PARIS, 400, 3.0, rng))
    cell = geo.encode(*PARIS, settings.geohash_precision)
    feed = CellFeed.unpack(build_one_cell(fake_store, cell, settings, NOW, rng))
    assert set(feed.orders) == kept
    for order in feed.orders.values():
        assert order.shape == (3, 10)
        assert all(len(set(row)) == 10 for row in order)       # no ad twice in one order
    assert len(feed) <= bound
    listed = np.unique(np.concatenate([o.ravel() for o in feed.orders.values()]))
    assert len(listed) == len(feed)                             # every packed ad is listed


def test_a_feeds_propensity_carries_no_last_bit_noise(fake_store, settings, paris, rng):
    """The strategy probabilities are stored to 12 decimals, so a feed's propensity reads
    0.24632, not 0.24631999999999998, and is exactly the value serving drew with."""
    from pipeline.learning.regenerate import cell_probabilities
    cells = [geo.encode(*PARIS, settings.geohash_precision)]
    for seed in range(20):
        probabilities = cell_probabilities(fake_store, settings, cells, NOW,
                                           np.random.default_rng(seed))
        assert (np.round(probabilities, 12) == probabilities).all()
        assert all(len(repr(float(p))) <= 16 for p in probabilities.ravel())
