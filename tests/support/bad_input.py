"""The bad-input battery: malformed and out-of-range values of the HTTP contract, which the
webapp unit tests send through the test client and tests/integration/test_bad_input_http.py
over HTTP; and ``unchanged``, the fixture that checks a refused request wrote nothing and sent
no task (a test module binds it by name: ``unchanged = bad_input.unchanged``)."""
from __future__ import annotations

import orjson
import pytest

from tests.support.api import ad_body, put_ad

HERE = {"lat": "52.52", "lon": "13.405"}
DEEP = b"[" * 100_000 + b"]" * 100_000


def seed(app, client, admin) -> None:
    """A store with an ad, a built feed, an active cell and a served feed, so that a stray
    write to an existing key would show in the keyspace too."""
    put_ad(client, admin, "seed-1", 52.52, 13.405)
    assert client.get("/v1/feed", query_string=HERE).status_code == 200
    app.extensions["runtime"].serving_log.flush()


@pytest.fixture
def unchanged(app, client, admin, keyspace, sent):
    """Seeds the store (``seed``) and yields; then asserts the request under test wrote
    nothing and sent no task."""
    seed(app, client, admin)
    before = keyspace()
    tasks_before = len(sent)
    yield
    assert keyspace() == before
    assert len(sent) == tasks_before


def query(**overrides: str | None) -> dict[str, str]:
    """HERE with some parameters replaced (None: left out)."""
    q = {**HERE, **overrides}
    return {k: v for k, v in q.items() if v is not None}


# ---- GET /v1/feed and GET /v1/ads/nearby ----------------------------------------------

COMMON_BAD_QUERIES = [
    pytest.param(query(lat=None), "lat", id="lat-missing"),
    pytest.param(query(lon=None), "lon", id="lon-missing"),
    pytest.param(query(lat="north"), "lat", id="lat-not-a-number"),
    pytest.param(query(lon="13,4"), "lon", id="lon-decimal-comma"),
    pytest.param(query(lat=""), "lat", id="lat-empty"),
    pytest.param(query(lat="NaN"), "lat", id="lat-nan"),
    pytest.param(query(lon="nan"), "lon", id="lon-nan"),
    pytest.param(query(lat="inf"), "lat", id="lat-inf"),
    pytest.param(query(lon="-inf"), "lon", id="lon-minus-inf"),
    pytest.param(query(lat="Infinity"), "lat", id="lat-Infinity"),
    pytest.param(query(lat="1e999"), "lat", id="lat-1e999"),
    pytest.param(query(lon="-1e999"), "lon", id="lon-minus-1e999"),
    pytest.param(query(lat="90.0001"), "lat", id="lat-over-90"),
    pytest.param(query(lat="-90.0001"), "lat", id="lat-under-minus-90"),
    pytest.param(query(lon="-180.5"), "lon", id="lon-under-minus-180"),
    pytest.param(query(lon="180.0001"), "lon", id="lon-over-180"),
    pytest.param(query(limit="0"), "limit", id="limit-0"),
    pytest.param(query(limit="-1"), "limit", id="limit-negative"),
    pytest.param(query(limit="x"), "limit", id="limit-not-a-number"),
    pytest.param(query(limit="1.5"), "limit", id="limit-fraction"),
    pytest.param(query(radius_km="0"), "radius_km", id="radius-0"),
    pytest.param(query(radius_km="-1"), "radius_km", id="radius-negative"),
    pytest.param(query(radius_km="5.01"), "radius_km", id="radius-over-feed-radius"),
    pytest.param(query(radius_km="51"), "radius_km", id="radius-far-over"),
    pytest.param(query(radius_km="nan"), "radius_km", id="radius-nan"),
    pytest.param(query(radius_km="inf"), "radius_km", id="radius-inf"),
    pytest.param(query(radius_km="five"), "radius_km", id="radius-not-a-number"),
]


# ---- /v1/ads/<ad_id> ----------------------------------------------------------------------

BAD_AD_IDS = [
    pytest.param("a%20b", id="space"),
    pytest.param("a%0Ab", id="newline"),
    pytest.param("abc%0A", id="trailing-newline"),
    pytest.param("%7Bx%7D", id="braces"),
    pytest.param("a" * 65, id="65-chars"),
    pytest.param("%C3%A9", id="non-ascii"),
    pytest.param("a%2A", id="glob-star"),
]


