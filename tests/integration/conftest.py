"""A real redis-server of the tests' own (free loopback port), real Celery workers and a
real gunicorn, all stopped when the tests are done. The broker is that Redis, unless a test
asks for RabbitMQ (``@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])``): then a
RabbitMQ node of the tests' own (``devtools.rabbitmq_server``), started once. A test
parametrized with ``store_kind`` "cluster" puts the store on a Redis Cluster of the tests'
own (``devtools.redis_cluster``, 3 masters, started once), its event pipeline in three
partitions; "partitioned" keeps one redis-server and splits the event pipeline in two."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config import Settings, load_settings
from devtools.procs import Proc, service_env, start_web, start_worker
from devtools.rabbitmq_server import RabbitNode, clear_queues
from devtools.redis_cluster import LocalCluster
from devtools.redis_server import RedisServer
from store import Store
from tasks.names import QUEUES
from tests.conftest import ADMIN_TOKEN


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    """A Redis Cluster of the tests' own (3 masters), started once when a test asks."""
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: LocalCluster) -> str:
    """REDIS_URL for the tests' cluster (``redis+cluster://``), every master emptied."""
    for port in redis_cluster.ports:
        with redis.Redis(port=port) as client:
            client.flushall()
    return redis_cluster.url.replace("redis://", "redis+cluster://", 1)


@pytest.fixture
def store_kind() -> str:
    """Where the store lives: "redis" (one server) unless the test is parametrized with
    "cluster" (the tests' Redis Cluster; the broker is then the plain Redis)."""
    return "redis"


@pytest.fixture
def redis_url(redis_server: RedisServer, store_kind: str, request: pytest.FixtureRequest) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    if store_kind == "cluster":
        return request.getfixturevalue("cluster_url")
    if store_kind not in PARTITIONS:
        raise ValueError(f"unknown store kind {store_kind!r}")
    return redis_server.url


@pytest.fixture
def real_settings(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings({"REDIS_URL": redis_url}, admin_token=ADMIN_TOKEN,
                         archive_url=str(tmp_path_factory.mktemp("archive")))


# EVENT_PARTITIONS by store kind: "partitioned" is one redis-server with the event pipeline
# split in two; on the tests' cluster it is split in three
PARTITIONS = {"redis": 1, "partitioned": 2, "cluster": 3}


def partitions_of(store_kind: str) -> int:
    return PARTITIONS[store_kind]


@pytest.fixture
def real_store(redis_url: str, store_kind: str) -> Store:
    return Store.from_url(redis_url, partitions_of(store_kind))


@pytest.fixture(scope="session")
def rabbit_node(tmp_path_factory) -> Iterator[RabbitNode]:
    with RabbitNode(tmp_path_factory.mktemp("rabbitmq")) as node:
        yield node


@pytest.fixture
def broker() -> str:
    """The broker the services use: "redis" unless the test is parametrized with another."""
    return "redis"


@pytest.fixture
def broker_url(broker: str, store_kind: str, redis_server: RedisServer,
               request: pytest.FixtureRequest) -> str | None:
    """CELERY_BROKER_URL for ``broker`` (None: REDIS_URL's server; with the store on the
    cluster, the plain Redis), its queues empty."""
    if broker == "redis":
        return redis_server.url if store_kind == "cluster" else None
    if broker != "rabbitmq":
        raise ValueError(f"unknown broker {broker!r}")
    node: RabbitNode = request.getfixturevalue("rabbit_node")
    clear_queues(node.url, QUEUES)
    return node.url


@pytest.fixture
def env(redis_url: str, broker_url: str | None, store_kind: str, tmp_path: Path
        ) -> dict[str, str]:
    extra = {"CELERY_BROKER_URL": broker_url} if broker_url else {}
    extra["ARCHIVE_URL"] = str(tmp_path / "archive")
    extra["EVENT_PARTITIONS"] = str(partitions_of(store_kind))
    return service_env(redis_url, ADMIN_TOKEN=ADMIN_TOKEN, LOG_LEVEL="INFO", **extra)


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
