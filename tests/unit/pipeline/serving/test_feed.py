"""pipeline.serving.feed on a fakeredis store: a feed holds only live ads within the radius,
never one its user applied to or hid, in the order of the strategy drawn; and the log of
served feeds: what was served reaches Redis, once, even across Redis outages (up to a
bound)."""
from __future__ import annotations

from dataclasses import replace

import msgpack
import numpy as np
import pytest
import redis

import geo
from bandit import SCREEN
from config import Settings, load_settings
from pipeline.catalogue import upsert_ads
from pipeline.learning.frequency import rule_of
from pipeline.learning.rollup import run_rollup
from pipeline.serving.cellfeed import FORMAT_VERSION, CardCache, CellFeed, FeedCache
from pipeline.serving.feed import (
    NOBODY,
    PREPARED_AD_BYTES,
    PREPARED_LENGTH,
    FeedRequest,
    ServingLog,
    UserAds,
    load_cell,
    pick_order,
    prepared_bytes,
    quick_ads,
    render_ads,
    screened,
    serve_feed,
    within_reach,
)
from store import Keys, Showings, Store, UserMemory
from tests.conftest import NOW
from tests.support.builders import PARIS, ads_around, events_of, send, serve_many


@pytest.fixture
def settings() -> Settings:
    """Feeds long enough to hold every candidate of these small catalogues."""
    return load_settings({}, feed_length=400)


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


def test_an_ad_a_user_applied_to_is_left_out_of_their_feed(serve, fake_store, settings, paris, rng):
    req = FeedRequest(*PARIS, 100, 5.0, user_id="u1")
    shown = [a["ad_id"] for a in serve(req, NOW)["ads"]]
    fake_store.exclude_for_users({"u1": {shown[0]}}, NOW, UserMemory(60))
    again = [a["ad_id"] for a in serve(req, NOW)["ads"]]
    assert shown[0] not in again and len(again) >= len(shown) - 1


def test_a_feed_stored_in_an_older_layout_is_rebuilt_on_its_first_read(serve, fake_store,
                                                                      settings, paris):
    cell = geo.encode(*PARIS, settings.geohash_precision)
    fake_store.r.set(Keys.feed(cell), msgpack.packb({"v": FORMAT_VERSION - 1, "cell": cell}))
    body = serve(FeedRequest(*PARIS, 20, 5.0), NOW)
    assert body["cache"] == "miss" and len(body["ads"]) == 20
    assert CellFeed.unpack(fake_store.feed_value(cell)).cell == cell    # stored anew
    assert serve(FeedRequest(*PARIS, 20, 5.0), NOW)["cache"] == "hit"


@pytest.mark.parametrize("strategy", ["nearest", "newest"])
def test_nearest_orders_by_distance_from_the_user_and_newest_by_age(fake_store, rng, strategy):
    settings = load_settings({}, feed_strategies=(strategy,), feed_length=400)
    ads = ads_around(*PARIS, 40, 4.0, rng)
    ads = [replace(a, created_at=NOW - 1000 * i) for i, a in enumerate(ads)]
    upsert_ads(fake_store, settings, ads)
    created = {a.ad_id: a.created_at for a in ads}
    user = geo.destination_point(*PARIS, 30.0, 0.4)           # not the cell's centre
    for body in serve_many(fake_store, settings, 5, rng, (float(user[0]), float(user[1]))):
        assert body["strategy"] == strategy and body["propensity"] == 1.0
        shown = body["ads"]
        if strategy == "nearest":
            assert [a["distance_km"] for a in shown] == sorted(a["distance_km"] for a in shown)
        else:
            ages = [created[a["ad_id"]] for a in shown]
            assert ages == sorted(ages, reverse=True)


@pytest.mark.parametrize("strategy", ["popular", "newest", "nearest"])
def test_a_screened_strategy_shows_thompsons_screens_in_its_own_order(fake_store, rng,
                                                                       strategy):
    """Whatever the strategy, each screen of 10 holds exactly the ads the Thompson variant
    puts there (after the distance filter): only their order within the screen changes."""
    settings = load_settings({}, feed_strategies=("thompson", strategy), feed_variants=1,
                             strategy_floor=0.0)
    ads = [replace(a, created_at=NOW - 60 * i) for i, a in enumerate(ads_around(*PARIS, 200, 3.0,
                                                                                 rng))]
    upsert_ads(fake_store, settings, ads)
    events = []
    for i, ad in enumerate(ads):                  # posterior means that differ
        events += events_of(ad.ad_id, NOW, impressions=20, views=i % 7, applies=i % 3)
    send(fake_store, settings, events, NOW)
    run_rollup(fake_store, settings, NOW)
    user = geo.destination_point(*PARIS, 45.0, 0.3)
    point = (float(user[0]), float(user[1]))
    log = ServingLog(fake_store, settings.served_maxlen, flush_s=None)
    shown = {}
    while len(shown) < 2:
        body = serve_feed(fake_store, settings, FeedRequest(*point, 30, 5.0), NOW, rng, None,
                          log).as_dict()
        shown.setdefault(body["strategy"], [a["ad_id"] for a in body["ads"]])
    for start in (0, 10, 20):
        assert set(shown[strategy][start:start + 10]) == set(shown["thompson"][start:start + 10])
    assert shown[strategy] != shown["thompson"]


