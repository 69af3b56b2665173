"""Validation at the edge: raw request values in, typed values or one ApiError out."""
from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple, NotRequired

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    with_config,
)
from typing_extensions import TypedDict

from bandit import STRATEGIES
from pipeline.catalogue import DEFAULT_CATEGORY
from pipeline.reports.ctr import DEFAULT_DAYS, MAX_DAYS
from store import GEO_LAT_LIMIT

IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN, strict=True)]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False)]
# Redis's geo index holds latitudes up to +-85.05112878 (Web Mercator), so ads must be there.
AdLatitude = Annotated[float, Field(ge=-GEO_LAT_LIMIT, le=GEO_LAT_LIMIT, allow_inf_nan=False)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ApiError(Exception):
    """An error answered as {"error": {"code", "message", "field"?}} with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 extra: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.extra = extra or {}
        self.headers = headers

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        return {"error": err, **self.extra}


MAX_EPOCH_S = 253402300799  # 9999-12-31T23:59:59Z


def epoch_seconds(value: Any) -> Any:
    """Epoch seconds (number or numeric string) or ISO 8601 with a zone -> float seconds."""
    if isinstance(value, bool):
        raise ValueError("a time must be epoch seconds or ISO 8601 with a zone")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("a time must be epoch seconds or ISO 8601 with a zone") from None
            if parsed.tzinfo is None:
                raise ValueError("an ISO 8601 time needs a zone (Z or +hh:mm)") from None
            seconds = parsed.timestamp()
    else:
        raise ValueError("a time must be epoch seconds or ISO 8601 with a zone")
    if not math.isfinite(seconds) or not 0 <= seconds < MAX_EPOCH_S:
        raise ValueError("time out of range")
    return seconds


Timestamp = Annotated[float, BeforeValidator(epoch_seconds), WithJsonSchema({
    "anyOf": [{"type": "number", "minimum": 0, "exclusiveMaximum": MAX_EPOCH_S},
              {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]+)?$"},
              {"type": "string", "format": "date-time"}],
    "description": "epoch seconds (a number, or a string of one), or ISO 8601 with a zone"})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


RADIUS_DOC = "at most FEED_RADIUS_KM (5 by default), which is also the default"


class FeedQuery(_Strict):
    """GET /v1/feed."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    lat: Latitude
    lon: Longitude
    limit: int = Field(20, ge=1, le=100, description="how many ads")
    radius_km: float | None = Field(None, gt=0, le=50.0, allow_inf_nan=False,
                                    description=RADIUS_DOC)
    user_id: Identifier | None = Field(None, description="leaves out the ads this user applied "
                                                         "to or hid, and keeps their location")


class RecommendQuery(_Strict):
    """GET /v1/recommend/{user_id}: the location is optional (the user's last known one)."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    lat: Latitude | None = Field(None, description="with lon; else the last known location")
    lon: Longitude | None = Field(None, description="with lat")
    limit: int = Field(20, ge=1, le=100, description="how many ads")
    radius_km: float | None = Field(None, gt=0, le=50.0, allow_inf_nan=False,
                                    description=RADIUS_DOC)


class NearbyQuery(_Strict):
    """GET /v1/ads/nearby."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    lat: Latitude
    lon: Longitude
    radius_km: float | None = Field(None, gt=0, le=50.0, allow_inf_nan=False,
                                    description=RADIUS_DOC)
    limit: int = Field(100, ge=1, le=1000, description="how many ads")


class WaitQuery(_Strict):
    """POST /v1/admin/rollup and /v1/admin/regenerate."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    wait: bool = Field(False, description="run here and answer with the report, instead of "
                                          "sending the task")


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
FIRST_DAY = date(1970, 1, 1)


def iso_day(value: Any) -> Any:
    """Only YYYY-MM-DD is a day here (pydantic alone also takes epoch seconds and times)."""
    if isinstance(value, str) and not _ISO_DAY.fullmatch(value):
        raise ValueError("a day must be YYYY-MM-DD")
    return value


def since_epoch(day: date) -> date:
    if day < FIRST_DAY:
        raise ValueError(f"a day must be {FIRST_DAY.isoformat()} or later")
    return day


Day = Annotated[date, BeforeValidator(iso_day), AfterValidator(since_epoch)]


class CtrQuery(_Strict):
    """GET /v1/stats/ctr."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    start: Day | None = Field(None, alias="from",
                              description=f"first UTC day, YYYY-MM-DD (1970-01-01 or later); "
                                          f"default: to minus {DEFAULT_DAYS - 1} days")
    end: Day | None = Field(None, alias="to",
                            description=f"last UTC day, YYYY-MM-DD; default: today. The range "
                                        f"spans at most {MAX_DAYS} days, both ends included")
    strategy: Literal[STRATEGIES] | None = Field(  # type: ignore[valid-type]
        None, description="only the events naming a feed this strategy served; default: all")

    def span(self, today: date) -> tuple[date, date]:
        """The first and last day, with the defaults filled in, or a 400 ApiError."""
        end = self.end or today
        start = self.start or max(FIRST_DAY, end - timedelta(days=DEFAULT_DAYS - 1))
        if start > end:
            raise ApiError(400, "invalid_parameter",
                           f"from: must not be after to ({end.isoformat()})", "from")
        days = (end - start).days + 1
        if days > MAX_DAYS:
            raise ApiError(400, "invalid_parameter",
                           f"from: the range may span at most {MAX_DAYS} days, not {days}",
                           "from")
        return start, end


