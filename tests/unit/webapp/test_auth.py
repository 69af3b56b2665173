"""webapp.auth: an admin call needs the bearer token (the scheme in any case; the token never
echoed), and the dashboard its basic auth, closed without DASHBOARD_BASIC_AUTH except to this
machine in the local demo."""
from __future__ import annotations

import base64

import pytest

from config import load_settings
from tests.conftest import ADMIN_TOKEN
from tests.support import bad_input
from tests.support.api import app_with, error_of
from tests.support.bad_input import GOOD
from tests.unit.webapp.conftest import RecordingCelery
from webapp import create_app

unchanged = bad_input.unchanged   # the fixture: the refused request wrote nothing


# ---- admin calls ----------------------------------------------------------------------------

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


# ---- the dashboard --------------------------------------------------------------------------

def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/data"])
def test_access_needs_the_owners_password_unless_local_demo(fake_store, path):
    closed = app_with(fake_store).test_client()
    answer = closed.get(path, headers=basic("owner", "pw"))
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "dashboard_disabled"
    guarded = app_with(fake_store, dashboard_basic_auth="owner:s3cret").test_client()
    for headers in ({}, basic("owner", "wrong"), basic("other", "s3cret"),
                    {"Authorization": f"Bearer {ADMIN_TOKEN}"}):
        answer = guarded.get(path, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
        assert "s3cret" not in answer.get_data(as_text=True)
    assert guarded.get(path, headers=basic("owner", "s3cret")).status_code == 200
    demo = app_with(fake_store, local_demo=True).test_client()
    assert demo.get(path).status_code == 200
    from_afar = demo.get(path, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert from_afar.status_code == 401                # the demo opens it to this machine only