# ---- the log of served feeds ----------------------------------------------------------

def test_the_serving_log_writes_feeds_and_cells_in_one_flush(fake_store):
    log = ServingLog(fake_store, 1000, flush_s=None)
    log.add({"feed_id": "f1", "ads": "a"}, "u33dc0", 10.0)
    log.add({"feed_id": "f2", "ads": "b"}, "u33dc0", 11.0)
    assert fake_store.r.xlen(Keys.served) == 0
    assert log.flush() == 2
    assert fake_store.r.xlen(Keys.served) == 2
    assert fake_store.r.zscore(Keys.cells_active, "u33dc0") == 11.0
    assert log.flush() == 0


def test_the_serving_log_keeps_entries_while_redis_is_down(fake_store, monkeypatch):
    log = ServingLog(fake_store, 1000, flush_s=None)
    log.add({"feed_id": "f1"}, "u33dc0", 10.0)

    def down(*_a, **_k):
        raise redis.ConnectionError("down")
    monkeypatch.setattr(fake_store, "record_serving", down)
    assert log.flush() == 0
    monkeypatch.undo()
    log.add({"feed_id": "f2"}, "u33dc1", 11.0)
    assert log.flush() == 2
    assert [f[b"feed_id"] for _, f in fake_store.r.xrange(Keys.served)] == [b"f1", b"f2"]


def test_the_serving_log_drops_the_oldest_past_its_bound(fake_store):
    log = ServingLog(fake_store, 1000, flush_s=None, max_buffered=2)
    for i in range(3):
        log.add({"feed_id": f"f{i}"}, "u33dc0", 10.0)
    assert log.flush() == 2
    assert [f[b"feed_id"] for _, f in fake_store.r.xrange(Keys.served)] == [b"f1", b"f2"]


def test_a_large_buffer_is_written_in_chunks(fake_store, monkeypatch):
    import pipeline.serving.feed as serving
    monkeypatch.setattr(serving, "FLUSH_CHUNK", 2)
    calls = []
    real = fake_store.record_serving
    monkeypatch.setattr(fake_store, "record_serving",
                        lambda served, *a: (calls.append(len(served)), real(served, *a)))
    log = ServingLog(fake_store, 1000, flush_s=None)
    for i in range(5):
        log.add({"feed_id": f"f{i}"}, "u33dc0", 10.0)
    assert log.flush() == 5
    assert calls == [2, 2, 1]
    assert fake_store.r.xlen(Keys.served) == 5


def test_a_flush_whose_reply_was_lost_is_not_appended_twice(fake_store, monkeypatch):
    """The write reached Redis but the reply did not (a timeout): the retry carries the same
    flush id and appends nothing, so each served feed is in the log (and counted) once."""
    log = ServingLog(fake_store, 1000, flush_s=None)
    for i in range(5):
        log.add({"feed_id": f"f{i}", "ads": ""}, "u33dc0", 1.0)
    real = fake_store.record_serving
    lost = []

    def written_then_timed_out(*args, **kwargs):
        real(*args, **kwargs)
        if not lost:
            lost.append(1)
            raise redis.TimeoutError("reply lost")

    monkeypatch.setattr(fake_store, "record_serving", written_then_timed_out)
    assert log.flush() == 0
    log.add({"feed_id": "f5", "ads": ""}, "u33dc0", 2.0)
    assert log.flush() == 6
    logged = [f[b"feed_id"].decode() for _, f in fake_store.r.xrange(Keys.served)]
    assert logged == [f"f{i}" for i in range(6)]


# ---- the quick path: a variant laid out once serves what the full filter keeps --------

def full_filter(feed, pick, req, now, cards):
    return screened(feed, pick, within_reach(feed, pick.order, req, now, set(), cards))


