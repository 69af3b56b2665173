"""The ad catalogue: PUT, GET, DELETE /v1/ads/{ad_id}. Writes need the admin token."""
from __future__ import annotations

from flask import Blueprint, Response, request
from werkzeug.routing import BaseConverter

from pipeline.catalogue import AdRecord, delete_ad, upsert_ads
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
    """The record of a validated ad, or a 400 ApiError when it would expire before it is
    created (which takes ``now`` to tell when the ad leaves created_at out)."""
    try:
        return AdRecord.from_wire(ad_id, ad.model_dump(), now)
    except ValueError as exc:
        raise ApiError(400, "invalid_parameter", str(exc), "expires_at") from None


@bp.put("/<ad_id:ad_id>")
@documented("Create or replace an ad (201 when created)", "ads", body=AdIn, response=Ad,
            answers={201: Ad})
@require_admin
def put_ad(ad_id: str) -> Response:
    ad_id = identifier(ad_id, "ad_id")
    rt = runtime()
    now = rt.now()
    ad = parse(AdIn, json_body(request.content_type, request.get_data(cache=False)), strict=True)
    record = ad_record(ad_id, ad, now)
    created, _ = upsert_ads(rt.store, rt.settings, [record])
    return json_response(record.wire(now), 201 if created else 200)


@bp.get("/<ad_id:ad_id>")
@documented("An ad", "ads", response=Ad, errors={404: ("not_found",)})
def get_ad(ad_id: str) -> Response:
    ad_id = identifier(ad_id, "ad_id")
    rt = runtime()
    fields = rt.store.get_ad(ad_id)
    if fields is None:
        raise ApiError(404, "not_found", f"no ad {ad_id}", "ad_id")
    return json_response(AdRecord.from_fields(ad_id, fields).wire(rt.now()))


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
