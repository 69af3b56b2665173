"""Clients retry: every post sent twice, some three times, some of them at the same moment.
The counters end exactly as if each post had been sent once, and the answers say which
events were duplicates."""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from store import STAT_FIELDS, Store
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_learning_loop import wait_until
from tests.support.builders import catalogue
from tests.support.streams import streamed_events

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EVENTS, PER_POST, ADS = 20_000, 500, 40
TYPES = ("impression", "view", "save", "apply", "hide")


def post(base: str, events: list[dict]) -> dict:
    r = requests.post(f"{base}/v1/events", json={"events": events}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_retried_posts_count_once_and_report_their_duplicates(web, worker, real_store: Store):
    catalogue(real_store, [f"ad-{a}" for a in range(ADS)])
    rng = np.random.default_rng(21)
    ads = rng.integers(ADS, size=EVENTS)
    kinds = rng.choice(len(TYPES), size=EVENTS, p=[0.7, 0.15, 0.05, 0.05, 0.05])
    events = [{"event_id": f"r-{i}", "ad_id": f"ad-{a}", "type": TYPES[k], "user_id": f"u{i % 97}"}
              for i, (a, k) in enumerate(zip(ads.tolist(), kinds.tolist(), strict=True))]
    posts = [events[i:i + PER_POST] for i in range(0, EVENTS, PER_POST)]
    by_post: list[list[dict]] = []
    with ThreadPoolExecutor(4) as pool:
        for n, batch in enumerate(posts):
            copies = 3 if n % 3 == 0 else 2
            if n % 4 == 0:                       # all copies at the same moment
                by_post.append(list(pool.map(lambda b: post(web, b), [batch] * copies)))
            else:                                # one after the other, as a client retries
                by_post.append([post(web, batch) for _ in range(copies)])
    for batch, answers in zip(posts, by_post, strict=True):
        # together the copies accept each event once and call every other copy a duplicate
        assert sum(a["accepted"] for a in answers) == len(batch)
        assert sum(a["duplicates"] for a in answers) == (len(answers) - 1) * len(batch)
        assert all(a["rejected"] == [] for a in answers)
        if answers[0]["accepted"] == len(batch):  # sent one after the other: all duplicates
            assert all(a["duplicates"] == len(batch) for a in answers[1:])

    wait_until(lambda: real_store.inbox_size() == 0
               and streamed_events(real_store) == EVENTS, timeout_s=60,
               what="every accepted event in the stream")
    rolled = requests.post(f"{web}/v1/admin/rollup?wait=true", headers=ADMIN, timeout=120)
    assert rolled.status_code == 200 and rolled.json()["counted"] == EVENTS
    expected = Counter((f"ad-{a}", TYPES[k])
                       for a, k in zip(ads.tolist(), kinds.tolist(), strict=True))
    ad_ids = [f"ad-{a}" for a in range(ADS)]
    stats = real_store.ad_stats(ad_ids, STAT_FIELDS)
    for field, kind in zip(STAT_FIELDS, TYPES, strict=True):
        assert stats[field] == [expected[(a, kind)] for a in ad_ids], field
