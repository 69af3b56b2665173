"""Admin calls: run the rollup or the regeneration now; a served feed's provenance."""
from __future__ import annotations

from flask import Blueprint, Response, request

from pipeline.feedid import parse_feed_id
from pipeline.regenerate import run_regenerate
from pipeline.rollup import run_rollup
from webapp.auth import require_admin
from webapp.errors import json_response
from webapp.runtime import runtime
from webapp.validation import ApiError, identifier

bp = Blueprint("admin", __name__, url_prefix="/v1")

_TRUE = {"1", "true", "yes"}
_BOOL = _TRUE | {"0", "false", "no", ""}


def _wait() -> bool:
    value = request.args.get("wait", "").lower()
    if value not in _BOOL:
        raise ApiError(400, "invalid_parameter", "wait: must be true or false", "wait")
    return value in _TRUE


@bp.post("/admin/rollup")
@require_admin
def rollup() -> Response:
    rt = runtime()
    if _wait():
        return json_response(run_rollup(rt.store, rt.settings, rt.now()))
    task = rt.celery.send_task("rollup.run", kwargs={"forced": True}, queue="rollup")
    return json_response({"task_id": task.id}, 202)


@bp.post("/admin/regenerate")
@require_admin
def regenerate() -> Response:
    rt = runtime()
    if _wait():
        return json_response(run_regenerate(rt.store, rt.settings, rt.now(), rt.rng))
    task = rt.celery.send_task("regenerate.run", kwargs={"forced": True}, queue="regen")
    return json_response({"task_id": task.id}, 202)


@bp.get("/feeds/<feed_id>")
@require_admin
def served_feed(feed_id: str) -> Response:
    feed_id = identifier(feed_id, "feed_id")
    rt = runtime()
    ref = parse_feed_id(feed_id, rt.feed_id_secret)
    entry = None
    if ref is not None:
        rt.serving_log.flush()              # this process's own recent feeds, if any
        entry = rt.store.served_feed(feed_id, ref.served_ms)
    if entry is None:
        raise ApiError(404, "not_found", f"no served feed {feed_id}", "feed_id")
    entry["ads"] = entry.get("ads", "").split()
    return json_response(entry)
