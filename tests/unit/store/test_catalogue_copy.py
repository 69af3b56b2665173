"""store.catalogue_copy: a process's copy of the catalogue's summaries stays equal to
ads:summary through every kind of catalogue write, reads only what changed while the change
log reaches back to it, reads everything again when it cannot trust the log, and selects
the ads within circles by the true distance.
(On fakeredis; tests/integration/test_store_on_redis.py runs them on a real server.)"""
from __future__ import annotations

import numpy as np
import pytest

import geo
from config import load_settings
from pipeline.catalogue import reindex_ads
from store import CHANGE_IDS_MAX, GEO_LAT_LIMIT, AdRow, Store, summary
from tests.conftest import NOW
from tests.support.stored_ads import first_layout, put


def as_dict(found) -> dict[bytes, tuple]:
    return {a: row.tolist() for a, row in zip(found.ids, found.rows, strict=True)}


def same_as_the_hash(store: Store) -> None:
    """The copy, brought up to date, holds exactly what ads:summary holds."""
    assert as_dict(store.current_summaries()) == as_dict(store.ad_summaries())


def ad(ad_id: str, lat: float, lon: float, expires_at: float | None = None) -> AdRow:
    return AdRow(ad_id, {"lat": repr(lat), "lon": repr(lon), "title": "t", "company": "c",
                         "category": "office"}, lat, lon, expires_at, NOW - 60, 7,
                 b"card:" + ad_id.encode())


def test_the_copy_follows_every_kind_of_catalogue_write_reading_only_the_changes(
        fake_store: Store):
    rng = np.random.default_rng(5)
    ids = [f"ad{i}" for i in range(60)]
    fake_store.put_ads([ad(a, 52.5 + rng.normal() * 0.01, 13.4, NOW + 1000) for a in ids],
                       lambda old: [])
    same_as_the_hash(fake_store)
    copy = fake_store.catalogue_copy()
    assert (copy.stats.reloads, len(copy)) == (1, 60)
    for step in range(40):
        kind = step % 5
        if kind == 0:      # new ads and replaced ones, some moved across the world
            fake_store.put_ads([ad(a, float(rng.uniform(-80, 80)), float(rng.uniform(-180, 180)),
                                   NOW + 1000) for a in rng.choice(ids + [f"new{step}"], 3)],
                               lambda old: [])
        elif kind == 1:
            fake_store.delete_ad(str(rng.choice(ids)), lambda old: [])
        elif kind == 2:    # some expire, and the expiry script takes them out
            victim = str(rng.choice(ids))
            fake_store.put_ads([ad(victim, 52.5, 13.4, NOW - 1)], lambda old: [])
            fake_store.drop_expired(NOW)
        elif kind == 3:    # an older version's summary, reindexed from the record
            live = [a.decode() for a in fake_store.ad_summaries().ids]
            first_layout(fake_store, live[0])
            reindex_ads(fake_store, load_settings(), [live[0]], NOW)
        same_as_the_hash(fake_store)
    assert copy.stats.reloads == 1 and copy.stats.updates >= 30


def test_a_write_too_large_to_list_makes_the_copy_read_everything_again(fake_store: Store):
    put(fake_store, "a", 52.5, 13.4)
    same_as_the_hash(fake_store)
    many = [ad(f"b{i}", 52.5, 13.4 + i * 1e-4) for i in range(CHANGE_IDS_MAX + 1)]
    fake_store.put_ads(many, lambda old: [])
    fields = fake_store.r.xrevrange(fake_store.k.catalog_changes, count=1)[0][1]
    assert fields == {b"ids": b"*", b"voids": b"0"}
    same_as_the_hash(fake_store)
    assert fake_store.catalogue_copy().stats.reloads == 2


@pytest.mark.parametrize("lose_the_log", ["trimmed", "deleted"])
def test_a_copy_the_log_no_longer_reaches_reads_everything_again(fake_store: Store,
                                                                 lose_the_log: str):
    put(fake_store, "a", 52.5, 13.4)
    put(fake_store, "b", 52.5, 13.5)
    same_as_the_hash(fake_store)
    # two ads move (the count stays): only the log can tell the copy
    put(fake_store, "a", 48.8, 2.3)
    put(fake_store, "b", 48.9, 2.4)
    if lose_the_log == "trimmed":        # the entry after the copy's is gone
        fake_store.r.xtrim(fake_store.k.catalog_changes, maxlen=1, approximate=False)
    else:                                # a flush, then writes the log does not list
        fake_store.r.delete(fake_store.k.catalog_changes)
    same_as_the_hash(fake_store)
    assert fake_store.catalogue_copy().stats.reloads == 2


def test_a_lost_write_the_copy_had_applied_makes_it_read_everything_again(fake_store: Store):
    put(fake_store, "a", 52.5, 13.4)
    same_as_the_hash(fake_store)
    put(fake_store, "a", 48.8, 2.3)
    same_as_the_hash(fake_store)           # the copy applied the move ...
    # ... which the server then loses (a restart on an AOF a second behind): the summary and
    # the log entry go back, and another write follows
    moved = fake_store.r.xrevrange(fake_store.k.catalog_changes, count=1)[0][0]
    fake_store.r.xdel(fake_store.k.catalog_changes, moved)
    fake_store.r.hset(fake_store.k.ads_summary, "a", summary(ad("a", 52.5, 13.4), NOW + 10, 1))
    put(fake_store, "b", 40.0, 3.0)
    same_as_the_hash(fake_store)
    assert fake_store.catalogue_copy().stats.reloads == 2


