"""Periodic jobs: one run per schedule slot, and what each run reported."""

from __future__ import annotations

from collections.abc import Mapping

import redis

from store.keys import (
    Keys,
)
from store.rows import (
    _s,
    consumer_name,
)


class JobStore:
    """Periodic jobs: one run per schedule slot, and what each run reported."""

    r: redis.Redis

    def claim_slot(self, job: str, slot: int, interval_s: float) -> bool:
        """True for the first caller of a schedule slot (a periodic job's run number): a job
        fired by two beats runs once per slot, whatever their phases."""
        return bool(self.r.set(Keys.lock(f"{job}:{slot}"), consumer_name(), nx=True,
                               px=max(1000, int(2 * interval_s * 1000))))

    def record_job(self, job: str, fields: Mapping[str, float | int | str]) -> None:
        """The job's last report, and one more run counted."""
        with self.r.pipeline(transaction=False) as p:
            p.hset(Keys.job(job), mapping=dict(fields))
            p.hincrby(Keys.job(job), "runs", 1)
            p.execute()

    def job_status(self, job: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.r.hgetall(Keys.job(job)).items()}
