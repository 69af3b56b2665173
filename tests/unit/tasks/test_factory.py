"""tasks.factory: the Celery config keeps what the tasks promise (JSON only, a time limit
the visibility timeout covers, the transport that survives a Redis restart), and the beat
schedule lists every periodic job with its interval."""
from __future__ import annotations

import os

import tasks.jobs  # noqa: F401  (a worker imports it: the tasks register on the app)
from config import AMQP_PREFETCH, AMQP_WAIT_ROUNDS, load_settings
from tasks.celery import app
from tasks.factory import EXCHANGE, beat_schedule, celery_config, make_celery
from tasks.names import QUEUE, QUEUES


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
    s = load_settings({"ROLLUP_INTERVAL_S": "7", "REGEN_INTERVAL_S": "45",
                       "ARCHIVE_INTERVAL_S": "30"})
    schedule = beat_schedule(s)
    assert {k: v["schedule"] for k, v in schedule.items()} == {"rollup": 7.0, "regenerate": 45.0,
                                                               "archive": 30.0}
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


def test_on_rabbitmq_every_queue_is_a_durable_quorum_queue_on_one_topic_exchange():
    conf = celery_config(load_settings({"CELERY_BROKER_URL": "amqp://guest@localhost//"}))
    queues = {q.name: q for q in conf["task_queues"]}
    assert set(queues) == set(QUEUES)
    for name, q in queues.items():
        assert q.durable and q.queue_arguments == {"x-queue-type": "quorum"}
        assert (q.exchange.name, q.exchange.type, q.exchange.durable) == (EXCHANGE, "topic", True)
        assert q.routing_key == name
    assert conf["broker_transport_options"] == {"confirm_publish": True}   # no visibility timeout
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    # quorum queues: the prefetch is per consumer, and a worker consumes every queue, which
    # is what the settings' consumer-timeout check counts on
    assert conf["worker_prefetch_multiplier"] == AMQP_PREFETCH == 1
    assert len(QUEUES) * AMQP_PREFETCH + 1 == AMQP_WAIT_ROUNDS


def test_on_rabbitmq_each_task_is_routed_to_its_own_quorum_queue():
    app = make_celery(load_settings({"CELERY_BROKER_URL": "amqp://guest@localhost//"}),
                      main="routing-check")
    router = app.amqp.router
    for task, queue in QUEUE.items():
        route = router.route({}, task)
        assert route["queue"].name == queue
        assert route["queue"].queue_arguments == {"x-queue-type": "quorum"}
        assert route["queue"].exchange.type == "topic"       # native delayed delivery needs it


def test_on_redis_the_queues_are_left_to_the_transport():
    conf = celery_config(load_settings({}))
    assert "task_queues" not in conf
    assert conf["broker_transport_options"]["visibility_timeout"] == 600


def test_ingest_task_events_can_be_turned_off_for_the_task_that_runs_once_a_post():
    """INGEST_TASK_EVENTS=false: the worker's ingest task sends no task events and the web
    announces no task it sends; the periodic tasks and beat keep theirs."""
    import subprocess
    import sys

    assert tasks.jobs.ingest_events.send_events is True            # the default
    assert make_celery(load_settings({})).conf.task_send_sent_event is True
    assert make_celery(load_settings({}), sent_events=False).conf.task_send_sent_event is False
    code = ("import tasks.jobs as j; print(j.ingest_events.send_events, "
            "j.rollup.send_events, j.app.conf.worker_send_task_events)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "INGEST_TASK_EVENTS": "false"}, check=True)
    assert out.stdout.split() == ["False", "True", "True"]
