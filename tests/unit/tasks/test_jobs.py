"""tasks.jobs: what each writing task promises is on its decorator, and a beat-fired run
knows the schedule slot it was sent for."""
from __future__ import annotations

import pytest

import tasks.jobs  # noqa: F401  (a worker imports it: the tasks register on the app)
from config import load_settings
from tasks.celery import app
from tasks.factory import beat_schedule
from tasks.names import INGEST, REGEN_SHARD, REGENERATE, ROLLUP, ROLLUP_PARTITION


@pytest.mark.parametrize("name", [INGEST, ROLLUP, ROLLUP_PARTITION, REGENERATE, REGEN_SHARD])
def test_writing_tasks_ack_late_and_survive_a_lost_worker(name):
    task = app.tasks[name]
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert task.max_retries and task.autoretry_for


def test_a_beat_fired_run_knows_its_slot_from_its_expiry():
    from types import SimpleNamespace

    from tasks.jobs import fired_at
    sent = SimpleNamespace(expires="2027-01-15T08:00:10+00:00")     # sent at 08:00:00
    assert fired_at(sent, 10.0) == 1_800_000_000.0
    schedule = beat_schedule(load_settings({"ROLLUP_INTERVAL_S": "7"}))
    assert schedule["rollup"]["options"]["expires"] == 7.0        # what fired_at relies on
    import time
    for request in (SimpleNamespace(expires=None), SimpleNamespace(expires="not a time"),
                    SimpleNamespace()):
        assert abs(fired_at(request, 10.0) - time.time()) < 5


def test_a_sharded_run_sends_one_task_per_shard_to_the_regen_queue(fake_store, monkeypatch):
    """With REGEN_SHARDS above 1 the beat's task plans the run and sends each shard's cells
    as a task of its own on the regen queue, then learns the priors if they are old."""
    from tasks import jobs
    sent = []
    monkeypatch.setattr(jobs.regenerate_shard, "apply_async",
                        lambda args, queue: sent.append((args, queue)))
    settings = load_settings({}, regen_shards=3)
    fake_store.mark_active({c: 1e9 for c in ("u09tv", "u09tw", "xn76c", "xn76f", "dr5re")})
    import numpy as np
    result = jobs.fan_out(fake_store, settings, 1e9, np.random.default_rng(0))
    assert result["shards"] == 3 and result["cells"] == 5 and result["priors_learnt"] is True
    assert [queue for _, queue in sent] == ["regen"] * 3
    assert [args[:2] for args, _ in sent] == [(result["run_id"], i) for i in range(3)]
    assert sorted(c for args, _ in sent for c in args[2]) == sorted(
        ["u09tv", "u09tw", "xn76c", "xn76f", "dr5re"])


def test_a_partitioned_rollup_counts_partition_0_and_sends_one_task_per_other(monkeypatch):
    """With EVENT_PARTITIONS above 1 the beat's rollup task counts partition 0 itself and
    sends each other partition to the rollup queue; a partition task counts its own and
    records its report; a partition the store does not have is refused."""
    import fakeredis

    from pipeline.learning.ingest import Event, accept_batch, roll_in
    from store import Store
    from tasks import jobs
    from tests.conftest import NOW
    from tests.support.builders import catalogue
    settings = load_settings({}, event_partitions=3)
    store = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()), partitions=3)
    monkeypatch.setattr(jobs, "store", lambda: store)
    monkeypatch.setattr(jobs, "settings", lambda: settings)
    sent = []
    monkeypatch.setattr(jobs.rollup_partition, "apply_async",
                        lambda args, queue: sent.append((args, queue)))
    ads = [f"ad-{i}" for i in range(30)]
    catalogue(store, ads)
    roll_in(store, accept_batch(store, settings, [Event(f"e{i}", ad, "impression", NOW)
                                                  for i, ad in enumerate(ads)], NOW).batch_id)
    report = jobs.rollup.run(forced=True)
    assert sent == [((1,), "rollup"), ((2,), "rollup")]
    assert report["partitions_sent"] == 2
    at_home = sum(store.partition_of(ad).index == 0 for ad in ads)
    assert report["counted"] == at_home < len(ads)
    reports = [jobs.rollup_partition.run(p) for p in (1, 2)]
    assert sum(r["counted"] for r in reports) == len(ads) - at_home
    assert store.job_status("rollup.2")["counted"] == str(reports[1]["counted"])
    assert sum(store.ad_stats(ads)["impressions"]) == len(ads)
    with pytest.raises(ValueError, match="no event partition 3"):
        jobs.rollup_partition.run(3)
