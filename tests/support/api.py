"""Helpers the webapp tests share: the contract's error shape, writing ads through the API,
and an app of a test's own settings."""
from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from config import load_settings
from store import Store
from tests.conftest import ADMIN_TOKEN
from tests.unit.webapp.conftest import RecordingCelery
from webapp import create_app

ANY_FIELD = object()


def error_of(response: TestResponse, status: int, field: Any = ANY_FIELD) -> dict:
    """The ``error`` object of a JSON error response, after checking the status and the
    shape {"error": {"code", "message", "field"?}}. ``field=None`` asserts there is none."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, (response.status_code, text[:500])
    assert response.mimetype == "application/json", text[:500]
    err = response.get_json()["error"]
    assert isinstance(err["code"], str) and err["code"], err
    assert isinstance(err["message"], str) and err["message"], err
    if field is None:
        assert "field" not in err, err
    elif field is not ANY_FIELD:
        assert err.get("field") == field, err
    return err


def ad_body(lat: float, lon: float, **extra: Any) -> dict:
    return {"lat": lat, "lon": lon, "title": "Barista", "company": "Blue Leaf Ltd", **extra}


def put_ad(client: FlaskClient, admin: dict[str, str], ad_id: str, lat: float, lon: float,
           **extra: Any) -> TestResponse:
    """PUT an ad; its company is its own (``Blue Leaf {ad_id}``: the employer rule holds
    none back) unless ``extra`` names one."""
    body = ad_body(lat, lon, **{"company": f"Blue Leaf {ad_id}", **extra})
    response = client.put(f"/v1/ads/{ad_id}", headers=admin, json=body)
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return response


def app_with(fake_store: Store, **settings: Any) -> Flask:
    """An app on the fake store with the admin token and these settings."""
    app = create_app(load_settings({}, admin_token=ADMIN_TOKEN, **settings))
    app.extensions["runtime"].__dict__.update(store=fake_store, celery=RecordingCelery())
    return app
