"""Periodic jobs: one run per schedule slot, and what each run reported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import redis
from redis.commands.core import Script

from store.keys import (
    REGEN_RUN_TTL_S,
    Keys,
)
from store.rows import (
    _s,
    consumer_name,
)


class JobStore:
    """Periodic jobs: one run per schedule slot, and what each run reported."""

    r: redis.Redis
    k: type[Keys]
    _finish_shard: Script

    def claim_slot(self, job: str, slot: int, interval_s: float) -> bool:
        """True for the first caller of a schedule slot (a periodic job's run number): a job
        fired by two beats runs once per slot, whatever their phases."""
        return bool(self.r.set(self.k.lock(f"{job}:{slot}"), consumer_name(), nx=True,
                               px=max(1000, int(2 * interval_s * 1000))))

    def record_job(self, job: str, fields: Mapping[str, float | int | str]) -> None:
        """The job's last report, and one more run counted."""
        with self.r.pipeline(transaction=False) as p:
            p.hset(self.k.job(job), mapping=dict(fields))
            p.hincrby(self.k.job(job), "runs", 1)
            p.execute()

    def job_status(self, job: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.r.hgetall(self.k.job(job)).items()}

    def begin_regen_run(self, run_id: str, shards: int, cells: int, started_at: float) -> None:
        """A sharded regeneration run starts: ``shards`` tasks will report."""
        with self.r.pipeline(transaction=True) as p:
            p.hset(self.k.regen_run(run_id), mapping={"shards": shards, "cells": cells,
                                                    "started_at": repr(started_at), "done": 0})
            p.expire(self.k.regen_run(run_id), REGEN_RUN_TTL_S)
            p.expire(self.k.regen_shards(run_id), REGEN_RUN_TTL_S)
            p.execute()
        self.r.set(self.k.regen_latest, run_id)     # (another slot on a cluster: after)

    def finish_shard(self, run_id: str, index: int,
                     report: Mapping[str, Any]) -> tuple[int, int, bool]:
        """Shard ``index`` of the run reports (once, however often it runs): (shards
        finished, shards in the run, whether this report completed the run). A run whose
        keys have expired takes no report: (0, 0, False)."""
        done, shards, completed = self._finish_shard(
            keys=[self.k.regen_run(run_id), self.k.regen_shards(run_id)],
            args=[index, orjson.dumps(dict(report)), REGEN_RUN_TTL_S])
        return int(done), int(shards), bool(completed)

    def regen_run(self, run_id: str | None = None) -> dict[str, Any] | None:
        """A sharded run (default: the latest) as it stands: its fields and each finished
        shard's report, by index; None when there is none."""
        run_id = run_id or _s(self.r.get(self.k.regen_latest))
        if not run_id:
            return None
        with self.r.pipeline(transaction=False) as p:
            p.hgetall(self.k.regen_run(run_id))
            p.hgetall(self.k.regen_shards(run_id))
            fields, shards = p.execute()
        if not fields:
            return None
        return {"run_id": run_id, **{_s(k): float(v) for k, v in fields.items()},
                "reports": {int(k): orjson.loads(v) for k, v in shards.items()}}
