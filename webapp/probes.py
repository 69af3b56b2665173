"""Liveness and readiness."""
from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response

from webapp.apidoc import Health, Readiness, documented
from webapp.errors import json_response
from webapp.runtime import runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@documented("Liveness: the process answers", "meta", response=Health, uses_store=False)
def healthz() -> Response:
    return json_response({"status": "ok"})


@bp.get("/readyz")
@documented("Readiness: Redis and the broker answer", "meta", response=Readiness,
            answers={503: Readiness}, uses_store=False)
def readyz() -> Response:
    rt = runtime()
    checks = {"redis": _check(rt.store.ping), "broker": _check(_broker_ping)}
    ready = all(v == "ok" for v in checks.values())
    return json_response({"status": "ready" if ready else "unavailable", "checks": checks},
                         200 if ready else 503)


def _broker_ping() -> bool:
    with runtime().celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return True


def _check(fn: Callable[[], object]) -> str:
    try:
        fn()
    except Exception as exc:  # readiness reports any failure instead of raising it
        return f"error: {type(exc).__name__}"
    return "ok"
