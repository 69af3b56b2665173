"""webapp.cli: `flask --app webapp evaluate` reads its options (ISO times or epoch seconds,
the last day by default), prints the estimates as a table, and exits 1 on an empty range and 2
on a bad option. (The estimates themselves: tests/unit/pipeline/reports/test_evaluate.py.)"""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask

from tests.conftest import NOW
from tests.support.served_log import (
    SINCE,
    UNTIL,
    add_served,
    feed_id,
    run,
    run_json,
    served,
    small_log,
)


@pytest.fixture
def app(app: Flask) -> Flask:
    app.extensions["runtime"].now = lambda: NOW
    return app


def test_the_table_shows_each_strategy_and_the_totals(app, fake_store, rng):
    small_log(fake_store, rng)
    result = run(app, "--since", repr(SINCE), "--until", repr(SINCE + 3600),
                 "--attribution-s", "600")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == ("served from 2027-01-15T02:00:00Z to 2027-01-15T03:00:00Z; "
                        "applies credited within 600 s of serving")
    assert lines[1].split() == ["strategy", "feeds", "logged", "value", "[95", "%", "CI]",
                                "IPS", "[95", "%", "CI]", "SNIPS", "[95", "%", "CI]"]
    assert lines[2].split()[:2] == ["thompson", "1"]
    assert lines[3].split()[:4] == ["popular", "2", "0.5000", "[-0.4800,"]
    assert lines[-2] == "feeds used: 3 (applies credited: 2, log entries skipped: 0)"
    assert lines[-1].startswith("logging policy: 0.6667 [")
    assert len(lines) == 6


def test_iso_times_and_the_defaults(app, fake_store, settings, rng):
    ids = [feed_id(NOW - 2 * 86_400, "newest", rng), feed_id(NOW - 3600, "nearest", rng)]
    add_served(fake_store, [served(ids[0], NOW - 2 * 86_400, "newest", 0.2),
                            served(ids[1], NOW - 3600, "nearest", 0.2)])
    report = run_json(app)
    assert (report["since"], report["until"]) == (NOW - 86_400, NOW)
    assert report["attribution_s"] == settings.event_max_age_s
    assert report["feeds"] == 1 and list(report["strategies"]) == ["nearest"]
    iso = datetime.fromtimestamp(NOW - 3 * 86_400, tz=UTC).isoformat()
    report = run_json(app, "--since", iso, "--until", "2027-01-15T10:00:00+02:00")
    assert (report["since"], report["until"]) == (NOW - 3 * 86_400, NOW)
    assert report["feeds"] == 2 and list(report["strategies"]) == ["newest", "nearest"]


def test_an_empty_range_exits_1_with_a_message(app, fake_store, rng):
    small_log(fake_store, rng)
    result = run(app, "--since", repr(UNTIL), "--until", repr(UNTIL + 3600))
    assert result.exit_code == 1
    assert "no served feeds from 2027-01-15T08:00:00Z to 2027-01-15T09:00:00Z" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args, option", [
    (["--since", "yesterday"], "--since"),
    (["--since", "2027-01-15T00:00:00"], "--since"),           # ISO without a zone
    (["--until", "nan"], "--until"),
    (["--since", repr(NOW), "--until", repr(NOW - 60)], "--since"),
    (["--attribution-s", "-1"], "--attribution-s"),
    (["--format", "xml"], "--format"),
])
def test_bad_options_are_usage_errors(app, args, option):
    result = run(app, *args)
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.stderr and option in result.stderr
