"""A user's last location on a real Redis: the request that gives it writes it, so the
user's very next request (on any web process) is served there, with no flush waited for."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import geo
from config import load_settings
from devtools.procs import service_env, start_web
from pipeline.serving.feed import ServingLog
from store import LOCATION_TTL_S, Keys, Store
from tests.conftest import ADMIN_TOKEN
from webapp import create_app

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BERLIN = (52.5200, 13.4050)
PARIS = (48.8566, 2.3522)


def ad_body(lat: float, lon: float) -> dict:
    return {"lat": lat, "lon": lon, "title": "Barista", "company": "Blue Leaf",
            "category": "hospitality"}


@pytest.fixture
def client(redis_url: str):
    """The app in this process on the real server, its served-feed log never flushed, so
    nothing but the request itself can have written the location."""
    settings = load_settings({"REDIS_URL": redis_url}, admin_token=ADMIN_TOKEN)
    app = create_app(settings)
    runtime = app.extensions["runtime"]
    runtime.__dict__["serving_log"] = ServingLog(runtime.store, settings.served_maxlen,
                                                 flush_s=None)
    app.config["TESTING"] = True
    client = app.test_client()
    for name, (lat, lon) in {"ber-1": BERLIN, "par-1": PARIS}.items():
        assert client.put(f"/v1/ads/{name}", headers=ADMIN,
                          json=ad_body(lat + 0.001, lon)).status_code == 201
    return client


def test_a_feed_with_a_user_id_then_at_once_the_users_recommendation(client, real_store: Store):
    for place, ad_id in ((BERLIN, "ber-1"), (PARIS, "par-1"), (BERLIN, "ber-1")):
        feed = client.get("/v1/feed", query_string={"lat": place[0], "lon": place[1],
                                                    "user_id": "u1"})
        assert feed.status_code == 200
        response = client.get("/v1/recommend/u1")
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert body["location_source"] == "last_known"
        assert body["cell"] == geo.encode(*place, 6)
        assert [a["ad_id"] for a in body["ads"]] == [ad_id]
    assert 0 < real_store.r.ttl(Keys.user_location("u1")) <= LOCATION_TTL_S


@pytest.fixture
def web_unflushed(redis_url: str, tmp_path: Path) -> Iterator[str]:
    env = service_env(redis_url, ADMIN_TOKEN=ADMIN_TOKEN, SERVED_FLUSH_S="10")
    proc, base = start_web(env, tmp_path, workers=3)
    yield base
    proc.stop()


@pytest.mark.slow
def test_on_gunicorn_the_next_request_on_any_worker_sees_the_location(web_unflushed: str):
    base = web_unflushed
    for name, (lat, lon) in {"ber-1": BERLIN, "par-1": PARIS}.items():
        r = requests.put(f"{base}/v1/ads/{name}", headers=ADMIN, json=ad_body(lat + 0.001, lon),
                         timeout=10)
        assert r.status_code == 201, r.text
    for i in range(30):
        place = (BERLIN, PARIS)[i % 2]
        r = requests.get(f"{base}/v1/feed", params={"lat": place[0], "lon": place[1],
                                                    "user_id": "u2"}, timeout=10)
        assert r.status_code == 200, r.text
        r = requests.get(f"{base}/v1/recommend/u2", timeout=10)   # new connection: any worker
        assert r.status_code == 200, r.text
        assert r.json()["cell"] == geo.encode(*place, 6)
