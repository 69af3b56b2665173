"""webapp.stats. GET /v1/stats/ctr reads what the real ingest and rollup wrote (per strategy
through a feed the API served), every day of the range, the days Redis no longer holds from
the archive, and refuses bad ranges with the field named. GET /v1/stats/position-bias: the
weights the rollup uses by position, where they come from, and the learnt curve with its
interval."""
from __future__ import annotations

import pytest
from flask import Flask

from bandit import STRATEGIES
from bandit.position import PRIOR_CURVE
from config import load_settings
from pipeline.archive import run_archive
from store import Store
from tests.conftest import ADMIN_TOKEN, NOW
from tests.support import daily_ctr
from tests.support.api import error_of
from tests.support.daily_ctr import TODAY, ctr, figures
from webapp import create_app

served = daily_ctr.served         # the fixture: a day's traffic, counted


@pytest.fixture
def app(app: Flask) -> Flask:
    app.extensions["runtime"].now = lambda: NOW
    return app


# ---- GET /v1/stats/ctr ----------------------------------------------------------------------

def test_each_day_in_the_range_with_its_counts_rates_and_totals(client, served):
    response = ctr(client, **{"from": "2027-01-13", "to": TODAY})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["from"], body["to"], body["strategy"], body["level"]) == (
        "2027-01-13", TODAY, None, 0.95)
    assert [d["day"] for d in body["days"]] == ["2027-01-13", "2027-01-14", TODAY]
    assert [figures(d) for d in body["days"]] == [(0, 0, 0, 0), (400, 40, 8, 12),
                                                  (100, 9, 3, 2)]
    assert figures(body["totals"]) == (500, 49, 11, 14)
    yesterday = body["days"][1]
    assert yesterday["view_rate"]["rate"] == 0.1
    assert yesterday["save_rate"]["rate"] == 0.02
    assert yesterday["apply_rate"]["rate"] == 0.03
    assert yesterday["apply_per_view"]["rate"] == 0.3
    # Wilson, 12 of 400: 1.7243 % to 5.1699 %
    assert yesterday["apply_rate"]["low"] == pytest.approx(0.017243, abs=1e-6)
    assert yesterday["apply_rate"]["high"] == pytest.approx(0.051699, abs=1e-6)
    assert body["days"][0]["apply_rate"] == {"rate": None, "low": 0.0, "high": 1.0}
    assert body["totals"]["apply_per_view"]["rate"] == pytest.approx(14 / 49, abs=1e-6)


def test_a_strategy_reads_the_events_on_the_feeds_it_served(client, served):
    body = ctr(client, strategy=served["strategy"], to=TODAY).get_json()
    assert body["strategy"] == served["strategy"]
    assert figures(body["totals"]) == (90, 9, 3, 2)
    assert figures(body["days"][-1]) == (90, 9, 3, 2)
    assert figures(body["days"][-2]) == (0, 0, 0, 0)      # yesterday's events named no feed
    assert body["days"][-1]["apply_per_view"]["rate"] == pytest.approx(2 / 9, abs=1e-6)
    other = next(s for s in STRATEGIES if s != served["strategy"])
    assert figures(ctr(client, strategy=other).get_json()["totals"]) == (0, 0, 0, 0)


def test_days_redis_no_longer_holds_come_from_the_archive_with_their_source(
        client, served, fake_store: Store, settings):
    query = {"from": "2027-01-13", "to": TODAY}
    live = ctr(client, **query).get_json()
    assert [d["source"] for d in live["days"]] == [None, "redis", "redis"]
    run_archive(fake_store, settings, NOW + 700)
    fake_store.clear_counters()                              # a Redis started anew
    body = ctr(client, **query).get_json()
    assert [d["source"] for d in body["days"]] == [None, "archive", "archive"]
    assert body["totals"] == live["totals"]
    assert [{k: v for k, v in d.items() if k != "source"} for d in body["days"]] == [
        {k: v for k, v in d.items() if k != "source"} for d in live["days"]]
    by_strategy = ctr(client, strategy=served["strategy"], **query).get_json()
    assert figures(by_strategy["totals"]) == (90, 9, 3, 2)