@pytest.mark.parametrize("spread_km", [3.0, 9.0])
def test_the_quick_path_serves_what_the_full_filter_keeps(fake_store, rng, spread_km):
    """Points all over the cell (corners included), every strategy and variant, radii and
    limits, ads near and beyond the radius, some expiring, one deleted from the cards:
    the same ads, in the same order, at the same distances, byte for byte."""
    settings = load_settings({}, feed_length=400)
    upsert_ads(fake_store, settings, ads_around(*PARIS, 300, spread_km, rng))
    upsert_ads(fake_store, settings, ads_around(*PARIS, 20, 2.0, rng, prefix="soon",
                                                expires_at=NOW + 30))
    cell = geo.encode(*PARIS, settings.geohash_precision)
    cards = CardCache(fake_store)
    feed, _ = load_cell(fake_store, settings, cell, NOW, rng, None, cards)
    box = geo.decode_box(cell)
    corners = [(box.lat_min, box.lon_min), (box.lat_max, box.lon_max)]
    answered = 0
    for i in range(300):
        lat, lon = corners[i] if i < 2 else (float(rng.uniform(box.lat_min, box.lat_max)),
                                             float(rng.uniform(box.lon_min, box.lon_max)))
        req = FeedRequest(lat, lon, int(rng.choice([1, 5, 20, 60, 100])),
                          float(rng.choice([5.0, 2.5, 0.7])))
        now = NOW + float(rng.choice([0.0, 60.0]))
        pick = pick_order(feed, rng)
        quick = quick_ads(feed, pick, req, now, set(), cards)
        if quick is None:              # fewer kept among the laid-out ads than asked
            assert req.limit > 1
            continue
        answered += 1
        got, want = screened(feed, pick, quick), full_filter(feed, pick, req, now, cards)
        assert got == want             # positions, dot products and cards, exactly
        assert render_ads(got) == render_ads(want)
    assert answered > 100             # the common case answers quickly


def test_the_quick_path_dot_products_are_the_array_ones_bit_for_bit(fake_store, settings,
                                                                     paris, rng):
    cell = geo.encode(*PARIS, settings.geohash_precision)
    cards = CardCache(fake_store)
    feed, _ = load_cell(fake_store, settings, cell, NOW, rng, None, cards)
    pick = pick_order(feed, rng)
    req = FeedRequest(PARIS[0] + 0.001234567, PARIS[1] - 0.00765432, 20, 5.0)
    chosen = quick_ads(feed, pick, req, NOW, set(), cards)
    assert chosen is not None and chosen.positions
    rows = feed.xyz[pick.order[chosen.positions]]
    assert chosen.dots == geo.dots(rows, geo.unit_vector(req.lat, req.lon)).tolist()
    assert [geo.dot_km(d) for d in chosen.dots] == \
        pytest.approx(geo.dot_to_km(np.array(chosen.dots)).tolist(), abs=1e-9)


def test_the_quick_path_leaves_a_user_who_excludes_ads_to_the_full_filter(
        fake_store, settings, paris, rng):
    cell = geo.encode(*PARIS, settings.geohash_precision)
    cards = CardCache(fake_store)
    feed, _ = load_cell(fake_store, settings, cell, NOW, rng, None, cards)
    pick = pick_order(feed, rng)
    req = FeedRequest(*PARIS, 20, settings.feed_radius_km)
    assert quick_ads(feed, pick, req, NOW, set(), cards) is not None
    assert quick_ads(feed, pick, req, NOW, {"ad0"}, cards) is None


def test_a_cached_feed_counts_its_variants_laid_out_against_the_cache_budget(
        fake_store, settings, paris, rng):
    cell = geo.encode(*PARIS, settings.geohash_precision)
    cache = FeedCache(fake_store, 60.0)
    feed, _ = load_cell(fake_store, settings, cell, NOW, rng, cache, CardCache(fake_store))
    raw = fake_store.feed_value(cell)
    variants = sum(rows.shape[0] for rows in feed.orders.values())
    assert prepared_bytes(feed) == PREPARED_AD_BYTES * variants * PREPARED_LENGTH
    assert cache._bytes == len(raw) + prepared_bytes(feed)


# ---- the employer rule ---------------------------------------------------------------

def most_of_one_employer(companies: list[str], window: int = 10) -> int:
    """The most ads of one company (compared without case or spacing) among any ``window``
    consecutive positions."""
    names = [" ".join(c.casefold().split()) for c in companies]
    return max((names[i:i + window].count(n) for i in range(len(names))
                for n in set(names[i:i + window])), default=0)


@pytest.fixture
def crowded(fake_store: Store, settings: Settings, rng) -> dict[str, str]:
    """60 ads within 3 km of Paris, three in five of them one employer's (spelt two ways):
    company by ad id."""
    ads = ads_around(*PARIS, 60, 3.0, rng)
    ads = [replace(a, company=("Big  Co" if i % 2 else "big co") if i % 5 > 1
                   else a.company) for i, a in enumerate(ads)]
    upsert_ads(fake_store, settings, ads)
    return {a.ad_id: a.company for a in ads}


