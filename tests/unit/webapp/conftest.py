"""The Flask app on a fakeredis store, with a publisher that records the tasks it is
asked to send (the real broker and worker are exercised in tests/integration)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from flask import Flask
from flask.testing import FlaskClient

from config import Settings
from pipeline.serving.feed import ServingLog
from store import Store
from tests.conftest import ADMIN_TOKEN
from webapp import create_app


@dataclass
class SentTask:
    id: str


@dataclass
class RecordingCelery:
    sent: list[tuple[str, tuple, dict]] = field(default_factory=list)

    def send_task(self, name: str, args=(), kwargs=None, **options) -> SentTask:
        self.sent.append((name, tuple(args), dict(kwargs or {}, **options)))
        return SentTask(f"task-{len(self.sent)}")


@pytest.fixture
def app(settings: Settings, fake_store: Store) -> Flask:
    app = create_app(settings)
    runtime = app.extensions["runtime"]
    runtime.__dict__["store"] = fake_store       # cached_property slots
    runtime.__dict__["celery"] = RecordingCelery()
    # no flush thread: tests flush the served-feed log when they want it written
    runtime.__dict__["serving_log"] = ServingLog(fake_store, settings.served_maxlen, flush_s=None)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def sent(app: Flask) -> list:
    return app.extensions["runtime"].celery.sent


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def keyspace(fake_store: Store):
    """A callable returning every key with its type and content, to show that a request
    wrote nothing (compare one snapshot before the request with one after)."""
    readers = {
        b"string": lambda r, k: r.get(k),
        b"hash": lambda r, k: r.hgetall(k),
        b"set": lambda r, k: r.smembers(k),
        # raw reply: fakeredis gives geo-set scores that redis-py cannot cast to float
        b"zset": lambda r, k: r.execute_command("ZRANGE", k, 0, -1, "WITHSCORES"),
        b"list": lambda r, k: r.lrange(k, 0, -1),
        b"stream": lambda r, k: r.xrange(k),
    }

    def snapshot() -> dict:
        r = fake_store.r
        keys = r.keys()
        assert len(keys) == r.dbsize()
        return {k: (r.type(k), readers[r.type(k)](r, k)) for k in keys}

    return snapshot


@pytest.fixture
def round_trips(fake_store: Store, monkeypatch) -> list:
    """Each request sent to the (fake) Redis server: one entry per command or pipeline."""
    sent: list = []
    connection = fake_store.r.connection_pool.get_connection()
    fake_store.r.connection_pool.release(connection)
    original = type(connection).send_packed_command

    def counting(self, *args, **kwargs):
        sent.append(args[0] if args else None)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(connection), "send_packed_command", counting)
    return sent
