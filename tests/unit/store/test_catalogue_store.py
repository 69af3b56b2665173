"""store.catalogue_store: writing, deleting and expiring ads, the feeds a change voids, the
proximity search and the packed summaries regeneration reads.
(All on fakeredis; tests/integration/test_store_on_redis.py runs them on a real server.)"""
from __future__ import annotations

import numpy as np
import pytest

from store import NO_EXPIRY, AdRow, Store, catalogue_store, split_card
from tests.conftest import NOW
from tests.support.stored_ads import first_layout, put


def test_delete_voids_the_listed_feeds_and_bumps_the_epoch(fake_store: Store):
    put(fake_store, "a1", 52.5, 13.4)
    fake_store.write_feeds("0", {"u33dc0": b"v"}, 60)
    assert fake_store.delete_ad("a1", lambda old: ["u33dc0"])
    assert fake_store.r.get(fake_store.k.feed("u33dc0")) is None
    assert fake_store.catalog_epoch() == "1"
    assert fake_store.get_ad("a1") is None
    assert not fake_store.delete_ad("a1", lambda old: [])


def test_nearby_skips_expired_ads_and_returns_exact_coordinates(fake_store: Store):
    put(fake_store, "near", 52.5, 13.4)
    put(fake_store, "expired", 52.5001, 13.4001, expires_at=NOW - 1)
    put(fake_store, "far", 52.6, 13.4)
    found = fake_store.nearby(52.5, 13.4, 1.0, 10, NOW)
    assert found == [("near", 52.5, 13.4)]


def test_nearby_widens_its_search_past_expired_ads(fake_store: Store):
    for i in range(5):
        put(fake_store, f"x{i}", 52.5 + i * 1e-5, 13.4, expires_at=NOW - 1)
    put(fake_store, "live", 52.5002, 13.4)
    assert [a for a, _, _ in fake_store.nearby(52.5, 13.4, 1.0, 1, NOW)] == ["live"]


def test_drop_expired_takes_ads_and_cards_out_of_the_index_but_keeps_the_record(
        fake_store: Store):
    k = fake_store.k
    fake_store.r.set(k.ad_serial, 2**40 + 255)       # serials past 32 bits read in Lua too
    put(fake_store, "old", 52.5, 13.4, expires_at=NOW - 1)
    put(fake_store, "new", 52.5, 13.4)
    assert fake_store.drop_expired(NOW) == ["old"]
    assert fake_store.live_ad_ids() == ["new"]
    assert fake_store.get_ad("old") is not None
    assert fake_store.r.zscore(fake_store.k.ads_expiry, "new") is None     # it never expires
    assert fake_store.r.hgetall(k.ads_cards) == {str(2**40 + 257).encode(): b"new\x00card:new"}


def test_an_ad_of_the_third_layout_is_found_nearby_and_its_card_dropped_at_expiry(
        fake_store: Store):
    """Written before summaries held the employer: still found, still read, and its card
    still goes when it expires."""
    k = fake_store.k
    put(fake_store, "earlier", 52.5, 13.4, expires_at=NOW - 1)
    value = fake_store.r.hget(k.ads_summary, "earlier")
    assert value[:4] == b"AS4\x00" and len(value) == 4 + 56
    fixed = np.frombuffer(value[4:], dtype="<f8,<f8,<f8,<f8,<u8,<u8,<u8")[0].tolist()
    third = b"AS3\x00" + np.array([fixed[:5] + fixed[6:]],
                                  dtype="<f8,<f8,<f8,<f8,<u8,<u8").tobytes()
    fake_store.r.hset(k.ads_summary, "earlier", third)
    assert fake_store.ad_summaries(["earlier"]).rows["sn"].tolist() == [fixed[6]]
    assert fake_store.nearby(52.5, 13.4, 1.0, 10, NOW - 2) == [("earlier", 52.5, 13.4)]
    assert fake_store.r.hlen(k.ads_cards) == 1
    assert fake_store.drop_expired(NOW) == ["earlier"]
    assert fake_store.r.hlen(k.ads_cards) == 0


def test_ad_summaries_round_trip_location_expiry_and_serial(fake_store: Store):
    put(fake_store, "a", 52.5, 13.4, expires_at=NOW + 5)
    fake_store.put_ads([AdRow("b", {"title": "Bäcker"}, -33.9, 151.2, None, NOW - 1, 2**64 - 1,
                              "Bäcker".encode())], lambda old: [])
    found = fake_store.ad_summaries()
    by_id = {i.decode(): n for n, i in enumerate(found.ids)}
    a, b = found.rows[by_id["a"]], found.rows[by_id["b"]]
    assert (a["lat"], a["lon"], a["exp"], a["created"], a["cat"]) == (52.5, 13.4, NOW + 5,
                                                                      NOW - 60, 7)
    assert (b["lat"], b["lon"], b["exp"], b["cat"]) == (-33.9, 151.2, NO_EXPIRY, 2**64 - 1)
    assert [split_card(v) for v in fake_store.ad_cards([a["sn"], b["sn"]])] == [
        ("a", b"card:a"), ("b", "Bäcker".encode())]
    assert [i.decode() for i in fake_store.ad_summaries(["b", "missing"]).ids] == ["b"]


