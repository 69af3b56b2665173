"""The OpenAPI document, /openapi.json and /docs.

The document is built from the models that validate requests (webapp/validation.py), the
response models below and the ``documented`` mark on each view. The errors an operation can
answer follow from what it takes (a path identifier, a query, a JSON body, the admin token)
plus the few it names itself, so the document and the code cannot drift apart:
tests/unit/webapp/test_apidoc.py checks every route is here and every error listed is one the
app answers, and a schemathesis run checks the answers against the document.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import reduce
from http import HTTPStatus
from operator import or_
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from flask import Blueprint, Flask, Response
from flask_swagger_ui import get_swaggerui_blueprint
from pydantic import BaseModel, Field, create_model

from bandit import STRATEGIES
from obs.prometheus import route_label
from store import EVIDENCE_FIELDS, STAT_FIELDS
from webapp.errors import json_response
from webapp.validation import IDENTIFIER_PATTERN, AdIn

F = TypeVar("F", bound=Callable)

OPENAPI_PATH = "/openapi.json"
URI_TOO_LONG = {"description": "URI Too Long: the request line is over the HTTP server's limit "
                               "(gunicorn's limit_request_line, 4,094 bytes by default), "
                               "answered by the server before the app sees it",
                "content": {"text/html": {"schema": {"type": "string"}}}}
DOCS_PATH = "/docs"


@dataclass(frozen=True)
class Doc:
    """What the document says of one view beyond what follows from its inputs."""

    summary: str
    tag: str
    ok: int = 200
    response: type[BaseModel] | dict[str, Any] | None = None   # a model, or a JSON schema
    media_type: str = "application/json"
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_whole: bool = True        # False: the view checks the body's items one by one
    errors: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    answers: Mapping[int, type[BaseModel]] = field(default_factory=dict)
    uses_store: bool = True
    description: str = ""


def documented(summary: str, tag: str, **kwargs: Any) -> Callable[[F], F]:
    """Marks a view with what /openapi.json says of it."""
    def mark(view: F) -> F:
        view.apidoc = Doc(summary, tag, **kwargs)  # type: ignore[attr-defined]
        return view
    return mark


def documented_errors(doc: Doc, path_params: list[str], admin: bool,
                      limited: bool = False) -> dict[int, set[str]]:
    """Every (status, code) the operation can answer with the error shape."""
    errors: dict[int, set[str]] = {}

    def add(status: int, *codes: str) -> None:
        errors.setdefault(status, set()).update(codes)

    if path_params:
        add(400, "invalid_identifier")
    if doc.query is not None:
        add(400, "repeated_parameter")
    checked = [doc.query] + ([doc.body] if doc.body_whole else [])
    for model in (m for m in checked if m is not None):
        add(400, "invalid_parameter")
        if any(f.is_required() for f in model.model_fields.values()):
            add(400, "missing_parameter")
        if model.model_config.get("extra") == "forbid":
            add(400, "unknown_field")
    if doc.body is not None:
        add(400, "invalid_json")
        add(413, "request_entity_too_large")
        add(415, "unsupported_media_type")
    if admin:
        add(401, "unauthorized", "admin_disabled")
    if limited:
        add(401, "invalid_api_key")
        add(429, "rate_limited")
    if doc.uses_store:
        add(503, "store_unavailable")
    for status, codes in doc.errors.items():
        add(status, *codes)
    return errors


# ---- response models (the shapes the views answer) --------------------------------------

Strategy = Literal[STRATEGIES]  # type: ignore[valid-type]


class FeedAd(BaseModel):
    ad_id: str
    title: str
    company: str
    position: int = Field(ge=1, description="1 for the first ad of the feed")
    distance_km: float = Field(ge=0)


class Feed(BaseModel):
    """A feed: the ads near a point in the order one strategy chose."""
    feed_id: str = Field(description="quote it in the events of this feed's ads")
    cell: str = Field(description="the geohash cell the feed was built for")
    strategy: Strategy
    propensity: float = Field(gt=0, le=1, description="the probability this strategy had")
    generated_at: float = Field(description="when the cell's feed was built (epoch seconds)")
    cache: Literal["hit", "miss"] = Field(description="hit: precomputed; miss: built now")
    ads: list[FeedAd]


class UserFeed(Feed):
    user_id: str
    location_source: Literal["given", "last_known"]


class NearbyAd(BaseModel):
    ad_id: str
    distance_km: float = Field(ge=0)


class Nearby(BaseModel):
    ads: list[NearbyAd] = Field(description="nearest first")


def _plain(annotation: Any) -> Any:
    """A type without its validators and constraints: ``Timestamp | None`` is
    ``float | None``. An answer reports values; checking them was the request's business."""
    if get_origin(annotation) is Annotated:
        return _plain(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return reduce(or_, map(_plain, get_args(annotation)))
    return annotation


def _answered(body: type[BaseModel]) -> dict[str, Any]:
    """The fields of a request model as an answer shows what was written: each one always
    present, with its plain type (for ``create_model``)."""
    return {name: (_plain(f.annotation), ...) for name, f in body.model_fields.items()}


# An ad as answered: the PUT body's fields (webapp.validation.AdIn), its id first, created_at
# filled in when the body left it out, and whether it is live; pipeline.catalogue.AdRecord.wire
# builds it.
Ad = create_model("Ad", **{
    "ad_id": (str, ...),
    **_answered(AdIn),
    "created_at": (float, ...),
    "live": (bool, Field(description="not expired now")),
})


class Stage(BaseModel):
    stage: str
    alpha: float = Field(gt=0)
    beta: float = Field(gt=0)
    prior_mean: float = Field(ge=0, le=1)


class Posterior(BaseModel):
    model: Literal["funnel", "direct"]
    mean: float = Field(ge=0, le=1, description="posterior mean of P(apply | impression)")
    stages: list[Stage]


class AdStats(BaseModel):
    ad_id: str
    counters: dict[Literal[STAT_FIELDS], int]  # type: ignore[valid-type]
    evidence: dict[Literal[EVIDENCE_FIELDS], float]  # type: ignore[valid-type]
    posterior: Posterior


class Rate(BaseModel):
    """A rate with its Wilson score interval."""
    rate: float | None = Field(ge=0, le=1, description="null when the denominator is 0 (then "
                                                        "the interval is [0, 1])")
    low: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)


