"""/openapi.json documents every route, and says the truth: every error it lists for an
operation is one a request makes the app answer (status and code), and every body answered
matches the operation's schema. (That the app answers nothing the document leaves out is what
the schemathesis run of tests/integration/test_openapi_fuzz.py checks.)"""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import pytest
from pydantic import SecretStr

from config import load_settings
from obs.prometheus import route_label
from pipeline.learning.regenerate import CellUnavailable
from tests.conftest import ADMIN_TOKEN
from tests.support.api import put_ad
from tests.unit.webapp.conftest import RecordingCelery
from webapp import create_app
from webapp.apidoc import documented_errors

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HERE = {"lat": "52.52", "lon": "13.405"}
AD = {"lat": 52.52, "lon": 13.405, "title": "Barista", "company": "Blue Leaf Ltd"}
EVENT = {"event_id": "e-1", "ad_id": "ad-1", "type": "view"}
UNDOCUMENTED = {"static", "docs.show"}   # Flask's static files, Swagger UI's own files


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None                  # JSON, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    setup: str | None = None          # store_down, no_admin_token, rebuilding, misconfigured,
    #                                   rate_limited, api_keys


def case(method: str, path: str, **kw: Any) -> Case:
    return Case(method, path, **kw)


def admin_case(method: str, path: str, **kw: Any) -> Case:
    return Case(method, path, headers={**ADMIN, **kw.pop("headers", {})}, **kw)


BIG = b'{"x": "' + b"x" * (2 << 20) + b'"}'
JSON = {"Content-Type": "application/json"}

