"""The serving process's cache and log: cached feeds never outlive a change to their cell,
and what was served reaches Redis."""
from __future__ import annotations

import numpy as np
import pytest
import redis

from pipeline.serving.feedpack import CellFeed, StringTable
from pipeline.serving.process import FeedCache, ServingLog
from store import Keys, Store


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def a_feed(cell: str = "u33dc0") -> CellFeed:
    ids = StringTable.of(["a", "b"]).gather(np.array([0, 1]))
    return CellFeed(cell, 1.0, ids, ids, np.zeros((2, 3)), np.ones(2), ("thompson",),
                    np.array([1.0]), {"thompson": np.array([[0, 1]], dtype=np.int32)}, {})


@pytest.fixture
def clock() -> Clock:
    return Clock()


def cached(store: Store, clock: Clock, ttl_s: float = 2.0) -> FeedCache:
    cache = FeedCache(store, ttl_s, clock=clock)
    assert cache.get("warm-up") is None          # subscribes
    return cache


def test_a_feed_is_cached_for_its_ttl(fake_store, clock):
    cache = cached(fake_store, clock)
    feed = a_feed()
    cache.put("u33dc0", feed, cache.generation, 100)
    assert cache.get("u33dc0") is feed
    clock.t = 2.5
    assert cache.get("u33dc0") is None


def test_a_change_to_the_cell_drops_it_before_the_next_lookup(fake_store, clock):
    cache = cached(fake_store, clock)
    cache.put("u33dc0", a_feed(), cache.generation, 100)
    cache.put("u33dc1", a_feed("u33dc1"), cache.generation, 100)
    fake_store.delete_ad("gone", lambda old: ["u33dc0"])     # publishes the voided cell
    assert cache.get("u33dc0") is None
    assert cache.get("u33dc1") is not None
    fake_store.write_feeds(fake_store.catalog_epoch(), {"u33dc1": b"new"}, 60)
    assert cache.get("u33dc1") is None


def test_a_feed_read_before_a_change_is_not_cached(fake_store, clock):
    cache = cached(fake_store, clock)
    generation = cache.generation                 # the feed is read from Redis now ...
    fake_store.delete_ad("gone", lambda old: ["u33dc0"])      # ... the catalogue changes ...
    cache.get("other")                            # ... the change message is applied ...
    cache.put("u33dc0", a_feed(), generation, 100)     # ... so the old read is not kept
    assert cache.get("u33dc0") is None


def test_nothing_is_cached_with_a_zero_ttl(fake_store, clock):
    cache = FeedCache(fake_store, 0.0, clock=clock)
    cache.get("x")
    cache.put("u33dc0", a_feed(), cache.generation, 100)
    assert cache.get("u33dc0") is None


def test_nothing_is_cached_while_the_subscription_is_down(fake_store, clock, monkeypatch):
    def refuse():
        raise redis.ConnectionError("down")
    monkeypatch.setattr(fake_store, "feed_changes", refuse)
    cache = FeedCache(fake_store, 2.0, clock=clock)
    assert cache.get("x") is None
    cache.put("u33dc0", a_feed(), cache.generation, 100)
    assert cache.get("u33dc0") is None
    monkeypatch.undo()
    clock.t = 5.0                                  # the next attempt resubscribes
    assert cache.get("u33dc0") is None
    cache.put("u33dc0", a_feed(), cache.generation, 100)
    assert cache.get("u33dc0") is not None


def test_the_cache_stays_within_its_byte_budget_dropping_the_least_recent(fake_store, clock):
    cache = FeedCache(fake_store, 2.0, max_bytes=250, clock=clock)
    cache.get("x")
    cache.put("c1", a_feed("c1"), cache.generation, 100)
    cache.put("c2", a_feed("c2"), cache.generation, 100)
    assert cache.get("c1") is not None                 # c1 is now the most recent
    cache.put("c3", a_feed("c3"), cache.generation, 100)
    assert cache.get("c2") is None
    assert cache.get("c1") is not None and cache.get("c3") is not None
    cache.put("huge", a_feed("huge"), cache.generation, 251)
    assert cache.get("huge") is None


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
    import pipeline.serving.process as serving
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
