"""Helpers the webapp tests share: the contract's error shape, and writing ads through the API."""
from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

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
    response = client.put(f"/v1/ads/{ad_id}", headers=admin, json=ad_body(lat, lon, **extra))
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return response
