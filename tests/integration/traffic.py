"""A short, realistic load on the real web: ads around a few points, feeds asked there, and
the events a device would send back (impressions with their positions, some applies, all
naming their feed), with a bad event in each post."""
from __future__ import annotations

import time

import requests

from tests.conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
POINTS = [(52.52, 13.405), (52.50, 13.42), (52.53, 13.38)]


def drive_load(web: str, seconds: float) -> int:
    """Ads, feeds, events with their feed ids (applies among them), a few bad requests."""
    with requests.Session() as s:
        for i in range(60):
            lat, lon = POINTS[i % len(POINTS)]
            s.put(f"{web}/v1/ads/obs-{i}", headers=ADMIN, timeout=10,
                  json={"lat": lat + (i % 7) * 1e-3, "lon": lon, "title": f"job {i}",
                        "company": f"co {i}", "category": ["retail", "care"][i % 2]})
        n, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            lat, lon = POINTS[n % len(POINTS)]
            feed = s.get(f"{web}/v1/feed", params={"lat": lat, "lon": lon, "limit": 5},
                         timeout=10).json()
            events = [{"event_id": f"o{n}-{a['position']}", "ad_id": a["ad_id"],
                       "type": "impression", "position": a["position"],
                       "feed_id": feed["feed_id"]} for a in feed["ads"]]
            if feed["ads"] and n % 2 == 0:
                events.append({"event_id": f"o{n}-view", "ad_id": feed["ads"][-1]["ad_id"],
                               "type": "view", "feed_id": feed["feed_id"]})
            if feed["ads"] and n % 3 == 0:
                events.append({"event_id": f"o{n}-apply", "ad_id": feed["ads"][0]["ad_id"],
                               "type": "apply", "feed_id": feed["feed_id"]})
            events.append({"event_id": f"o{n} bad", "ad_id": "x", "type": "view"})
            s.post(f"{web}/v1/events", json={"events": events}, timeout=10)
            s.get(f"{web}/v1/feed", params={"lat": "north", "lon": lon}, timeout=10)
            n += 1
            time.sleep(0.02)
    return n
