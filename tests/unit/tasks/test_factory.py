"""tasks.factory: the Celery config keeps what the tasks promise (JSON only, a time limit
the visibility timeout covers, the transport that survives a Redis restart), and the beat
schedule lists every periodic job with its interval."""
from __future__ import annotations

import tasks.jobs  # noqa: F401  (a worker imports it: the tasks register on the app)
from config import load_settings
from tasks.celery import app
from tasks.factory import beat_schedule, celery_config
from tasks.names import QUEUES


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


def test_a_redis_broker_uses_the_transport_that_survives_a_redis_restart():
    for url in ("redis://127.0.0.1:6390/0", "rediss://example.com:6390/0"):
        conf = celery_config(load_settings({"REDIS_URL": url}))
        assert conf["broker_transport"] == "tasks.broker:Transport"
    rabbit = celery_config(load_settings({"CELERY_BROKER_URL": "amqp://guest@localhost//"}))
    assert "broker_transport" not in rabbit