@pytest.mark.parametrize("radius_km", [3.0, 1.2])
def test_one_employer_has_at_most_two_ads_in_any_ten_positions_after_the_filters(
        fake_store, settings, crowded, rng, radius_km):
    log = ServingLog(fake_store, settings.served_maxlen, flush_s=None)
    excluded = {a for a in crowded if crowded[a] == "Co" or a.endswith("3")}
    for user_excluded in (set(), excluded):
        for _ in range(8):
            body = serve_feed(fake_store, settings, FeedRequest(*PARIS, 20, radius_km), NOW,
                              rng, None, log, UserAds(user_excluded, set())).as_dict()
            shown = [a["ad_id"] for a in body["ads"]]
            assert most_of_one_employer([crowded[a] for a in shown]) <= 2
            assert not set(shown) & user_excluded
            assert [a["position"] for a in body["ads"]] == list(range(1, len(shown) + 1))
    log.flush()
    entries = [f for _, f in fake_store.r.xrange(Keys.served)]
    moved = [f[b"employer_moved"].decode().split() for f in entries]
    assert all(crowded[a] in ("Big  Co", "big co") for m in moved for a in m)


def test_regeneration_spreads_each_variant_and_serving_repairs_a_feed_built_without(
        fake_store, crowded, rng):
    ruled = load_settings({}, feed_length=400)
    unruled = load_settings({}, feed_length=400, max_per_employer=0)
    log = ServingLog(fake_store, ruled.served_maxlen, flush_s=None)
    cell = geo.encode(*PARIS, ruled.geohash_precision)
    companies = {}
    for built_with in (ruled, unruled):
        fake_store.r.delete(fake_store.k.feed(cell))
        serve_feed(fake_store, built_with, FeedRequest(*PARIS, 20, 3.0), NOW, rng, None, log)
        feed = CellFeed.unpack(fake_store.feed_value(cell))
        codes = feed.employers[feed.orders["thompson"]]
        companies[built_with.max_per_employer] = max(
            most_of_one_employer([str(c) for c in row[:20]]) for row in codes.tolist())
    assert companies == {2: 2, 0: companies[0]} and companies[0] > 2
    # the feed stored now was built without the rule: serving repairs it
    moved = []
    for _ in range(6):
        body = serve_feed(fake_store, ruled, FeedRequest(*PARIS, 20, 3.0), NOW, rng, None,
                          log).as_dict()
        assert most_of_one_employer([crowded[a["ad_id"]] for a in body["ads"]]) <= 2
        # from twice the limit's candidates of an order three fifths one employer's, the
        # rule fills about 20 places (its ads held back past the candidates are left out)
        assert 12 <= len(body["ads"]) <= 20
    log.flush()
    for _, f in fake_store.r.xrange(Keys.served)[-6:]:
        moved += f.get(b"employer_moved", b"").decode().split()
    assert moved and all(crowded[a] in ("Big  Co", "big co") for a in moved)


def test_without_the_rule_one_employer_fills_the_screen(fake_store, crowded, rng):
    settings = load_settings({}, feed_length=400, max_per_employer=0)
    log = ServingLog(fake_store, settings.served_maxlen, flush_s=None)
    most = [most_of_one_employer([crowded[a["ad_id"]] for a in serve_feed(
        fake_store, settings, FeedRequest(*PARIS, 20, 3.0), NOW, rng, None, log).as_dict()
        ["ads"]]) for _ in range(8)]
    assert max(most) > 2
    log.flush()
    assert {f[b"employer_moved"] for _, f in fake_store.r.xrange(Keys.served)} == {b""}


# ---- the frequency cap -----------------------------------------------------------------

def unruled_paris(store: Store, rng, count: int, **changed) -> tuple[Settings, ServingLog]:
    """``count`` ads within 2 km of Paris, each of its own employer; the settings they are
    served with (the employer rule off, and ``changed``) and a served log."""
    settings = load_settings({}, max_per_employer=0, **changed)
    upsert_ads(store, settings, ads_around(*PARIS, count, 2.0, rng))
    return settings, ServingLog(store, settings.served_maxlen, flush_s=None)


def served_ids(store: Store, settings: Settings, log: ServingLog, req: FeedRequest, rng,
               user: UserAds | None = NOBODY, now: float = NOW) -> list[str]:
    """The ads ``serve_feed`` lists, in order (``user`` None: read from the store)."""
    return [a["ad_id"] for a in serve_feed(store, settings, req, now, rng, None, log,
                                           user).as_dict()["ads"]]


