"""Rate limits on the real web server: its worker processes hold one client to one limit
between them (each settles with the shared bucket in Redis), answer 429 with Retry-After
over it, count each 429 in /metrics, and keep another client apart."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from devtools.procs import start_web
from tests.conftest import ADMIN_TOKEN

HERE = {"lat": 52.52, "lon": 13.405}
RATE, BURST, WORKERS = 5, 10, 2


def rate_limited_total(base: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith('recommender_rate_limited_total{limit="feeds"}'))


@pytest.mark.slow
def test_the_web_processes_hold_a_client_to_its_limit_together(env: dict[str, str],
                                                              tmp_path: Path):
    env = {**env, "RATE_LIMIT_FEEDS_PER_S": str(RATE), "RATE_LIMIT_FEEDS_BURST": str(BURST),
           "RATE_LIMIT_SYNC_S": "0.2", "API_KEYS": "backend:key-of-the-backend-0001"}
    web, base = start_web(env, tmp_path, workers=WORKERS)
    try:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ad = {**HERE, "title": "Barista", "company": "Blue Leaf"}
        assert requests.put(f"{base}/v1/ads/a1", json=ad, headers=admin,
                            timeout=10).status_code == 201
        start = time.monotonic()
        statuses, retry_after = [], set()
        while time.monotonic() - start < 3:
            # a new connection each: the requests spread over both worker processes
            r = requests.get(f"{base}/v1/feed", params=HERE, timeout=10,
                             headers={"Connection": "close"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert r.json()["error"]["code"] == "rate_limited"
                retry_after.add(r.headers["Retry-After"])
        elapsed = time.monotonic() - start
        served, refused = statuses.count(200), statuses.count(429)
        assert served + refused == len(statuses), set(statuses)
        # one bucket for both processes, give or take what one let through before settling
        assert served <= BURST + RATE * elapsed + WORKERS * BURST / 2, (served, refused)
        assert served >= BURST and refused > served, (served, refused)
        assert retry_after and all(v.isdigit() and int(v) >= 1 for v in retry_after)
        assert rate_limited_total(base) == refused
        # the backend's API key is a client of its own
        keyed = requests.get(f"{base}/v1/feed", params=HERE, timeout=10,
                             headers={"X-API-Key": "key-of-the-backend-0001"})
        assert keyed.status_code == 200
    finally:
        web.stop()
