"""The whole loop over HTTP on real processes: ads in, feed out, events in, rollup,
regeneration, and the ad people apply to rises to the top."""
from __future__ import annotations

import numpy as np
import pytest
import requests

import geo
from devtools.procs import wait_until
from store import Store
from tests.conftest import ADMIN_TOKEN
from tests.support.streams import streamed_events

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BERLIN = (52.5200, 13.4050)


def put_ads(base: str, count: int, rng: np.random.Generator) -> list[str]:
    ids = []
    for i in range(count):
        lat = BERLIN[0] + rng.uniform(-0.015, 0.015)
        lon = BERLIN[1] + rng.uniform(-0.02, 0.02)
        ad_id = f"ber-{i}"
        r = requests.put(f"{base}/v1/ads/{ad_id}", headers=ADMIN, timeout=10, json={
            "lat": lat, "lon": lon, "title": f"Job {i}", "company": f"Acme {i}",
            "category": "retail"})
        assert r.status_code == 201, r.text
        ids.append(ad_id)
    return ids


def post_events(base: str, events: list[dict]) -> None:
    for i in range(0, len(events), 500):
        r = requests.post(f"{base}/v1/events", json={"events": events[i:i + 500]}, timeout=10)
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == len(events[i:i + 500])


def feed(base: str, **params) -> dict:
    r = requests.get(f"{base}/v1/feed", params={"lat": BERLIN[0], "lon": BERLIN[1], **params},
                     timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
@pytest.mark.parametrize("store_kind", ["redis", "cluster"])
def test_the_ad_people_apply_to_rises_to_the_top(web, worker, real_store: Store):
    rng = np.random.default_rng(5)
    ids = put_ads(web, 30, rng)

    first = feed(web, limit=30)
    assert first["cache"] == "miss"
    assert sorted(a["ad_id"] for a in first["ads"]) == sorted(ids)
    assert all(a["distance_km"] <= 5.0 for a in first["ads"])
    target = first["ads"][-1]["ad_id"]          # the last one shown: it has to climb
    assert feed(web, limit=30)["cache"] == "hit"

    events = [{"event_id": f"imp-{ad}-{k}", "ad_id": ad, "type": "impression",
               "feed_id": first["feed_id"], "position": 1}
              for ad in ids for k in range(60)]
    events += [{"event_id": f"view-{ad}-{k}", "ad_id": ad, "type": "view"}
               for ad in ids for k in range(40 if ad == target else 5)]
    events += [{"event_id": f"apply-{k}", "ad_id": target, "type": "apply", "user_id": f"u{k}"}
               for k in range(25)]
    post_events(web, events)
    # the worker's ingest tasks move every accepted batch into the stream
    wait_until(lambda: real_store.inbox_size() == 0 and
               streamed_events(real_store) == len(events), what="ingest tasks")

    rolled = requests.post(f"{web}/v1/admin/rollup?wait=true", headers=ADMIN, timeout=60)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["counted"] == len(events)
    stats = requests.get(f"{web}/v1/stats/ads/{target}", timeout=10).json()
    assert stats["counters"] == {"impressions": 60, "views": 40, "saves": 0, "applies": 25,
                                 "hides": 0}
    assert stats["posterior"]["mean"] > 0.1

    # the web marks the cell active with its buffered served log (every SERVED_FLUSH_S)
    cell = geo.encode(*BERLIN, 6)
    wait_until(lambda: cell in real_store.active_cells(since=0), what="the cell marked active")
    regen = requests.post(f"{web}/v1/admin/regenerate?wait=true", headers=ADMIN, timeout=60)
    assert regen.status_code == 200, regen.text
    assert regen.json()["written"] >= 1, regen.json()

    # the feeds ranked by what people apply to (not by age or distance) put it first
    feeds = [feed(web, limit=30) for _ in range(200)]
    learnt = [f["ads"][0]["ad_id"] for f in feeds if f["strategy"] in ("thompson", "popular")]
    assert len(learnt) >= 20
    assert learnt.count(target) == len(learnt)


@pytest.mark.slow
def test_beat_jobs_run_on_the_worker(web, worker, real_store: Store):
    put_ads(web, 3, np.random.default_rng(1))
    feed(web)  # makes the cell active
    post_events(web, [{"event_id": "e1", "ad_id": "ber-0", "type": "view"}])
    wait_until(lambda: real_store.inbox_size() == 0, what="ingest")
    r = requests.post(f"{web}/v1/admin/rollup", headers=ADMIN, timeout=10)
    assert r.status_code == 202 and r.json()["task_id"]
    wait_until(lambda: real_store.job_status("rollup").get("counted") == "1", what="rollup task")
    cell = geo.encode(*BERLIN, 6)
    wait_until(lambda: cell in real_store.active_cells(since=0), what="the cell marked active")
    r = requests.post(f"{web}/v1/admin/regenerate", headers=ADMIN, timeout=10)
    assert r.status_code == 202
    wait_until(lambda: real_store.job_status("regenerate").get("written") == "1",
               what="regeneration task")
    assert real_store.r.exists(real_store.k.feed(cell))


@pytest.mark.slow
@pytest.mark.parametrize("store_kind", ["redis", "cluster"])
def test_a_deleted_ad_leaves_every_feed_at_once(web, real_store: Store):
    ids = put_ads(web, 5, np.random.default_rng(2))
    assert len(feed(web)["ads"]) == 5
    assert requests.delete(f"{web}/v1/ads/{ids[0]}", headers=ADMIN, timeout=10).status_code == 204
    for _ in range(10):
        assert ids[0] not in [a["ad_id"] for a in feed(web)["ads"]]
    assert requests.get(f"{web}/v1/ads/{ids[0]}", timeout=10).status_code == 404
