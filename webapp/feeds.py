"""The feed, the proximity API and per-ad stats."""
from __future__ import annotations

import numpy as np
from flask import Blueprint, Response, g, request

import geo
from obs.prometheus import observe_feed
from pipeline.learning.regenerate import SEARCH_SLACK
from pipeline.reports.adstats import ad_report
from pipeline.serving.feed import (
    FeedAnswer,
    FeedRequest,
    UserAds,
    capped_since,
    parse_location,
    serve_feed,
)
from webapp.apidoc import AdStats, Feed, Nearby, UserFeed, documented
from webapp.errors import json_response
from webapp.ratelimit import limited
from webapp.runtime import runtime
from webapp.validation import (
    ApiError,
    FeedQuery,
    NearbyQuery,
    RecommendQuery,
    feed_query,
    identifier,
    parse_query,
)

bp = Blueprint("feeds", __name__, url_prefix="/v1")


def _radius_km(given: float | None) -> float:
    limit = runtime().settings.feed_radius_km
    if given is None:
        return limit
    if given > limit:
        raise ApiError(400, "invalid_parameter", f"radius_km: must be in (0, {limit}]", "radius_km")
    return given


@bp.get("/feed")
@documented("The feed of ads near a point", "feeds", query=FeedQuery, response=Feed,
            errors={503: ("feed_rebuilding",)})
@limited("feeds")
def feed() -> Response:
    q = feed_query(request.args)
    rt = runtime()
    req = FeedRequest(q.lat, q.lon, q.limit, _radius_km(q.radius_km), q.user_id)
    now = rt.now()
    served = serve_feed(rt.store, rt.settings, req, now, rt.random, rt.feed_cache,
                        rt.serving_log, secret=rt.feed_id_secret, cards=rt.card_cache)
    _observe(served, now)
    return Response(served.json(), mimetype="application/json")


def _observe(served: FeedAnswer, now: float) -> None:
    g.feed_id = served.feed_id
    observe_feed(served.strategy, served.cache, now - served.generated_at)


@bp.get("/recommend/<user_id>")
@documented("A user's feed, at the location given or their last known one", "feeds",
            query=RecommendQuery, response=UserFeed,
            errors={400: ("missing_parameter",), 404: ("location_unknown",),
                    503: ("feed_rebuilding",)})
@limited("feeds")
def recommend(user_id: str) -> Response:
    """The feed for a user: at the location given, else at their last known one. Ads they
    applied to or hid are left out, and those the frequency cap holds for them go below the
    first screen. One round trip reads the location, the exclusions and the capped ads."""
    user_id = identifier(user_id, "user_id")
    q = parse_query(RecommendQuery, request.args)
    if (q.lat is None) != (q.lon is None):
        missing = "lon" if q.lon is None else "lat"
        raise ApiError(400, "missing_parameter", f"{missing}: lat and lon go together", missing)
    rt = runtime()
    now = rt.now()
    user = None
    if q.lat is not None:
        lat, lon, source = q.lat, q.lon, "given"
    else:
        stored, excluded, capped = rt.store.user_context(user_id,
                                                         capped_since(rt.settings, now))
        user = UserAds(excluded, capped)
        known = parse_location(stored)
        if known is None:
            raise ApiError(404, "location_unknown", f"no known location for user {user_id}: "
                           "pass lat and lon", "user_id")
        (lat, lon), source = known, "last_known"
    req = FeedRequest(lat, lon, q.limit, _radius_km(q.radius_km), user_id)
    served = serve_feed(rt.store, rt.settings, req, now, rt.random, rt.feed_cache,
                        rt.serving_log, user, rt.feed_id_secret, rt.card_cache)
    _observe(served, now)
    # the location itself is not echoed: anyone who knows a user_id would learn where they are
    return Response(served.json(user_id=user_id, location_source=source),
                    mimetype="application/json")


@bp.get("/ads/nearby")
@documented("The live ads within a radius, nearest first", "ads", query=NearbyQuery,
            response=Nearby)
@limited("feeds")
def nearby() -> Response:
    q = parse_query(NearbyQuery, request.args)
    radius_km = _radius_km(q.radius_km)
    rt = runtime()
    found = rt.store.nearby(q.lat, q.lon, radius_km * SEARCH_SLACK, q.limit, rt.now())
    ids = [a for a, _, _ in found]
    dist = geo.haversine_km(q.lat, q.lon, np.array([la for _, la, _ in found]),
                            np.array([lo for _, _, lo in found]))
    order = np.argsort(dist, kind="stable")
    ads = [{"ad_id": ids[i], "distance_km": round(float(dist[i]), 3)}
           for i in order if dist[i] <= radius_km]
    return json_response({"ads": ads[:q.limit]})


@bp.get("/stats/ads/<ad_id>")
@documented("An ad's counters and posterior", "stats", response=AdStats,
            errors={404: ("not_found",)})
def ad_stats(ad_id: str) -> Response:
    ad_id = identifier(ad_id, "ad_id")
    rt = runtime()
    report = ad_report(rt.store, rt.settings, ad_id, rt.now())
    if report is None:
        raise ApiError(404, "not_found", f"no ad or stats for {ad_id}", "ad_id")
    return json_response(report)
