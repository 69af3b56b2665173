"""The Celery app's factory: its configuration and the beat schedule, both derived from the
settings. Building an app connects nothing (the web builds one to send tasks).

Two brokers: Redis (the default: REDIS_URL's server) and RabbitMQ (``CELERY_BROKER_URL=
amqp://...``). On RabbitMQ every queue is a durable quorum queue (replicated, and it keeps
a message until a worker acknowledges it: with acks_late, after the task), bound to one
durable topic exchange, which Celery's native delayed delivery needs for a retry's
countdown; every publish waits for the broker's confirm. Nothing relies on a visibility
timeout there: a message whose worker dies returns when its channel closes.
"""
from __future__ import annotations

import ssl
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from config import AMQP_PREFETCH, Settings
from tasks.names import ARCHIVE, QUEUE, QUEUES, REGENERATE, ROLLUP

__all__ = ["EXCHANGE", "QUEUES", "beat_schedule", "celery_config", "make_celery"]

EXCHANGE = "jobs"   # on RabbitMQ: the topic exchange every queue is bound to, by its name


def amqp_queues() -> list[Queue]:
    """Each queue as RabbitMQ keeps it: durable, quorum, bound by its own name."""
    exchange = Exchange(EXCHANGE, type="topic", durable=True)
    return [Queue(name, exchange, routing_key=name, durable=True,
                  queue_arguments={"x-queue-type": "quorum"}) for name in QUEUES]


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every periodic job and its interval. A run not started within its interval is
    dropped (``expires``): the next one does the same work."""
    return {
        "rollup": {"task": ROLLUP, "schedule": settings.rollup_interval_s,
                   "options": {"queue": QUEUE[ROLLUP], "expires": settings.rollup_interval_s}},
        "regenerate": {"task": REGENERATE, "schedule": settings.regen_interval_s,
                       "options": {"queue": QUEUE[REGENERATE],
                                   "expires": settings.regen_interval_s}},
        "archive": {"task": ARCHIVE, "schedule": settings.archive_interval_s,
                    "options": {"queue": QUEUE[ARCHIVE], "expires": settings.archive_interval_s}},
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        # Unacknowledged messages return after this; it must cover the longest task.
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_time_limit": settings.task_time_limit_s,
        "task_routes": {name: {"queue": queue} for name, queue in QUEUE.items()},
        "task_default_queue": QUEUES[0],
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0,
                                      "interval_step": 0.2, "interval_max": 0.5},
        "worker_prefetch_multiplier": 4,
        "worker_hijack_root_logger": False,
        # task events feed Flower, whose /metrics gives task counts and durations by task
        # and outcome (summed over every worker and prefork child)
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "beat_schedule": beat_schedule(settings),
        "timezone": "UTC",
    }
    if settings.broker_is_amqp:
        conf.update({
            "task_queues": amqp_queues(),
            "task_default_exchange": EXCHANGE,
            "task_default_exchange_type": "topic",
            "task_default_routing_key": QUEUES[0],
            "task_default_queue_type": "quorum",
            # replaces the visibility timeout, which RabbitMQ has no use for
            "broker_transport_options": {"confirm_publish": True},
            # one task ahead per queue: RabbitMQ counts a delivery's wait for a worker
            # process against consumer_timeout (config.AMQP_WAIT_ROUNDS)
            "worker_prefetch_multiplier": AMQP_PREFETCH,
        })
    if settings.broker_url.startswith(("redis://", "rediss://")):
        conf["broker_transport"] = "tasks.broker:Transport"   # survives a Redis restart
    if settings.broker_url.startswith("rediss://") and "ssl_cert_reqs" not in settings.broker_url:
        conf["broker_use_ssl"] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return conf


def make_celery(settings: Settings, main: str = "tasks",
                include: tuple[str, ...] = (), sent_events: bool = True) -> Celery:
    """A Celery app for these settings; ``include``: the modules a worker imports for its
    tasks; ``sent_events``: whether a task it sends is announced to Flower (task-sent).
    Creating it connects nothing."""
    app = Celery(main, set_as_current=(main == "tasks"), include=list(include))
    app.config_from_object({**celery_config(settings), "task_send_sent_event": sent_events})
    return app
