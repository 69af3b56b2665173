"""pipeline.learning.ingest on a fakeredis store: a batch is kept in the inbox before the web
answers and moved to the events stream once; each event id counts once, and an event for an
ad the catalogue does not hold is rejected alone; an apply or a hide leaves the ad out for
its user at once; the sweep rolls in a batch whose ingest task was lost; a post is one
stream entry, read back as columns, and entries an earlier version wrote read alike."""
from __future__ import annotations

import orjson
import pytest

from pipeline.learning.ingest import (
    Batch,
    Columns,
    Event,
    accept_batch,
    decode_entries,
    roll_in,
    sweep_inbox,
)
from store import Keys, stat_type_index
from tests.conftest import NOW
from tests.support.builders import catalogue


def test_a_batch_waits_in_the_inbox_until_it_is_rolled_in_once(fake_store, settings):
    catalogue(fake_store, ["ad-1"])
    accepted = accept_batch(fake_store, settings, [Event("e1", "ad-1", "impression", NOW),
                                                   Event("e2", "ad-1", "view", NOW)], NOW)
    assert accepted.batch_id is not None and accepted.accepted == 2
    assert fake_store.inbox_size() == 1 and fake_store.r.xlen(Keys.events) == 0
    assert roll_in(fake_store, accepted.batch_id) == 2
    assert roll_in(fake_store, accepted.batch_id) == 0      # the task run again: nothing more
    # one stream entry holds the batch
    assert fake_store.inbox_size() == 0 and fake_store.r.xlen(Keys.events) == 1


def test_each_event_id_counts_once_and_an_unknown_ad_is_rejected_alone(fake_store, settings):
    catalogue(fake_store, ["ad-1"])
    first = accept_batch(fake_store, settings, [Event("e1", "ad-1", "apply", NOW)], NOW)
    again = accept_batch(fake_store, settings, [Event("e1", "ad-1", "apply", NOW),
                                                Event("e2", "nowhere", "view", NOW),
                                                Event("e3", "ad-1", "view", NOW)], NOW + 1)
    assert first.outcomes == ("accepted",)
    assert again.outcomes == ("duplicate", "unknown_ad", "accepted")
    assert (again.accepted, again.duplicates) == (1, 1)
    retried = accept_batch(fake_store, settings, [Event("e1", "ad-1", "apply", NOW)], NOW + 2)
    assert retried.batch_id is None and retried.outcomes == ("duplicate",)
    assert fake_store.inbox_size() == 2


def test_an_apply_or_a_hide_leaves_the_ad_out_for_its_user_at_once(fake_store, settings):
    catalogue(fake_store, ["ad-1", "ad-2", "ad-3"])
    accept_batch(fake_store, settings, [Event("e1", "ad-1", "apply", NOW, user_id="u1"),
                                        Event("e2", "ad-2", "hide", NOW, user_id="u1"),
                                        Event("e3", "ad-3", "view", NOW, user_id="u1"),
                                        Event("e4", "ad-3", "apply", NOW)], NOW)
    assert fake_store.excluded_ads("u1") == {"ad-1", "ad-2"}    # before any roll-in


def test_the_sweep_rolls_in_only_a_batch_whose_task_is_overdue(fake_store, settings):
    catalogue(fake_store, ["ad-1"])
    due_s = settings.inbox_redeliver_s
    accept_batch(fake_store, settings, [Event("e1", "ad-1", "view", NOW)], NOW)
    later = accept_batch(fake_store, settings, [Event("e2", "ad-1", "view", NOW)], NOW + due_s)
    assert sweep_inbox(fake_store, settings, NOW + due_s - 1) == 0
    assert sweep_inbox(fake_store, settings, NOW + due_s) == 1
    assert fake_store.overdue_batches(float("inf")) == [later.batch_id]
    assert fake_store.r.xlen(Keys.events) == 1


# ---- the stream's entries, read back as columns -----------------------------------------

def read_back(store) -> Columns:
    store.ensure_group()
    return decode_entries(store.read_new("c1", 100))


