"""The cache of cell feeds each web process keeps: a cached feed never outlives a change to
its cell, and the cache stays within its budget."""
from __future__ import annotations

import numpy as np
import pytest
import redis

from pipeline.serving.cellfeed import CellFeed, FeedCache, StringTable
from store import Store


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
