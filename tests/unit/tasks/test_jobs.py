"""tasks.jobs: what each writing task promises is on its decorator, and a beat-fired run
knows the schedule slot it was sent for."""
from __future__ import annotations

import pytest

import tasks.jobs  # noqa: F401  (a worker imports it: the tasks register on the app)
from config import load_settings
from tasks.celery import app
from tasks.factory import beat_schedule
from tasks.names import INGEST, REGENERATE, ROLLUP


@pytest.mark.parametrize("name", [INGEST, ROLLUP, REGENERATE])
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
