"""webapp.errors: what Flask itself refuses (an unknown route, a wrong method, a body over
MAX_CONTENT_LENGTH) gets the one JSON error shape too, and writes nothing."""
from __future__ import annotations

import pytest

from tests.support import bad_input
from tests.support.api import error_of
from tests.support.bad_input import EVENT, GOOD, json_bytes

unchanged = bad_input.unchanged   # the fixture: the refused request wrote nothing


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
