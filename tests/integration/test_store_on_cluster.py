"""The store's unit tests again, on a Redis Cluster of 3 masters (``REDIS_URL=
redis+cluster://``): every script and transaction must keep to one hash slot there, and the
steps split over slots (catalogue writes, feed writes, exclusions) must keep their promises.
The same test files as test_store_on_redis.py."""
from __future__ import annotations

import pytest

from store import Store
from tests.unit.store.test_catalogue_copy import *  # noqa: F401,F403
from tests.unit.store.test_catalogue_store import *  # noqa: F401,F403
from tests.unit.store.test_event_store import *  # noqa: F401,F403
from tests.unit.store.test_feed_store import *  # noqa: F401,F403
from tests.unit.store.test_job_store import *  # noqa: F401,F403
from tests.unit.store.test_limit_store import *  # noqa: F401,F403
from tests.unit.store.test_store import *  # noqa: F401,F403
from tests.unit.store.test_user_store import *  # noqa: F401,F403

pytestmark = pytest.mark.slow


@pytest.fixture
def fake_store(cluster_url: str) -> Store:
    store = Store.from_url(cluster_url)
    assert store.cluster
    return store


@pytest.fixture
def second_store(redis_url: str) -> Store:
    """Another empty store, for comparing what two ways of writing leave: a plain Redis
    (the keys compared are the event pipeline's, named alike on both)."""
    return Store.from_url(redis_url)


# On a cluster the feeds lie in many slots, so no transaction can WATCH the epoch with them:
# a catalogue change marks each cell it voids instead, and a feed built from an earlier epoch
# is refused there (store/lua/set_feed.lua). These two take the single Redis's place.
del test_write_feeds_refuses_after_the_catalogue_changed  # noqa: F821
del test_write_feeds_refuses_when_the_catalogue_changes_between_its_check_and_its_write  # noqa: F821


def test_write_feeds_refuses_the_cells_a_change_voided_since_its_epoch(fake_store: Store):
    epoch = fake_store.catalog_epoch()
    put(fake_store, "ad1", 52.5, 13.4)       # noqa: F405
    assert fake_store.write_feeds(epoch, {"u33dc0": b"v1"}, 60)
    assert fake_store.delete_ad("ad1", lambda old: ["u33dc0", "u33dc1"])
    assert fake_store.r.get(fake_store.k.feed("u33dc0")) is None      # the void deletes it
    assert not fake_store.write_feeds(epoch, {"u33dc1": b"v2", "u33dc2": b"v3"}, 60)
    assert fake_store.r.get(fake_store.k.feed("u33dc1")) is None
    assert fake_store.r.get(fake_store.k.feed("u33dc2")) == b"v3"    # a cell it did not void
    assert fake_store.write_feeds(fake_store.catalog_epoch(), {"u33dc1": b"v2"}, 60)
    assert fake_store.r.get(fake_store.k.feed("u33dc1")) == b"v2"
    assert 0 < fake_store.r.ttl(fake_store.k.feed("u33dc1")) <= 60


def test_a_feed_written_from_an_old_epoch_after_the_void_is_refused_and_one_before_is_deleted(
        fake_store: Store):
    """The two orders a regeneration and a removal can take on one cell: whichever comes
    first, no feed built before the removal stays."""
    put(fake_store, "ad1", 52.5, 13.4)       # noqa: F405
    put(fake_store, "ad2", 52.5, 13.4)       # noqa: F405
    before = fake_store.catalog_epoch()
    assert fake_store.write_feeds(before, {"u33dc0": b"lists ad1"}, 60)    # write, then void
    fake_store.delete_ad("ad1", lambda old: ["u33dc0"])
    assert fake_store.r.get(fake_store.k.feed("u33dc0")) is None
    fake_store.delete_ad("ad2", lambda old: ["u33dc0"])                   # void, then write
    assert not fake_store.write_feeds(before, {"u33dc0": b"lists ad2"}, 60)
    assert fake_store.r.get(fake_store.k.feed("u33dc0")) is None


def test_every_key_a_step_touches_together_shares_a_slot(fake_store: Store):
    """The hash tags keep each script's and transaction's keys to one slot (the cluster
    client refuses a script whose keys span slots, so the tests above prove it per step;
    this pins down the groups)."""
    from redis.cluster import key_slot

    k = fake_store.k
    slot = {name: key_slot(name.encode()) for name in
            (k.ads_geo, k.ads_expiry, k.ads_summary, k.ads_cards, k.catalog_epoch,
             k.catalog_changes, k.ad_serial)}
    assert len(set(slot.values())) == 1
    assert key_slot(k.served.encode()) == key_slot(k.served_flush("x").encode())
    assert key_slot(k.feed("u33dc0").encode()) == key_slot(k.feed_void("u33dc0").encode())
    assert key_slot(k.regen_run("r1").encode()) == key_slot(k.regen_shards("r1").encode())
    cells = {key_slot(k.feed(f"u33d{c}").encode()) for c in "0123456789bcdefg"}
    assert len(cells) > 8             # cells (and so their feeds) spread over the slots


del test_memory_and_command_time_come_from_info  # noqa: F821   (it stubs a single server's INFO)


def test_memory_and_command_time_are_summed_over_the_masters(fake_store: Store):
    put(fake_store, "a", 52.5, 13.4)       # noqa: F405
    per_master = [node.redis_connection.info("memory")["used_memory"]
                  for node in fake_store.r.get_primaries()]
    used, human = fake_store.memory_used()
    assert len(per_master) == 3
    assert 0.9 * sum(per_master) < used < 1.1 * sum(per_master)
    assert human == f"{used / 2 ** 20:.2f}M"
    times = fake_store.command_time_us()
    assert times["info"] > 0 and ("evalsha" in times or "eval" in times)


def test_three_event_partitions_land_on_the_three_masters(fake_store: Store):
    """EVENT_PARTITIONS 3 on a cluster whose slots are split evenly over 3 masters (as
    redis-cli --cluster create splits them): each partition's keys on a master of its own,
    so ingest and rollup spread over all three."""
    store = Store(fake_store.r, partitions=3)
    masters = {store.r.get_node_from_key(part.events).name for part in store.parts}
    assert len(masters) == 3


def test_a_call_sent_to_the_wrong_node_follows_the_redirect(fake_store: Store, monkeypatch):
    """store.spread sends each node its calls in one pipeline; a call that lands on a node
    no longer holding its slot (as while slots move) is answered MOVED and run again through
    the cluster client."""
    from store.spread import run_each

    cluster = fake_store.r
    primaries = cluster.get_primaries()
    owner = {node.name: node for node in primaries}
    wrong = {name: next(n for n in primaries if n.name != name) for name in owner}
    right = cluster.get_node_from_key
    monkeypatch.setattr(cluster, "get_node_from_key",
                        lambda key, *a, **k: wrong[right(key, *a, **k).name])
    calls = [([fake_store.k.user_excluded(f"u{i}")], [10, 60, "1.0", 1, f"ad-{i}"])
             for i in range(12)]
    assert run_each(cluster, fake_store._exclude, calls) == [1] * 12
    monkeypatch.undo()
    assert all(fake_store.excluded_ads(f"u{i}") == {f"ad-{i}"} for i in range(12))
