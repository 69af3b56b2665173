"""Fixtures shared by every test: settings, and a fakeredis-backed store for unit tests."""
from __future__ import annotations

from pathlib import Path

import fakeredis
import numpy as np
import pytest

from config import Settings, load_settings
from store import Store

ROOT = Path(__file__).resolve().parent.parent

ADMIN_TOKEN = "test-admin-token-0123456789"
NOW = 1_800_000_000.0  # a fixed "now" (2027-01-15) for reproducible tests


@pytest.fixture
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # REDIS_URL given, as a deployment gives it: a command never looks for make run's Redis
    # (the tests hand the app a fake store; nothing connects to this URL); the archive in a
    # directory of the test's own; the rate limits settled with the store only after 10 s,
    # so that a test's round trips and keys are its own (tests/unit/webapp/test_ratelimit.py
    # settles them when it wants)
    return load_settings({"REDIS_URL": "redis://127.0.0.1:6379/0"}, admin_token=ADMIN_TOKEN,
                         archive_url=str(tmp_path_factory.mktemp("archive")),
                         rate_limit_sync_s=10)


@pytest.fixture
def fake_store() -> Store:
    return Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
