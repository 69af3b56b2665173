"""The store's scripts and key handling, on fakeredis (the same scripts run on a real
server in tests/integration)."""
from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from store import (
    ACCEPTED,
    DUPLICATE,
    GLOBAL_CELL,
    LOCATION_TTL_S,
    NO_EXPIRY,
    STAT_FIELDS,
    UNKNOWN_AD,
    AdRow,
    IngestRow,
    Keys,
    RollupRow,
    Store,
    UserMemory,
    float_rows,
)
from tests.conftest import NOW


def events(*ids: str, ad: str = "ad1", type_: str = "impression",
           excludes_for: str | None = None) -> list[IngestRow]:
    return [IngestRow(i, ad, orjson.dumps({"id": i, "ad": ad, "type": type_, "ts": NOW,
                                           "at": NOW}), excludes_for) for i in ids]


def accept(store: Store, batch_id: str, rows: list[IngestRow], now: float = NOW,
           window_s: int = 86400, memory: UserMemory | None = None) -> list[int]:
    """Accept rows whose ads are in the catalogue (put there first when they are not)."""
    for ad_id in {row.ad_id for row in rows}:
        if store.get_ad(ad_id) is None:
            put(store, ad_id, 52.5, 13.4)
    return store.accept_events(batch_id, rows, now, window_s, memory)


def test_accept_marks_duplicates_within_and_across_batches(fake_store: Store):
    assert accept(fake_store, "b1", events("e1", "e2", "e1")) == [ACCEPTED, ACCEPTED, DUPLICATE]
    assert accept(fake_store, "b2", events("e2", "e3")) == [DUPLICATE, ACCEPTED]


def test_dedupe_window_spans_the_previous_bucket(fake_store: Store):
    accept(fake_store, "b1", events("e1"), window_s=3600)
    assert accept(fake_store, "b2", events("e1"), NOW + 3600, 3600) == [DUPLICATE]


def test_a_batch_of_duplicates_leaves_nothing_in_the_inbox(fake_store: Store):
    accept(fake_store, "b1", events("e1"))
    accept(fake_store, "b2", events("e1"))
    assert fake_store.overdue_batches(NOW + 1) == ["b1"]


