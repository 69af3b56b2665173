"""Bad input never gets a 500 and never reaches Redis: every malformed or out-of-range value of
the HTTP contract is a 4xx JSON error {"error": {"code", "message", "field"?}} naming the field
at fault, and the keyspace is the same after the request as before it."""
from __future__ import annotations

import base64

import orjson
import pytest

from config import load_settings
from tests.conftest import ADMIN_TOKEN
from tests.support.api import ANY_FIELD, ad_body, error_of, put_ad
from tests.unit.webapp.conftest import RecordingCelery
from webapp import create_app

HERE = {"lat": "52.52", "lon": "13.405"}
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def seeded(app, client, admin) -> None:
    """A store with an ad, a built feed, an active cell and a served feed, so that a stray
    write to an existing key would show in the keyspace too."""
    put_ad(client, admin, "seed-1", 52.52, 13.405)
    assert client.get("/v1/feed", query_string=HERE).status_code == 200
    app.extensions["runtime"].serving_log.flush()


@pytest.fixture
def unchanged(seeded, keyspace, sent):
    """Yields; then asserts the request under test wrote nothing and sent no task."""
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


@pytest.mark.parametrize("path", ["/v1/feed", "/v1/ads/nearby"])
@pytest.mark.parametrize("params, field", COMMON_BAD_QUERIES)
def test_a_bad_location_query_is_a_400_naming_the_parameter(client, unchanged, path, params,
                                                            field):
    error_of(client.get(path, query_string=params), 400, field)


@pytest.mark.parametrize("params, field", [
    pytest.param(query(limit="101"), "limit", id="limit-over-100"),
    pytest.param(query(user_id="a b"), "user_id", id="user-space"),
    pytest.param(query(user_id="a\nb"), "user_id", id="user-newline"),
    pytest.param(query(user_id="abc\n"), "user_id", id="user-trailing-newline"),
    pytest.param(query(user_id="{x}"), "user_id", id="user-braces"),
    pytest.param(query(user_id="u" * 65), "user_id", id="user-65-chars"),
    pytest.param(query(user_id="é"), "user_id", id="user-non-ascii"),
    pytest.param(query(user_id=""), "user_id", id="user-empty"),
    pytest.param(query(user_id="a/b"), "user_id", id="user-slash"),
    pytest.param(query(user_id="a*"), "user_id", id="user-glob"),
])
def test_a_bad_feed_only_parameter_is_a_400(client, unchanged, params, field):
    error_of(client.get("/v1/feed", query_string=params), 400, field)


@pytest.mark.parametrize("path, string, field", [
    ("/v1/feed", "lat=52.5&lon=13.4&lat=48.8", "lat"),
    ("/v1/ads/nearby", "lat=52.5&lon=13.4&limit=5&limit=50", "limit"),
    ("/v1/recommend/u1", "lat=52.5&lon=13.4&lon=2.3", "lon"),
    ("/v1/stats/ctr", "strategy=thompson&strategy=popular", "strategy"),
])
def test_a_repeated_query_parameter_is_a_400_naming_it(client, unchanged, path, string, field):
    assert error_of(client.get(f"{path}?{string}"), 400, field)["code"] == "repeated_parameter"


def test_an_unknown_query_parameter_is_ignored_as_documented(client):
    """A cache-buster or a tracking parameter must not break a feed (README: ignored)."""
    assert client.get("/v1/feed?lat=52.5&lon=13.4&_=1712345&utm_source=app").status_code == 200
    assert client.get("/v1/ads/nearby?lat=52.5&lon=13.4&debug=1").status_code == 200


def test_nearby_limit_over_1000_is_a_400(client, unchanged):
    error_of(client.get("/v1/ads/nearby", query_string=query(limit="1001")), 400, "limit")


def test_bounds_are_inclusive(client):
    """The edges of each range are valid: the 400s above are about the values past them."""
    for path, limit in (("/v1/feed", "100"), ("/v1/ads/nearby", "1000")):
        for lat, lon in (("90", "180"), ("-90", "-180")):
            r = client.get(path, query_string={"lat": lat, "lon": lon, "limit": limit,
                                               "radius_km": "5"})
            assert r.status_code == 200, (path, lat, lon, r.get_data(as_text=True))
    r = client.get("/v1/feed", query_string=query(limit="1", user_id="u" * 64))
    assert r.status_code == 200


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


@pytest.mark.parametrize("ad_id", BAD_AD_IDS)
@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
def test_a_bad_ad_id_is_a_400_naming_ad_id(client, admin, unchanged, method, ad_id):
    kwargs = {"headers": admin} if method != "GET" else {}
    if method == "PUT":
        kwargs["json"] = ad_body(52.52, 13.405)
    response = client.open(f"/v1/ads/{ad_id}", method=method, **kwargs)
    error_of(response, 400, "ad_id")


