"""The ad catalogue: PUT, GET, DELETE /v1/ads/{ad_id}. Writes need the admin token."""
from __future__ import annotations

from flask import Blueprint, Response, request
from werkzeug.routing import BaseConverter

from pipeline.catalogue import AdRecord, ad_view, delete_ad, upsert_ads
from webapp.apidoc import Ad, documented
from webapp.auth import require_admin
from webapp.errors import json_response
from webapp.runtime import runtime
from webapp.validation import AdIn, ApiError, identifier, json_body, parse

bp = Blueprint("ads", __name__, url_prefix="/v1/ads")


class AdIdConverter(BaseConverter):
    """A path segment other than "nearby", which is GET /v1/ads/nearby's (so no ad can be
    written that could never be read); the identifier is checked in the view."""
    regex = r"(?!nearby$)[^/]+"


def ad_record(ad_id: str, ad: AdIn, now: float) -> AdRecord:
    created_at = ad.created_at if ad.created_at is not None else now
    if ad.expires_at is not None and ad.expires_at <= created_at:
        raise ApiError(400, "invalid_parameter", "expires_at: must be after created_at",
                       "expires_at")
    return AdRecord(ad_id, ad.lat, ad.lon, ad.title, ad.company, ad.category, ad.description,
                    created_at, ad.expires_at)


@bp.put("/<ad_id:ad_id>")
@documented("Create or replace an ad (201 when created)", "ads", body=AdIn, response=Ad,
            answers={201: Ad})
@require_admin
def put_ad(ad_id: str) -> Response:
    ad_id = identifier(ad_id, "ad_id")
    rt = runtime()
    now = rt.now()
    ad = parse(AdIn, json_body(request.content_type, request.get_data(cache=False)), strict=True)
    created, _ = upsert_ads(rt.store, rt.settings, [ad_record(ad_id, ad, now)])
    fields = rt.store.get_ad(ad_id) or {}
    return json_response(ad_view(ad_id, fields, now), 201 if created else 200)


@bp.get("/<ad_id:ad_id>")
@documented("An ad", "ads", response=Ad, errors={404: ("not_found",)})
def get_ad(ad_id: str) -> Response:
    ad_id = identifier(ad_id, "ad_id")
    rt = runtime()
    fields = rt.store.get_ad(ad_id)
    if fields is None:
        raise ApiError(404, "not_found", f"no ad {ad_id}", "ad_id")
    return json_response(ad_view(ad_id, fields, rt.now()))


@bp.delete("/<ad_id:ad_id>")
@documented("Delete an ad: it leaves every feed at once", "ads", ok=204,
            errors={404: ("not_found",)})
@require_admin
def remove_ad(ad_id: str) -> Response:
    ad_id = identifier(ad_id, "ad_id")
    rt = runtime()
    if not delete_ad(rt.store, rt.settings, ad_id):
        raise ApiError(404, "not_found", f"no ad {ad_id}", "ad_id")
    return Response(status=204)
