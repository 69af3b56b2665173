"""A cell's packed feed (compact, and read back as packed), the cache of cell feeds each web
process keeps (a cached feed never outlives a change to its cell, and the cache stays within
its budget) and the cache of ad cards by serial."""
from __future__ import annotations

import msgpack
import numpy as np
import pytest
import redis

from pipeline.serving.cellfeed import (
    NEVER,
    AdColumns,
    CardCache,
    CellFeed,
    FeedCache,
    open_card,
    pack_feed,
    pack_feeds,
)
from store import AdRow, Store
from tests.conftest import NOW


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def a_feed(cell: str = "u33dc0") -> CellFeed:
    return CellFeed(cell, 1.0, np.array([1, 2], dtype=np.uint64), np.zeros(2), np.zeros(2),
                    np.ones(2), ("thompson",), np.array([1.0]),
                    {"thompson": np.array([[0, 1]], dtype=np.int32)}, {})


def test_a_feed_packs_in_28_bytes_an_ad_and_reads_back_to_the_precision_it_promises():
    rng = np.random.default_rng(3)
    n = 500
    lat, lon = rng.uniform(-85, 85, n), rng.uniform(-180, 180, n)
    expires = np.where(rng.random(n) < 0.5, NOW + rng.uniform(0, 1e6, n), np.inf)
    created = NOW - rng.uniform(0, 30 * 86_400, n)
    mean = rng.beta(2, 50, n)
    orders = {"thompson": rng.permuted(np.tile(np.arange(n, dtype=np.int32), (8, 1)),
                                       axis=1)[:, :100]}
    employers = rng.integers(0, 2**32, n).astype(np.uint32)
    feed = CellFeed("u33dc0", NOW, rng.integers(1, 2**31, n).astype(np.uint64), lat, lon,
                    expires, ("thompson", "popular", "newest"), np.array([0.5, 0.3, 0.2]),
                    orders, {"popular": mean, "newest": created}, employers)
    packed = feed.pack()
    assert len(packed) <= 28 * n + 2 * 8 * 100 + 200
    back = CellFeed.unpack(packed)
    assert np.array_equal(back.serials, feed.serials)
    assert np.abs(back.lat - lat).max() <= 0.5e-7 and np.abs(back.lon - lon).max() <= 0.5e-7
    finite = np.isfinite(expires)
    assert np.array_equal(back.expires_at[finite], np.floor(expires[finite]))  # never later
    assert np.isinf(back.expires_at[~finite]).all()
    assert np.array_equal(back.orders["thompson"], orders["thompson"])
    assert np.abs(back.keys["newest"] - created).max() <= 1.0       # a second in a month
    assert np.abs(back.keys["popular"] - mean).max() <= 1e-7
    assert np.allclose(back.xyz @ back.xyz[0], feed.xyz @ feed.xyz[0], atol=1e-12)
    assert (back.cell, back.generated_at, back.strategies) == (feed.cell, NOW, feed.strategies)
    assert np.array_equal(back.employers, employers)


def test_a_feed_packed_before_employers_were_kept_reads_with_every_employer_unknown():
    feed = CellFeed("c", NOW, np.arange(1, 4, dtype=np.uint64), np.zeros(3), np.zeros(3),
                    np.full(3, np.inf), ("thompson",), np.array([1.0]),
                    {"thompson": np.arange(3, dtype=np.int32)[None, :]}, {})
    unpacked = msgpack.unpackb(feed.pack(), raw=False)
    del unpacked["emp"]
    back = CellFeed.unpack(msgpack.packb(unpacked, use_bin_type=True))
    assert back.employers.tolist() == [0, 0, 0]


def test_serials_past_32_bits_and_feeds_of_many_ads_pack_wider():
    n = 70_000
    feed = CellFeed("c", NOW, np.arange(2**33, 2**33 + n, dtype=np.uint64), np.zeros(n),
                    np.zeros(n), np.full(n, NEVER + 5.0), ("thompson",), np.array([1.0]),
                    {"thompson": np.arange(n - 3, n, dtype=np.int32)[None, :]}, {})
    back = CellFeed.unpack(feed.pack())
    assert back.serials[-1] == 2**33 + n - 1
    assert back.orders["thompson"].tolist() == [[n - 3, n - 2, n - 1]]
    assert np.isinf(back.expires_at).all()                # past 2106 reads as never