# (operationId, status, code) -> a request answered with it
ERROR_CASES: dict[tuple[str, int, str], Case] = {
    ("feeds.feed", 400, "invalid_parameter"): case("GET", "/v1/feed", query={**HERE, "limit": "0"}),
    ("feeds.feed", 400, "missing_parameter"): case("GET", "/v1/feed", query={"lat": "52.5"}),
    ("feeds.feed", 503, "store_unavailable"):
        case("GET", "/v1/feed", query=HERE, setup="store_down"),
    ("feeds.feed", 503, "feed_rebuilding"): case("GET", "/v1/feed", query=HERE, setup="rebuilding"),
    ("feeds.feed", 400, "repeated_parameter"):
        case("GET", "/v1/feed", query={**HERE, "lat": ["52.5", "48.8"]}),
    ("feeds.recommend", 400, "repeated_parameter"):
        case("GET", "/v1/recommend/u1", query={**HERE, "limit": ["5", "6"]}),
    ("feeds.nearby", 400, "repeated_parameter"):
        case("GET", "/v1/ads/nearby", query={**HERE, "lon": ["13", "14"]}),
    ("stats.ctr", 400, "repeated_parameter"):
        case("GET", "/v1/stats/ctr", query={"strategy": ["thompson", "popular"]}),
    ("admin.rollup", 400, "repeated_parameter"):
        admin_case("POST", "/v1/admin/rollup", query={"wait": ["true", "false"]}),
    ("admin.regenerate", 400, "repeated_parameter"):
        admin_case("POST", "/v1/admin/regenerate", query={"wait": ["true", "true"]}),
    ("feeds.recommend", 400, "invalid_identifier"): case("GET", "/v1/recommend/a b"),
    ("feeds.recommend", 400, "invalid_parameter"):
        case("GET", "/v1/recommend/u1", query={"lat": "91", "lon": "0"}),
    ("feeds.recommend", 400, "missing_parameter"):
        case("GET", "/v1/recommend/u1", query={"lat": "52.5"}),
    ("feeds.recommend", 404, "location_unknown"): case("GET", "/v1/recommend/nobody"),
    ("feeds.recommend", 503, "store_unavailable"):
        case("GET", "/v1/recommend/u1", setup="store_down"),
    ("feeds.recommend", 503, "feed_rebuilding"):
        case("GET", "/v1/recommend/u1", query=HERE, setup="rebuilding"),
    ("feeds.nearby", 400, "invalid_parameter"):
        case("GET", "/v1/ads/nearby", query={**HERE, "radius_km": "-1"}),
    ("feeds.nearby", 400, "missing_parameter"): case("GET", "/v1/ads/nearby", query={"lon": "13"}),
    ("feeds.nearby", 503, "store_unavailable"):
        case("GET", "/v1/ads/nearby", query=HERE, setup="store_down"),
    ("feeds.ad_stats", 400, "invalid_identifier"): case("GET", "/v1/stats/ads/{x}"),
    ("feeds.ad_stats", 404, "not_found"): case("GET", "/v1/stats/ads/never-seen"),
    ("feeds.ad_stats", 503, "store_unavailable"):
        case("GET", "/v1/stats/ads/a1", setup="store_down"),
    ("stats.ctr", 400, "invalid_parameter"):
        case("GET", "/v1/stats/ctr", query={"from": "2027-02-30"}),
    ("stats.ctr", 503, "store_unavailable"): case("GET", "/v1/stats/ctr", setup="store_down"),
    ("stats.position_bias", 503, "store_unavailable"):
        case("GET", "/v1/stats/position-bias", setup="store_down"),
    ("events.post_events", 400, "invalid_json"):
        case("POST", "/v1/events", body=b"{", headers=JSON),
    ("events.post_events", 400, "invalid_body"): case("POST", "/v1/events", body={"event": []}),
    ("events.post_events", 400, "no_valid_events"):
        case("POST", "/v1/events", body={"events": [{"type": "x"}]}),
    ("events.post_events", 413, "too_many_events"):
        case("POST", "/v1/events", body={"events": [EVENT] * 1001}),
    ("events.post_events", 413, "request_entity_too_large"):
        case("POST", "/v1/events", body=BIG, headers=JSON),
    ("events.post_events", 415, "unsupported_media_type"):
        case("POST", "/v1/events", body=b"{}", headers={"Content-Type": "text/plain"}),
    ("events.post_events", 503, "store_unavailable"):
        case("POST", "/v1/events", body={"events": [EVENT]}, setup="store_down"),
    ("events.post_events", 503, "store_misconfigured"):
        case("POST", "/v1/events", body={"events": [EVENT]}, setup="misconfigured"),
    ("ads.put_ad", 400, "invalid_identifier"): admin_case("PUT", "/v1/ads/caf\u00e9", body=AD),
    ("ads.put_ad", 400, "invalid_json"): admin_case("PUT", "/v1/ads/a1", body=b"{,}", headers=JSON),
    ("ads.put_ad", 400, "invalid_parameter"):
        admin_case("PUT", "/v1/ads/a1", body={**AD, "lon": False}),
    ("ads.put_ad", 400, "missing_parameter"):
        admin_case("PUT", "/v1/ads/a1", body={"lat": 1, "lon": 2}),
    ("ads.put_ad", 400, "unknown_field"): admin_case("PUT", "/v1/ads/a1", body={**AD, "salary": 1}),
    ("ads.put_ad", 401, "unauthorized"): case("PUT", "/v1/ads/a1", body=AD),
    ("ads.put_ad", 401, "admin_disabled"):
        admin_case("PUT", "/v1/ads/a1", body=AD, setup="no_admin_token"),
    ("ads.put_ad", 413, "request_entity_too_large"):
        admin_case("PUT", "/v1/ads/a1", body=BIG, headers=JSON),
    ("ads.put_ad", 415, "unsupported_media_type"):
        admin_case("PUT", "/v1/ads/a1", body=b"lat=1",
                   headers={"Content-Type": "application/x-www-form-urlencoded"}),
    ("ads.put_ad", 503, "store_unavailable"):
        admin_case("PUT", "/v1/ads/a1", body=AD, setup="store_down"),
    ("ads.get_ad", 400, "invalid_identifier"): case("GET", "/v1/ads/" + "a" * 65),
    ("ads.get_ad", 404, "not_found"): case("GET", "/v1/ads/never-seen"),
    ("ads.get_ad", 503, "store_unavailable"): case("GET", "/v1/ads/a1", setup="store_down"),
    ("ads.remove_ad", 400, "invalid_identifier"): admin_case("DELETE", "/v1/ads/a,b"),
    ("ads.remove_ad", 401, "unauthorized"):
        case("DELETE", "/v1/ads/a1", headers={"Authorization": "Bearer wrong"}),
    ("ads.remove_ad", 401, "admin_disabled"):
        admin_case("DELETE", "/v1/ads/a1", setup="no_admin_token"),
    ("ads.remove_ad", 404, "not_found"): admin_case("DELETE", "/v1/ads/never-seen"),
    ("ads.remove_ad", 503, "store_unavailable"):
        admin_case("DELETE", "/v1/ads/a1", setup="store_down"),
    ("admin.rollup", 400, "invalid_parameter"):
        admin_case("POST", "/v1/admin/rollup", query={"wait": "maybe"}),
    ("admin.rollup", 401, "unauthorized"): case("POST", "/v1/admin/rollup"),
    ("admin.rollup", 401, "admin_disabled"):
        admin_case("POST", "/v1/admin/rollup", setup="no_admin_token"),
    ("admin.rollup", 503, "store_unavailable"):
        admin_case("POST", "/v1/admin/rollup", query={"wait": "true"}, setup="store_down"),
    ("admin.rollup", 503, "store_misconfigured"):
        admin_case("POST", "/v1/admin/rollup", query={"wait": "true"}, setup="misconfigured"),
    ("admin.regenerate", 400, "invalid_parameter"):
        admin_case("POST", "/v1/admin/regenerate", query={"wait": "2"}),
    ("admin.regenerate", 401, "unauthorized"):
        case("POST", "/v1/admin/regenerate", headers={"Authorization": "Basic eDp5"}),
    ("admin.regenerate", 401, "admin_disabled"):
        admin_case("POST", "/v1/admin/regenerate", setup="no_admin_token"),
    ("admin.regenerate", 503, "store_unavailable"):
        admin_case("POST", "/v1/admin/regenerate", query={"wait": "1"}, setup="store_down"),
    ("admin.served_feed", 400, "invalid_identifier"): admin_case("GET", "/v1/feeds/a%0Ab"),
    ("admin.served_feed", 401, "unauthorized"): case("GET", "/v1/feeds/f1"),
    ("admin.served_feed", 401, "admin_disabled"):
        admin_case("GET", "/v1/feeds/f1", setup="no_admin_token"),
    ("admin.served_feed", 404, "not_found"):
        admin_case("GET", "/v1/feeds/1800000000000-u33db-thompson-00000000000000000000"),
    ("admin.served_feed", 503, "store_unavailable"):
        admin_case("GET", "/v1/feeds/{served}", setup="store_down"),
}