def test_the_default_range_is_the_last_fourteen_days_to_today(client, served):
    body = ctr(client).get_json()
    assert (body["from"], body["to"], len(body["days"])) == ("2027-01-02", TODAY, 14)
    assert figures(body["totals"]) == (500, 49, 11, 14)
    assert ctr(client, to="2027-01-10").get_json()["from"] == "2026-12-28"
    only = ctr(client, **{"from": TODAY}).get_json()
    assert [d["day"] for d in only["days"]] == [TODAY]


def test_a_range_of_ninety_two_days_is_the_longest(client):
    body = ctr(client, **{"from": "2027-01-01", "to": "2027-04-02"}).get_json()
    assert len(body["days"]) == 92
    assert body["days"][-1]["day"] == "2027-04-02"


@pytest.mark.parametrize("query, field", [
    ({"from": "2027-1-5"}, "from"),
    ({"from": "yesterday"}, "from"),
    ({"from": "1800000000"}, "from"),                # epoch seconds are not a day
    ({"to": "2027-01-15T00:00:00Z"}, "to"),
    ({"to": "2027-02-30"}, "to"),
    ({"to": "1969-12-31"}, "to"),
    ({"from": "2027-01-16", "to": "2027-01-15"}, "from"),
    ({"from": "2027-01-16"}, "from"),                # after today, the default to
    ({"from": "2027-01-01", "to": "2027-04-03"}, "from"),     # 93 days
    ({"from": "2026-01-01"}, "from"),                # over a year to today
    ({"strategy": "best"}, "strategy"),
    ({"strategy": ""}, "strategy"),
])
def test_bad_ranges_and_strategies_are_400_with_the_field(client, fake_store, query, field):
    err = error_of(ctr(client, **query), 400, field)
    assert err["code"] == "invalid_parameter"
    assert fake_store.r.dbsize() == 0


# ---- GET /v1/stats/position-bias ------------------------------------------------------------

CURVE = [1.0, 0.6, 0.45, 0.38, 0.33, 0.3, 0.28, 0.26, 0.25, 0.24, 0.2, 0.15]


def test_before_anything_is_learnt_the_prior_curve_is_used(client):
    body = client.get("/v1/stats/position-bias").get_json()
    assert body["source"] == "learnt" and body["exponent"] is None and body["learnt"] is None
    assert body["bins"][:3] == ["1", "2", "3"] and body["bins"][-2:] == ["11-20", "21+"]
    assert body["weights"] == pytest.approx(PRIOR_CURVE.tolist(), abs=1e-5)


def test_the_learnt_curve_is_what_the_rollup_uses(client, fake_store: Store):
    fake_store.write_position_curve({"bins": [], "curve": CURVE, "low": [c * 0.9 for c in CURVE],
                                     "high": [c * 1.1 for c in CURVE], "comparisons": 812.5,
                                     "updated_at": NOW})
    body = client.get("/v1/stats/position-bias").get_json()
    assert body["weights"] == pytest.approx(CURVE)
    learnt = body["learnt"]
    assert learnt["curve"] == pytest.approx(CURVE) and learnt["updated_at"] == NOW
    assert all(lo <= c <= hi
               for lo, c, hi in zip(learnt["low"], learnt["curve"], learnt["high"], strict=True))
    assert learnt["comparisons"] == 812.5


def test_the_exponent_setting_overrides_it(fake_store: Store):
    settings = load_settings({}, admin_token=ADMIN_TOKEN, position_bias_exponent=1.0)
    app: Flask = create_app(settings)
    app.extensions["runtime"].__dict__["store"] = fake_store     # cached_property slot
    fake_store.write_position_curve({"bins": [], "curve": CURVE, "low": CURVE, "high": CURVE,
                                     "comparisons": 1.0, "updated_at": NOW})
    body = app.test_client().get("/v1/stats/position-bias").get_json()
    assert body["source"] == "setting" and body["exponent"] == 1.0
    assert body["weights"] == pytest.approx([1 / p for p in (*range(1, 11), 11, 21)], abs=1e-5)
    assert body["learnt"]["curve"] == pytest.approx(CURVE)     # still learnt, for comparison
