"""Rollup on a real server: entries a dead consumer left pending are reclaimed and
counted once; lost ingest tasks are recovered from the inbox."""
from __future__ import annotations

import time

import pytest

from config import Settings
from pipeline.learning.ingest import Event, accept_batch, roll_in
from pipeline.learning.rollup import run_rollup
from store import Keys, RollupRow, Store
from tests.support.builders import catalogue


@pytest.fixture(autouse=True)
def ads(real_store: Store) -> None:
    """The ads the events name: the catalogue must hold them."""
    catalogue(real_store, ["ad1", "ad9", "a"])


def test_pending_entries_of_a_dead_consumer_are_counted_once(real_store: Store,
                                                             real_settings: Settings):
    now = time.time()
    acc = accept_batch(real_store, real_settings,
                       [Event(f"e{i}", "ad1", "view", now) for i in range(10)], now)
    roll_in(real_store, acc.batch_id)
    real_store.ensure_group()
    taken = real_store.read_new("dead-worker", 100)   # delivered, never acknowledged
    assert len(taken) == 1                            # one entry holds the post
    settings = real_settings.model_copy(update={"rollup_claim_idle_s": 1})
    assert run_rollup(real_store, settings, now, consumer="alive")["counted"] == 0
    time.sleep(1.2)
    report = run_rollup(real_store, settings, now, consumer="alive")
    assert report["reclaimed"] == 1 and report["counted"] == 10
    assert run_rollup(real_store, settings, now, consumer="alive")["counted"] == 0
    assert real_store.ad_stats(["ad1"])["views"] == [10]
    # the dead consumer coming back cannot count them again
    rows = [RollupRow(taken[0].entry_id, "ad1", 2, "2030-01-01") for _ in range(10)]
    assert real_store.apply_rollup(rows, now, 3600.0, ("thompson",)) == 0
    assert real_store.ad_stats(["ad1"])["views"] == [10]


def test_a_batch_whose_task_was_lost_is_rolled_in_by_the_sweep(real_store: Store,
                                                              real_settings: Settings):
    now = time.time()
    accept_batch(real_store, real_settings, [Event("x1", "ad9", "apply", now, "u1")], now)
    later = now + real_settings.inbox_redeliver_s + 1
    report = run_rollup(real_store, real_settings, later)
    assert report["recovered_events"] == 1 and report["counted"] == 1
    assert real_store.ad_stats(["ad9"])["applies"] == [1]
    assert real_store.excluded_ads("u1") == {"ad9"}


def test_rolled_up_entries_past_retention_are_trimmed_but_pending_ones_kept(
        real_store: Store, real_settings: Settings):
    now = time.time()
    acc = accept_batch(real_store, real_settings, [Event("t1", "a", "view", now)], now)
    roll_in(real_store, acc.batch_id)
    run_rollup(real_store, real_settings, now)
    later = now + real_settings.events_retention_s + 60
    acc = accept_batch(real_store, real_settings, [Event("t2", "a", "view", now)], now)
    roll_in(real_store, acc.batch_id)
    real_store.ensure_group()
    real_store.read_new("dead", 10)                    # t2 pending with a dead consumer
    real_store.trim_events(int(later * 1000))
    kept = [e[1][b"b"] for e in real_store.r.xrange(Keys.events)]
    assert len(kept) == 1 and b'"t2"' in kept[0]
