"""store.event_store: accepting events once (deduplication, the catalogue check, exclusions in
the same step), rolling batches into the stream, the rollup's counters, decayed evidence,
strategy credit and position counts, the served cursor, and seeded counts.
(All on fakeredis; tests/integration/test_store_on_redis.py runs them on a real server.)"""
from __future__ import annotations

from typing import NamedTuple

import fakeredis
import numpy as np
import orjson
import pytest
import redis

from store import (
    ACCEPTED,
    DUPLICATE,
    STAT_FIELDS,
    UNKNOWN_AD,
    IngestBatch,
    RollupRow,
    Store,
    UserMemory,
    dedupe,
)
from tests.conftest import NOW
from tests.support.stored_ads import put


class Row(NamedTuple):
    event_id: str
    ad_id: str
    excludes_for: str | None = None


def events(*ids: str, ad: str = "ad1", excludes_for: str | None = None) -> list[Row]:
    return [Row(i, ad, excludes_for) for i in ids]


def batch_of(rows: list[Row]) -> IngestBatch:
    """The rows as the accept step takes them; the payload names their ids and ads."""
    def payload(at):
        picked = rows if at is None else [rows[i] for i in at]
        return orjson.dumps({"id": [r.event_id for r in picked], "ad": [r.ad_id for r in picked]})
    return IngestBatch([r.event_id for r in rows], [r.ad_id for r in rows],
                       [r.excludes_for for r in rows], payload)


def accept(store: Store, batch_id: str, rows: list[Row], now: float = NOW,
           window_s: int = 86400, memory: UserMemory | None = None) -> list[int]:
    """Accept rows whose ads are in the catalogue (put there first when they are not)."""
    for ad_id in {row.ad_id for row in rows}:
        if store.get_ad(ad_id) is None:
            put(store, ad_id, 52.5, 13.4)
    return store.accept_events(batch_id, batch_of(rows), now, window_s, memory)


def stream_of(store: Store, *ids: str, ad: str = "ad1") -> list:
    """The stream entries of a batch a event, read by consumer c1."""
    for i in ids:
        accept(store, f"b-{i}", events(i, ad=ad))
        store.roll_in(f"b-{i}")
    store.ensure_group()
    return store.read_new("c1", 1000)


def test_accept_marks_duplicates_within_and_across_batches(fake_store: Store):
    assert accept(fake_store, "b1", events("e1", "e2", "e1")) == [ACCEPTED, ACCEPTED, DUPLICATE]
    assert accept(fake_store, "b2", events("e2", "e3")) == [DUPLICATE, ACCEPTED]


def test_dedupe_window_spans_the_previous_bucket(fake_store: Store):
    accept(fake_store, "b1", events("e1"), window_s=3600)
    assert accept(fake_store, "b2", events("e1"), NOW + 3600, 3600) == [DUPLICATE]


