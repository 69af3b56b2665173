"""webapp.probes: GET /healthz, the liveness probe (readiness: test_apidoc.py)."""
from __future__ import annotations


def test_healthz_is_200(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
