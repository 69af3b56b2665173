"""RabbitMQ as the broker (CELERY_BROKER_URL=amqp://...), on a node of the tests' own: the
queues the service declares are durable quorum queues, and a task sent with a countdown (as a
retry is) arrives through Celery's native delayed delivery rather than waiting in a worker.
The worker-kill and client-retry tests run with this broker too."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
import requests
from kombu import Connection
from kombu.exceptions import ChannelError
from kombu.transport.native_delayed_delivery import MAX_LEVEL, level_name

from config import load_settings
from devtools.procs import start_worker, wait_until
from store import STAT_FIELDS, Store
from tasks.factory import make_celery
from tasks.names import QUEUES, ROLLUP
from tests.support.builders import catalogue
from tests.support.streams import streamed_events

ADS = ["ad-a", "ad-b"]


def delayed(url: str) -> int:
    """Messages waiting in Celery's delayed-delivery queues (levels of 2^n seconds)."""
    waiting = 0
    with Connection(url) as conn:
        for level in range(MAX_LEVEL + 1):
            with contextlib.suppress(ChannelError):      # a level never declared
                waiting += conn.channel().queue_declare(queue=level_name(level),
                                                        passive=True).message_count
    return waiting


def is_quorum(url: str, name: str) -> bool:
    """Whether ``name`` exists as a quorum queue: it exists, declaring it again as a durable
    quorum queue is accepted, and as a classic one refused (inequivalent arguments)."""
    with Connection(url) as conn:
        conn.channel().queue_declare(queue=name, passive=True)     # raises if absent
        conn.channel().queue_declare(queue=name, durable=True, auto_delete=False,
                                     arguments={"x-queue-type": "quorum"})
        try:
            conn.channel().queue_declare(queue=name, durable=True, auto_delete=False)
        except ChannelError:
            return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["rabbitmq"])
def test_on_rabbitmq_tasks_run_from_quorum_queues_and_a_countdown_is_kept(
        env: dict[str, str], broker_url: str, web: str, real_store: Store, tmp_path: Path):
    catalogue(real_store, ADS)
    worker = start_worker(env, tmp_path)
    try:
        events = [{"event_id": f"q-{i}", "ad_id": ADS[i % 2], "type": "view"} for i in range(40)]
        r = requests.post(f"{web}/v1/events", json={"events": events}, timeout=30)
        assert r.status_code == 202 and r.json()["task_id"], r.text
        # the ingest task went through RabbitMQ: the batch moved from the inbox to the stream
        wait_until(lambda: streamed_events(real_store) == 40, timeout_s=30,
                   what="the ingest task run from RabbitMQ")
        assert all(is_quorum(broker_url, name) for name in QUEUES)

        # a rollup sent with a 3 s countdown waits in RabbitMQ's delay queues, then runs
        app = make_celery(load_settings({"REDIS_URL": env["REDIS_URL"],
                                         "CELERY_BROKER_URL": broker_url}), main="sender")
        sent = time.monotonic()
        app.send_task(ROLLUP, kwargs={"forced": True}, countdown=3)
        wait_until(lambda: delayed(broker_url) == 1, timeout_s=2,
                   what="the task in a delay queue, not in a worker's hands")
        wait_until(lambda: sum(real_store.ad_stats(ADS, STAT_FIELDS)["views"]) == 40,
                   timeout_s=60, what="the delayed rollup")
        assert time.monotonic() - sent >= 2.5
    finally:
        worker.stop()