def test_an_entry_holds_a_post_and_reads_back_as_its_accepted_events(fake_store, settings):
    catalogue(fake_store, ["ad-1", "ad-2"])
    first = accept_batch(fake_store, settings, [Event("e0", "ad-1", "view", NOW)], NOW)
    roll_in(fake_store, first.batch_id)
    posted = [Event("e0", "ad-1", "view", NOW - 5),                       # a duplicate
              Event("e1", "ad-2", "impression", NOW - 4, "u1", "f1", 3),
              Event("e2", "ghost", "apply", NOW - 3, "u1"),               # an unknown ad
              Event("e3", "ad-1", "apply", NOW - 2, "u2", "f2", 1)]
    accepted = accept_batch(fake_store, settings, posted, NOW)
    assert roll_in(fake_store, accepted.batch_id) == 2
    got = read_back(fake_store)
    assert len(set(got.entry_id)) == 2                 # the first post, then this one
    assert got.ad_id == ["ad-1", "ad-2", "ad-1"]
    assert got.type_index.tolist() == [stat_type_index(k) for k in ("view", "impression",
                                                                     "apply")]
    assert got.ts.tolist() == [NOW, NOW - 4, NOW - 2]
    assert got.position.tolist() == [0, 3, 1]
    assert got.feed_id == [None, "f1", "f2"]


def test_entries_an_earlier_version_wrote_read_back_alike(fake_store, settings):
    """Before one entry a post, the inbox held one event a line and the stream one event an
    entry: a batch accepted then is rolled in as such, and read back as before."""
    line = orjson.dumps({"id": "old-1", "ad": "ad-1", "type": "view", "ts": NOW, "user": None,
                         "feed": "f9", "pos": 2, "at": NOW})
    fake_store.r.hset(Keys.inbox, "b-old", line + b"\n" + line.replace(b"old-1", b"old-2"))
    fake_store.r.zadd(Keys.inbox_due, {"b-old": NOW})
    assert roll_in(fake_store, "b-old") == 2
    assert fake_store.r.xlen(Keys.events) == 2               # one entry each, as then
    got = read_back(fake_store)
    assert got.ad_id == ["ad-1", "ad-1"] and got.feed_id == ["f9", "f9"]
    assert got.position.tolist() == [2, 2] and got.ts.tolist() == [NOW, NOW]


@pytest.mark.parametrize("fields", [
    {"k": b"1", "b": b"not json"},
    {"k": b"11", "b": Batch.of([Event("x", "a", "view", NOW)]).encode(NOW)},   # flags != events
    {"k": b"1", "b": orjson.dumps({"id": ["x"], "ad": [7], "type": ["view"], "ts": [NOW],
                                   "user": [None], "feed": [None], "pos": [None]})},
    {"k": b"1", "b": orjson.dumps({"id": ["x"], "ad": ["a"], "type": ["view"], "ts": [-1],
                                   "user": [None], "feed": [None], "pos": [None]})},
    {"k": b"1", "b": orjson.dumps({"id": ["x"], "ad": ["a", "b"], "type": ["view"],
                                   "ts": [NOW], "user": [None], "feed": [None], "pos": [1]})},
    {"e": b'{"ad": "a", "type": "view"}'},                                        # no ts
])
def test_an_unreadable_entry_reads_as_one_event_counted_nowhere(fake_store, fields, caplog):
    fake_store.r.xadd(Keys.events, fields)
    got = read_back(fake_store)
    assert got.type_index.tolist() == [0] and len(got.entry_id) == 1
    assert "unreadable event entry" in caplog.text


def test_an_entry_of_which_nothing_was_kept_is_still_acknowledged(fake_store):
    """(The accept step keeps no batch without an accepted event; an entry that says
    otherwise is read as one event of type 0, so its block acknowledges it.)"""
    fake_store.r.xadd(Keys.events, {"k": b"0", "b": Batch.of(
        [Event("x", "a", "view", NOW)]).encode(NOW)})
    got = read_back(fake_store)
    assert got.type_index.tolist() == [0]
    assert decode_entries([]).type_index.tolist() == []


def test_an_id_with_a_line_break_is_refused_before_anything_is_written(fake_store, settings):
    """The accept step takes a post's ids and ads one a line; the web never lets a line break
    through (tests/unit/webapp/test_events.py), and the store refuses one all the same."""
    catalogue(fake_store, ["ad-1"])
    with pytest.raises(ValueError, match="line break"):
        accept_batch(fake_store, settings, [Event("e\n1", "ad-1", "view", NOW)], NOW)
    assert fake_store.inbox_size() == 0