class CtrCounts(BaseModel):
    impressions: int = Field(ge=0)
    views: int = Field(ge=0)
    saves: int = Field(ge=0)
    applies: int = Field(ge=0)
    view_rate: Rate = Field(description="views / impressions")
    save_rate: Rate = Field(description="saves / impressions")
    apply_rate: Rate = Field(description="applies / impressions")
    apply_per_view: Rate = Field(description="applies / views")


class CtrDay(CtrCounts):
    day: str = Field(description="UTC day of the events' own times, YYYY-MM-DD",
                     json_schema_extra={"format": "date"})
    source: Literal["redis", "archive"] | None = Field(
        description="where the day's counts came from: Redis's daily counters, or the "
                    "archived events (a day before the first one Redis holds); null: none")


class CtrReport(BaseModel):
    """Daily counts and rates, with intervals at ``level``. A rate whose numerator exceeds
    its denominator on a day (an apply after midnight, its view before) is taken as 1."""
    start: str = Field(alias="from", json_schema_extra={"format": "date"})
    end: str = Field(alias="to", json_schema_extra={"format": "date"})
    strategy: Strategy | None = Field(description="null: every feed and event")
    level: float = Field(gt=0, lt=1, description="the intervals' confidence level")
    days: list[CtrDay] = Field(description="every day from `from` to `to`, oldest first")
    totals: CtrCounts = Field(description="the whole range")


class LearntCurve(BaseModel):
    bins: list[str]
    curve: list[float] = Field(description="examination at each bin relative to position 1")
    low: list[float] = Field(description="95 % interval, lower ends")
    high: list[float] = Field(description="95 % interval, upper ends")
    comparisons: float = Field(ge=0, description="the (decayed) views it was learnt from, as "
                                                 "comparisons of an ad with itself")
    updated_at: float = Field(description="when the rollup last learnt it (epoch seconds)")


class PositionBias(BaseModel):
    """How much an impression counts for, by its position in the feed."""
    source: Literal["learnt", "setting"] = Field(
        description="learnt from the data, or POSITION_BIAS_EXPONENT")
    exponent: float | None = Field(description="POSITION_BIAS_EXPONENT, when set")
    bins: list[str] = Field(description="positions 1 to 10, then 11-20 and 21+")
    weights: list[float] = Field(description="what an impression at each bin's first "
                                             "position counts for, as the rollup weighs it")
    learnt: LearntCurve | None = Field(description="null until the first epoch is folded")


EVENT_REJECTIONS = ("missing_parameter", "invalid_parameter", "unknown_field", "invalid_ts",
                    "unknown_ad")


