"""The tasks. Each decodes its arguments and calls one plain function of ``pipeline``.

Every task here writes, so every one is idempotent, acknowledged late (a task running when
its worker dies is redelivered, not lost), bounded by a time limit, and retried only on
transient Redis errors.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

import numpy as np
import redis
from celery import signals

from config import Settings, load_settings
from pipeline.archive import run_archive
from pipeline.learning.ingest import roll_in
from pipeline.learning.regenerate import maybe_learn_priors, plan_shards, run_regenerate, run_shard
from pipeline.learning.rollup import count_partition, run_rollup
from store import Store
from tasks.celery import app
from tasks.names import (
    ARCHIVE,
    INGEST,
    QUEUE,
    REGEN_SHARD,
    REGENERATE,
    ROLLUP,
    ROLLUP_PARTITION,
)

log = logging.getLogger("tasks")

WRITES = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError),
    "retry_backoff": True,
    "retry_backoff_max": 30,
    "max_retries": 20,
}


@cache
def settings() -> Settings:
    return load_settings()


@cache
def store() -> Store:
    s = settings()
    return Store.from_url(s.redis_url, s.event_partitions, socket_timeout=30,
                          socket_connect_timeout=5, health_check_interval=30)


_rng: dict[int, np.random.Generator] = {}


def rng() -> np.random.Generator:
    """A generator of this process's own: prefork children must not share a stream."""
    return _rng.setdefault(os.getpid(), np.random.default_rng())


# INGEST_TASK_EVENTS=false: no task events for Flower from the task that runs once a post
# (they cost the worker a third of its time for it); an ingest failing still shows as the
# inbox and the pipeline lag growing (flask status, /metrics) and in the worker's log
@app.task(name=INGEST, time_limit=60, send_events=settings().ingest_task_events, **WRITES)
def ingest_events(batch_id: str) -> int:
    """Move an accepted batch from the inbox to the events stream (a no-op when repeated)."""
    return roll_in(store(), batch_id)


def fired_at(request: Any, interval_s: float) -> float:
    """When beat sent this run: its message expires one interval after (the schedule's
    ``expires``), so two beats' runs of one slot agree on it however late a worker takes
    them. A message without expiry counts as sent now."""
    expires = getattr(request, "expires", None)
    if isinstance(expires, str):
        try:
            return datetime.fromisoformat(expires).timestamp() - interval_s
        except ValueError:
            pass
    return time.time()


def periodic(job: str, interval_s: float, request: Any, forced: bool,
             run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a periodic job once per schedule slot (``forced``: now, whatever the slot)."""
    slot = int(fired_at(request, interval_s) // interval_s)
    if not forced and not store().claim_slot(job, slot, interval_s):
        return {"skipped_run": f"{job} already ran in schedule slot {slot}", "slot": slot}
    return {**run(), "slot": slot}


@app.task(name=ROLLUP, bind=True, **WRITES)
def rollup(self: Any, forced: bool = False) -> dict[str, Any]:
    """Count new events exactly once. Beat-fired runs run once per schedule slot, however
    many beats fire them."""
    s = settings()
    return periodic("rollup", s.rollup_interval_s, self.request, forced,
                    lambda: run_rollup(store(), s, time.time(), rng=rng(),
                                       fan_out=send_partition))


def send_partition(partition: int) -> None:
    rollup_partition.apply_async((partition,), queue=QUEUE[ROLLUP_PARTITION])


@app.task(name=ROLLUP_PARTITION, **WRITES)
def rollup_partition(partition: int) -> dict[str, Any]:
    """Count one partition of the event pipeline (EVENT_PARTITIONS above 1), and keep its
    report (job ``rollup.<partition>``). A partition left uncounted shows in ``flask
    status`` as the lag of its oldest event (the lag check takes the oldest over every
    partition)."""
    st = store()
    if not 0 < partition < len(st.parts):
        raise ValueError(f"no event partition {partition} (EVENT_PARTITIONS is "
                         f"{len(st.parts)})")
    report = {**count_partition(st, settings(), time.time(), partition, rng=rng()),
              "finished_at": time.time()}
    st.record_job(f"rollup.{partition}", report)
    return report


@app.task(name=REGENERATE, bind=True, **WRITES)
def regenerate(self: Any, forced: bool = False) -> dict[str, Any]:
    """Rebuild every active cell's feed (with REGEN_SHARDS above 1: send one task per
    shard). Beat-fired runs run once per schedule slot."""
    s = settings()
    run = fan_out if s.regen_shards > 1 else run_regenerate
    return periodic("regenerate", s.regen_interval_s, self.request, forced,
                    lambda: run(store(), s, time.time(), rng()))


def fan_out(st: Store, s: Settings, now: float, gen: np.random.Generator) -> dict[str, Any]:
    """Plan a sharded run and send its shards to the regen queue; then relearn the category
    priors if they are old (the shards use the stored ones)."""
    run_id, shards = plan_shards(st, s, now, gen)
    for index, cells in enumerate(shards):
        regenerate_shard.apply_async((run_id, index, cells), queue=QUEUE[REGEN_SHARD])
    return {"run_id": run_id, "shards": len(shards), "cells": sum(map(len, shards)),
            "priors_learnt": maybe_learn_priors(st, s, now)}


@app.task(name=REGEN_SHARD, **WRITES)
def regenerate_shard(run_id: str, index: int, cells: list[str]) -> dict[str, Any]:
    """Rebuild one shard of a sharded run, and report it."""
    return run_shard(store(), settings(), run_id, index, cells, time.time(), rng())


@app.task(name=ARCHIVE, bind=True, **WRITES)
def archive(self: Any, forced: bool = False) -> dict[str, Any]:
    """Write the events and served feeds counted since the last run to the archive's
    Parquet files, exactly once (``pipeline.archive``). Beat-fired runs run once per
    schedule slot; one run at a time holds the archive lock."""
    s = settings()
    return periodic("archive", s.archive_interval_s, self.request, forced,
                    lambda: run_archive(store(), s, time.time()))


_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_start(task_id: str, **_: Any) -> None:
    _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _task_done(task_id: str, task: Any, retval: Any = None, state: str | None = None,
               **_: Any) -> None:
    started = _started.pop(task_id, None)
    fields = {"task_id": task_id, "task": task.name, "state": state,
              "ms": round((time.perf_counter() - started) * 1e3, 2) if started else None}
    if isinstance(retval, dict):
        fields["result"] = retval
    log.info("task", extra={"fields": fields})
