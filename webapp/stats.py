"""Service-wide stats: daily CTR, the examination curve. (An ad's own stats are
GET /v1/stats/ads/{ad_id}.)"""
from __future__ import annotations

from flask import Blueprint, Response, request

from pipeline.learning import examination
from pipeline.reports.archived_ctr import archived_ctr
from pipeline.reports.ctr import daily_ctr, utc_today
from webapp.apidoc import CtrReport, PositionBias, documented
from webapp.errors import json_response
from webapp.runtime import runtime
from webapp.validation import CtrQuery, parse_query

bp = Blueprint("stats", __name__, url_prefix="/v1/stats")


@bp.get("/ctr")
@documented("Daily impressions, views, saves and applies, with rates and 95 % intervals",
            "stats", query=CtrQuery, response=CtrReport,
            description="Per UTC day from `from` to `to` (every day, zeros included) and in "
                        "total: the counts the rollup made and the view, save and apply rates "
                        "per impression and applies per view, each with its 95 % Wilson score "
                        "interval. A rate with a zero denominator is null, its interval "
                        "[0, 1]. With `strategy`, only the events naming a feed that strategy "
                        "served count. Each day's `source` says where its counts came "
                        "from: `redis`, or for the days before the first one Redis holds "
                        "(a Redis started or rebuilt since), `archive`: the archived events "
                        "counted again (null: no events).")
def ctr() -> Response:
    q = parse_query(CtrQuery, request.args)
    rt = runtime()
    start, end = q.span(utc_today(rt.now()))
    report = daily_ctr(rt.store, start, end, q.strategy,
                       archived=archived_ctr(rt.store, rt.settings))
    return json_response(report.as_dict())


@bp.get("/position-bias")
@documented("The examination curve: how much an impression counts for, by position", "stats",
            response=PositionBias,
            description="Learnt by the rollup from the same ad shown at different positions "
                        "within one regeneration's feeds (its K variants randomise where an "
                        "ad lands), pooled over ads, with a 95 % interval; refreshed as each "
                        "epoch of REGEN_INTERVAL_S is folded in. `weights` is what the rollup "
                        "uses now: the learnt curve, or p ** -POSITION_BIAS_EXPONENT when that "
                        "is set.")
def position_bias() -> Response:
    rt = runtime()
    return json_response(examination.report(rt.store, rt.settings))