class Rejection(BaseModel):
    index: int = Field(ge=0, description="the event's place in the post")
    code: Literal[EVENT_REJECTIONS] = Field(  # type: ignore[valid-type]
        description="the event's fields break the schema (missing_parameter, "
                    "invalid_parameter, unknown_field); its ts is more than EVENT_MAX_AGE_S "
                    "old or in the future (invalid_ts); or the catalogue holds no ad with its "
                    "ad_id (unknown_ad: never created, or deleted, even after its impression "
                    "was served; an expired ad is still known)")
    message: str
    field: str | None


class EventsAccepted(BaseModel):
    accepted: int = Field(ge=0)
    duplicates: int = Field(ge=0, description="events whose event_id was accepted before")
    rejected: list[Rejection]
    task_id: str | None = Field(description="the ingest task; null when the broker was down "
                                            "(the rollup's sweep rolls the batch in)")


class TaskSent(BaseModel):
    task_id: str


class RollupReport(BaseModel):
    counted: int          # in the partitions this run counted (all of them when it waits)
    reclaimed: int        # stream entries (a post's events each) a dead worker left pending
    recovered_events: int
    served_feeds: int
    expired_ads: int
    credits_settled: int          # strategy credits other partitions found, applied
    position_epochs_folded: int
    partitions_sent: int          # partitions handed to tasks of their own (EVENT_PARTITIONS)
    duration_s: float
    finished_at: float


class RegenerationReport(BaseModel):
    cells: int
    written: int
    skipped: int
    ads: int
    duration_s: float
    finished_at: float
    strategy_probability: dict[Strategy, float] = Field(
        description="each strategy's overall probability of being served from now on")


class ServedFeed(BaseModel):
    """A served feed as the served log holds it."""
    feed_id: str
    served_at: float = Field(description="epoch seconds")
    cell: str
    strategy: Strategy
    propensity: float = Field(gt=0, le=1)
    variant: int = Field(ge=0, description="which of the cell's Thompson variants")
    generated_at: float = Field(description="the generation of the cell's feed it came from")
    cache: Literal["hit", "miss"]
    user_id: str | None
    ads: list[str]
    employer_moved: list[str] = Field(
        description="the ads the employer rule (MAX_PER_EMPLOYER) moved down this feed, or "
                    "left out of it, after its filters; empty when it moved none")
    frequency_moved: list[str] = Field(
        description="the ads the frequency cap (FREQ_CAP) moved below the first screen of "
                    "this user's feed, or left out of it; empty when it moved none")
    rules: dict[str, int] = Field(
        description="the feed rules' settings in force when the feed was served: "
                    "MAX_PER_EMPLOYER, FREQ_CAP, FREQ_WINDOW_S, FREQ_MAX_ADS and "
                    "REGION_PRECISION (empty for a feed logged before they were kept)")


class DashboardData(BaseModel):
    """What /dashboard draws."""
    generated_at: float
    ctr: dict[str, dict[str, list[Any]]] = Field(
        description='"all" and each strategy: days, impressions, apply_rate, view_rate')
    probabilities: dict[str, Any] = Field(description="ts, and each strategy's probabilities")
    pipeline: dict[str, Any]
    cells: list[dict[str, Any]] = Field(description="active cells: box and feeds served")
    top_ads: list[dict[str, Any]]
    position_bias: PositionBias


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether Redis and the broker answer."""
    status: Literal["ready", "unavailable"]
    checks: dict[Literal["redis", "broker"], str] = Field(description='"ok" or the error')


# ---- the document -----------------------------------------------------------------------

# the tags in the order a user needs them (Swagger UI lists them in this order)
TAGS = {
    "feeds": "What the app's backend asks for: a feed near a point, or a user's",
    "events": "What the device reports: impressions, views, saves, applies, hides",
    "ads": "The ad catalogue, and the ads near a point",
    "stats": "What the service has learnt, and the click-through rates",
    "admin": "Run the rollup or the regeneration now; a served feed's provenance",
    "dashboard": "The feed owners' page and its data",
    "meta": "Liveness, readiness and this document",
}


def openapi_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every documented view of ``app``; the limits that are
    settings (FEED_RADIUS_KM, MAX_EVENTS_PER_POST) carry this app's values."""
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        doc = getattr(app.view_functions[rule.endpoint], "apidoc", None)
        if doc is None:
            continue
        path = route_label(rule.rule)
        params = [a for a in rule.arguments]
        view = app.view_functions[rule.endpoint]
        admin = getattr(view, "requires_admin", False)
        limited = getattr(view, "rate_limit", None) is not None
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(doc, rule.endpoint, params,
                                                                    admin, schemas, limited)
    settings = app.extensions["runtime"].settings
    for operation in (op for ops in paths.values() for op in ops.values()):
        for param in operation.get("parameters", ()):
            if param["name"] == "radius_km":
                param["schema"]["maximum"] = settings.feed_radius_km
    if "EventBatch" in schemas:
        schemas["EventBatch"]["properties"]["events"]["maxItems"] = settings.max_events_per_post
    order = list(TAGS)

    def rank(item: tuple[str, dict[str, Any]]) -> int:
        tags = [op["tags"][0] for op in item[1].values()]
        return min(order.index(t) if t in order else len(order) for t in tags)

    paths = dict(sorted(paths.items(), key=rank))   # stable: by path within a tag
    used = {op["tags"][0] for ops in paths.values() for op in ops.values()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Job-ad recommender", "version": "1",
                 "description": "Feeds of job ads near a point, ranked by a bandit that learns "
                                "which ads people apply to. Errors are "
                                '{"error": {"code", "message", "field"?}}.'},
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()
                 if name in used],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer",
                                          "description": "ADMIN_TOKEN"},
                                "apiKey": {"type": "apiKey", "in": "header",
                                           "name": "X-API-Key",
                                           "description": "optional: one of API_KEYS, by "
                                                          "which the rate limits count; "
                                                          "without it, the client's address"}},
        },
    }


