"""store.job_store: one periodic run per schedule slot, and each run's report.
(All on fakeredis; tests/integration/test_store_on_redis.py runs them on a real server.)"""
from __future__ import annotations

from store import Store


def test_claim_slot_admits_one_caller_per_schedule_slot(fake_store: Store):
    assert fake_store.claim_slot("rollup", 7, 10.0)
    assert not fake_store.claim_slot("rollup", 7, 10.0)            # the same slot
    assert fake_store.claim_slot("rollup", 8, 10.0)                # the next one
    assert fake_store.claim_slot("regenerate", 7, 10.0)            # another job
    assert 10_000 < fake_store.r.pttl(fake_store.k.lock("rollup:8")) <= 20_000


def test_each_recorded_run_is_counted(fake_store: Store):
    fake_store.record_job("rollup", {"counted": 3})
    fake_store.record_job("rollup", {"counted": 0})
    assert fake_store.job_status("rollup") == {"counted": "0", "runs": "2"}
