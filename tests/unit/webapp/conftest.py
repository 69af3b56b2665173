"""The Flask app on a fakeredis store, with a publisher that records the tasks it is
asked to send (the real broker and worker are exercised in tests/integration)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from flask import Flask
from flask.testing import FlaskClient

from config import Settings
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
