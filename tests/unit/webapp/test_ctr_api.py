"""GET /v1/stats/ctr and `flask --app webapp report ctr` on the fake store: they read what
the real ingest and rollup wrote (per strategy through a feed the API served), every day of
the range, and refuse bad ranges with the field named."""
from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path

import pytest
from flask import Flask

from bandit import STRATEGIES
from config import Settings
from pipeline.learning.ingest import Event, accept_batch, roll_in
from pipeline.learning.rollup import run_rollup
from store import Store
from tests.conftest import NOW
from tests.support.api import error_of, put_ad

HERE = {"lat": 52.52, "lon": 13.405}
TODAY = "2027-01-15"                     # NOW is 2027-01-15T08:00:00Z
YESTERDAY = NOW - 86_400
_ids = itertools.count()


@pytest.fixture
def app(app: Flask) -> Flask:
    app.extensions["runtime"].now = lambda: NOW
    return app


def events(ts: float, feed_id: str | None = None, **counts: int) -> list[Event]:
    return [Event(f"e{next(_ids)}", "ad-1", kind, ts, "u1", feed_id, 1)
            for kind, n in counts.items() for _ in range(n)]


@pytest.fixture
def served(client, admin, fake_store: Store, settings: Settings) -> dict:
    """A feed served through the API today; events on it today, others (naming no feed)
    yesterday; accepted, rolled in and rolled up by the service's own code."""
    put_ad(client, admin, "ad-1", HERE["lat"], HERE["lon"])
    feed = client.get("/v1/feed", query_string=HERE).get_json()
    batch = (events(YESTERDAY, impression=400, view=40, save=8, apply=12)
             + events(NOW + 60, feed["feed_id"], impression=90, view=9, save=3, apply=2)
             + events(NOW + 120, impression=10))
    accepted = accept_batch(fake_store, settings, batch, NOW + 300)
    roll_in(fake_store, accepted.batch_id)
    run_rollup(fake_store, settings, NOW + 600)
    return feed


def ctr(client, **query: str):
    return client.get("/v1/stats/ctr", query_string=query)


def figures(row: dict) -> tuple[int, int, int, int]:
    return row["impressions"], row["views"], row["saves"], row["applies"]


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


# ---- flask report ctr --------------------------------------------------------------------

def report(app: Flask, *args: str):
    result = app.test_cli_runner().invoke(args=["report", "ctr", *args])
    assert result.exit_code == 0, result.output
    return result


def test_the_command_prints_the_days_and_the_totals_as_a_table(app, served):
    lines = report(app, "--days", "3").output.splitlines()
    assert lines[0].startswith(f"CTR per UTC day from 2027-01-13 to {TODAY}, every strategy")
    header, *rows = lines[1:]
    assert header.split()[:5] == ["day", "impressions", "views", "saves", "applies"]
    assert [r.split()[:5] for r in rows] == [
        ["2027-01-13", "0", "0", "0", "0"], ["2027-01-14", "400", "40", "8", "12"],
        [TODAY, "100", "9", "3", "2"], ["total", "500", "49", "11", "14"]]
    # the apply rate comes first, in %, then the view rate
    assert "3.00 [1.72, 5.17]" in rows[1] and "10.00 [7.43, 13.33]" in rows[1]
    assert rows[1].index("3.00 [") < rows[1].index("10.00 [")
    assert rows[0].split()[5:] == ["-", "-", "-", "-"]
    # aligned: counts end under their heading, rates start under theirs
    applies_end, rate_start = header.index("applies") + len("applies"), header.index("apply rate")
    for row in rows:
        assert row[applies_end - 1] != " " and row[applies_end] == " "
        assert row[rate_start - 1] == " " and row[rate_start] != " "


def test_the_command_reads_one_strategy(app, served):
    lines = report(app, "--days", "2", "--strategy", served["strategy"]).output.splitlines()
    assert f"strategy {served['strategy']}" in lines[0]
    assert lines[-1].split()[:5] == ["total", "90", "9", "3", "2"]


def test_the_command_writes_the_same_figures_as_csv(app, client, served, tmp_path: Path):
    out = tmp_path / "ctr.csv"
    result = report(app, "--days", "3", "--csv", str(out))
    assert "total" in result.output                      # the table is printed too
    rows = list(csv.DictReader(out.open(newline="")))
    body = ctr(client, **{"from": "2027-01-13", "to": TODAY}).get_json()
    assert [r["day"] for r in rows] == ["2027-01-13", "2027-01-14", TODAY, "total"]
    for row, want in zip(rows, [*body["days"], body["totals"]], strict=True):
        assert tuple(int(row[c]) for c in ("impressions", "views", "saves", "applies")) == \
            figures(want)
        for rate in ("view_rate", "save_rate", "apply_rate", "apply_per_view"):
            value = want[rate]["rate"]
            assert row[rate] == ("" if value is None else str(value))
            assert float(row[f"{rate}_low"]) == want[rate]["low"]
            assert float(row[f"{rate}_high"]) == want[rate]["high"]
    assert rows[1]["apply_rate"] == "0.03" and rows[0]["apply_rate"] == ""


def test_csv_to_standard_output_is_only_the_csv(app, served):
    text = report(app, "--days", "2", "--csv", "-").output
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:5] == ["day", "impressions", "views", "saves", "applies"]
    assert [r[0] for r in rows[1:]] == ["2027-01-14", TODAY, "total"]
    assert rows[-1][1:5] == ["500", "49", "11", "14"]


@pytest.mark.parametrize("args", [["--days", "0"], ["--days", "93"], ["--strategy", "best"]])
def test_the_command_refuses_bad_options(app, args):
    result = app.test_cli_runner().invoke(args=["report", "ctr", *args])
    assert result.exit_code == 2
