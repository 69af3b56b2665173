"""store.archive_store on fakeredis: the archive's cursors move only from where a run read
them, each partition has its own, the entries offered are only the counted ones (the served
log up to the served cursor), and the lock is held by one run at a time."""
from __future__ import annotations

import fakeredis
import pytest

from store import Store
from tests.support.served_log import add_events, add_served, event, served

T = 1_800_000_000.0


def test_a_cursor_moves_only_from_where_it_was_read():
    store = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()), partitions=2)
    assert store.archive_cursor("events", 1) == "0-0"
    assert store.move_archive_cursor("events", 1, "0-0", "5-1")
    assert not store.move_archive_cursor("events", 1, "0-0", "9-0")   # moved by another
    assert store.archive_cursor("events", 1) == "5-1"
    assert store.archive_cursor("events", 0) == "0-0"                 # partitions apart
    assert store.move_archive_cursor("served", 0, "0-0", "7-0")
    assert store.archive_cursors() == {"events": "0-0", "events.1": "5-1", "served": "7-0"}
    with pytest.raises(ValueError, match="served"):
        store.archive_cursor("served", 1)
    with pytest.raises(ValueError, match="clicks"):
        store.archive_cursor("clicks")


def test_only_counted_entries_are_offered(fake_store):
    add_events(fake_store, [event(None, T + i) for i in range(5)])
    assert fake_store.archivable_events(0, "0-0", 10) == []       # no consumer group yet
    fake_store.ensure_group()
    taken = fake_store.read_new("c1", 2)                          # delivered, still pending
    assert fake_store.archivable_events(0, "0-0", 10) == []
    fake_store.r.xack(fake_store.parts[0].events, "rollup", *[e.entry_id for e in taken])
    offered = fake_store.archivable_events(0, "0-0", 10)
    assert [e.entry_id for e in offered] == [e.entry_id for e in taken]
    assert fake_store.archivable_events(0, taken[0].entry_id, 10)[0].entry_id == \
        taken[1].entry_id

    add_served(fake_store, [served(f"f{i}", T + i, "thompson", 0.5) for i in range(4)])
    assert fake_store.archivable_served("0-0", 10) == []          # none counted yet
    ids = [i for i, _ in fake_store.latest_served(4)][::-1]
    fake_store.count_served("0-0", ids[1], [], T, 3600.0, 4)
    offered_feeds = fake_store.archivable_served("0-0", 10)
    assert [i for i, _ in offered_feeds] == ids[:2]
    assert offered_feeds[0][1]["feed_id"] == "f0"


def test_one_run_at_a_time_holds_the_lock(fake_store):
    first, second = fake_store.archive_lock(60), fake_store.archive_lock(60)
    assert first.acquire() and not second.acquire()
    first.release()
    assert second.acquire()
