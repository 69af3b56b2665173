"""A real redis-server of the tests' own (free loopback port), real Celery workers and a
real gunicorn, all stopped when the tests are done."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config import Settings, load_settings
from devtools.procs import Proc, service_env, start_web, start_worker
from devtools.redis_server import RedisServer
from store import Store
from tests.conftest import ADMIN_TOKEN


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def real_settings(redis_url: str) -> Settings:
    return load_settings({"REDIS_URL": redis_url}, admin_token=ADMIN_TOKEN)


@pytest.fixture
def real_store(redis_url: str) -> Store:
    return Store.from_url(redis_url)


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    return service_env(redis_url, ADMIN_TOKEN=ADMIN_TOKEN, LOG_LEVEL="INFO")


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[Proc]:
    proc = start_worker(env, tmp_path)
    yield proc
    proc.stop()


@pytest.fixture
def web(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    proc, base = start_web(env, tmp_path)
    yield base
    proc.stop()