# rate limits: a client over its limit (setup "rate_limited": a bucket of one token, taken),
# and a key this service does not know (setup "api_keys": API_KEYS set)
WRONG_KEY = {"X-API-Key": "not-a-key-of-this-service"}
for _op, _method, _path, _query, _body in (
        ("feeds.feed", "GET", "/v1/feed", HERE, None),
        ("feeds.recommend", "GET", "/v1/recommend/u1", HERE, None),
        ("feeds.nearby", "GET", "/v1/ads/nearby", HERE, None),
        ("events.post_events", "POST", "/v1/events", {}, {"events": [EVENT]})):
    ERROR_CASES[(_op, 429, "rate_limited")] = case(_method, _path, query=_query, body=_body,
                                                   setup="rate_limited")
    ERROR_CASES[(_op, 401, "invalid_api_key")] = case(_method, _path, query=_query, body=_body,
                                                      headers=WRONG_KEY, setup="api_keys")

OWNER = {"Authorization": "Basic " + base64.b64encode(b"owner:secret-pw").decode()}
ERROR_CASES.update({
    ("dashboard.page", 401, "unauthorized"): case("GET", "/dashboard", setup="dashboard"),
    ("dashboard.page", 401, "dashboard_disabled"): case("GET", "/dashboard", headers=OWNER),
    ("dashboard.data", 401, "unauthorized"):
        case("GET", "/dashboard/data", headers={"Authorization": "Basic b3duZXI6bm8="},
             setup="dashboard"),
    ("dashboard.data", 401, "dashboard_disabled"): case("GET", "/dashboard/data"),
    ("dashboard.data", 503, "store_unavailable"):
        case("GET", "/dashboard/data", headers=OWNER, setup="dashboard+store_down"),
})

# (operationId, status) -> a request answered with it, the body checked against the schema
OK_CASES: dict[tuple[str, int], Case] = {
    ("health.healthz", 200): case("GET", "/healthz"),
    ("health.readyz", 503): case("GET", "/readyz"),        # the recording broker has no connection
    ("apidoc.openapi_json", 200): case("GET", "/openapi.json"),
    ("metrics.metrics", 200): case("GET", "/metrics"),
    ("dashboard.page", 200): case("GET", "/dashboard", headers=OWNER, setup="dashboard"),
    ("dashboard.data", 200): case("GET", "/dashboard/data", headers=OWNER, setup="dashboard"),
    ("dashboard.plotly_js", 200): case("GET", "/dashboard/plotly.min.js"),
    ("feeds.feed", 200): case("GET", "/v1/feed", query={**HERE, "user_id": "u1"}),
    ("feeds.recommend", 200): case("GET", "/v1/recommend/u1"),
    ("feeds.nearby", 200): case("GET", "/v1/ads/nearby", query=HERE),
    ("feeds.ad_stats", 200): case("GET", "/v1/stats/ads/seed-1"),
    ("stats.ctr", 200):
        case("GET", "/v1/stats/ctr", query={"to": "2027-01-15", "strategy": "thompson"}),
    ("events.post_events", 202):                        # EVENT's ad is unknown
        case("POST", "/v1/events",
             body={"events": [{**EVENT, "ad_id": "seed-1"}, {"x": 1}, EVENT]}),
    ("ads.put_ad", 201): admin_case("PUT", "/v1/ads/new-1", body=AD),
    ("ads.put_ad", 200): admin_case("PUT", "/v1/ads/seed-1", body=AD),
    ("ads.get_ad", 200): case("GET", "/v1/ads/seed-1"),
    ("ads.remove_ad", 204): admin_case("DELETE", "/v1/ads/seed-1"),
    ("admin.rollup", 202): admin_case("POST", "/v1/admin/rollup"),
    ("admin.rollup", 200): admin_case("POST", "/v1/admin/rollup", query={"wait": "true"}),
    ("admin.regenerate", 202): admin_case("POST", "/v1/admin/regenerate"),
    ("admin.regenerate", 200): admin_case("POST", "/v1/admin/regenerate", query={"wait": "yes"}),
    ("admin.served_feed", 200): admin_case("GET", "/v1/feeds/{served}"),
}