def test_an_event_for_an_ad_not_in_the_catalogue_is_rejected_alone(fake_store: Store):
    """Nothing of it is written: not kept, not seen (it is accepted once the ad exists), no
    exclusion; the known ad's events in the same batch are kept."""
    put(fake_store, "ad1", 52.5, 13.4)
    batch = [*events("e1"), *events("e2", "e3", ad="ghost", type_="apply", excludes_for="u1"),
             *events("e4", type_="hide", excludes_for="u1")]
    before = set(fake_store.r.keys())
    assert fake_store.accept_events("b1", batch, NOW, 86400) == \
        [ACCEPTED, UNKNOWN_AD, UNKNOWN_AD, ACCEPTED]
    assert fake_store.excluded_ads("u1") == {"ad1"}
    assert set(fake_store.r.keys()) - before == {
        Keys.inbox.encode(), Keys.inbox_due.encode(), Keys.seen(int(NOW // 86400)).encode(),
        Keys.user_excluded("u1").encode()}
    assert fake_store.roll_in("b1") == 2
    assert b"ghost" not in b"".join(f[b"e"] for _, f in fake_store.r.xrange(Keys.events))
    put(fake_store, "ghost", 52.5, 13.4)
    assert fake_store.accept_events("b2", events("e2", ad="ghost"), NOW, 86400) == [ACCEPTED]


def test_a_batch_of_unknown_ads_writes_nothing(fake_store: Store):
    before = set(fake_store.r.keys())
    assert fake_store.accept_events("b1", events("e1", "e2", ad="ghost"), NOW, 86400) == \
        [UNKNOWN_AD, UNKNOWN_AD]
    assert set(fake_store.r.keys()) == before


def test_an_ad_deleted_is_unknown_from_then_on_and_a_retry_of_its_events_a_duplicate(
        fake_store: Store):
    """The rule for an ad deleted after its impression was served: its events sent after
    the delete are rejected, those accepted before stay accepted (their retries are
    duplicates) and are counted. An expired ad keeps its record, so it stays known."""
    accept(fake_store, "b1", events("e1"))
    fake_store.delete_ad("ad1", lambda old: [])
    assert fake_store.accept_events("b2", events("e1", "e2"), NOW, 86400) == \
        [DUPLICATE, UNKNOWN_AD]
    put(fake_store, "old", 52.5, 13.4, expires_at=NOW - 60)
    fake_store.drop_expired(NOW)
    assert fake_store.accept_events("b3", events("e3", ad="old"), NOW, 86400) == [ACCEPTED]


def test_roll_in_moves_a_batch_once(fake_store: Store):
    accept(fake_store, "b1", events("e1", "e2"))
    assert fake_store.roll_in("b1") == 2
    assert fake_store.roll_in("b1") == 0
    assert fake_store.r.xlen(Keys.events) == 2
    assert fake_store.inbox_size() == 0


def rows_of(entries, ad="ad1", type_index=1, day="2027-01-15"):
    return [RollupRow(e.entry_id, ad, type_index, day) for e in entries]


def rollup(store: Store, rows) -> int:
    return store.apply_rollup(rows, NOW, 3600.0, ("thompson", "popular"))


def test_rollup_counts_and_acks_atomically_and_never_twice(fake_store: Store):
    accept(fake_store, "b1", events("e1", "e2", "e3"))
    fake_store.roll_in("b1")
    fake_store.ensure_group()
    entries = fake_store.read_new("c1", 100)
    assert len(entries) == 3
    assert rollup(fake_store, rows_of(entries)) == 3
    assert rollup(fake_store, rows_of(entries)) == 0  # already acknowledged
    assert fake_store.ad_stats(["ad1"])["impressions"] == [3]
    assert fake_store.ctr_days(["2027-01-15"])["2027-01-15"] == {"impressions": 3}
    assert fake_store.backlog()["pending"] == 0


def test_unreadable_entries_are_acknowledged_without_counting(fake_store: Store):
    accept(fake_store, "b1", events("e1"))
    fake_store.roll_in("b1")
    fake_store.ensure_group()
    entries = fake_store.read_new("c1", 10)
    assert rollup(fake_store, rows_of(entries, type_index=0)) == 0
    assert fake_store.backlog()["pending"] == 0
    assert fake_store.ad_stats(["ad1"])["impressions"] == [0]


def test_write_feeds_refuses_after_the_catalogue_changed(fake_store: Store):
    epoch = fake_store.catalog_epoch()
    assert fake_store.write_feeds(epoch, {"u33dc0": b"v1"}, 60)
    fake_store.delete_ad("gone", lambda old: [])
    assert not fake_store.write_feeds(epoch, {"u33dc1": b"v2"}, 60)
    assert fake_store.r.get(Keys.feed("u33dc1")) is None
    assert fake_store.write_feeds(fake_store.catalog_epoch(), {"u33dc1": b"v2"}, 60)


def put(store: Store, ad_id: str, lat: float, lon: float, expires_at: float | None = None,
        stale=()) -> None:
    store.put_ads([AdRow(ad_id, {"lat": repr(lat), "lon": repr(lon), "title": "t", "company": "c"},
                         lat, lon, expires_at, NOW - 60, 7, b"card:" + ad_id.encode())],
                  lambda old: stale)


def test_delete_voids_the_listed_feeds_and_bumps_the_epoch(fake_store: Store):
    put(fake_store, "a1", 52.5, 13.4)
    fake_store.write_feeds("0", {"u33dc0": b"v"}, 60)
    assert fake_store.delete_ad("a1", lambda old: ["u33dc0"])
    assert fake_store.r.get(Keys.feed("u33dc0")) is None
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


def test_drop_expired_takes_ads_out_of_the_index_but_keeps_the_record(fake_store: Store):
    put(fake_store, "old", 52.5, 13.4, expires_at=NOW - 1)
    put(fake_store, "new", 52.5, 13.4)
    assert fake_store.drop_expired(NOW) == ["old"]
    assert fake_store.live_ad_ids() == ["new"]
    assert fake_store.get_ad("old") is not None
    assert fake_store.r.zscore(Keys.ads_expiry, "new") == NO_EXPIRY


def test_claim_slot_admits_one_caller_per_schedule_slot(fake_store: Store):
    assert fake_store.claim_slot("rollup", 7, 10.0)
    assert not fake_store.claim_slot("rollup", 7, 10.0)            # the same slot
    assert fake_store.claim_slot("rollup", 8, 10.0)                # the next one
    assert fake_store.claim_slot("regenerate", 7, 10.0)            # another job
    assert 10_000 < fake_store.r.pttl(Keys.lock("rollup:8")) <= 20_000


def test_each_recorded_run_is_counted(fake_store: Store):
    fake_store.record_job("rollup", {"counted": 3})
    fake_store.record_job("rollup", {"counted": 0})
    assert fake_store.job_status("rollup") == {"counted": "0", "runs": "2"}


def test_excluded_ads_are_read_per_user_with_their_location_in_one_call(fake_store: Store):
    fake_store.exclude_for_users({"u1": {"a1", "a2"}}, NOW, UserMemory(60, 10))
    assert fake_store.excluded_ads("u1") == {"a1", "a2"}
    assert fake_store.excluded_ads("u2") == set()
    assert 0 < fake_store.r.ttl(Keys.user_excluded("u1")) <= 60
    assert fake_store.locate_user("u1", "52.5,13.4") == {"a1", "a2"}
    assert fake_store.user_context("u1") == ("52.5,13.4", {"a1", "a2"})
    assert fake_store.user_context("u2") == (None, set())
    assert not fake_store.r.exists(Keys.user_location("u2"))


def test_a_location_is_kept_for_its_ttl_from_the_users_last_feed(fake_store: Store):
    """Written with the exclusions' read, and kept LOCATION_TTL_S longer each time the
    user is served there again (the recommendation from the last known location too)."""
    assert fake_store.locate_user("u1", "52.5,13.4") == set()
    assert fake_store.user_location("u1") == "52.5,13.4"
    assert 0 < fake_store.r.ttl(Keys.user_location("u1")) <= LOCATION_TTL_S
    fake_store.r.expire(Keys.user_location("u1"), 10)
    assert fake_store.user_context("u1")[0] == "52.5,13.4"
    assert fake_store.r.ttl(Keys.user_location("u1")) > LOCATION_TTL_S - 5
    fake_store.locate_user("u1", "48.8,2.3")
    assert fake_store.user_location("u1") == "48.8,2.3"


def test_recorded_serving_logs_feeds_and_marks_cells(fake_store: Store):
    served_ms = int(time.time() * 1000)       # the served stream's ids carry the real time
    feed_id = f"{served_ms}-00000000000000aa"
    fake_store.record_serving([{"feed_id": feed_id, "ads": "a b"}], {"u33dc0": NOW}, 1000)
    assert fake_store.active_cells(since=NOW - 1) == ["u33dc0"]
    assert fake_store.served_feed(feed_id, served_ms) == {"feed_id": feed_id, "ads": "a b"}
    assert fake_store.served_feed(f"{served_ms}-00000000000000bb", served_ms) is None
    assert fake_store.served_feed(feed_id, served_ms - 120_000) is None   # outside the window


def test_ad_summaries_round_trip_location_expiry_and_card(fake_store: Store):
    put(fake_store, "a", 52.5, 13.4, expires_at=NOW + 5)
    fake_store.put_ads([AdRow("b", {"title": "Bäcker"}, -33.9, 151.2, None, NOW - 1, 2**64 - 1,
                              "Bäcker".encode())], lambda old: [])
    found = fake_store.ad_summaries()
    by_id = {i.decode(): n for n, i in enumerate(found.ids)}
    a, b = found.rows[by_id["a"]], found.rows[by_id["b"]]
    assert (a["lat"], a["lon"], a["exp"], a["created"], a["cat"]) == (52.5, 13.4, NOW + 5,
                                                                      NOW - 60, 7)
    assert (b["lat"], b["lon"], b["exp"], b["cat"]) == (-33.9, 151.2, NO_EXPIRY, 2**64 - 1)
    cards = [bytes(found.buffer[s:s + n])
             for s, n in zip(found.card_starts, found.card_lengths, strict=True)]
    assert cards[by_id["a"]] == b"card:a" and cards[by_id["b"]].decode() == "Bäcker"
    assert [i.decode() for i in fake_store.ad_summaries(["b", "missing"]).ids] == ["b"]


def test_feed_changes_are_published_to_subscribers(fake_store: Store):
    pubsub = fake_store.feed_changes()
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    fake_store.delete_ad("x", lambda old: ["u33dc1", "u33dc0"])
    assert pubsub.get_message(timeout=1)["data"] == b"u33dc0 u33dc1"
    fake_store.write_feeds(fake_store.catalog_epoch(), {"u33dc2": b"v"}, 60)
    assert pubsub.get_message(timeout=1)["data"] == b"u33dc2"


def test_active_cells_forgets_idle_cells(fake_store: Store):
    fake_store.mark_active({"old": NOW - 100, "new": NOW})
    assert fake_store.active_cells(since=NOW - 10) == ["new"]
    assert fake_store.r.zcard(Keys.cells_active) == 1


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


def rolled_entries(store: Store, count: int, batch: str = "b1") -> list:
    accept(store, batch, events(*(f"{batch}-{i}" for i in range(count))))
    store.roll_in(batch)
    store.ensure_group()
    return store.read_new("c1", 1000)


def test_rollup_keeps_decayed_evidence_that_halves_every_half_life(fake_store: Store):
    first = rolled_entries(fake_store, 4, "b1")
    rows = [RollupRow(first[0].entry_id, "ad1", 1, "2027-01-15", 1.0),    # impression
            RollupRow(first[1].entry_id, "ad1", 1, "2027-01-15", 0.5),    # at position 4
            RollupRow(first[2].entry_id, "ad1", 2, "2027-01-15", 1.0),    # view
            RollupRow(first[3].entry_id, "ad1", 4, "2027-01-15", 0.25)]   # an older apply
    assert fake_store.apply_rollup(rows, NOW, 3600.0, ("thompson",)) == 4
    stored = fake_store.decayed_evidence(["ad1", "ad2"])
    assert stored.updated_at[0] == NOW and np.isnan(stored.updated_at[1])
    assert stored.values.tolist() == [[1.5, 1.0, 0.0, 0.25], [0.0, 0.0, 0.0, 0.0]]
    later = rolled_entries(fake_store, 1, "b2")
    fake_store.apply_rollup([RollupRow(later[0].entry_id, "ad1", 2, "2027-01-15", 1.0)],
                            NOW + 3600, 3600.0, ("thompson",))
    stored = fake_store.decayed_evidence(["ad1"])
    assert stored.updated_at[0] == NOW + 3600
    assert stored.values[0].tolist() == pytest.approx([0.75, 1.5, 0.0, 0.125])
    # a rollup whose clock lags brings its events to the stored time instead
    late = rolled_entries(fake_store, 1, "b3")
    fake_store.apply_rollup([RollupRow(late[0].entry_id, "ad1", 2, "2027-01-15", 1.0)],
                            NOW, 3600.0, ("thompson",))
    stored = fake_store.decayed_evidence(["ad1"])
    assert stored.updated_at[0] == NOW + 3600
    assert stored.values[0][1] == pytest.approx(2.0)


def test_rollup_credits_each_feed_once_to_its_strategy_and_cell_and_counts_ctr_per_strategy(
        fake_store: Store):
    entries = rolled_entries(fake_store, 6)
    names = ("thompson", "popular")

    def row(i: int, type_index: int, cell: str = "", strategy: str = "", feed: str = "",
            ad: str = "ad1") -> RollupRow:
        return RollupRow(entries[i].entry_id, ad, type_index, "2027-01-15", 1.0, cell, strategy,
                         feed, "2027-01-14" if feed else "")
    rows = [row(0, 4, "u33dc0", "popular", "f1"),
            row(1, 4, "u33dc1", "popular", "f2"),
            row(2, 1, "u33dc0", "thompson", "f3"),
            row(3, 4, ad="ad2"),                                   # names no feed
            row(4, 4, "u33dc0", "popular", "f1", ad="ad3")]       # f1's second apply
    assert fake_store.apply_rollup(rows, NOW, 3600.0, names) == 5
    more = [row(5, 4, "u33dc1", "popular", "f2", ad="ad4")]       # and f2's, in a later block
    assert fake_store.apply_rollup(more, NOW, 3600.0, names) == 1
    stats = fake_store.strategy_stats(["u33dc0", "u33dc1", "*", "u33dc9"], 4)
    # served feeds come from the served log, not events: here only the credit, once a feed
    assert stats.values.tolist() == [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 0]]
    day = fake_store.ctr_days(["2027-01-15"])["2027-01-15"]
    assert day == {"impressions": 1, "applies": 5, "popular:applies": 4,
                   "thompson:impressions": 1}
    assert 0 < fake_store.r.ttl(Keys.credited("2027-01-14")) <= 8 * 86_400


def test_served_feeds_are_counted_once_behind_a_cursor(fake_store: Store):
    fake_store.record_serving([{"feed_id": f"f{i}", "ads": ""} for i in range(3)], {}, 1000)
    cursor = fake_store.served_cursor()
    assert cursor == "0-0"
    entries = fake_store.served_after(cursor, 10)
    assert [f["feed_id"] for _, f in entries] == ["f0", "f1", "f2"]
    rows = [("u33dc0", 1, 1.0), ("u33dc0", 2, 1.0), ("u33dc1", 2, 0.5)]
    assert fake_store.count_served(cursor, entries[-1][0], rows, NOW, 3600.0, 2) == 3
    assert fake_store.count_served(cursor, entries[-1][0], rows, NOW, 3600.0, 2) == -1
    assert fake_store.served_after(fake_store.served_cursor(), 10) == []
    stats = fake_store.strategy_stats(["u33dc0", "u33dc1", "*"], 4)
    assert stats.values.tolist() == [[1, 1, 0, 0], [0, 0.5, 0, 0], [1, 1.5, 0, 0]]


def test_prior_rows_are_replaced_whole_and_missing_ones_are_nan(fake_store: Store):
    fake_store.write_priors("funnel", {7: [0.1, 0.2], 2**64 - 1: [0.3, 0.4]}, [0.15, 0.25])
    fake_store.write_priors("funnel", {7: [0.11, 0.21]}, [0.16, 0.26])
    rows, overall = fake_store.prior_rows("funnel", [7, 2**64 - 1], 2)
    assert rows[0].tolist() == [0.11, 0.21] and np.isnan(rows[1]).all()
    assert overall.tolist() == [0.16, 0.26]
    rows, overall = fake_store.prior_rows("direct", [7], 1)
    assert np.isnan(rows).all() and np.isnan(overall).all()


def test_accept_adds_exclusions_in_the_same_round_trip(fake_store: Store):
    flags = accept(fake_store, "b1", events("e1", type_="apply", excludes_for="u1"),
                   memory=UserMemory(600, 10))
    assert flags == [ACCEPTED]
    assert fake_store.excluded_ads("u1") == {"ad1"}
    assert 0 < fake_store.r.ttl(Keys.user_excluded("u1")) <= 600


def test_a_users_exclusions_keep_the_newest_ads_up_to_the_cap(fake_store: Store):
    memory = UserMemory(600, 10)
    for i in range(25):
        fake_store.exclude_for_users({"u1": {f"ad{i}"}}, NOW + i, memory)
    assert fake_store.excluded_ads("u1") == {f"ad{i}" for i in range(15, 25)}
    fake_store.exclude_for_users({"u1": {"ad15"}}, NOW + 99, memory)      # seen again: newest
    fake_store.exclude_for_users({"u1": {"ad99"}}, NOW + 100, memory)
    assert "ad15" in fake_store.excluded_ads("u1") and "ad16" not in fake_store.excluded_ads("u1")


def test_rows_of_mixed_widths_are_read_one_by_one_never_misaligned():
    rows = float_rows([b"1 2 3", b"4 5", None, b"6 7 8 9"], 3)
    assert np.isnan(rows[2]).all()
    assert rows[[0, 1, 3]].tolist()[0] == [1, 2, 3]
    assert rows[1][:2].tolist() == [4, 5] and np.isnan(rows[1][2])
    assert rows[3].tolist() == [6, 7, 8]


def test_ad_summaries_of_a_long_list_are_read_in_bounded_chunks(fake_store: Store,
                                                                monkeypatch):
    import store as store_module
    monkeypatch.setattr(store_module, "SUMMARY_CHUNK", 3)
    for i in range(8):
        put(fake_store, f"ad{i}", 48.0 + i * 0.01, 2.0)
    asked = [f"ad{i}" for i in (7, 0, 5)] + ["gone"] + [f"ad{i}" for i in (1, 2, 3, 4, 6)]
    found = fake_store.ad_summaries(asked)
    assert [a.decode() for a in found.ids] == [a for a in asked if a != "gone"]
    assert found.rows["lat"].tolist() == pytest.approx([48.07, 48.0, 48.05, 48.01, 48.02,
                                                        48.03, 48.04, 48.06])


def test_rollup_counts_positions_by_epoch_and_each_epoch_is_folded_once(fake_store: Store):
    entries = rolled_entries(fake_store, 6, "p1")
    rows = [RollupRow(entries[0].entry_id, "ad1", 1, "2027-01-15", position_column=1, epoch=7),
            RollupRow(entries[1].entry_id, "ad1", 1, "2027-01-15", position_column=2, epoch=7),
            RollupRow(entries[2].entry_id, "ad1", 2, "2027-01-15", position_column=14, epoch=7),
            RollupRow(entries[3].entry_id, "ad2", 1, "2027-01-15", position_column=1, epoch=8),
            RollupRow(entries[4].entry_id, "ad2", 4, "2027-01-15")]         # no position
    assert fake_store.apply_rollup(rows, NOW, 3600.0, ("thompson",), position_width=24) == 5
    assert fake_store.position_epochs() == [7, 8]
    assert 0 < fake_store.r.ttl(Keys.position_epoch(7)) <= 86_400
    assert fake_store.begin_fold(7) == 1                      # set aside ...
    late = [RollupRow(entries[5].entry_id, "ad3", 1, "2027-01-15", position_column=3, epoch=7)]
    fake_store.apply_rollup(late, NOW, 3600.0, ("thompson",), position_width=24)
    counts = fake_store.folding_counts(7, 24)                 # ... so a late event is not in it
    assert counts.tolist() == [[1, 1] + [0] * 11 + [1] + [0] * 10]       # ad1 only
    pairs = [0.0] * 287 + [2.0]
    assert fake_store.fold_positions(7, pairs, NOW, 3600.0)
    assert not fake_store.fold_positions(7, pairs, NOW, 3600.0)          # once
    folded = fake_store.position_pairs(288)
    assert folded.updated_at[0] == NOW and folded.values[0].tolist() == pairs
    assert fake_store.position_epochs() == [7, 8]             # the late event's epoch 7 waits
    assert fake_store.begin_fold(7) == 1
    assert fake_store.folding_counts(7, 24).tolist() == [[0, 0, 1] + [0] * 21]
    assert fake_store.fold_positions(7, pairs, NOW, 3600.0)
    assert fake_store.position_epochs() == [8]
    assert fake_store.begin_fold(7) == 0                      # nothing left


def test_a_fold_left_unfinished_is_finished_first(fake_store: Store):
    entries = rolled_entries(fake_store, 2, "p2")
    fake_store.apply_rollup([RollupRow(entries[0].entry_id, "ad1", 1, "2027-01-15",
                                       position_column=1, epoch=9)], NOW, 3600.0,
                            ("thompson",), position_width=24)
    assert fake_store.begin_fold(9) == 1                      # and the folding process died
    fake_store.apply_rollup([RollupRow(entries[1].entry_id, "ad2", 1, "2027-01-15",
                                       position_column=2, epoch=9)], NOW, 3600.0,
                            ("thompson",), position_width=24)
    assert fake_store.begin_fold(9) == 2                      # the set-aside counts first
    assert fake_store.folding_counts(9, 24).tolist() == [[1] + [0] * 23]
    assert fake_store.fold_positions(9, [0.0] * 288, NOW, 3600.0)
    assert fake_store.begin_fold(9) == 1
    assert fake_store.folding_counts(9, 24).tolist() == [[0, 1] + [0] * 22]


def test_generations_are_kept_in_order_and_capped(fake_store: Store):
    for t in (NOW, NOW + 60, NOW + 120):
        fake_store.record_generation(t, keep=2)
    assert fake_store.generations(0).tolist() == [NOW + 60, NOW + 120]
    assert fake_store.generations(NOW + 100).tolist() == [NOW + 120]


def test_the_position_curve_is_stored_whole(fake_store: Store):
    assert fake_store.position_curve() is None
    fake_store.write_position_curve({"curve": [1.0, 0.5], "updated_at": NOW})
    assert fake_store.position_curve() == {"curve": [1.0, 0.5], "updated_at": NOW}


def seeded(store: Store, ad_ids: list[str], chunk: int = 2) -> dict[str, list[int]]:
    counts = {f: [10 * (i + 1) + k for i in range(len(ad_ids))]
              for k, f in enumerate(STAT_FIELDS)}
    store.seed_ad_counts(ad_ids, counts, NOW, chunk=chunk)
    return counts


def test_seeded_ad_counts_read_back_as_counters_and_as_evidence_as_of_then(fake_store: Store):
    counts = seeded(fake_store, ["a", "b", "c"])          # in two chunks
    assert fake_store.ad_stats(["a", "b", "c", "none"]) == {f: [*v, 0]
                                                           for f, v in counts.items()}
    evidence = fake_store.decayed_evidence(["a", "c", "none"])
    assert evidence.updated_at[:2].tolist() == [NOW, NOW]
    assert evidence.values.tolist() == [[10, 11, 12, 13], [30, 31, 32, 33], [0, 0, 0, 0]]


def test_seeding_ad_counts_needs_every_stat_field_and_no_other(fake_store: Store):
    with pytest.raises(ValueError, match="impressions"):
        fake_store.seed_ad_counts(["a"], {"impressions": [1]}, NOW)
    with pytest.raises(ValueError):
        fake_store.seed_ad_counts(["a"], {**{f: [1] for f in STAT_FIELDS}, "x": [1]}, NOW)
    assert fake_store.ads_with_impressions() == []


def test_seeded_strategy_stats_read_back_per_cell(fake_store: Store):
    fake_store.seed_strategy_stats({"u33dc0": [4.0, 2.0, 1, 0], GLOBAL_CELL: [8.5, 2, 3, 0]},
                                   NOW)
    stats = fake_store.strategy_stats(["u33dc0", GLOBAL_CELL, "none"], 4)
    assert stats.values.tolist() == [[4, 2, 1, 0], [8.5, 2, 3, 0], [0, 0, 0, 0]]
    assert stats.updated_at[:2].tolist() == [NOW, NOW]
    fake_store.seed_strategy_stats({}, NOW)                # nothing to write: no error


def test_feeds_are_read_and_sized_in_bulk_with_missing_ones_marked(fake_store: Store):
    fake_store.write_feeds(fake_store.catalog_epoch(), {"c1": b"abc", "c2": b"de"}, 60)
    assert fake_store.feed_values(["c2", "none", "c1"]) == [b"de", None, b"abc"]
    assert fake_store.packed_feed_sizes(["c2", "none", "c1"]) == [2, 0, 3]
    assert fake_store.feed_values([]) == [] and fake_store.packed_feed_sizes([]) == []


def test_the_served_log_is_counted_and_its_latest_entries_read_newest_first(fake_store: Store):
    assert fake_store.served_count() == 0 and fake_store.latest_served(3) == []
    fake_store.record_serving([{"feed_id": f"f{i}", "cache": "hit"} for i in range(3)], {},
                              1000)
    assert fake_store.served_count() == 3
    latest = fake_store.latest_served(2)
    assert [fields["feed_id"] for _, fields in latest] == ["f2", "f1"]
    assert [i for i, _ in fake_store.served_after(latest[1][0], 10)] == [latest[0][0]]


class ServerInfo:
    """INFO replies as redis-py parses them (fakeredis has no INFO)."""

    replies = {"memory": {"used_memory": 1_593_416, "used_memory_human": "1.52M",
                          "maxmemory": 0},
               "commandstats": {"cmdstat_get": {"calls": 4, "usec": 12, "usec_per_call": 3.0},
                                "cmdstat_info": {"calls": 1, "usec": 30,
                                                 "usec_per_call": 30.0}}}

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, section: str) -> dict:
        self.asked.append(section)
        return self.replies[section]


def test_memory_and_command_time_come_from_info(fake_store: Store, monkeypatch):
    info = ServerInfo()
    monkeypatch.setattr(fake_store.r, "info", info)
    assert fake_store.memory_used() == (1_593_416, "1.52M")
    assert fake_store.command_time_us() == {"get": 12, "info": 30}
    assert info.asked == ["memory", "commandstats"]


def test_flush_all_empties_the_server_and_close_lets_a_later_call_reconnect(fake_store: Store):
    put(fake_store, "a", 52.5, 13.4)
    fake_store.flush_all()
    assert fake_store.get_ad("a") is None and fake_store.live_ad_ids() == []
    fake_store.close()
    assert fake_store.ping()
