"""tasks.jobs: what each writing task promises is on its decorator, and a beat-fired run
knows the schedule slot it was sent for."""
from __future__ import annotations

import pytest

import tasks.jobs  # noqa: F401  (a worker imports it: the tasks register on the app)
from config import load_settings
from tasks.celery import app
from tasks.factory import beat_schedule
from tasks.names import INGEST, REGEN_SHARD, REGENERATE, ROLLUP


@pytest.mark.parametrize("name", [INGEST, ROLLUP, REGENERATE, REGEN_SHARD])
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
