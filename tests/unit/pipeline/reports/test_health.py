"""The health state read from the store, and the verdict the status command gives on it."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from config import Settings
from pipeline.catalogue import upsert_ads
from pipeline.learning.ingest import Accepted, Event, accept_batch, roll_in
from pipeline.learning.regenerate import run_regenerate
from pipeline.learning.rollup import run_rollup
from pipeline.reports.health import (
    BrokerState,
    JobState,
    Level,
    Observation,
    PipelineState,
    ShardedRun,
    Thresholds,
    assess,
    job_state,
    overall,
    pipeline_state,
)
from store import Keys, Store
from tests.support.builders import ads_around, catalogue


def events(prefix: str, n: int, at: float) -> list[Event]:
    return [Event(f"{prefix}{i}", "ad1", "impression", at) for i in range(n)]


def accept(store: Store, settings: Settings, batch: list[Event], at: float) -> Accepted:
    """``accept_batch``, the ad the events name put in the catalogue first."""
    catalogue(store, (e.ad_id for e in batch))
    return accept_batch(store, settings, batch, at)


def first_entry_s(store: Store) -> float:
    """When the stream's first entry was added (its id's time), in seconds."""
    entry_id = store.r.xrange(Keys.events, "-", "+", count=1)[0][0].decode()
    return int(entry_id.split("-")[0]) / 1000


# ---- lag and backlog ---------------------------------------------------------------------

def test_nothing_waiting_means_zero_lag(fake_store: Store, settings: Settings) -> None:
    state = pipeline_state(fake_store, settings, time.time())
    assert (state.lag_s, state.inbox_batches, state.pending_batches,
            state.undelivered_batches) == (0.0, 0, 0, 0)
    assert state.empty


def test_lag_counts_a_batch_still_in_the_inbox_from_its_acceptance(
        fake_store: Store, settings: Settings) -> None:
    accepted_at = time.time() - 100
    accept(fake_store, settings, events("a", 3, accepted_at), accepted_at)
    state = pipeline_state(fake_store, settings, accepted_at + 100)
    assert state.inbox_batches == 1
    assert state.lag_s == pytest.approx(100.0)
    assert not state.empty


def test_lag_is_the_oldest_undelivered_entry_when_the_rollup_has_not_run(
        fake_store: Store, settings: Settings) -> None:
    now = time.time()
    roll_in(fake_store, accept(fake_store, settings, events("a", 3, now), now).batch_id)
    oldest = first_entry_s(fake_store)
    state = pipeline_state(fake_store, settings, oldest + 42)
    assert state.inbox_batches == 0
    assert state.undelivered_batches == 1   # no consumer group yet: the whole stream waits
    assert state.lag_s == pytest.approx(42.0)


def test_lag_follows_the_oldest_pending_entry_then_the_rollup_clears_it(
        fake_store: Store, settings: Settings) -> None:
    now = time.time()
    roll_in(fake_store, accept(fake_store, settings, events("a", 2, now), now).batch_id)
    oldest = first_entry_s(fake_store)
    fake_store.ensure_group()
    fake_store.read_new("dead-consumer", count=1)    # delivered, never acknowledged
    time.sleep(0.01)
    roll_in(fake_store, accept(fake_store, settings, events("b", 2, now), now).batch_id)
    roll_in(fake_store, accept(fake_store, settings, events("c", 1, now), now).batch_id)

    state = pipeline_state(fake_store, settings, oldest + 60)
    assert (state.pending_batches, state.undelivered_batches) == (1, 2)
    assert state.lag_s == pytest.approx(60.0)

    later = time.time()
    report = run_rollup(fake_store, settings, later)
    state = pipeline_state(fake_store, settings, later + 5)
    assert report["counted"] == 3        # the dead consumer's entry waits to be reclaimed
    assert (state.pending_batches, state.undelivered_batches) == (1, 0)
    assert state.lag_s == pytest.approx(later + 5 - oldest)

    idle_ms = (settings.rollup_claim_idle_s + 60) * 1000    # the dead consumer, long gone
    entry = fake_store.r.xrange(Keys.events, "-", "+", count=1)[0][0]
    fake_store.r.xclaim(Keys.events, "rollup", "dead-consumer", 0, [entry], idle=idle_ms)
    report = run_rollup(fake_store, settings, later + 100)
    state = pipeline_state(fake_store, settings, later + 105)
    assert report["reclaimed"] == 1
    assert (state.lag_s, state.pending_batches, state.undelivered_batches) == (0.0, 0, 0)


def test_the_rollup_clears_inbox_and_stream(fake_store: Store, settings: Settings) -> None:
    now = time.time()
    roll_in(fake_store, accept(fake_store, settings, events("a", 5, now), now).batch_id)
    accept(fake_store, settings, events("b", 2, now - 60), now - 60)   # its task lost
    assert pipeline_state(fake_store, settings, now).lag_s == pytest.approx(60.0, abs=1)
    run_rollup(fake_store, settings, now)
    state = pipeline_state(fake_store, settings, now + 1)
    assert (state.lag_s, state.inbox_batches, state.pending_batches,
            state.undelivered_batches) == (0.0, 0, 0, 0)
    assert state.rollup.processed == 7


def test_after_a_rollup_the_lag_is_the_first_entry_it_has_not_read(
        fake_store: Store, settings: Settings) -> None:
    now = time.time()
    roll_in(fake_store, accept(fake_store, settings, events("a", 2, now), now).batch_id)
    run_rollup(fake_store, settings, now)
    time.sleep(0.01)
    roll_in(fake_store, accept(fake_store, settings, events("b", 3, now), now).batch_id)
    first_new = int(fake_store.r.xrange(Keys.events, "-", "+")[1][0].decode().split("-")[0])
    state = pipeline_state(fake_store, settings, first_new / 1000 + 25)
    assert (state.pending_batches, state.undelivered_batches) == (0, 1)
    assert state.lag_s == pytest.approx(25.0)


# ---- periodic jobs -----------------------------------------------------------------------

def test_last_job_times_and_counts(fake_store: Store, settings: Settings,
                                   rng: np.random.Generator) -> None:
    now = time.time()
    state = pipeline_state(fake_store, settings, now)
    assert state.rollup == JobState(0, None, None, None, 0, {})
    assert state.regenerate.age_s is None

    roll_in(fake_store, accept(fake_store, settings, events("a", 4, now), now).batch_id)
    run_rollup(fake_store, settings, now)
    run_rollup(fake_store, settings, now + 10)
    run_regenerate(fake_store, settings, now + 12, rng)

    state = pipeline_state(fake_store, settings, now + 40)
    assert state.rollup.runs == 2
    assert state.rollup.finished_at == pytest.approx(now + 10)
    assert state.rollup.age_s == pytest.approx(30.0)
    assert state.rollup.processed == 0                     # the last run counted nothing new
    assert state.rollup.duration_s is not None and state.rollup.duration_s >= 0
    assert state.regenerate.runs == 1
    assert state.regenerate.age_s == pytest.approx(28.0)
    assert state.regenerate.report["cells"] == 0


def test_job_state_keeps_numbers_only() -> None:
    job = job_state({"runs": "3", "finished_at": "100.5", "duration_s": "0.25",
                     "written": "12", "note": "text"}, 110.5, "regenerate")
    assert job == JobState(3, 100.5, 10.0, 0.25, 12,
                           {"runs": 3.0, "finished_at": 100.5, "duration_s": 0.25,
                            "written": 12.0})


# ---- active cells and live ads ---------------------------------------------------------

def test_active_cells_counts_those_requested_within_the_ttl(
        fake_store: Store, settings: Settings) -> None:
    now = time.time()
    ttl = settings.active_cell_ttl_s
    fake_store.mark_active({"u33dc0": now - 10, "u33dc1": now - ttl + 1,
                            "u33dc2": now - ttl - 1})
    assert pipeline_state(fake_store, settings, now).active_cells == 2
    assert fake_store.r.zcard(Keys.cells_active) == 3      # reading forgets no cell


def test_live_ads_leave_out_expired_ones_still_indexed(
        fake_store: Store, settings: Settings, rng: np.random.Generator) -> None:
    now = time.time()
    lasting = ads_around(52.52, 13.40, 3, 2.0, rng, prefix="keep", expires_at=now + 1000)
    ending = ads_around(52.52, 13.40, 2, 2.0, rng, prefix="end", expires_at=now + 10)
    forever = ads_around(52.52, 13.40, 1, 2.0, rng, prefix="always", expires_at=None)
    upsert_ads(fake_store, settings, [*lasting, *ending, *forever])
    assert pipeline_state(fake_store, settings, now).live_ads == 6
    assert pipeline_state(fake_store, settings, now + 10).live_ads == 4   # expiry is the end
    fake_store.drop_expired(now + 10)
    assert pipeline_state(fake_store, settings, now + 10).live_ads == 4


# ---- the verdict -------------------------------------------------------------------------

LIMITS = Thresholds(lag_s=30.0, rollup_age_s=30.0, regenerate_age_s=180.0,
                    queue_depth={"ingest": 1000, "rollup": 5, "regen": 5})
RECENT = JobState(runs=5, finished_at=990.0, age_s=10.0, duration_s=0.1, processed=3)
HEALTHY = PipelineState(at=1000.0, lag_s=4.0, inbox_batches=0, pending_batches=0,
                        undelivered_batches=2, rollup=RECENT, regenerate=RECENT,
                        active_cells=7, live_ads=300)
NEVER = JobState(runs=0, finished_at=None, age_s=None, duration_s=None, processed=0)
BROKER = BrokerState({"ingest": 0, "rollup": 0, "regen": 0}, ("worker-1@host",))


def levels(state: PipelineState | None = HEALTHY, broker: BrokerState | None = BROKER,
           **errors: str) -> dict[str, Level]:
    return {c.name: c.level for c in assess(Observation(state, broker, **errors), LIMITS)}


def test_thresholds_are_three_intervals(settings: Settings) -> None:
    limits = Thresholds.from_settings(settings)
    assert limits.lag_s == limits.rollup_age_s == 3 * settings.rollup_interval_s
    assert limits.regenerate_age_s == 3 * settings.regen_interval_s


def test_a_healthy_service_is_ok_everywhere() -> None:
    found = levels()
    assert list(found) == ["redis", "broker", "workers", "queues", "pipeline lag", "rollup",
                           "regenerate", "active cells", "live ads"]
    assert set(found.values()) == {Level.OK}


def test_redis_down_fails_it_and_every_check_that_reads_it() -> None:
    found = levels(state=None, redis_error="ConnectionError: refused")
    assert found["redis"] == found["pipeline lag"] == found["live ads"] == Level.FAIL
    assert found["broker"] == found["workers"] == Level.OK


def test_broker_down_fails_it_and_the_workers() -> None:
    found = levels(broker=None, broker_error="OperationalError: refused")
    assert found["broker"] == found["workers"] == found["queues"] == Level.FAIL
    assert found["redis"] == found["pipeline lag"] == Level.OK


def test_no_worker_fails() -> None:
    assert levels(broker=BrokerState(BROKER.queues, ()))["workers"] == Level.FAIL


@pytest.mark.parametrize(("depths", "level"), [
    ({"ingest": 1000, "rollup": 5, "regen": 5}, Level.OK),
    ({"ingest": 1001, "rollup": 0, "regen": 0}, Level.WARN),
    ({"ingest": 0, "rollup": 6, "regen": 0}, Level.WARN),
])
def test_deep_queues_warn(depths: dict[str, int], level: Level) -> None:
    assert levels(broker=BrokerState(depths, BROKER.workers))["queues"] == level


@pytest.mark.parametrize(("lag_s", "level"), [(30.0, Level.OK), (30.1, Level.FAIL)])
def test_lag_over_three_rollup_intervals_fails(lag_s: float, level: Level) -> None:
    assert levels(replace(HEALTHY, lag_s=lag_s))["pipeline lag"] == level


@pytest.mark.parametrize(("job", "limit_s"), [("rollup", 30.0), ("regenerate", 180.0)])
def test_a_late_job_fails(job: str, limit_s: float) -> None:
    on_time = replace(RECENT, age_s=limit_s)
    late = replace(RECENT, age_s=limit_s + 0.1)
    assert levels(replace(HEALTHY, **{job: on_time}))[job] == Level.OK
    assert levels(replace(HEALTHY, **{job: late}))[job] == Level.FAIL


def test_a_job_never_run_warns_on_an_empty_store_and_fails_otherwise() -> None:
    empty = replace(HEALTHY, undelivered_batches=0, active_cells=0, live_ads=0,
                    rollup=NEVER, regenerate=NEVER)
    assert empty.empty
    found = levels(empty)
    assert found["rollup"] == found["regenerate"] == found["live ads"] == Level.WARN
    assert overall(assess(Observation(empty, BROKER), LIMITS)) == Level.WARN

    with_ads = levels(replace(empty, live_ads=1))
    assert with_ads["rollup"] == with_ads["regenerate"] == Level.FAIL


def test_the_overall_level_is_the_worst() -> None:
    assert overall(assess(Observation(HEALTHY, BROKER), LIMITS)) == Level.OK
    assert overall(assess(Observation(replace(HEALTHY, lag_s=99.0), BROKER),
                            LIMITS)) == Level.FAIL


def test_a_sharded_run_is_read_with_each_shards_report(fake_store: Store,
                                                        settings: Settings) -> None:
    assert pipeline_state(fake_store, settings, 1000.0).sharded_run is None
    fake_store.begin_regen_run("77", 2, 9, 990.0)
    fake_store.finish_shard("77", 1, {"duration_s": 1.5, "written": 4})
    run = pipeline_state(fake_store, settings, 1000.0).sharded_run
    assert run == ShardedRun("77", 990.0, 2, 1, 9, {"1": 1.5}, {"1": 4})


def test_a_sharded_run_shows_its_shards_and_warns_when_one_is_late() -> None:
    running = ShardedRun("77", 900.0, 2, 1, 9, {"1": 1.5}, {"1": 4})
    checks = {c.name: c for c in assess(Observation(replace(HEALTHY, sharded_run=running),
                                                    BROKER), LIMITS)}
    assert checks["regenerate shards"].level == Level.OK
    assert checks["regenerate shards"].value == "run 77: 1 of 2 shards, slowest shard 1 1.50 s"
    late = replace(running, started_at=1000.0 - 180.1)
    assert levels(replace(HEALTHY, sharded_run=late))["regenerate shards"] == Level.WARN
    done = replace(late, done=2)
    assert levels(replace(HEALTHY, sharded_run=done))["regenerate shards"] == Level.OK
    assert "regenerate shards" not in levels()            # no sharded run: no line


def test_the_rollup_queue_may_hold_a_task_per_event_partition_before_it_warns():
    from config import load_settings
    from pipeline.reports.health import QUEUE_WARN_DEPTH, Thresholds
    one = Thresholds.from_settings(load_settings({}))
    eight = Thresholds.from_settings(load_settings({}, event_partitions=8))
    assert one.queue_depth == QUEUE_WARN_DEPTH
    assert eight.queue_depth["rollup"] == QUEUE_WARN_DEPTH["rollup"] + 7
    assert eight.queue_depth["ingest"] == QUEUE_WARN_DEPTH["ingest"]


def test_an_archive_run_older_than_three_intervals_fails(settings: Settings) -> None:
    import dataclasses
    limits = Thresholds.from_settings(settings)
    assert limits.archive_age_s == 3 * settings.archive_interval_s
    limits = dataclasses.replace(LIMITS, archive_age_s=180.0)
    late = JobState(runs=5, finished_at=700.0, age_s=300.0, duration_s=0.1, processed=3)
    for job, level in ((RECENT, Level.OK), (late, Level.FAIL), (NEVER, Level.WARN)):
        state = dataclasses.replace(HEALTHY, archive=job)
        checks = {c.name: c.level for c in assess(Observation(state, BROKER), limits)}
        assert list(checks)[-1] == "archive" and checks["archive"] == level


def test_the_archive_job_is_read_with_the_others(fake_store: Store, settings: Settings) -> None:
    fake_store.record_job("archive", {"finished_at": 990.0, "duration_s": 0.2,
                                      "events_rows": 12})
    state = pipeline_state(fake_store, settings, 1000.0)
    assert state.archive is not None
    assert (state.archive.runs, state.archive.age_s, state.archive.processed) == (1, 10.0, 12)