# The wire shape of an ad: AdLine adds the import line's ad_id, webapp.apidoc.Ad (what the API
# answers) is derived from it, and pipeline.catalogue.AdRecord converts it. (The docstring is
# the schema's description in /openapi.json.)
class AdIn(_Strict):
    """An ad as PUT or imported. ``ad_id`` comes from the path or the import line."""
    lat: AdLatitude
    lon: Longitude
    title: Text
    company: Text
    category: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                               max_length=100)] = DEFAULT_CATEGORY
    description: Annotated[str, StringConstraints(max_length=5000)] = ""
    created_at: Timestamp | None = None
    expires_at: Timestamp | None = None


class AdLine(AdIn):
    ad_id: Identifier


@with_config(ConfigDict(extra="forbid"))
class EventIn(TypedDict):
    """What happened to one ad on a user's device. (A dict, not a model: a post holds
    hundreds, and validating into dicts costs a third of building models.)"""
    event_id: Annotated[Identifier, Field(description="unique per event: a repeat is a "
                                                      "duplicate")]
    ad_id: Identifier
    type: Literal["impression", "view", "save", "apply", "hide"]
    user_id: NotRequired[Identifier | None]
    feed_id: NotRequired[Annotated[Identifier | None,
                                   Field(description="the feed the ad was shown in")]]
    position: NotRequired[Annotated[int | None, Field(ge=1, le=1000, description="the ad's "
                                                      "place in that feed")]]
    ts: NotRequired[Annotated[Timestamp | None,
                              Field(description="when it happened; now if absent")]]


class EventBatch(BaseModel):
    """POST /v1/events. Each event is checked on its own: the invalid ones are rejected and
    listed, the rest kept. At most MAX_EVENTS_PER_POST (1,000 by default) events."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    events: list[EventIn] = Field(min_length=1)


def first_error(exc: ValidationError) -> tuple[str, str, str | None]:
    """(code, message, field) for the first problem pydantic found."""
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    code = "missing_parameter" if err["type"] == "missing" else "invalid_parameter"
    if err["type"] == "extra_forbidden":
        code = "unknown_field"
    message = err["msg"] if field is None else f"{field}: {err['msg']}"
    return code, message, field


def parse(model: type[BaseModel], data: Any, strict: bool = False) -> Any:
    """``model`` validated from ``data``, or a 400 ApiError naming the offending field.
    ``strict`` for JSON bodies: a number must be a number there (not a string, not false)."""
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        code, message, field = first_error(exc)
        raise ApiError(400, code, message, field) from None


def parse_query(model: type[BaseModel], args: Any) -> Any:
    """``model`` from a query string (a werkzeug MultiDict). A parameter given twice is a
    400 ``repeated_parameter`` (which one was meant?); one the model does not know is
    ignored, as the API's documentation says (a cache-busting ``_=...`` must not break a
    feed)."""
    for name in args:
        given = args.getlist(name)
        if len(given) > 1:
            raise ApiError(400, "repeated_parameter",
                           f"{name}: given {len(given)} times; give it once", name)
    return parse(model, args.to_dict())


_DECIMAL = re.compile(r"-?[0-9]{1,3}(\.[0-9]{1,12})?").fullmatch   # read alike by float()
_COUNT = re.compile(r"[0-9]{1,3}").fullmatch                        # and by pydantic
_ID = re.compile(IDENTIFIER_PATTERN.strip("^$")).fullmatch


class FeedParams(NamedTuple):
    """A feed's query, read (``feed_query``): FeedQuery's fields."""

    lat: float
    lon: float
    limit: int = 20
    radius_km: float | None = None
    user_id: str | None = None


def feed_query(args: Any) -> FeedParams:
    """``parse_query(FeedQuery, args)``'s values, with the common query read in plain Python:
    each parameter given once, plain decimals within the model's bounds, an identifier that
    matches. Anything else (an error included) goes to the model, so the answer, and
    every error, is the model's (tested on generated queries)."""
    plain = _plain_feed_query(args)
    if plain is not None:
        return plain
    q = parse_query(FeedQuery, args)
    return FeedParams(q.lat, q.lon, q.limit, q.radius_km, q.user_id)


def _plain_feed_query(args: Any) -> FeedParams | None:
    values: dict[str, Any] = {}
    for name, given in args.lists():
        if len(given) != 1:
            return None
        values[name] = given[0]
    lat, lon = values.get("lat"), values.get("lon")
    if lat is None or lon is None or not (_DECIMAL(lat) and _DECIMAL(lon)):
        return None
    lat_deg, lon_deg = float(lat), float(lon)
    if not (-90.0 <= lat_deg <= 90.0 and -180.0 <= lon_deg <= 180.0):
        return None
    limit, radius, user = values.get("limit"), values.get("radius_km"), values.get("user_id")
    if limit is not None and not (_COUNT(limit) and 1 <= int(limit) <= 100):
        return None
    if radius is not None and not (_DECIMAL(radius) and 0.0 < float(radius) <= 50.0):
        return None
    if user is not None and not _ID(user):
        return None
    return FeedParams(lat_deg, lon_deg, 20 if limit is None else int(limit),
                      None if radius is None else float(radius), user)


def identifier(value: str, field: str) -> str:
    """A path identifier checked before it can become part of a key."""
    try:
        return _IDENTIFIER.validate_python(value)
    except ValidationError:
        raise ApiError(400, "invalid_identifier",
                       f"{field}: must be 1 to 64 characters of A-Z a-z 0-9 _ . : -",
                       field) from None


_IDENTIFIER = TypeAdapter(Identifier)


def json_body(content_type: str | None, data: bytes) -> Any:
    """The parsed JSON body of a request, or a 4xx ApiError saying what is wrong with it."""
    mimetype = (content_type or "").split(";")[0].strip().lower()
    if mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "the body must be application/json",
                       "Content-Type")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}", "body") from None
