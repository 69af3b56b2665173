"""POST /v1/events: validate a batch, keep it durably, send one ingest task."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, g, request
from kombu.exceptions import OperationalError
from pydantic import TypeAdapter, ValidationError

from obs.prometheus import observe_events
from pipeline.learning.ingest import Batch, accept_batch
from tasks.names import INGEST, QUEUE
from webapp.apidoc import EventsAccepted, documented
from webapp.errors import json_response
from webapp.ratelimit import limited
from webapp.runtime import runtime
from webapp.validation import ApiError, EventBatch, EventIn, first_error, json_body

bp = Blueprint("events", __name__, url_prefix="/v1")
log = logging.getLogger(__name__)

FUTURE_SLACK_S = 300
EVENTS = TypeAdapter(list[EventIn])
EVENT = TypeAdapter(EventIn)


@bp.post("/events")
@documented("Report what happened to ads: impressions, views, saves, applies, hides",
            "events", ok=202, body=EventBatch, body_whole=False, response=EventsAccepted,
            errors={400: ("invalid_body", "no_valid_events"), 413: ("too_many_events",),
                    503: ("store_misconfigured",)})
@limited("events")
def post_events() -> Response:
    rt = runtime()
    s = rt.settings
    body = json_body(request.content_type, request.get_data(cache=False))
    raw = body.get("events") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise ApiError(400, "invalid_body", 'the body must be {"events": [...]}', "events")
    if len(raw) > s.max_events_per_post:
        raise ApiError(413, "too_many_events",
                       f"at most {s.max_events_per_post} events per post", "events")
    now = rt.now()
    index, batch, rejected = validate_events(raw, now, s.event_max_age_s)
    observe_events((_type_of(raw[r["index"]]), "rejected") for r in rejected)
    if not index:
        raise ApiError(400, "no_valid_events", "no event in the body is usable", "events",
                       {"rejected": rejected})
    result = accept_batch(rt.store, s, batch, now)
    observe_events((kind, "rejected" if outcome == "unknown_ad" else outcome)
                   for kind, outcome in zip(batch.type, result.outcomes, strict=True))
    if result.unknown:
        rejected = sorted(rejected + [unknown_ad(i, ad) for i, ad, outcome
                                      in zip(index, batch.ad_id, result.outcomes, strict=True)
                                      if outcome == "unknown_ad"],
                          key=lambda r: r["index"])
    if result.accepted + result.duplicates == 0:
        raise ApiError(400, "no_valid_events", "no event in the body is usable", "events",
                       {"rejected": rejected})
    task_id = None
    if result.batch_id is not None:
        task_id = publish_ingest(result.batch_id)
    return json_response({"accepted": result.accepted, "duplicates": result.duplicates,
                          "rejected": rejected, "task_id": task_id}, 202)


def unknown_ad(index: int, ad_id: str) -> dict:
    return {"index": index, "code": "unknown_ad", "field": "ad_id",
            "message": f"ad_id: no ad {ad_id} in the catalogue"}


def _type_of(item: object) -> str:
    event_type = item.get("type") if isinstance(item, dict) else None
    return event_type if isinstance(event_type, str) else "invalid"


def validate_events(raw: list, now: float,
                    max_age_s: int) -> tuple[list[int], Batch, list[dict]]:
    """The valid events as columns with each one's index in the post, and a rejection for
    each other."""
    rejected: list[dict] = []
    try:                       # the whole post in one call; item by item only if it fails
        events: list[EventIn] = EVENTS.validate_python(raw, strict=True)
        index = list(range(len(events)))
    except ValidationError:
        each = [one_event(i, item, rejected) for i, item in enumerate(raw)]
        index = [i for i, e in enumerate(each) if e is not None]
        events = [e for e in each if e is not None]
    ts: list[float] = [now if (t := e.get("ts")) is None else t for e in events]
    oldest, newest = now - max_age_s, now + FUTURE_SLACK_S
    if not all(oldest <= t <= newest for t in ts):
        late = [j for j, t in enumerate(ts) if not oldest <= t <= newest]
        rejected += [{"index": index[j], "code": "invalid_ts", "field": "ts",
                      "message": "ts: more than EVENT_MAX_AGE_S old or in the future"}
                     for j in late]
        keep = sorted(set(range(len(ts))) - set(late))
        index, events, ts = [index[j] for j in keep], [events[j] for j in keep], \
            [ts[j] for j in keep]
    batch = Batch([e["event_id"] for e in events], [e["ad_id"] for e in events],
                  [e["type"] for e in events], ts, [e.get("user_id") for e in events],
                  [e.get("feed_id") for e in events], [e.get("position") for e in events])
    rejected.sort(key=lambda r: r["index"])
    return index, batch, rejected


def one_event(index: int, item: object, rejected: list[dict]) -> EventIn | None:
    """The event, or None with its rejection (its first problem) added to ``rejected``."""
    try:
        return EVENT.validate_python(item, strict=True)
    except ValidationError as exc:
        code, message, field = first_error(exc)
        rejected.append({"index": index, "code": code, "message": message, "field": field})
        return None


def publish_ingest(batch_id: str) -> str | None:
    """Send the ingest task. The batch is already safe in the inbox: if the broker is down,
    the rollup's sweep rolls it in, so the post still succeeds."""
    try:
        result = runtime().celery.send_task(INGEST, args=[batch_id], queue=QUEUE[INGEST])
    except OperationalError as exc:
        log.warning("broker unavailable; batch %s left for the inbox sweep: %s", batch_id, exc)
        return None
    g.task_id = result.id
    return result.id
