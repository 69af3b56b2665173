"""Under a steady load of feed requests, an ad deleted leaves every feed from the moment its
DELETE is answered, and an ad past its expiry is never served (each feed id carries the
time it was served), long before the next regeneration."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import requests

import geo
from devtools.procs import start_beat, start_web, start_worker
from tests.conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CENTRE = (48.8566, 2.3522)


@pytest.mark.slow
@pytest.mark.parametrize("store_kind", ["redis", "cluster"])
def test_deleted_and_expired_ads_leave_every_feed_at_once(env: dict[str, str], tmp_path):
    env = {**env, "ROLLUP_INTERVAL_S": "1", "REGEN_INTERVAL_S": "3"}
    procs = [start_worker(env, tmp_path), start_beat(env, tmp_path)]
    web, base = start_web(env, tmp_path)
    procs.append(web)
    rng = np.random.default_rng(8)
    try:
        expires_at = time.time() + 4.0
        for i in range(60):
            lat, lon = geo.destination_point(*CENTRE, float(rng.uniform(0, 360)),
                                             float(rng.uniform(0, 2.0)))
            body = {"lat": float(lat), "lon": float(lon), "title": f"Job {i}",
                    "company": f"Acme {i}"}
            if i == 1:
                body["expires_at"] = expires_at
            r = requests.put(f"{base}/v1/ads/ad-{i}", headers=ADMIN, json=body, timeout=10)
            assert r.status_code == 201, r.text
        points = [tuple(map(float, geo.destination_point(*CENTRE, float(rng.uniform(0, 360)),
                                                         float(rng.uniform(0, 1.0)))))
                  for _ in range(30)]
        seen: list[tuple[float, float, set[str]]] = []     # (asked at, served at, ads)
        stop = threading.Event()

        def load(k: int) -> None:
            with requests.Session() as s:
                j = k
                while not stop.is_set():
                    lat, lon = points[j % len(points)]
                    j += 1
                    asked = time.time()
                    r = s.get(f"{base}/v1/feed", params={"lat": lat, "lon": lon, "limit": 100},
                              timeout=10)
                    assert r.status_code == 200, r.text
                    body = r.json()
                    served = int(body["feed_id"].split("-")[0]) / 1000
                    seen.append((asked, served, {a["ad_id"] for a in body["ads"]}))

        threads = [threading.Thread(target=load, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        r = requests.delete(f"{base}/v1/ads/ad-0", headers=ADMIN, timeout=10)
        assert r.status_code == 204
        deleted_at = time.time()
        time.sleep(6.0)                       # past the expiry and two regenerations
        stop.set()
        for t in threads:
            t.join(15)
        before = [ads for asked, _, ads in seen if asked < deleted_at - 0.5]
        after = [ads for asked, _, ads in seen if asked > deleted_at]
        assert len(before) > 50 and len(after) > 100, (len(before), len(after))
        assert any("ad-0" in ads for ads in before)          # it was being served
        assert not any("ad-0" in ads for ads in after)
        live = [ads for _, served, ads in seen if served < expires_at - 0.5]
        expired = [ads for _, served, ads in seen if served >= expires_at]
        assert any("ad-1" in ads for ads in live) and len(expired) > 100
        assert not any("ad-1" in ads for ads in expired)
    finally:
        for p in reversed(procs):
            p.stop()