def test_a_capped_ad_goes_below_the_first_screen_of_that_users_feed(fake_store, rng):
    """The ads a user ignored FREQ_CAP times come after every other ad, never in the first
    screen, and the served log names them; the other ads keep their order."""
    settings, log = unruled_paris(fake_store, rng, 25)
    req = FeedRequest(*PARIS, 30, 5.0, "u1")
    served_ids(fake_store, settings, log, req, rng)                        # the cell built
    first = served_ids(fake_store, settings, log, req, np.random.default_rng(4))
    assert len(first) == 25
    capped = [first[0], first[3], first[12]]
    shown = served_ids(fake_store, settings, log, req, np.random.default_rng(4),
                       UserAds(set(), set(capped)))
    assert shown == [a for a in first if a not in capped] + capped
    log.flush()
    last = fake_store.r.xrange(Keys.served)[-1][1]
    assert last[b"frequency_moved"].decode().split() == capped
    assert last[b"rules"] == (b"MAX_PER_EMPLOYER=0 FREQ_CAP=3 FREQ_WINDOW_S=604800 "
                              b"FREQ_MAX_ADS=100 REGION_PRECISION=4")


def test_the_other_ads_fill_the_limit_before_a_capped_one(fake_store, rng):
    settings, log = unruled_paris(fake_store, rng, 40)
    req = FeedRequest(*PARIS, 20, 5.0, "u1")
    first = served_ids(fake_store, settings, log, req, rng)
    for _ in range(5):
        shown = served_ids(fake_store, settings, log, req, rng, UserAds(set(), set(first[:5])))
        assert len(shown) == 20 and not set(first[:5]) & set(shown)


def test_a_capped_ad_is_left_out_rather_than_shown_in_the_first_screen(fake_store, rng):
    settings, log = unruled_paris(fake_store, rng, 8)
    req = FeedRequest(*PARIS, 10, 5.0, "u1")
    every = served_ids(fake_store, settings, log, req, rng)
    assert len(every) == 8
    shown = served_ids(fake_store, settings, log, req, rng, UserAds(set(), {every[1]}))
    assert sorted(shown) == sorted(set(every) - {every[1]})


def test_the_frequency_cap_and_the_employer_rule_hold_together(fake_store, settings, crowded,
                                                              rng):
    log = ServingLog(fake_store, settings.served_maxlen, flush_s=None)
    req = FeedRequest(*PARIS, 20, 3.0, "u1")
    capped = set(list(crowded)[::4])
    for _ in range(8):
        shown = served_ids(fake_store, settings, log, req, rng, UserAds(set(), capped))
        assert most_of_one_employer([crowded[a] for a in shown]) <= 2
        assert not capped & set(shown[:SCREEN])


def test_a_user_s_capped_ads_are_read_with_their_exclusions(fake_store, rng):
    """serve_feed reads a user's capped ads itself, in the round trip that keeps their
    location, and only while the cap holds them."""
    settings, log = unruled_paris(fake_store, rng, 30, freq_cap=2)
    req = FeedRequest(*PARIS, 30, 5.0, "u1")
    top = served_ids(fake_store, settings, log, req, rng, None)[0]
    fake_store.record_showings({"u1": Showings({top: 2}, ())}, NOW, rule_of(settings))
    for when, held in ((NOW + 60, True), (NOW + settings.freq_window_s + 61, False)):
        for _ in range(5):
            shown = served_ids(fake_store, settings, log, req, rng, None, when)
            assert len(shown) == 30 and top in shown
            if held:
                assert top not in shown[:SCREEN]
        log.flush()
        moved = [f[b"frequency_moved"] for _, f in fake_store.r.xrange(Keys.served)[-5:]]
        assert set(moved) == ({top.encode()} if held else {b""})


def test_a_user_with_many_capped_ads_still_gets_a_full_feed(fake_store, rng):
    """Capped ads filling the top of the order do not shorten the feed: as many more
    candidates are taken as the user has capped ads."""
    settings, log = unruled_paris(fake_store, rng, 200)
    req = FeedRequest(*PARIS, 10, 5.0, "u1")
    served_ids(fake_store, settings, log, req, rng)                        # the cell built
    order = served_ids(fake_store, settings, log, FeedRequest(*PARIS, 40, 5.0),
                       np.random.default_rng(8))
    capped = set(order[:25])
    shown = served_ids(fake_store, settings, log, req, np.random.default_rng(8),
                       UserAds(set(), capped))
    assert len(shown) == 10 and not capped & set(shown)
