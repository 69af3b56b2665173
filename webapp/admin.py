"""Admin calls: run the rollup or the regeneration now; a served feed's provenance."""
from __future__ import annotations

import time

from flask import Blueprint, Response, request

from pipeline.archive import Archive, find_served
from pipeline.learning.regenerate import run_regenerate
from pipeline.learning.rollup import run_rollup
from pipeline.serving.feed import parse_feed_id
from tasks.names import QUEUE, REGENERATE, ROLLUP
from webapp.apidoc import RegenerationReport, RollupReport, ServedFeed, TaskSent, documented
from webapp.auth import require_admin
from webapp.errors import json_response
from webapp.runtime import runtime
from webapp.validation import ApiError, WaitQuery, identifier, parse_query

bp = Blueprint("admin", __name__, url_prefix="/v1")

def _wait() -> bool:
    return parse_query(WaitQuery, request.args).wait


@bp.post("/admin/rollup")
@documented("Run the stats rollup now (202 with the task, or 200 with its report when wait)",
            "admin", ok=202, query=WaitQuery, response=TaskSent, answers={200: RollupReport},
            errors={503: ("store_misconfigured",)})
@require_admin
def rollup() -> Response:
    rt = runtime()
    if _wait():
        return json_response(run_rollup(rt.store, rt.settings, rt.now()))
    task = rt.celery.send_task(ROLLUP, kwargs={"forced": True}, queue=QUEUE[ROLLUP])
    return json_response({"task_id": task.id}, 202)


@bp.post("/admin/regenerate")
@documented("Rebuild the feeds now (202 with the task, or 200 with its report when wait)",
            "admin", ok=202, query=WaitQuery, response=TaskSent,
            answers={200: RegenerationReport})
@require_admin
def regenerate() -> Response:
    rt = runtime()
    if _wait():
        try:
            return json_response(run_regenerate(rt.store, rt.settings, rt.now(), rt.rng))
        finally:    # a web process keeps no copy of the catalogue: the workers do
            rt.store.drop_catalogue_copy()
    task = rt.celery.send_task(REGENERATE, kwargs={"forced": True},
                               queue=QUEUE[REGENERATE])
    return json_response({"task_id": task.id}, 202)


def archived_feed(feed_id: str, served_ms: int) -> dict[str, str] | None:
    """A served feed as the archive keeps it, spelt as the served log spells it."""
    found = find_served(Archive(runtime().settings.archive_url), feed_id, served_ms)
    if found is None:
        return None
    return {k: " ".join(v) if isinstance(v, list) else "" if v is None else str(v)
            for k, v in found.items()}


@bp.get("/feeds/<feed_id>")
@documented("A served feed's provenance", "admin", response=ServedFeed,
            errors={404: ("not_found",)})
@require_admin
def served_feed(feed_id: str) -> Response:
    feed_id = identifier(feed_id, "feed_id")
    rt = runtime()
    ref = parse_feed_id(feed_id, rt.feed_id_secret)
    entry = None
    if ref is not None:
        rt.serving_log.flush()              # this process's own recent feeds, if any
        entry = rt.store.served_feed(feed_id, ref.served_ms)
        # a feed another process served a moment ago is logged within SERVED_FLUSH_S: wait
        # that long for it (at most)
        grace_s = 2 * rt.settings.served_flush_s + 0.5
        wait_s = min(grace_s, ref.served_ms / 1000 + grace_s - rt.now())
        deadline = time.monotonic() + wait_s
        while entry is None and time.monotonic() < deadline:
            time.sleep(min(0.05, rt.settings.served_flush_s))
            entry = rt.store.served_feed(feed_id, ref.served_ms)
    if entry is None and ref is not None:    # trimmed from Redis: the archive has it
        entry = archived_feed(feed_id, ref.served_ms)
    if entry is None:
        raise ApiError(404, "not_found", f"no served feed {feed_id}", "feed_id")
    return json_response({
        "feed_id": feed_id, "served_at": float(entry["ts"]), "cell": entry["cell"],
        "strategy": entry["strategy"], "propensity": float(entry["propensity"]),
        "variant": int(entry["variant"]), "generated_at": float(entry["generated_at"]),
        "cache": entry["cache"], "user_id": entry.get("user_id") or None,
        "ads": entry.get("ads", "").split(),
        "employer_moved": (entry.get("employer_moved") or "").split(),
        "frequency_moved": (entry.get("frequency_moved") or "").split(),
        "rules": rules_of(entry.get("rules"))})


def rules_of(text: str | None) -> dict[str, int]:
    """The feed rules a served entry names ("NAME=value ..."); empty for an entry logged
    before they were kept.

    >>> rules_of("MAX_PER_EMPLOYER=2 FREQ_CAP=3")
    {'MAX_PER_EMPLOYER': 2, 'FREQ_CAP': 3}
    """
    pairs = (item.partition("=") for item in (text or "").split())
    return {name: int(value) for name, _, value in pairs if value.lstrip("-").isdigit()}