@pytest.mark.parametrize("into_bucket", [0.1, 0.5, 0.95])
def test_a_dedupe_set_lives_until_no_accept_consults_it(fake_store: Store, into_bucket):
    """A bucket is half a window; an accept consults its own and the two before. So an id
    is a duplicate for at least a window after it was accepted, and is held 1 to 1.5 windows
    (1.25 on average), not more."""
    window = 3600
    half = window / 2
    bucket = int(NOW // half) + 1
    now = (bucket + into_bucket) * half
    accept(fake_store, "b1", events("e1"), now, window)
    part = fake_store.parts[0]
    (key,) = fake_store.r.scan_iter(match=part.dedupe_shard(bucket, 0)[:-1] + "*")
    for held in (key, part.dedupe(bucket)):
        assert abs(fake_store.r.ttl(held) - (3 - into_bucket) * half) <= 1
    assert accept(fake_store, "b2", events("e1"), now + window, window) == [DUPLICATE]
    later = (bucket + 3) * half            # the sets have expired: a retry is new again
    fake_store.r.delete(key)
    assert accept(fake_store, "b3", events("e1"), later, window) == [ACCEPTED]


def test_a_batch_of_duplicates_leaves_nothing_in_the_inbox(fake_store: Store):
    accept(fake_store, "b1", events("e1"))
    accept(fake_store, "b2", events("e1"))
    assert fake_store.overdue_batches(NOW + 1) == ["b1"]


def test_an_event_for_an_ad_not_in_the_catalogue_is_rejected_alone(fake_store: Store):
    """Nothing of it is written: not kept, not seen (it is accepted once the ad exists), no
    exclusion; the known ad's events in the same batch are kept."""
    put(fake_store, "ad1", 52.5, 13.4)
    batch = [*events("e1"), *events("e2", "e3", ad="ghost", excludes_for="u1"),
             *events("e4", excludes_for="u1")]
    before = set(fake_store.r.scan_iter())
    assert fake_store.accept_events("b1", batch_of(batch), NOW, 86400) == \
        [ACCEPTED, UNKNOWN_AD, UNKNOWN_AD, ACCEPTED]
    assert fake_store.excluded_ads("u1") == {"ad1"}
    k = fake_store.k
    bucket = dedupe.bucket_of(NOW, 86400)
    sets = set(fake_store.r.scan_iter(match=k.dedupe_shard(bucket, 0)[:-1] + "*"))
    assert set(fake_store.r.scan_iter()) - before == {
        k.inbox.encode(), k.inbox_due.encode(), k.dedupe(bucket).encode(), *sets,
        k.user_excluded("u1").encode()}
    held = set().union(*(fake_store.r.smembers(key) for key in sets))
    assert held == {str(dedupe.fingerprint(i)).encode() for i in ("e1", "e4")}
    assert fake_store.roll_in("b1") == 2
    (_, entry), = fake_store.r.xrange(fake_store.k.events)
    assert entry[b"k"] == b"1001"        # the batch as posted, the ghost's events not kept
    put(fake_store, "ghost", 52.5, 13.4)
    assert fake_store.accept_events("b2", batch_of(events("e2", ad="ghost")), NOW, 86400) == \
        [ACCEPTED]


def test_a_batch_of_unknown_ads_writes_nothing(fake_store: Store):
    """Nothing but the dedupe bucket's record of how many sets it spreads ids over, which
    the first accept of a bucket decides whatever the batch holds."""
    before = set(fake_store.r.scan_iter())
    assert fake_store.accept_events("b1", batch_of(events("e1", "e2", ad="ghost")), NOW,
                                    86400) == \
        [UNKNOWN_AD, UNKNOWN_AD]
    bucket = fake_store.parts[0].dedupe(dedupe.bucket_of(NOW, 86400))
    assert set(fake_store.r.scan_iter()) == before | {bucket.encode()}
    assert fake_store.r.hgetall(bucket) == {b"shards": b"256", b"ids": b"0"}


def test_an_ad_deleted_is_unknown_from_then_on_and_a_retry_of_its_events_a_duplicate(
        fake_store: Store):
    """The rule for an ad deleted after its impression was served: its events sent after
    the delete are rejected, those accepted before stay accepted (their retries are
    duplicates) and are counted. An expired ad keeps its record, so it stays known."""
    accept(fake_store, "b1", events("e1"))
    fake_store.delete_ad("ad1", lambda old: [])
    assert fake_store.accept_events("b2", batch_of(events("e1", "e2")), NOW, 86400) == \
        [DUPLICATE, UNKNOWN_AD]
    put(fake_store, "old", 52.5, 13.4, expires_at=NOW - 60)
    fake_store.drop_expired(NOW)
    assert fake_store.accept_events("b3", batch_of(events("e3", ad="old")), NOW, 86400) == \
        [ACCEPTED]


def test_roll_in_moves_a_batch_once(fake_store: Store):
    accept(fake_store, "b1", events("e1", "e2"))
    assert fake_store.roll_in("b1") == 2
    assert fake_store.roll_in("b1") == 0
    assert fake_store.r.xlen(fake_store.k.events) == 1          # one entry holds the batch
    assert fake_store.inbox_size() == 0


def rows_of(entries, ad="ad1", type_index=1, day="2027-01-15"):
    return [RollupRow(e.entry_id, ad, type_index, day) for e in entries]


def rollup(store: Store, rows) -> int:
    return store.apply_rollup(rows, NOW, 3600.0, ("thompson", "popular"))


def test_rollup_counts_and_acks_atomically_and_never_twice(fake_store: Store):
    entries = stream_of(fake_store, "e1", "e2", "e3")
    assert len(entries) == 3
    assert rollup(fake_store, rows_of(entries)) == 3
    assert rollup(fake_store, rows_of(entries)) == 0  # already acknowledged
    assert fake_store.ad_stats(["ad1"])["impressions"] == [3]
    assert fake_store.ctr_days(["2027-01-15"])["2027-01-15"] == {"impressions": 3}
    assert fake_store.backlog()["pending"] == 0


def test_a_block_holding_entries_counted_elsewhere_counts_only_the_rest(fake_store: Store):
    entries = stream_of(fake_store, "e1", "e2", "e3", "e4")
    # another consumer claimed two of them and counted them first
    fake_store.r.xclaim(fake_store.k.events, "rollup", "c2", 0, [e.entry_id for e in entries[1:3]])
    assert rollup(fake_store, rows_of(entries[1:3], ad="ad2")) == 2
    assert rollup(fake_store, rows_of(entries)) == 2        # e1 and e4 only
    assert fake_store.ad_stats(["ad1", "ad2"])["impressions"] == [2, 2]
    assert fake_store.ctr_days(["2027-01-15"])["2027-01-15"] == {"impressions": 4}
    assert fake_store.backlog()["pending"] == 0


def test_a_block_out_of_stream_order_is_counted_all_the_same(fake_store: Store):
    entries = stream_of(fake_store, "e1", "e2", "e3")
    assert rollup(fake_store, rows_of(entries[::-1])) == 3
    assert rollup(fake_store, rows_of(entries[::-1])) == 0
    assert fake_store.ad_stats(["ad1"])["impressions"] == [3]


def test_unreadable_entries_are_acknowledged_without_counting(fake_store: Store):
    entries = stream_of(fake_store, "e1")
    assert rollup(fake_store, rows_of(entries, type_index=0)) == 0
    assert fake_store.backlog()["pending"] == 0
    assert fake_store.ad_stats(["ad1"])["impressions"] == [0]


def rolled_entries(store: Store, count: int, batch: str = "b1") -> list:
    return stream_of(store, *(f"{batch}-{i}" for i in range(count)))


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
    assert 0 < fake_store.r.ttl(fake_store.k.credited("2027-01-14")) <= 8 * 86_400


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


def test_a_position_beyond_the_rows_width_counts_the_event_but_no_position(fake_store: Store):
    entries = rolled_entries(fake_store, 2, "w1")
    rows = [RollupRow(entries[0].entry_id, "ad1", 1, "2027-01-15", position_column=30, epoch=7),
            RollupRow(entries[1].entry_id, "ad1", 1, "2027-01-15", position_column=2, epoch=7)]
    assert fake_store.apply_rollup(rows, NOW, 3600.0, ("thompson",), position_width=24) == 2
    assert fake_store.ad_stats(["ad1"])["impressions"] == [2]
    assert fake_store.r.hgetall(fake_store.k.position_epoch(7)) == {b"ad1 2": b"1"}


def test_an_epoch_set_aside_by_an_earlier_version_reads_with_the_new_fields(fake_store: Store):
    width = 4
    fake_store.r.hset(fake_store.k.position_folding(3), mapping={
        "ad1": "1800000000 2 0 1 0",          # a whole row, as an earlier version kept it
        "ad1 2": 3, "ad2 4": 1})              # a field per ad and column
    counts = fake_store.folding_counts(3, width)
    assert sorted(counts.tolist()) == [[0, 0, 0, 1], [2, 3, 1, 0]]


def test_accept_adds_exclusions_in_the_same_round_trip(fake_store: Store):
    flags = accept(fake_store, "b1", events("e1", excludes_for="u1"),
                   memory=UserMemory(600, 10))
    assert flags == [ACCEPTED]
    assert fake_store.excluded_ads("u1") == {"ad1"}
    assert 0 < fake_store.r.ttl(fake_store.k.user_excluded("u1")) <= 600


def test_rollup_counts_positions_by_epoch_and_each_epoch_is_folded_once(fake_store: Store):
    entries = rolled_entries(fake_store, 6, "p1")
    rows = [RollupRow(entries[0].entry_id, "ad1", 1, "2027-01-15", position_column=1, epoch=7),
            RollupRow(entries[1].entry_id, "ad1", 1, "2027-01-15", position_column=2, epoch=7),
            RollupRow(entries[2].entry_id, "ad1", 2, "2027-01-15", position_column=14, epoch=7),
            RollupRow(entries[3].entry_id, "ad2", 1, "2027-01-15", position_column=1, epoch=8),
            RollupRow(entries[4].entry_id, "ad2", 4, "2027-01-15")]         # no position
    assert fake_store.apply_rollup(rows, NOW, 3600.0, ("thompson",), position_width=24) == 5
    assert fake_store.position_epochs() == [7, 8]
    assert 0 < fake_store.r.ttl(fake_store.k.position_epoch(7)) <= 86_400
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


def test_an_ads_counters_are_one_field_and_an_older_versions_are_added(fake_store: Store):
    """The rollup keeps an ad's five counters in one field of {ev}:counts (a fifth of the
    memory of a hash per counter); what an older version counted in its per-field hashes is
    still read, and added."""
    seeded(fake_store, ["a", "b"])
    assert fake_store.r.hget(fake_store.k.counts, "a") == b"10 11 12 13 14"
    fake_store.r.hset(fake_store.k.stats("views"), mapping={"a": 100, "old": 7})
    fake_store.r.hset(fake_store.k.stats("impressions"), "old", 9)
    stats = fake_store.ad_stats(["a", "old", "none"], ("views", "applies"))
    assert stats == {"views": [111, 7, 0], "applies": [13, 0, 0]}
    assert fake_store.ads_with_impressions() == ["a", "b", "old"]


@pytest.fixture
def second_store(fake_store: Store) -> Store:
    """Another empty store of fake_store's kind (on a real server: its database 1)."""
    if isinstance(fake_store.r, fakeredis.FakeRedis):
        return Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    where = fake_store.r.connection_pool.connection_kwargs
    client = redis.Redis(host=where["host"], port=where["port"], db=1)
    client.flushdb()
    return Store(client)


@pytest.mark.parametrize("seed", range(3))
def test_a_block_summed_at_once_writes_what_its_events_one_by_one_write(
        seed: int, fake_store: Store, second_store: Store):
    """The rollup sums a block by ad, counter and position epoch before its step: the
    counters, the evidence, the position counts and the strategy credit come out as if each
    event had been its own block."""
    rng = np.random.default_rng(seed)
    names = ("thompson", "popular", "nearest")
    stores = [fake_store, second_store]
    n = 300
    for store in stores:
        for i in range(n):
            accept(store, f"b{i}", events(f"e{i}", ad=f"ad{i % 7}"))
            store.roll_in(f"b{i}")
        store.ensure_group()
    entries = [s.read_new("c1", 1000) for s in stores]
    fields = []
    for _ in range(n):
        fed = rng.random() < 0.5
        fields.append((
            f"ad{rng.integers(9)}", int(rng.integers(0, len(STAT_FIELDS) + 1)),
            f"2027-01-{rng.integers(14, 17)}", float(rng.uniform(0.1, 1.0)),
            f"u33dc{rng.integers(3)}" if fed else "", str(rng.choice(names)) if fed else "",
            f"f{rng.integers(40)}" if fed else "", "2027-01-14" if fed else "",
            int(rng.integers(0, 25)), int(rng.choice([5, 6]))))
    rows = [[RollupRow(e.entry_id, *f) for e, f in zip(got, fields, strict=True)]
            for got in entries]
    together = stores[0].apply_rollup(rows[0], NOW, 3600.0, names, position_width=24)
    alone = sum(stores[1].apply_rollup([r], NOW, 3600.0, names, position_width=24)
                for r in rows[1])
    assert together == alone == sum(f[1] > 0 for f in fields)
    k = fake_store.k
    for key in (k.counts, k.ctr_all, k.ctr("2027-01-14"), k.ctr("2027-01-15"),
                k.ctr("2027-01-16"), k.position_epoch(5), k.position_epoch(6),
                k.credited("2027-01-14")):
        got = [s.r.hgetall(key) if s.r.type(key) == b"hash" else s.r.smembers(key)
               for s in stores]
        assert got[0] == got[1], key
    ads = [f"ad{a}" for a in range(9)]
    evidence = [s.decayed_evidence(ads).values for s in stores]
    np.testing.assert_allclose(evidence[0], evidence[1], rtol=1e-12)
    cells = ["u33dc0", "u33dc1", "u33dc2", "*"]
    credit = [s.strategy_stats(cells, 2 * len(names)).values for s in stores]
    np.testing.assert_allclose(credit[0], credit[1], rtol=1e-12)
    assert credit[0].sum() > 0 and stores[0].backlog()["pending"] == 0