@pytest.mark.parametrize("wide_serials", [False, True])
def test_feeds_packed_together_are_the_bytes_of_each_packed_alone(wide_serials: bool):
    """``pack_feeds`` (every cell of a regeneration at once) against ``pack_feed`` (one
    cell): full cells, cells with fewer ads than the length (-1 after their last), an empty
    cell, two order sources and two sort keys."""
    rng = np.random.default_rng(5)
    n, cells, rows, length = 3_000, 40, 4, 12
    first = 2**33 if wide_serials else 1
    columns = AdColumns.of(np.arange(first, first + n, dtype=np.uint64),
                           rng.uniform(-85, 85, n), rng.uniform(-180, 180, n),
                           np.where(rng.random(n) < 0.3, NOW + 1e5, np.inf),
                           {"popular": rng.random(n), "newest": NOW - rng.uniform(0, 1e6, n)})
    widths = rng.choice([length, length, 7, 1, 0], cells)
    orders = {name: np.full((cells, rows, length), -1, dtype=np.int64)
              for name in ("thompson", "random")}
    for c, width in enumerate(widths):
        pool = rng.choice(n, size=max(width * 3, 1), replace=False)   # rows share some ads
        for order in orders.values():
            order[c, :, :width] = [rng.permutation(pool)[:width] for _ in range(rows)]
    probabilities = rng.dirichlet(np.ones(3), cells)
    strategies = ("thompson", "popular", "newest")
    together = pack_feeds(columns, [f"cell{c}" for c in range(cells)], NOW, strategies,
                          probabilities, orders)
    for c, width in enumerate(widths):
        mine = {name: order[c, :, :width] for name, order in orders.items()}
        shown, slots = np.unique(np.concatenate([o.ravel() for o in mine.values()]),
                                 return_inverse=True)
        local = dict(zip(mine, np.split(slots, 2), strict=True))
        alone = pack_feed(columns, shown, f"cell{c}", NOW, strategies, probabilities[c],
                          {name: local[name].reshape(rows, width) for name in mine})
        assert together[c] == alone
        assert len(CellFeed.unpack(together[c])) == len(shown)


def test_a_feed_of_another_format_version_does_not_unpack():
    with pytest.raises(ValueError, match="version 6"):
        CellFeed.unpack(msgpack.packb({"v": 6, "cell": "c"}))


def test_cards_are_read_once_then_kept_by_serial(fake_store, monkeypatch):
    fake_store.put_ads([AdRow(a, {}, 52.5, 13.4, None, NOW, 7, f"card {a}".encode())
                        for a in ("a", "b")], lambda old: [])
    sa, sb = fake_store.ad_summaries(["a", "b"]).rows["sn"].tolist()
    cards = CardCache(fake_store)
    reads = []
    real = fake_store.ad_cards
    monkeypatch.setattr(fake_store, "ad_cards", lambda s: reads.append(list(s)) or real(s))
    a, b = ("a", open_card("a", b"card a")), ("b", open_card("b", b"card b"))
    assert a[1] == b'{"ad_id":"a",card a'            # the feed entry's object, left open
    assert cards.get_many([sa, 999, sb]) == [a, None, b]
    assert cards.get_many([sb, sa]) == [b, a]
    assert reads == [[sa, 999, sb]]                       # the second lookup read nothing
    assert cards.get_many([999]) == [None] and reads[-1] == [999]   # a missing one: asked again


def test_the_card_cache_stays_within_its_budget_dropping_the_least_recent(fake_store):
    fake_store.put_ads([AdRow(f"ad{i}", {}, 52.5, 13.4, None, NOW, 7, b"x" * 80)
                        for i in range(3)], lambda old: [])
    serials = fake_store.ad_summaries([f"ad{i}" for i in range(3)]).rows["sn"].tolist()
    size = 3 + len(open_card("ad0", b"x" * 80)) + 120     # id, entry, overhead
    cards = CardCache(fake_store, max_bytes=2 * size)
    cards.get_many(serials[:2])
    cards.get_many(serials[:1])                           # ad0 is now the most recent
    cards.get_many(serials[2:])
    assert len(cards) == 2 and set(cards._entries) == {serials[0], serials[2]}


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


def test_the_cards_go_when_the_feed_cache_drops_every_cell(fake_store, clock):
    """After a new subscription (Redis restarted, or failed over to a copy whose serials may
    have been given again) the cards a process kept are forgotten with the feeds."""
    fake_store.put_ads([AdRow("a", {}, 52.5, 13.4, None, NOW, 7, b"x")], lambda old: [])
    cards = CardCache(fake_store)
    cards.get_many(fake_store.ad_summaries(["a"]).rows["sn"].tolist())
    feeds = FeedCache(fake_store, 2.0, clock=clock, on_reset=cards.clear)
    assert feeds.get("warm-up") is None and len(cards) == 0     # subscribing drops all
    cards.get_many(fake_store.ad_summaries(["a"]).rows["sn"].tolist())
    feeds.drop(["some-cell"])
    assert len(cards) == 1                                     # one cell: the cards stay