# ---- PUT /v1/ads/<ad_id> bodies -------------------------------------------------------------

def json_bytes(obj) -> bytes:
    return orjson.dumps(obj)


GOOD = ad_body(52.52, 13.405)
BAD_AD_BODIES = [
    pytest.param(json_bytes(GOOD), "text/plain", 415, None, id="text-plain"),
    pytest.param(json_bytes(GOOD), None, 415, None, id="no-content-type"),
    pytest.param(b'{"lat": 52.5,', "application/json", 400, None, id="malformed-json"),
    pytest.param(b"", "application/json", 400, None, id="empty-body"),
    pytest.param(b"\xff\xfe{}", "application/json", 400, None, id="not-utf8"),
    pytest.param(b'{"lat": NaN, "lon": 1, "title": "t", "company": "c"}', "application/json",
                 400, None, id="bare-NaN-literal"),
    pytest.param(json_bytes([GOOD]), "application/json", 400, None, id="array-not-object"),
    pytest.param(json_bytes("ad"), "application/json", 400, None, id="string-not-object"),
    pytest.param(json_bytes({k: v for k, v in GOOD.items() if k != "title"}),
                 "application/json", 400, "title", id="title-missing"),
    pytest.param(json_bytes({**GOOD, "title": ""}), "application/json", 400, "title",
                 id="title-empty"),
    pytest.param(json_bytes({**GOOD, "title": "   "}), "application/json", 400, "title",
                 id="title-blank"),
    pytest.param(json_bytes({**GOOD, "title": "t" * 201}), "application/json", 400, "title",
                 id="title-201-chars"),
    pytest.param(json_bytes({**GOOD, "title": 7}), "application/json", 400, "title",
                 id="title-not-a-string"),
    pytest.param(json_bytes({k: v for k, v in GOOD.items() if k != "company"}),
                 "application/json", 400, "company", id="company-missing"),
    pytest.param(json_bytes({**GOOD, "lat": "NaN"}), "application/json", 400, "lat",
                 id="lat-NaN-string"),
    pytest.param(json_bytes({**GOOD, "lat": "Infinity"}), "application/json", 400, "lat",
                 id="lat-Infinity-string"),
    pytest.param(json_bytes({**GOOD, "lat": 90.0001}), "application/json", 400, "lat",
                 id="lat-over-90"),
    pytest.param(json_bytes({**GOOD, "lon": -180.5}), "application/json", 400, "lon",
                 id="lon-under-minus-180"),
    pytest.param(json_bytes({**GOOD, "lat": None}), "application/json", 400, "lat",
                 id="lat-null"),
    pytest.param(b'{"lat": 1e999, "lon": 1, "title": "t", "company": "c"}', "application/json",
                 400, None, id="lat-1e999"),
    pytest.param(json_bytes({**GOOD, "colour": "blue"}), "application/json", 400, "colour",
                 id="unknown-field"),
    pytest.param(json_bytes({**GOOD, "ad_id": "other"}), "application/json", 400, "ad_id",
                 id="ad_id-in-body"),
    pytest.param(json_bytes({**GOOD, "description": "d" * 5001}), "application/json", 400,
                 "description", id="description-too-long"),
    pytest.param(json_bytes({**GOOD, "created_at": 1_800_000_000, "expires_at": 1_700_000_000}),
                 "application/json", 400, "expires_at", id="expires-before-created"),
    pytest.param(json_bytes({**GOOD, "created_at": 1_800_000_000, "expires_at": 1_800_000_000}),
                 "application/json", 400, "expires_at", id="expires-equals-created"),
    pytest.param(json_bytes({**GOOD, "expires_at": "2030-01-01T00:00:00"}), "application/json",
                 400, "expires_at", id="expires-iso-without-zone"),
    pytest.param(json_bytes({**GOOD, "expires_at": "next week"}), "application/json", 400,
                 "expires_at", id="expires-not-a-time"),
    pytest.param(json_bytes({**GOOD, "created_at": -1}), "application/json", 400,
                 "created_at", id="created-negative"),
    pytest.param(json_bytes({**GOOD, "created_at": True}), "application/json", 400,
                 "created_at", id="created-boolean"),
    pytest.param(DEEP, "application/json", 400, None, id="deeply-nested"),
]


# ---- POST /v1/events bodies -----------------------------------------------------------------

EVENT = {"event_id": "e-1", "ad_id": "seed-1", "type": "view"}
