"""store.feed_store: cell feeds written only under the catalogue epoch they were built for,
the served-feed log, active cells, priors, strategy statistics and feed-change messages.
(All on fakeredis; tests/integration/test_store_on_redis.py runs them on a real server.)"""
from __future__ import annotations

import time

import numpy as np

from store import GLOBAL_CELL, Store
from tests.conftest import NOW


def test_write_feeds_refuses_after_the_catalogue_changed(fake_store: Store):
    epoch = fake_store.catalog_epoch()
    assert fake_store.write_feeds(epoch, {"u33dc0": b"v1"}, 60)
    fake_store.delete_ad("gone", lambda old: [])
    assert not fake_store.write_feeds(epoch, {"u33dc1": b"v2"}, 60)
    assert fake_store.r.get(fake_store.k.feed("u33dc1")) is None
    assert fake_store.write_feeds(fake_store.catalog_epoch(), {"u33dc1": b"v2"}, 60)
    assert fake_store.r.get(fake_store.k.feed("u33dc1")) == b"v2"
    assert 0 < fake_store.r.ttl(fake_store.k.feed("u33dc1")) <= 60    # it never outlives its TTL


def test_write_feeds_refuses_when_the_catalogue_changes_between_its_check_and_its_write(
        fake_store: Store, monkeypatch):
    """The epoch is WATCHed: an ad removed after the epoch was read and before the feeds
    are written (here: as the transaction starts) voids the whole write."""
    epoch = fake_store.catalog_epoch()
    pipeline = fake_store.r.pipeline
    pool = fake_store.r.connection_pool     # a second client of the same server
    other = Store(type(fake_store.r)(connection_pool=type(pool)(
        connection_class=pool.connection_class, **pool.connection_kwargs)))

    def racing_pipeline(*args, **kwargs):
        p = pipeline(*args, **kwargs)
        multi = p.multi

        def multi_after_a_removal():
            other.delete_ad("gone", lambda old: [])     # another client, meanwhile
            return multi()
        p.multi = multi_after_a_removal
        return p
    monkeypatch.setattr(fake_store.r, "pipeline", racing_pipeline)
    assert not fake_store.write_feeds(epoch, {"u33dc0": b"v1", "u33dc1": b"v2"}, 60)
    other.close()
    assert fake_store.r.get(fake_store.k.feed("u33dc0")) is None
    assert fake_store.r.get(fake_store.k.feed("u33dc1")) is None


def test_recorded_serving_logs_feeds_and_marks_cells(fake_store: Store):
    served_ms = int(time.time() * 1000)       # the served stream's ids carry the real time
    feed_id = f"{served_ms}-00000000000000aa"
    fake_store.record_serving([{"feed_id": feed_id, "ads": "a b"}], {"u33dc0": NOW}, 1000)
    assert fake_store.active_cells(since=NOW - 1) == ["u33dc0"]
    assert fake_store.served_feed(feed_id, served_ms) == {"feed_id": feed_id, "ads": "a b"}
    assert fake_store.served_feed(f"{served_ms}-00000000000000bb", served_ms) is None
    assert fake_store.served_feed(feed_id, served_ms - 120_000) is None   # outside the window


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
    assert fake_store.r.zcard(fake_store.k.cells_active) == 1


def test_prior_rows_are_replaced_whole_and_missing_ones_are_nan(fake_store: Store):
    fake_store.write_priors("funnel", {7: [0.1, 0.2], 2**64 - 1: [0.3, 0.4]}, [0.15, 0.25])
    fake_store.write_priors("funnel", {7: [0.11, 0.21]}, [0.16, 0.26])
    rows, overall = fake_store.prior_rows("funnel", [7, 2**64 - 1], 2)
    assert rows[0].tolist() == [0.11, 0.21] and np.isnan(rows[1]).all()
    assert overall.tolist() == [0.16, 0.26]
    rows, overall = fake_store.prior_rows("direct", [7], 1)
    assert np.isnan(rows).all() and np.isnan(overall).all()


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
