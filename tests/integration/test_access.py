"""Who may call what, on the real processes: ad writes and admin calls need the bearer token,
Flower needs basic auth, the events endpoint performs no admin operation whatever it is
sent, and no secret shows in an error body or a log line."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

from devtools.procs import Proc, start_web, wait_for_http
from devtools.redis_server import free_port
from tests.conftest import ADMIN_TOKEN

FLOWER_PASSWORD = "flower-pw-9f8e7d6c5b"
HERE = {"lat": 52.52, "lon": 13.405}


@pytest.mark.slow
def test_admin_token_flower_auth_no_admin_through_events_and_no_secret_leaks(
        env: dict[str, str], tmp_path: Path):
    flower_port = free_port()
    env = {**env, "FLOWER_BASIC_AUTH": f"ops:{FLOWER_PASSWORD}", "FLOWER_PORT": str(flower_port)}
    web, base = start_web(env, tmp_path)
    flower = Proc("flower", [sys.executable, "-m", "tasks.flower"], env, tmp_path)
    bodies: list[str] = []
    try:
        wait_for_http(f"http://127.0.0.1:{flower_port}/", flower)
        # Flower: nothing without the password
        assert requests.get(f"http://127.0.0.1:{flower_port}/", timeout=10).status_code == 401
        wrong = requests.get(f"http://127.0.0.1:{flower_port}/", auth=("ops", "guess"), timeout=10)
        assert wrong.status_code == 401
        right = requests.get(f"http://127.0.0.1:{flower_port}/", auth=("ops", FLOWER_PASSWORD),
                             timeout=10)
        assert right.status_code == 200

        ad = {**HERE, "title": "Barista", "company": "Blue Leaf"}
        admin_calls = [("PUT", "/v1/ads/a1", ad), ("DELETE", "/v1/ads/a1", None),
                       ("POST", "/v1/admin/rollup?wait=true", None),
                       ("POST", "/v1/admin/regenerate?wait=true", None),
                       ("GET", "/v1/feeds/1800000000000-u33dc0-thompson-0123456789abcdef0123",
                        None)]
        for headers in ({}, {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
                        {"Authorization": f"Basic {ADMIN_TOKEN}"},
                        {"Authorization": "Bearer"}):
            for method, path, body in admin_calls:
                r = requests.request(method, base + path, json=body, headers=headers, timeout=10)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.json()["error"]["code"] == "unauthorized"
                bodies.append(r.text)
        assert requests.get(f"{base}/v1/ads/a1", timeout=10).status_code == 404   # not created

        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        put = requests.put(f"{base}/v1/ads/a1", json=ad, headers=admin, timeout=10)
        assert put.status_code == 201
        # the events endpoint is for devices: no admin operation can ride on it
        for event in ({"event_id": "x1", "ad_id": "a1", "type": "delete"},
                      {"event_id": "x2", "ad_id": "a1", "type": "impression", "admin": True},
                      {"event_id": "x3", "ad_id": "a1", "type": "apply", "expires_at": 1},
                      {"event_id": "x4", "ad_id": "a1", "type": "rollup"}):
            r = requests.post(f"{base}/v1/events", json={"events": [event]}, headers=admin,
                              timeout=10)
            assert r.status_code == 400, (event, r.text)
            bodies.append(r.text)
        r = requests.post(f"{base}/v1/events", json={"events": [], "admin": "rollup"},
                          headers=admin, timeout=10)
        assert r.status_code == 400
        shown = requests.get(f"{base}/v1/ads/a1", timeout=10).json()
        assert shown["live"] is True and shown["title"] == "Barista"
    finally:
        flower.stop()
        web.stop()
    logs = web.log() + flower.log()
    for secret in (ADMIN_TOKEN, FLOWER_PASSWORD):
        assert secret not in logs, "a secret is in the logs"
        assert not any(secret in body for body in bodies), "a secret is in an error body"
