"""REDIS_URL may be rediss:// (Heroku Redis): the store and the Celery broker both work
over TLS against a redis-server with TLS on, started here with a throwaway certificate."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from config import load_settings
from devtools.redis_server import free_port, redis_binary
from pipeline.learning.ingest import Event, accept_batch, roll_in
from store import Keys, Store
from tasks.factory import make_celery
from tests.support.builders import catalogue


def tls_capable(binary: str) -> bool:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return "libssl" in out and shutil.which("openssl") is not None


BINARY = redis_binary()
pytestmark = pytest.mark.skipif(not tls_capable(BINARY),
                                reason=f"{BINARY} is built without TLS or openssl is missing")


@pytest.fixture
def tls_url(tmp_path: Path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([BINARY, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(tmp_path / "cert.pem"),
                             "--tls-key-file", str(tmp_path / "key.pem"),
                             "--tls-ca-cert-file", str(tmp_path / "cert.pem"),
                             "--tls-auth-clients", "no", "--save", "", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_store_and_the_broker_work_over_rediss(tls_url: str):
    settings = load_settings({"REDIS_URL": tls_url})
    store = Store.from_url(settings.redis_url)
    now = time.time()
    catalogue(store, ["ad1"])
    accepted = accept_batch(store, settings, [Event("e1", "ad1", "view", now)], now)
    assert roll_in(store, accepted.batch_id) == 1
    assert store.r.xlen(Keys.events) == 1

    celery = make_celery(settings, main="webapp")
    celery.send_task("ingest.events", args=["b1"], queue="ingest")
    assert store.r.llen("ingest") == 1       # kombu's list for the queue, over TLS