@pytest.mark.parametrize("ad_id", BAD_AD_IDS)
def test_a_bad_ad_id_is_a_400_for_stats_too(client, unchanged, ad_id):
    error_of(client.get(f"/v1/stats/ads/{ad_id}"), 400, "ad_id")


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


@pytest.mark.parametrize("data, content_type, status, field", BAD_AD_BODIES)
def test_a_bad_ad_body_is_a_4xx_and_writes_nothing(client, admin, unchanged, data, content_type,
                                                   status, field):
    headers = dict(admin)
    if content_type is not None:
        headers["Content-Type"] = content_type
    err = error_of(client.put("/v1/ads/new-ad", headers=headers, data=data), status,
                   ANY_FIELD if field is None else field)
    assert client.get("/v1/ads/new-ad").status_code == 404
    if status == 415:
        assert err["code"] == "unsupported_media_type"


def test_malformed_json_is_code_invalid_json(client, admin, unchanged):
    err = error_of(client.put("/v1/ads/new-ad", headers=admin, data=b"{oops",
                              content_type="application/json"), 400)
    assert err["code"] == "invalid_json"


# ---- POST /v1/events bodies -----------------------------------------------------------------

EVENT = {"event_id": "e-1", "ad_id": "seed-1", "type": "view"}


@pytest.mark.parametrize("data, content_type, status, field", [
    pytest.param(json_bytes({"events": [EVENT]}), "text/plain", 415, None, id="text-plain"),
    pytest.param(json_bytes({"events": [EVENT]}), "application/x-www-form-urlencoded", 415,
                 None, id="form"),
    pytest.param(b'{"events": [', "application/json", 400, None, id="malformed-json"),
    pytest.param(json_bytes([EVENT]), "application/json", 400, "events", id="body-is-a-list"),
    pytest.param(json_bytes("events"), "application/json", 400, "events", id="body-is-a-string"),
    pytest.param(json_bytes(None), "application/json", 400, "events", id="body-is-null"),
    pytest.param(json_bytes({}), "application/json", 400, "events", id="events-missing"),
    pytest.param(json_bytes({"events": EVENT}), "application/json", 400, "events",
                 id="events-an-object"),
    pytest.param(json_bytes({"events": "e-1"}), "application/json", 400, "events",
                 id="events-a-string"),
    pytest.param(json_bytes({"events": []}), "application/json", 400, "events",
                 id="events-empty"),
    pytest.param(b'{"events":' + DEEP + b"}", "application/json", 400, None,
                 id="deeply-nested"),
])
def test_a_bad_events_body_is_a_4xx_and_writes_nothing(client, unchanged, data, content_type,
                                                       status, field):
    response = client.post("/v1/events", data=data, headers={"Content-Type": content_type})
    error_of(response, status, ANY_FIELD if field is None else field)


def test_more_than_max_events_per_post_is_a_413_too_many_events(client, settings, unchanged):
    events = [{**EVENT, "event_id": f"e-{i}"} for i in range(settings.max_events_per_post + 1)]
    err = error_of(client.post("/v1/events", json={"events": events}), 413, "events")
    assert err["code"] == "too_many_events"


@pytest.mark.parametrize("path, method", [("/v1/events", "POST"), ("/v1/ads/big", "PUT")])
def test_a_body_over_max_content_length_is_a_413(client, admin, settings, unchanged, path,
                                                 method):
    filler = "x" * (2 * settings.max_content_length)
    body = json_bytes({"events": [{**EVENT, "padding": filler}]}) if method == "POST" \
        else json_bytes({**GOOD, "description": filler})
    assert len(body) > 2_000_000
    response = client.open(path, method=method, data=body, headers=admin,
                           content_type="application/json")
    error_of(response, 413)


# ---- admin authentication -----------------------------------------------------------------

ADMIN_CALLS = [
    pytest.param("PUT", "/v1/ads/x", id="put-ad"),
    pytest.param("DELETE", "/v1/ads/x", id="delete-ad"),
    pytest.param("POST", "/v1/admin/rollup", id="rollup"),
    pytest.param("POST", "/v1/admin/rollup?wait=true", id="rollup-wait"),
    pytest.param("POST", "/v1/admin/regenerate", id="regenerate"),
    pytest.param("POST", "/v1/admin/regenerate?wait=true", id="regenerate-wait"),
    pytest.param("GET", "/v1/feeds/1-0", id="served-feed"),
]
BASIC = base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()
BAD_AUTH = [
    pytest.param(None, id="no-header"),
    pytest.param("Bearer wrong-token-0123456789abc", id="wrong-token"),
    pytest.param(f"Bearer {ADMIN_TOKEN[:-1]}", id="token-prefix"),
    pytest.param(f"Bearer {ADMIN_TOKEN}x", id="token-plus-one"),
    pytest.param("Bearer ", id="empty-bearer"),
    pytest.param(f"Basic {BASIC}", id="basic-scheme"),
    pytest.param(f"Basic {ADMIN_TOKEN}", id="basic-scheme-raw-token"),
    pytest.param(ADMIN_TOKEN, id="token-without-scheme"),
]