@pytest.fixture
def document(app) -> dict:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def operations(document: dict) -> dict[str, tuple[str, str, dict]]:
    return {op["operationId"]: (method, path, op)
            for path, ops in document["paths"].items() for method, op in ops.items()}


def test_every_route_is_documented_with_its_methods(app, document):
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED:
            continue
        path = route_label(rule.rule)
        routes |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == documented
    assert ("GET", "/v1/feed") in documented and ("GET", "/metrics") in documented


def test_the_document_is_valid_openapi_with_resolvable_references(document):
    assert document["openapi"].startswith("3.1")
    text = str(document)
    for name in document["components"]["schemas"]:
        assert f"#/components/schemas/{name}" in text
    refs = {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}
    assert refs <= set(document["components"]["schemas"])
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_settings_limits_are_the_apps_own(app, document):
    feed = operations(document)["feeds.feed"][2]
    radius = next(p for p in feed["parameters"] if p["name"] == "radius_km")
    assert radius["schema"]["maximum"] == app.extensions["runtime"].settings.feed_radius_km
    batch = document["components"]["schemas"]["EventBatch"]["properties"]["events"]
    assert batch["maxItems"] == app.extensions["runtime"].settings.max_events_per_post


def test_the_error_cases_cover_exactly_the_documented_errors(document):
    listed = set()
    for op_id, (_, _, op) in operations(document).items():
        for status, response in op["responses"].items():
            error = response["content"]["application/json"]["schema"]["properties"].get("error") \
                if "content" in response and "error" in str(response["content"]) else None
            if error is not None:
                codes = error["properties"]["code"]["enum"]
                listed |= {(op_id, int(status), code) for code in codes}
    assert listed == set(ERROR_CASES)


def test_documented_errors_follow_from_the_inputs():
    from webapp.apidoc import Doc
    from webapp.validation import AdIn, FeedQuery
    plain = documented_errors(Doc("x", "t", uses_store=False), [], admin=False)
    assert plain == {}
    ad = documented_errors(Doc("x", "t", body=AdIn), ["ad_id"], admin=True)
    assert ad == {400: {"invalid_identifier", "invalid_parameter", "missing_parameter",
                        "unknown_field", "invalid_json"},
                  401: {"unauthorized", "admin_disabled"}, 413: {"request_entity_too_large"},
                  415: {"unsupported_media_type"}, 503: {"store_unavailable"}}
    assert documented_errors(Doc("x", "t", query=FeedQuery), [], False)[400] == \
        {"invalid_parameter", "missing_parameter", "repeated_parameter"}


def test_the_tags_come_in_the_order_a_user_needs_them(document):
    """Swagger UI lists the tags in the document's order: the feed first."""
    names = [t["name"] for t in document["tags"]]
    assert names[:3] == ["feeds", "events", "ads"] and names[-1] == "meta"
    used = [op["tags"][0] for ops in document["paths"].values() for op in ops.values()]
    assert set(used) == set(names)
    assert next(iter(document["paths"])) == "/v1/feed"
    assert [names.index(t) for t in used] == sorted(names.index(t) for t in used)