def test_a_replaced_ad_gets_a_new_serial_and_its_old_card_goes(fake_store: Store):
    put(fake_store, "a", 52.5, 13.4)
    put(fake_store, "b", 52.5, 13.4)
    first = int(fake_store.ad_summaries(["a"]).rows["sn"][0])
    put(fake_store, "a", 52.6, 13.4)
    second = int(fake_store.ad_summaries(["a"]).rows["sn"][0])
    assert second > first
    assert fake_store.ad_cards([first, second]) == [None, b"a\x00card:a"]
    fake_store.delete_ad("a", lambda old: [])
    assert fake_store.ad_cards([second]) == [None]
    assert fake_store.r.hlen(fake_store.k.ads_cards) == 1                  # b's


def test_an_id_twice_in_one_put_keeps_one_card_the_last(fake_store: Store):
    fake_store.put_ads([AdRow("a", {"title": t}, 52.5, 13.4, None, NOW, 7, t.encode())
                        for t in ("first", "last")], lambda old: [])
    serial = int(fake_store.ad_summaries(["a"]).rows["sn"][0])
    assert fake_store.ad_cards([serial]) == [b"a\x00last"]
    assert fake_store.r.hlen(fake_store.k.ads_cards) == 1


def test_a_change_racing_a_write_makes_it_read_the_old_location_again(fake_store: Store):
    put(fake_store, "ad1", 52.5, 13.4)
    seen: list[list[tuple[float, float]]] = []

    def cells_of(old):
        seen.append(old)
        if len(seen) == 1:        # another writer moves the ad between our read and commit
            put(fake_store, "ad1", 48.85, 2.35)
        return []

    assert fake_store.delete_ad("ad1", cells_of)
    assert seen == [[(52.5, 13.4)], [(48.85, 2.35)]]
    assert fake_store.get_ad("ad1") is None


def test_ad_summaries_of_a_long_list_are_read_in_bounded_chunks(fake_store: Store,
                                                                monkeypatch):
    monkeypatch.setattr(catalogue_store, "SUMMARY_CHUNK", 3)   # the name the method reads
    for i in range(8):
        put(fake_store, f"ad{i}", 48.0 + i * 0.01, 2.0)
    asked = [f"ad{i}" for i in (7, 0, 5)] + ["gone"] + [f"ad{i}" for i in (1, 2, 3, 4, 6)]
    reads: list[int] = []
    hmget = fake_store.r.hmget
    monkeypatch.setattr(fake_store.r, "hmget",
                        lambda key, fields: reads.append(len(fields)) or hmget(key, fields))
    found = fake_store.ad_summaries(asked)
    assert reads == [3, 3, 3]
    assert [a.decode() for a in found.ids] == [a for a in asked if a != "gone"]
    assert found.rows["lat"].tolist() == pytest.approx([48.07, 48.0, 48.05, 48.01, 48.02,
                                                        48.03, 48.04, 48.06])


def test_only_ads_that_expire_are_in_the_expiry_index(fake_store: Store):
    """An ad that never expires costs nothing in ads:expiry; one that gains or loses an
    expiry moves in or out of it, and a never-expiring ad is live everywhere."""
    put(fake_store, "lasting", 52.5, 13.4)
    put(fake_store, "ending", 52.5, 13.4, expires_at=NOW + 60)
    assert fake_store.r.zrange(fake_store.k.ads_expiry, 0, -1, withscores=True) == [(b"ending",
                                                                             NOW + 60)]
    put(fake_store, "ending", 52.5, 13.4)                          # renewed for good
    put(fake_store, "lasting", 52.5, 13.4, expires_at=NOW + 5)
    assert fake_store.r.zrange(fake_store.k.ads_expiry, 0, -1) == [b"lasting"]
    assert fake_store.live_ad_count(NOW) == 2 and fake_store.live_ad_count(NOW + 6) == 1
    assert [a for a, _, _ in fake_store.nearby(52.5, 13.4, 1.0, 10, NOW + 6)] == ["ending"]
    assert fake_store.drop_expired(NOW + 6) == ["lasting"]


def test_rebuilding_the_indexes_keeps_serials_and_leaves_no_card_behind(fake_store: Store):
    """A reindex keeps each ad's serial (the feeds that name it stay whole) and gives one to
    an ad an older version indexed; two reindexes, or one racing another, leave one card an
    ad."""
    put(fake_store, "a", 52.5, 13.4)
    put(fake_store, "b", 52.5, 13.4)
    first_layout(fake_store, "b")                            # written without a serial
    serial_a = int(fake_store.ad_summaries(["a"]).rows["sn"][0])

    def rows_of(records):
        return [AdRow(a, f, float(f["lat"]), float(f["lon"]), None, NOW, 7, b"card:" + a.encode())
                for a, f in records]

    for _ in range(2):
        assert fake_store.rebuild_indexes(["a", "b"], rows_of, NOW) == 2
    serials = fake_store.ad_summaries(["a", "b"]).rows["sn"].tolist()
    assert serials[0] == serial_a and serials[1] > 0
    assert fake_store.r.hlen(fake_store.k.ads_cards) == 2
    assert [split_card(v)[0] for v in fake_store.ad_cards(serials)] == ["a", "b"]


@pytest.mark.parametrize(("lat", "lon"), [(0.0, -0.5), (-33.868820, 151.209295),
                                          (64.1466, -21.9426), (1e-9, -1e-9)])
def test_nearby_reads_exact_coordinates_of_either_sign_from_the_summaries(
        fake_store: Store, lat: float, lon: float):
    """The script decodes the summaries' doubles itself (store/lua/nearby.lua)."""
    put(fake_store, "here", lat, lon)
    assert fake_store.nearby(lat, lon, 1.0, 10, NOW) == [("here", lat, lon)]