def _operation(doc: Doc, endpoint: str, path_params: list[str], admin: bool,
               schemas: dict[str, Any], limited: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": endpoint, "summary": doc.summary, "tags": [doc.tag]}
    if doc.description:
        op["description"] = doc.description
    parameters = [{"name": p, "in": "path", "required": True,
                   "schema": {"type": "string", "pattern": IDENTIFIER_PATTERN}}
                  for p in path_params]
    if doc.query is not None:
        parameters += _query_parameters(doc.query)
    if parameters:
        op["parameters"] = parameters
    if doc.body is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _ref(doc.body, schemas, "validation")}}}
    if admin:
        op["security"] = [{"admin": []}]
    elif limited:
        op["security"] = [{}, {"apiKey": []}]
    ok: dict[str, Any] = {"description": HTTPStatus(doc.ok).phrase}
    if isinstance(doc.response, dict):
        ok["content"] = {doc.media_type: {"schema": doc.response}}
    elif doc.response is not None:
        ok["content"] = {doc.media_type: {"schema": _ref(doc.response, schemas, "serialization")}}
    responses: dict[str, Any] = {str(doc.ok): ok}
    for status, model in doc.answers.items():
        responses[str(status)] = {"description": HTTPStatus(status).phrase, "content": {
            "application/json": {"schema": _ref(model, schemas, "serialization")}}}
    for status, codes in sorted(documented_errors(doc, path_params, admin, limited).items()):
        error = {"description": ", ".join(sorted(codes)),
                 "content": {"application/json": {"schema": _error_schema(sorted(codes))}}}
        if status in (429, 503):
            error["headers"] = {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"},
                                                "required": True}}
        responses[str(status)] = error
    responses["414"] = URI_TOO_LONG
    op["responses"] = responses
    return op


def _error_schema(codes: list[str]) -> dict[str, Any]:
    return {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"enum": codes}, "message": {"type": "string"},
                       "field": {"type": "string"}}}}}


def _ref(model: type[BaseModel], schemas: dict[str, Any],
         mode: Literal["validation", "serialization"]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        prop.pop("title", None)
        if prop.get("default", 0) is None:
            del prop["default"]
        branches = prop.pop("anyOf", None)
        if branches:                       # Optional[X]: a query parameter is absent, not null
            prop.update(next(b for b in branches if b.get("type") != "null"))
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop.pop("description")
        out.append(param)
    return out


# ---- the routes -------------------------------------------------------------------------

bp = Blueprint("apidoc", __name__)


@bp.get(OPENAPI_PATH)
@documented("This document", "meta", uses_store=False,
            response={"type": "object", "required": ["openapi", "paths"]})
def openapi_json() -> Response:
    from flask import current_app
    doc = current_app.extensions.get("openapi")
    if doc is None:
        doc = current_app.extensions["openapi"] = openapi_document(current_app)
    return json_response(doc)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(get_swaggerui_blueprint(
        DOCS_PATH, OPENAPI_PATH, config={"app_name": "Job-ad recommender API"},
        blueprint_name="docs"))