def test_an_epoch_moved_by_a_writer_that_does_not_log_makes_the_copy_read_everything_again(
        fake_store: Store):
    put(fake_store, "a", 52.5, 13.4)
    put(fake_store, "b", 52.5, 13.5, stale=["u33dc0"])     # a logged write that voids feeds
    same_as_the_hash(fake_store)
    put(fake_store, "c", 52.5, 13.6, stale=["u33dc0"])
    same_as_the_hash(fake_store)           # logged: read alone
    assert fake_store.catalogue_copy().stats.reloads == 1
    # an older version moves "a" far away, voiding feeds, without a log entry: the count
    # stays, only the epoch tells
    fake_store.r.hset(fake_store.k.ads_summary, "a", summary(ad("a", 10.0, 10.0), NOW + 10, 99))
    fake_store.r.incr(fake_store.k.catalog_epoch)
    epoch = fake_store.ads_within([(10.0, 10.0, 5.0)])
    assert [a.decode() for a in epoch.ads.ids] == ["a"] and epoch.epoch == "3"
    assert fake_store.catalogue_copy().stats.reloads == 2


def test_a_refresh_that_fails_half_way_leaves_the_next_to_read_everything(
        fake_store: Store, monkeypatch):
    put(fake_store, "a", 52.5, 13.4)
    same_as_the_hash(fake_store)
    copy = fake_store.catalogue_copy()
    put(fake_store, "b", 52.5, 13.5)

    def broken(changed):
        raise MemoryError
    monkeypatch.setattr(copy, "_apply", broken)
    with pytest.raises(MemoryError):
        copy.refresh()
    monkeypatch.undo()
    same_as_the_hash(fake_store)
    assert copy.stats.reloads == 2


def test_a_writer_that_does_not_log_is_found_by_the_count(fake_store: Store):
    put(fake_store, "a", 52.5, 13.4)
    same_as_the_hash(fake_store)
    # an older version of the service writes an ad without noting it in the log
    fake_store.r.hset(fake_store.k.ads_summary, "old", summary(ad("old", 52.5, 13.4), NOW + 10, 99))
    same_as_the_hash(fake_store)
    assert fake_store.catalogue_copy().stats.reloads == 2


def test_a_copy_too_old_is_read_whole_again(fake_store: Store, monkeypatch):
    put(fake_store, "a", 52.5, 13.4)
    same_as_the_hash(fake_store)
    # an unlogged rewrite that keeps the count is seen once the copy is MAX_AGE_S old
    fake_store.r.hset(fake_store.k.ads_summary, "a", summary(ad("a", 10.0, 10.0), NOW + 10, 99))
    copy = fake_store.catalogue_copy()
    copy.refresh()
    assert copy.summaries().rows["lat"].tolist() == [52.5]
    monkeypatch.setattr(copy, "_read_at", copy._read_at - 3601.0)
    same_as_the_hash(fake_store)
    assert copy.stats.reloads == 2


@pytest.mark.parametrize("centre", [(52.52, 13.40), (0.0, 179.99), (-84.9, 30.0),
                                    (84.95, -120.0)])
def test_ads_within_circles_are_those_within_their_radius_by_the_true_distance(
        fake_store: Store, centre: tuple[float, float]):
    rng = np.random.default_rng(9)
    lat, lon = centre
    points = geo.destination_point(lat, lon, rng.uniform(0, 360, 400), rng.uniform(0, 30, 400))
    fake_store.put_ads([ad(f"p{i}", float(a), float(o)) for i, (a, o)
                        in enumerate(zip(*points, strict=True)) if abs(a) < GEO_LAT_LIMIT],
                       lambda old: [])
    copy = fake_store.catalogue_copy()
    copy.refresh()
    circles = [(lat, lon, 10.0), (*map(float, geo.destination_point(lat, lon, 90.0, 15.0)), 4.0)]
    found = {a.decode() for a in copy.within(circles).ids}
    every = fake_store.ad_summaries()
    expected = {a.decode() for a, r in zip(every.ids, every.rows, strict=True)
                if any(geo.haversine_km(c_lat, c_lon, r["lat"], r["lon"]) <= radius
                       for c_lat, c_lon, radius in circles)}
    assert found == expected and 50 < len(found) < len(every.ids)


def test_ads_within_reads_the_epoch_before_the_ads_and_their_evidence(fake_store: Store):
    put(fake_store, "a", 52.5, 13.4)
    fake_store.r.hset(fake_store.k.decayed, "a", f"{NOW!r} 4.0 2.0 0.0 1.0")
    fake_store.r.set(fake_store.k.catalog_epoch, 7)
    found = fake_store.ads_within([(52.5, 13.4, 1.0)])
    assert found.epoch == "7" and [a.decode() for a in found.ads.ids] == ["a"]
    assert found.evidence.values.tolist() == [[4.0, 2.0, 0.0, 1.0]]
    put(fake_store, "b", 52.5, 13.4001)
    assert [a.decode() for a in fake_store.ads_within([(52.5, 13.4, 1.0)]).ads.ids] == ["a", "b"]
