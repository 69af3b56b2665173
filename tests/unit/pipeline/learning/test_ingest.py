"""pipeline.learning.ingest on a fakeredis store: a batch is kept in the inbox before the web
answers and moved to the events stream once; each event id counts once, and an event for an
ad the catalogue does not hold is rejected alone; an apply or a hide leaves the ad out for
its user at once; the sweep rolls in a batch whose ingest task was lost."""
from __future__ import annotations

from pipeline.learning.ingest import Event, accept_batch, roll_in, sweep_inbox
from store import Keys
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
    assert fake_store.inbox_size() == 0 and fake_store.r.xlen(Keys.events) == 2


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
