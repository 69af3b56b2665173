"""The worker killed with -9, twice, while 100,000 events are ingested and rolled up: at the
end every per-ad counter equals exactly what was sent. Nothing lost (an accepted batch is in
the inbox before the 202; a lost ingest task is swept in; entries a dead consumer held are
reclaimed), nothing doubled (roll-in and rollup are idempotent, atomic steps)."""
from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from devtools.procs import start_beat, start_worker
from store import STAT_FIELDS, Store
from tests.support.builders import catalogue

EVENTS, PER_POST, ADS = 100_000, 500, 50
TYPES = ("impression", "view", "save", "apply", "hide")
FAST = {"ROLLUP_INTERVAL_S": "1", "REGEN_INTERVAL_S": "60", "INBOX_REDELIVER_S": "2",
        "ROLLUP_CLAIM_IDLE_S": "2", "TASK_TIME_LIMIT_S": "10", "VISIBILITY_TIMEOUT_S": "30"}


class Answered:
    """How many posts have been answered, to act at a point of the load."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = threading.Condition()

    def one_more(self) -> None:
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def wait_for(self, count: int, timeout_s: float = 120.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.count >= count, timeout_s):
                raise AssertionError(f"posts stalled at {self.count} of {count}")


@pytest.mark.slow
@pytest.mark.parametrize(("broker", "store_kind"),
                         [("redis", "redis"), ("rabbitmq", "redis"), ("redis", "partitioned"),
                          ("redis", "cluster")])
def test_a_worker_killed_twice_loses_and_doubles_nothing(env: dict[str, str], tmp_path: Path,
                                                         real_store: Store, web: str):
    env = {**env, **FAST}
    catalogue(real_store, [f"ad-{a}" for a in range(ADS)])
    rng = np.random.default_rng(17)
    ads = rng.integers(ADS, size=EVENTS)
    kinds = rng.choice(len(TYPES), size=EVENTS, p=[0.7, 0.15, 0.05, 0.05, 0.05])
    events = [{"event_id": f"k-{i}", "ad_id": f"ad-{a}", "type": TYPES[k]}
              for i, (a, k) in enumerate(zip(ads.tolist(), kinds.tolist(), strict=True))]
    posts = [events[i:i + PER_POST] for i in range(0, EVENTS, PER_POST)]
    answered = Answered()

    def post(batch: list[dict]) -> int:
        r = requests.post(f"{web}/v1/events", json={"events": batch}, timeout=60)
        assert r.status_code == 202, r.text
        answered.one_more()
        return r.json()["accepted"]

    workers = [start_worker(env, tmp_path, name="worker-a")]
    beat = start_beat(env, tmp_path)
    try:
        with ThreadPoolExecutor(4) as pool:
            accepted = pool.map(post, posts)
            for name, at in (("worker-b", len(posts) // 3), ("worker-c", 2 * len(posts) // 3)):
                answered.wait_for(at)
                workers[-1].kill(group=True)                 # kill -9, children and all
                workers.append(start_worker(env, tmp_path, name=name))
            assert sum(accepted) == EVENTS
        expected = Counter((f"ad-{a}", TYPES[k])
                           for a, k in zip(ads.tolist(), kinds.tolist(), strict=True))
        ad_ids = [f"ad-{a}" for a in range(ADS)]
        deadline = time.monotonic() + 180
        while (sum(map(sum, real_store.ad_stats(ad_ids, STAT_FIELDS).values())) < EVENTS
               and time.monotonic() < deadline):
            time.sleep(0.5)
        time.sleep(3)                 # a second count of anything would show by now
        stats = real_store.ad_stats(ad_ids, STAT_FIELDS)
        for field, kind in zip(STAT_FIELDS, TYPES, strict=True):
            assert stats[field] == [expected[(a, kind)] for a in ad_ids], field
        assert real_store.backlog() == {"pending": 0, "lag": 0, "inbox": 0}
    finally:
        beat.stop()
        for w in workers:
            w.stop()
