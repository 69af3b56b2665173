"""webapp.validation at the edge: every malformed or out-of-range value of the HTTP contract is
a 4xx JSON error {"error": {"code", "message", "field"?}} naming the field at fault, never a
500, and the keyspace is the same after the request as before it."""
from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from tests.support import bad_input
from tests.support.api import ANY_FIELD, ad_body, error_of
from tests.support.bad_input import (
    BAD_AD_BODIES,
    BAD_AD_IDS,
    COMMON_BAD_QUERIES,
    DEEP,
    EVENT,
    json_bytes,
    query,
)
from webapp.validation import ApiError, FeedQuery, _plain_feed_query, feed_query, parse_query

unchanged = bad_input.unchanged   # the fixture: the refused request wrote nothing


# ---- GET /v1/feed and GET /v1/ads/nearby ----------------------------------------------------

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


# ---- /v1/ads/<ad_id> ------------------------------------------------------------------------

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


# ---- feed_query: the feed's query read in plain Python where it is plain, by the FeedQuery
# model otherwise. On any query, generated from plain values, near misses and garbage, it
# gives what the model gives: the same values, or the same error.

NUMBERS = st.one_of(
    st.floats(-200, 200, allow_nan=False).map(lambda v: f"{v:.6f}"),
    st.floats(-200, 200, allow_nan=False).map(repr),
    st.integers(-300, 300).map(str),
    st.sampled_from(["", " ", "1e1", "5E-1", "inf", "-inf", "nan", "1_0", " 52.5", "52.5 ",
                     "52.5\n", "+52.5", "0x10", "٥٢", "52,5", ".5", "5.", "-0", "-0.0",
                     "90.000000000001", "-90", "180", "180.0000001", "0.0000000000001",
                     "50", "50.0", "50.000000000001", "100", "101", "0", "007", "1.0"]),
    st.text(max_size=6))
IDS = st.one_of(st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z"), st.text(max_size=70),
                st.sampled_from(["u1\n", "a" * 64, "a" * 65, "ü", "user 1"]))
KEYS = st.sampled_from(["lat", "lon", "limit", "radius_km", "user_id", "_", "LAT"])


def outcome(fn, args):
    try:
        read = fn(args)
    except ApiError as err:
        return (err.status, err.code, err.message, err.field)
    return read._asdict() if isinstance(read, tuple) else read.model_dump()


PLAIN = {"lat": "52.520000", "lon": "13.405000", "limit": "20", "radius_km": "2.5",
         "user_id": "u-42"}


@st.composite
def near_plain_queries(draw):
    """A plain query, some parameters left out, one or two given another value (a number,
    an identifier or garbage), sometimes one given twice or an unknown one added."""
    query = {k: v for k, v in PLAIN.items() if k in ("lat", "lon") or draw(st.booleans())}
    for key in draw(st.lists(st.sampled_from(list(PLAIN)), max_size=2)):
        query[key] = draw(NUMBERS if key != "user_id" else IDS)
    pairs = list(query.items())
    if draw(st.integers(0, 9)) == 0:
        pairs.append(draw(st.sampled_from(pairs)) if pairs else ("lat", "1"))
    if draw(st.booleans()):
        pairs.append((draw(KEYS), draw(NUMBERS)))
    return pairs


def agree(pairs):
    args = MultiDict(pairs)
    assert outcome(feed_query, args) == outcome(lambda a: parse_query(FeedQuery, a), args)


@given(near_plain_queries())
@example([("lat", "52.5"), ("lon", "13.4"), ("limit", "100")])
@example([("lat", "52.5"), ("lon", "13.4"), ("limit", "101")])
@example([("lat", "52.5"), ("lon", "13.4"), ("radius_km", "50.000000000001")])
@example([("lat", "52.5"), ("lon", "13.4"), ("lat", "52.5")])
@example([("lat", "52.5"), ("lon", "13.4"), ("user_id", "u1\n")])
@settings(max_examples=1500, deadline=None)
def test_the_plain_reading_answers_what_the_model_answers(pairs):
    agree(pairs)


@given(st.lists(st.tuples(KEYS, st.one_of(NUMBERS, IDS)), max_size=7))
@settings(max_examples=500, deadline=None)
def test_any_query_is_answered_as_the_model_answers_it(pairs):
    agree(pairs)


def test_the_common_queries_are_read_without_the_model():
    for pairs in ([("lat", "52.520000"), ("lon", "13.405000")],
                  [("lat", "-33.9"), ("lon", "151.2"), ("limit", "100"), ("radius_km", "2.5"),
                   ("user_id", "u-42"), ("_", "1712345678")]):
        plain = _plain_feed_query(MultiDict(pairs))
        assert plain is not None
        assert plain._asdict() == parse_query(FeedQuery, MultiDict(pairs)).model_dump()
    assert _plain_feed_query(MultiDict([("lat", "1e1"), ("lon", "2")])) is None   # the model's
