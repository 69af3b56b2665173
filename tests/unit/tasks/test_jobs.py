"""What each task promises is on its decorator, and Celery is configured to keep it."""
from __future__ import annotations

import pytest

import tasks.jobs  # noqa: F401  (a worker imports it: the tasks register on the app)
from config import load_settings
from tasks.celery import app
from tasks.factory import beat_schedule, celery_config
from tasks.names import INGEST, QUEUES, REGENERATE, ROLLUP


@pytest.mark.parametrize("name", [INGEST, ROLLUP, REGENERATE])
def test_writing_tasks_ack_late_and_survive_a_lost_worker(name):
    task = app.tasks[name]
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert task.max_retries and task.autoretry_for


def test_celery_accepts_json_only_and_routes_each_queue():
    conf = celery_config(load_settings({}))
    assert conf["accept_content"] == ["json"]
    assert conf["task_serializer"] == "json"
    assert {r["queue"] for r in conf["task_routes"].values()} == set(QUEUES)


def test_visibility_timeout_covers_the_longest_task_and_no_more_than_needed():
    s = load_settings({"TASK_TIME_LIMIT_S": "120", "VISIBILITY_TIMEOUT_S": "180"})
    conf = celery_config(s)
    assert conf["broker_transport_options"]["visibility_timeout"] == 180
    assert conf["task_time_limit"] == 120


def test_beat_schedule_lists_every_periodic_job_with_its_interval():
    s = load_settings({"ROLLUP_INTERVAL_S": "7", "REGEN_INTERVAL_S": "45"})
    schedule = beat_schedule(s)
    assert {k: v["schedule"] for k, v in schedule.items()} == {"rollup": 7.0, "regenerate": 45.0}
    assert {v["task"] for v in schedule.values()} <= set(app.tasks)


def test_a_rediss_broker_gets_certificate_checks():
    conf = celery_config(load_settings({"REDIS_URL": "rediss://:pw@example.com:6380/0"}))
    assert conf["broker_url"].startswith("rediss://")
    assert "broker_use_ssl" in conf


def test_flower_refuses_to_start_without_basic_auth(monkeypatch):
    from config import SettingsError
    from tasks import flower
    monkeypatch.setattr(flower, "load_settings", lambda: load_settings({}))
    with pytest.raises(SettingsError, match="FLOWER_BASIC_AUTH"):
        flower.flower_command()
    monkeypatch.setattr(flower, "load_settings", lambda: load_settings({"LOCAL_DEMO": "true"}))
    assert "--address=127.0.0.1" in flower.flower_command()
    monkeypatch.setattr(flower, "load_settings",
                        lambda: load_settings({"FLOWER_BASIC_AUTH": "ops:s3cret"}))
    command = flower.flower_command()
    assert not any("s3cret" in part for part in command)
    assert not any(part.startswith("--address") for part in command)   # flower's default


def test_flower_listens_on_host_when_it_is_set(monkeypatch):
    from tasks import flower
    for extra in ({"LOCAL_DEMO": "true"}, {"FLOWER_BASIC_AUTH": "ops:s3cret"}):
        monkeypatch.setattr(flower, "load_settings",
                            lambda extra=extra: load_settings({"HOST": "10.1.2.3", **extra}))
        addresses = [p for p in flower.flower_command() if p.startswith("--address")]
        assert addresses == ["--address=10.1.2.3"]


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


def test_a_redis_broker_uses_the_transport_that_survives_a_redis_restart():
    for url in ("redis://127.0.0.1:6390/0", "rediss://example.com:6390/0"):
        conf = celery_config(load_settings({"REDIS_URL": url}))
        assert conf["broker_transport"] == "tasks.broker:Transport"
    rabbit = celery_config(load_settings({"CELERY_BROKER_URL": "amqp://guest@localhost//"}))
    assert "broker_transport" not in rabbit


def test_the_guarded_channel_turns_a_collected_connection_into_a_connection_error():
    import redis as redis_py

    from tasks.broker import Channel
    channel = Channel.__new__(Channel)          # the state it is in after collect()
    channel.connection = type("CollectedTransport", (), {"client": None})()
    with pytest.raises(redis_py.ConnectionError):
        channel._connparams()
