"""A regeneration sharded over a real worker's processes, and that worker killed with -9 in
the middle of a shard: the run it was doing never completes, and the next run rebuilds every
active cell, so no cell is older than the next run."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import geo
from config import load_settings
from devtools.demo import demo_ads
from devtools.procs import start_worker
from pipeline.catalogue import AdRecord, upsert_ads
from pipeline.serving.cellfeed import CellFeed
from store import Store
from tasks.factory import make_celery
from tasks.names import QUEUE, REGENERATE

ADS, CELLS = 100_000, 3_000
SHARDED = {"REGEN_SHARDS": "2", "REGEN_INTERVAL_S": "600", "TASK_TIME_LIMIT_S": "60",
           "VISIBILITY_TIMEOUT_S": "120"}


def start_run(env: dict[str, str], store: Store, previous: str | None) -> str:
    """Send the beat's regeneration task (forced) and wait for the run it plans."""
    app = make_celery(load_settings({"REDIS_URL": env["REDIS_URL"]}), main="test")
    app.send_task(REGENERATE, kwargs={"forced": True}, queue=QUEUE[REGENERATE])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = store.regen_run()
        if run and run["run_id"] != previous:
            return str(run["run_id"])
        time.sleep(0.05)
    raise AssertionError("no sharded run was planned")


def wait_done(store: Store, run_id: str, timeout_s: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = store.regen_run(run_id)
        if run and run["done"] == run["shards"]:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not complete: {store.regen_run(run_id)}")


def wait_recorded(store: Store, started_at: float, timeout_s: float = 30.0) -> dict[str, str]:
    """The regenerate job's status once a sharded run planned at ``started_at`` (or later)
    has been recorded as a whole."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = store.job_status("regenerate")
        if "shards" in status and float(status["finished_at"]) >= started_at - 1:
            return status
        time.sleep(0.05)
    raise AssertionError(f"the run was not recorded: {store.job_status('regenerate')}")


@pytest.mark.slow
def test_a_worker_killed_in_a_shard_leaves_no_cell_older_than_the_next_run(
        env: dict[str, str], tmp_path: Path, real_store: Store):
    env = {**env, **SHARDED}
    settings = load_settings({}, redis_url=env["REDIS_URL"])
    now = time.time()
    ads = [AdRecord.from_wire(line["ad_id"], line, now) for line in demo_ads(ADS, now, seed=5)]
    for i in range(0, ADS, 5_000):
        upsert_ads(real_store, settings, ads[i:i + 5_000])
    order = np.random.default_rng(3).permutation(ADS)[:4 * CELLS]
    cells = list(dict.fromkeys(geo.encode(ads[i].lat, ads[i].lon, settings.geohash_precision)
                               for i in order.tolist()))[:CELLS]
    real_store.mark_active({c: now for c in cells})

    worker = start_worker(env, tmp_path, name="doomed")
    try:
        first = start_run(env, real_store, None)
        worker.wait_for_log("regenerate.shard[", 30)     # a shard has started ...
        time.sleep(0.3)                                  # ... and is being built
        assert real_store.regen_run(first)["done"] < 2, "the shards finished before the kill"
        worker.kill(group=True)
    finally:
        worker.stop()
    killed = real_store.regen_run(first)
    assert killed["shards"] == 2 and killed["done"] < 2

    worker = start_worker(env, tmp_path, name="next")
    try:
        second = start_run(env, real_store, first)
        run = wait_done(real_store, second)
        # the shard that completes the run records it as a whole just after reporting
        status = wait_recorded(real_store, run["started_at"])
    finally:
        worker.stop()
    assert sum(r["written"] for r in run["reports"].values()) == len(cells)
    for cell, raw in zip(cells, real_store.feed_values(cells), strict=True):
        assert raw is not None, cell
        assert CellFeed.unpack(raw).generated_at >= run["started_at"], cell
    assert status["shards"] == "2" and int(status["written"]) == len(cells)