@pytest.mark.parametrize("authorization", BAD_AUTH)
@pytest.mark.parametrize("method, path", ADMIN_CALLS)
def test_admin_calls_without_the_right_bearer_token_are_401(client, unchanged, method, path,
                                                            authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    kwargs = {"json": GOOD} if method == "PUT" else {}
    response = client.open(path, method=method, headers=headers, **kwargs)
    error_of(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert ADMIN_TOKEN not in response.get_data(as_text=True)
    assert ADMIN_TOKEN not in str(response.headers)


@pytest.mark.parametrize("method, path, status", [
    ("PUT", "/v1/ads/x", 201),
    ("DELETE", "/v1/ads/never-was", 404),
    ("POST", "/v1/admin/rollup", 202),
    ("POST", "/v1/admin/regenerate", 202),
    ("GET", "/v1/feeds/1-0", 404),
])
@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_the_bearer_scheme_is_case_insensitive(client, method, path, status, scheme):
    """auth.py compares ``scheme.lower()`` (RFC 9110: auth schemes are case-insensitive),
    so the right token is accepted whatever the scheme's case."""
    kwargs = {"json": GOOD} if method == "PUT" else {}
    response = client.open(path, method=method,
                           headers={"Authorization": f"{scheme} {ADMIN_TOKEN}"}, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert ADMIN_TOKEN not in response.get_data(as_text=True)


def test_with_no_admin_token_configured_every_admin_call_is_refused(fake_store):
    app = create_app(load_settings({}))
    app.extensions["runtime"].__dict__.update(store=fake_store, celery=RecordingCelery())
    client = app.test_client()
    for authorization in ("Bearer ", "Bearer None", f"Bearer {ADMIN_TOKEN}"):
        response = client.post("/v1/admin/rollup", headers={"Authorization": authorization})
        error_of(response, 401)
    assert fake_store.r.dbsize() == 0


# ---- served feeds, routes, methods -----------------------------------------------------------

@pytest.mark.parametrize("feed_id, status", [
    pytest.param("a%20b", 400, id="space"),
    pytest.param("%7B1-0%7D", 400, id="braces"),
    pytest.param("1" * 65, 400, id="65-chars"),
    pytest.param("abc", 404, id="not-a-stream-id"),
    pytest.param("1-0-0", 404, id="three-parts"),
    pytest.param("-1-0", 404, id="negative"),
])
def test_a_bad_feed_id_is_a_4xx_naming_feed_id(client, admin, unchanged, feed_id, status):
    error_of(client.get(f"/v1/feeds/{feed_id}", headers=admin), status, "feed_id")


@pytest.mark.parametrize("feed_id", [
    pytest.param("99999999999999999999999-0", id="ms-over-64-bits"),
    pytest.param("1-99999999999999999999", id="seq-over-64-bits"),
    pytest.param("18446744073709551616-0", id="ms-2-to-the-64"),
])
def test_a_stream_id_past_64_bits_is_a_404_not_a_500(client, admin, unchanged, feed_id):
    """Digits-dash-digits passes ``_is_stream_id`` but Redis cannot parse it as a stream id:
    no such feed can have been served."""
    error_of(client.get(f"/v1/feeds/{feed_id}", headers=admin), 404, "feed_id")


@pytest.mark.parametrize("path", ["/nope", "/v1", "/v1/feeds", "/v1/ads/", "/v2/feed"])
def test_an_unknown_route_is_a_404_json_error(client, unchanged, path):
    err = error_of(client.get(path), 404, None)
    assert err["code"] == "not_found"


@pytest.mark.parametrize("method, path", [
    ("POST", "/v1/feed"), ("GET", "/v1/events"), ("DELETE", "/healthz"),
    ("GET", "/v1/admin/rollup"), ("POST", "/v1/ads/x"), ("PATCH", "/v1/ads/x"),
])
def test_a_wrong_method_is_a_405_json_error(client, admin, unchanged, method, path):
    err = error_of(client.open(path, method=method, headers=admin), 405, None)
    assert err["code"] == "method_not_allowed"


def test_a_405_says_which_methods_are_allowed(client):
    """RFC 9110 section 15.5.6: a 405 response MUST carry an Allow header."""
    response = client.post("/v1/feed")
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}
    assert "GET" in allowed
