"""The bad-input battery of tests/support/bad_input.py, sent over HTTP to the real
gunicorn, plus what only a real server sees (a 10 MB body, 1,001 events). Every answer is a
4xx with the one JSON error shape, never a 500, and Redis is left exactly as it was."""
from __future__ import annotations

import re

import orjson
import pytest
import redis
import requests

from tests.conftest import ADMIN_TOKEN
from tests.support.bad_input import (
    BAD_AD_BODIES,
    BAD_AD_IDS,
    COMMON_BAD_QUERIES,
    DEEP,
    EVENT,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HERE = {"lat": "52.52", "lon": "13.405"}


def keyspace(client: redis.Redis) -> dict:
    """Every key and its value, but bookkeeping that is not anything a request sent: a
    dedupe bucket's record of its set count, which the bucket's first post decides whatever
    the post holds (store/dedupe.py), and the rate limits' token buckets, which count every
    request, bad ones too, and which a web process settles in the background every
    RATE_LIMIT_SYNC_S (store/limit_store.py), so whether they exist yet is a matter of
    timing."""
    bookkeeping = re.compile(rb"^(\{ev[.0-9]*\}:dedupe:-?[0-9]+|rate:.*)$")
    return {k: client.dump(k) for k in sorted(client.keys()) if not bookkeeping.match(k)}


def bad_requests() -> list[tuple[str, str, str, dict, bytes | None, dict]]:
    """(name, method, path, params, body, headers) for every bad request."""
    out = []
    for p in COMMON_BAD_QUERIES:
        for path in ("/v1/feed", "/v1/ads/nearby"):
            out.append((f"{path} {p.id}", "GET", path, p.values[0], None, {}))
    for p in BAD_AD_IDS:
        out.append((f"GET ad {p.id}", "GET", f"/v1/ads/{p.values[0]}", {}, None, {}))
        out.append((f"PUT ad {p.id}", "PUT", f"/v1/ads/{p.values[0]}", {},
                    orjson.dumps({**HERE, "title": "t", "company": "c"}),
                    {**ADMIN, "Content-Type": "application/json"}))
        out.append((f"stats {p.id}", "GET", f"/v1/stats/ads/{p.values[0]}", {}, None, {}))
        out.append((f"recommend {p.id}", "GET", f"/v1/recommend/{p.values[0]}", HERE, None, {}))
    for p in BAD_AD_BODIES:
        data, content_type = p.values[0], p.values[1]
        headers = {**ADMIN, **({"Content-Type": content_type} if content_type else {})}
        out.append((f"ad body {p.id}", "PUT", "/v1/ads/new-ad", {}, data, headers))
    json_headers = {"Content-Type": "application/json"}
    bodies = {
        "unknown event type": {"events": [{**EVENT, "type": "purchase"}]},
        "event id with space": {"events": [{**EVENT, "event_id": "a b"}]},
        "event id with newline": {"events": [{**EVENT, "event_id": "a\nb"}]},
        "event id with braces": {"events": [{**EVENT, "event_id": "{ev}"}]},
        "event id of 65 chars": {"events": [{**EVENT, "event_id": "e" * 65}]},
        "non-ascii ad id": {"events": [{**EVENT, "ad_id": "café"}]},
        "events for ads not in the catalogue": {"events": [
            {**EVENT, "ad_id": "ber-7"}, {**EVENT, "event_id": "e2", "ad_id": "ber-8",
                                          "type": "apply", "user_id": "u1"}]},
        "1,001 events": {"events": [{**EVENT, "event_id": f"e{i}"} for i in range(1001)]},
    }
    for name, body in bodies.items():
        out.append((name, "POST", "/v1/events", {}, orjson.dumps(body), json_headers))
    out.append(("deeply nested events", "POST", "/v1/events", {},
                b'{"events":' + DEEP + b"}", json_headers))
    out.append(("10 MB body", "POST", "/v1/events", {}, b'{"events": ["' + b"x" * (10 << 20)
                + b'"]}', json_headers))
    out.append(("10 MB ad", "PUT", "/v1/ads/big", {}, b"{" + b" " * (10 << 20) + b"}",
                {**ADMIN, "Content-Type": "application/json"}))
    out.append(("wrong content type", "POST", "/v1/events", {}, orjson.dumps({"events": [EVENT]}),
                {"Content-Type": "text/plain"}))
    return out


@pytest.mark.slow
def test_every_bad_request_is_a_json_4xx_and_writes_nothing(web: str, redis_url: str):
    client = redis.Redis.from_url(redis_url)
    requests.get(f"{web}/healthz", timeout=10)
    before = keyspace(client)
    problems = []
    cases = bad_requests()
    assert len(cases) > 120
    with requests.Session() as s:
        for name, method, path, params, body, headers in cases:
            r = s.request(method, web + path, params=params, data=body, headers=headers,
                          timeout=60)
            try:
                error = r.json()["error"]
                ok = 400 <= r.status_code < 500 and error["code"] and error["message"]
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                problems.append(f"{name}: {r.status_code} {r.text[:200]}")
    after = keyspace(client)
    client.close()
    assert problems == []
    assert after == before, sorted(set(after) ^ set(before))