@pytest.fixture
def served_app(settings, fake_store):
    """An app whose store holds an ad, a built feed and a served feed, with its feed id."""
    def build(setup: str | None, monkeypatch) -> tuple[Any, str]:
        from pipeline.serving.feed import ServingLog
        def make(s):
            app = create_app(s)
            app.extensions["runtime"].__dict__.update(
                store=fake_store, celery=RecordingCelery(),
                serving_log=ServingLog(fake_store, s.served_maxlen, flush_s=None))
            return app, app.extensions["runtime"]

        app, rt = make(settings)
        client = app.test_client()
        put_ad(client, ADMIN, "seed-1", 52.52, 13.405)
        feed = client.get("/v1/feed", query_string={**HERE, "user_id": "u1"}).get_json()
        rt.serving_log.flush()
        if setup == "no_admin_token":
            app, rt = make(load_settings({}, admin_token=None))
        if setup and setup.startswith("dashboard"):
            guarded = {"dashboard_basic_auth": SecretStr("owner:secret-pw")}
            app, rt = make(settings.model_copy(update=guarded))
        if setup and setup.endswith("store_down"):
            fake_store.r.connection_pool.connection_kwargs["server"].connected = False
            rt.__dict__.pop("feed_cache", None)      # forget the feeds cached in memory
        if setup == "rate_limited":
            app, rt = make(settings.model_copy(update={
                "rate_limit_feeds_per_s": 0.001, "rate_limit_feeds_burst": 1,
                "rate_limit_events_per_s": 0.001, "rate_limit_events_burst": 1}))
            for buckets in rt.limiter.buckets.values():
                buckets.take("addr:127.0.0.1", time.monotonic())
        if setup == "api_keys":
            keys = {"api_keys": SecretStr("backend:a-key-of-sixteen-chars")}
            app, rt = make(settings.model_copy(update=keys))
        if setup == "misconfigured":       # a rollup recorded another EVENT_PARTITIONS
            fake_store.r.set(fake_store.k.partitions, 3)
        if setup == "rebuilding":
            def unavailable(*args, **kwargs):
                raise CellUnavailable("u33dc")
            monkeypatch.setattr("pipeline.serving.feed.build_one_cell", unavailable)
            fake_store.r.delete(*fake_store.r.keys("feed:*"))
            rt.__dict__.pop("feed_cache", None)      # forget the feeds cached in memory
        return app, feed["feed_id"]
    return build


def send(app, c: Case, served: str):
    kwargs: dict[str, Any] = {"query_string": c.query, "headers": c.headers}
    if isinstance(c.body, bytes):
        kwargs["data"] = c.body
    elif c.body is not None:
        kwargs["json"] = c.body
    return app.test_client().open(c.path.replace("{served}", served), method=c.method, **kwargs)


def response_schema(document: dict, op: dict, status: int) -> dict | None:
    content = op["responses"][str(status)].get("content")
    if content is None:
        return None
    return {**next(iter(content.values()))["schema"], "components": document["components"]}


def schema_errors(schema: dict, body: Any) -> list[str]:
    validator = jsonschema_rs.Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.instance_path))}: {e.message[:300]}"
            for e in validator.iter_errors(body)]


@pytest.mark.parametrize("key", list(ERROR_CASES), ids=lambda k: "-".join(map(str, k)))
def test_each_documented_error_is_what_the_app_answers(key, served_app, document, monkeypatch):
    op_id, status, code = key
    c = ERROR_CASES[key]
    app, served = served_app(c.setup, monkeypatch)
    method, path, op = operations(document)[op_id]
    assert c.method == method.upper()
    response = send(app, c, served)
    body = response.get_json()
    assert (response.status_code, body["error"]["code"]) == (status, code), body
    assert schema_errors(response_schema(document, op, status), body) == []
    if status in (429, 503):
        assert response.headers["Retry-After"].isdigit()


@pytest.mark.parametrize("key", list(OK_CASES), ids=lambda k: "-".join(map(str, k)))
def test_each_answer_matches_its_schema(key, served_app, document, monkeypatch):
    op_id, status = key
    c = OK_CASES[key]
    app, served = served_app(c.setup, monkeypatch)
    _, _, op = operations(document)[op_id]
    response = send(app, c, served)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    schema = response_schema(document, op, status)
    media_type = next(iter(op["responses"][str(status)].get("content", {"": 0})))
    if schema is None:
        assert response.data == b""
    elif media_type != "application/json":
        assert response.mimetype == media_type and response.get_data(as_text=True)
    else:
        assert schema_errors(schema, response.get_json()) == []


def test_docs_page_and_its_scripts_are_served_by_the_app(client):
    page = client.get("/docs/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    body_scripts = html.split("<body>")[1].split("var user_config")[0]
    assert "/openapi.json" in html and "http" not in body_scripts
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert f"/docs/{asset}" in html
        assert client.get(f"/docs/{asset}").status_code == 200
