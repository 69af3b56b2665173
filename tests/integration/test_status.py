"""``flask --app webapp status`` as operators run it: a real subprocess against a real
redis-server and a real Celery worker; its exit status is the verdict."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest

from config import Settings
from devtools.procs import ROOT, Proc
from devtools.redis_server import free_port
from pipeline.archive import run_archive
from pipeline.catalogue import upsert_ads
from pipeline.learning.ingest import Event, accept_batch, roll_in
from pipeline.learning.regenerate import run_regenerate
from pipeline.learning.rollup import run_rollup
from store import Store
from tasks.factory import make_celery
from tests.support.builders import ads_around

CELL = "u33dc0"   # in Berlin, where the ads are


def status(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "flask", "--app", "webapp", "status", *args],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    return run, time.monotonic() - started


def fresh_pipeline(store: Store, settings: Settings) -> None:
    """An ad, a cell in use and an event, then a rollup, a regeneration and an archive run
    just done."""
    now = time.time()
    upsert_ads(store, settings, ads_around(52.52, 13.40, 5, 1.0, np.random.default_rng(3)))
    store.mark_active({CELL: now})
    accepted = accept_batch(store, settings, [Event("e1", "ad0", "impression", now)], now)
    roll_in(store, accepted.batch_id)
    run_rollup(store, settings, now)
    run_regenerate(store, settings, now, np.random.default_rng(4))
    run_archive(store, settings, now)


def failing(document: dict) -> list[str]:
    return [c["name"] for c in document["checks"] if c["status"] == "FAIL"]


@pytest.mark.slow
def test_a_healthy_service_exits_0_and_shows_its_worker(
        env: dict[str, str], worker: Proc, real_store: Store, real_settings: Settings) -> None:
    fresh_pipeline(real_store, real_settings)

    run, _ = status(env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^status at \S+: OK$", run.stdout, re.M), run.stdout
    assert re.search(r"^  workers\s+OK\s+1: worker-\d+@", run.stdout, re.M), run.stdout
    assert re.search(r"^  rollup\s+OK\s+\d+\.\d s ago", run.stdout, re.M), run.stdout
    assert re.search(r"^  live ads\s+OK\s+5\b", run.stdout, re.M), run.stdout

    run, _ = status(env, "--format", "json")
    assert run.returncode == 0, run.stdout + run.stderr
    document = orjson.loads(run.stdout)
    assert document["status"] == "OK"
    assert [w.split("-")[0] for w in document["broker"]["workers"]] == ["worker"]
    state = document["state"]
    assert state["lag_s"] == 0.0 and state["undelivered_batches"] == 0
    assert state["rollup"]["runs"] == 1 and state["rollup"]["report"]["counted"] == 1
    assert state["regenerate"]["runs"] == 1 and state["regenerate"]["processed"] == 1
    assert (state["active_cells"], state["live_ads"]) == (1, 5)


@pytest.mark.slow
def test_without_a_worker_it_exits_1_naming_the_workers_check(
        env: dict[str, str], real_store: Store, real_settings: Settings) -> None:
    fresh_pipeline(real_store, real_settings)
    celery = make_celery(real_settings, main="test-status")
    for _ in range(6):   # beat keeps firing while nobody works: the queue grows
        celery.send_task("rollup.run", queue="rollup")

    run, _ = status(env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(r"^  workers\s+FAIL\s+none\s+no worker answered a ping", run.stdout,
                     re.M), run.stdout
    assert re.search(r"^  queues\s+WARN\s+ingest 0, rollup 6, regen 0", run.stdout,
                     re.M), run.stdout

    run, _ = status(env, "--format", "json")
    document = orjson.loads(run.stdout)
    assert run.returncode == 1
    assert failing(document) == ["workers"]
    assert document["broker"]["queues"] == {"ingest": 0, "rollup": 6, "regen": 0}


@pytest.mark.slow
def test_a_warning_alone_exits_0_unless_strict(env: dict[str, str], worker: Proc) -> None:
    run, _ = status(env)     # an empty store: nothing has run yet, no ads
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^  rollup\s+WARN\s+never run\s+store empty", run.stdout, re.M)
    assert status(env, "--strict")[0].returncode == 1


@pytest.mark.slow
def test_redis_unreachable_exits_1_quickly_without_a_traceback(env: dict[str, str]) -> None:
    closed = {**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    run, elapsed = status(closed)
    assert elapsed < 15
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    assert re.search(r"^  redis\s+FAIL\s+unreachable", run.stdout, re.M), run.stdout
    assert re.search(r"^  broker\s+FAIL\s+unreachable", run.stdout, re.M), run.stdout

    run, _ = status(closed, "--format", "json")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    document = orjson.loads(run.stdout)
    assert document["status"] == "FAIL" and document["state"] is None
    assert {"redis", "broker", "workers", "pipeline lag", "rollup"} <= set(failing(document))


def test_undelivered_batches_are_counted_when_redis_gives_no_lag(real_store: Store,
                                                                real_settings: Settings):
    """Redis 6.2 (the embedded one of make run) reports no consumer-group lag, and Redis 7
    none once an entry past the group's position was deleted: the count is then made from
    the stream itself, never shown as '?'."""
    from pipeline.reports.health import lag_check, pipeline_state
    fresh_pipeline(real_store, real_settings)
    now = time.time()
    for i in range(4):                                    # four posts: four entries
        batch = [Event(f"late-{i}", "ad0", "impression", now)]
        roll_in(real_store, accept_batch(real_store, real_settings, batch, now).batch_id)
    last = real_store.r.xrange("{ev}:events", "-", "+")[-1][0]
    real_store.r.xdel("{ev}:events", last)                # a tombstone past the group
    group = real_store.r.xinfo_groups("{ev}:events")[0]
    assert group.get("lag") is None                       # the case this test is about
    state = pipeline_state(real_store, real_settings, now + 1)
    assert state.undelivered_batches == 3
    check = lag_check(state, 30.0)
    assert "undelivered 3)" in check.value and "?" not in check.value


def test_a_sharded_regeneration_shows_as_a_whole_and_by_shard(
        env: dict[str, str], worker: Proc, real_store: Store, real_settings: Settings) -> None:
    """A sharded run: the table has a line with the shards reported and the slowest one, and
    the JSON document every finished shard's time."""
    fresh_pipeline(real_store, real_settings)
    real_store.begin_regen_run("42", 3, 30, time.time())
    for index, seconds in ((0, 1.25), (2, 2.5)):
        real_store.finish_shard("42", index, {"duration_s": seconds, "written": 10})

    run, _ = status(env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^  regenerate shards\s+OK\s+run 42: 2 of 3 shards, slowest shard 2 "
                     r"2\.50 s", run.stdout, re.M), run.stdout

    run, _ = status(env, "--format", "json")
    assert run.returncode == 0, run.stdout + run.stderr
    sharded = orjson.loads(run.stdout)["state"]["sharded_run"]
    assert (sharded["shards"], sharded["done"]) == (3, 2)
    assert sharded["durations_s"] == {"0": 1.25, "2": 2.5}
