"""webapp.report: `flask --app webapp report ctr` prints the daily CTR of GET /v1/stats/ctr as
a table, or writes the same figures as CSV, and refuses bad options; the days Redis no
longer holds come from the archive, marked."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from flask import Flask

from pipeline.archive import run_archive
from tests.conftest import NOW
from tests.support import daily_ctr
from tests.support.daily_ctr import TODAY, ctr, figures

served = daily_ctr.served         # the fixture: a day's traffic, counted


@pytest.fixture
def app(app: Flask) -> Flask:
    app.extensions["runtime"].now = lambda: NOW
    return app


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


def test_days_redis_no_longer_holds_are_read_from_the_archive_and_marked(app, served,
                                                                         fake_store, settings,
                                                                         tmp_path: Path):
    before = report(app, "--days", "3").output.splitlines()
    run_archive(fake_store, settings, NOW + 700)
    assert fake_store.clear_counters() > 0               # a Redis that lost its counters
    lines = report(app, "--days", "3").output.splitlines()
    assert [r.split()[:5] for r in lines[2:5]] == [
        ["2027-01-13", "0", "0", "0", "0"], ["2027-01-14*", "400", "40", "8", "12"],
        [f"{TODAY}*", "100", "9", "3", "2"]]
    assert lines[5].split() == before[5].split()          # the totals, rates included
    assert lines[-1] == ("* 2 of 3 days read from the archive (the days before the first "
                         "one Redis holds)")
    strategy = report(app, "--days", "1", "--strategy", served["strategy"]).output
    assert strategy.splitlines()[-2].split()[:5] == ["total", "90", "9", "3", "2"]
    rows = list(csv.DictReader(io.StringIO(report(app, "--days", "3", "--csv", "-").output)))
    assert [r["source"] for r in rows] == ["", "archive", "archive", ""]
