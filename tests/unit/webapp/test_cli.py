"""webapp.cli: `flask --app webapp events replay` rebuilds the counters from the archive,
in place or into an empty Redis, and refuses bad options and a Redis with counters;
`flask --app webapp evaluate` reads its options (ISO times or epoch seconds,
the last day by default), prints the estimates as a table, and exits 1 on an empty range and 2
on a bad option (the estimates themselves: tests/unit/pipeline/reports/test_evaluate.py);
`flask ads import` loads a JSON-lines file line by line, reporting each bad line, `flask ads
demo` writes a catalogue that imports cleanly, and `flask ads reindex` rebuilds every live ad's
indexes from its record."""
from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from flask import Flask

from pipeline.catalogue import category_code
from store import NO_EXPIRY, Keys, split_card
from tests.conftest import NOW
from tests.support.api import ad_body, put_ad
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
from tests.support.stored_ads import first_layout, stored_ad_ids


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


# ---- flask ads import / ads demo / ads reindex ---------------------------------------------

def line(ad_id: str, lat: float = 52.52, lon: float = 13.405, **extra) -> str:
    return orjson.dumps({"ad_id": ad_id, **ad_body(lat, lon, **extra)}).decode()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_import(app, path: Path):
    return app.test_cli_runner().invoke(args=["ads", "import", str(path)])


def test_import_reports_each_bad_line_and_stores_exactly_the_good_ones(app, fake_store, tmp_path):
    path = write_lines(tmp_path / "ads.jsonl", [
        line("a1", title="First"),                        # 1
        line("a2"),                                       # 2
        "",                                               # 3 blank: skipped, not counted
        '{"ad_id": "a3", "lat": 52.5,',                   # 4 malformed JSON
        line("a4", lat=91.0),                             # 5 bad lat
        line("a1", title="Second"),                       # 6 duplicate id: last wins
        line("a5", lon=13.41),                            # 7
        "   ",                                            # 8 blank
        line("a 6"),                                      # 9 bad ad_id
        line("a7", created_at=1_800_000_000, expires_at=1_700_000_000),  # 10 expires first
        "[1, 2]",                                         # 11 not an object
    ])
    result = run_import(app, path)
    out = result.stdout
    assert "created 3, updated 0, rejected 5" in out, out
    rejected_lines = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("line ")]
    assert [ln.split(":")[0] for ln in rejected_lines] == [
        "line 4", "line 5", "line 9", "line 10", "line 11"]
    reasons = dict(ln.split(": ", 1) for ln in rejected_lines)
    assert "JSON" in reasons["line 4"]
    assert "lat" in reasons["line 5"]
    assert "ad_id" in reasons["line 9"]
    assert "expires_at" in reasons["line 10"]
    assert result.exit_code == 0

    assert stored_ad_ids(fake_store) == {"a1", "a2", "a5"}
    assert sorted(fake_store.live_ad_ids()) == ["a1", "a2", "a5"]
    assert fake_store.get_ad("a1")["title"] == "Second"


def test_an_import_lists_the_first_hundred_bad_lines_and_counts_them_all(app, fake_store,
                                                                        tmp_path):
    path = write_lines(tmp_path / "ads.jsonl",
                       [line("good")] + [line(f"bad-{i}", lat=91.0) for i in range(250)])
    out = run_import(app, path).stdout
    assert "created 1, updated 0, rejected 250" in out, out
    listed = [ln for ln in out.splitlines() if ln.strip().startswith("line ")]
    assert len(listed) == 100 and listed[0].strip().startswith("line 2:"), listed[:2]
    assert "... and 150 more" in out


def test_importing_the_same_file_again_updates(app, fake_store, tmp_path):
    path = write_lines(tmp_path / "ads.jsonl", [line("a1"), line("a2"), line("bad", lat=-91)])
    assert "created 2, updated 0, rejected 1" in run_import(app, path).stdout
    result = run_import(app, path)
    assert "created 0, updated 2, rejected 1" in result.stdout
    assert stored_ad_ids(fake_store) == {"a1", "a2"}


def test_an_import_with_nothing_good_fails(app, fake_store, tmp_path):
    path = write_lines(tmp_path / "ads.jsonl", ["{", line("x", title="")])
    result = run_import(app, path)
    assert "created 0, updated 0, rejected 2" in result.stdout
    assert "line 1:" in result.stdout and "line 2:" in result.stdout
    assert result.exit_code != 0
    assert stored_ad_ids(fake_store) == set()


def test_an_import_line_at_a_valid_polar_latitude_does_not_crash_the_import(app, fake_store,
                                                                           tmp_path):
    """The same Redis geo limit as for PUT: a line at lat 86 must be imported or reported as
    a rejected line, and the import must finish with its summary."""
    path = write_lines(tmp_path / "ads.jsonl", [line("a1"), line("polar", lat=86.0), line("a2")])
    result = run_import(app, path)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    out = result.stdout
    assert "created 3, updated 0, rejected 0" in out or (
        "created 2, updated 0, rejected 1" in out and "line 2:" in out), out
    assert {"a1", "a2"} <= stored_ad_ids(fake_store)
    assert sorted(fake_store.live_ad_ids()) == sorted(stored_ad_ids(fake_store))


def test_demo_writes_count_valid_lines_that_import_cleanly(app, fake_store, tmp_path):
    result = app.test_cli_runner().invoke(args=["ads", "demo", "--count", "50"])
    assert result.exit_code == 0, result.output
    lines = result.stdout_bytes.decode().splitlines()
    assert len(lines) == 50
    ads = [orjson.loads(ln) for ln in lines]
    assert len({a["ad_id"] for a in ads}) == 50
    assert all(-90 <= a["lat"] <= 90 and -180 <= a["lon"] <= 180 for a in ads)

    path = tmp_path / "demo.jsonl"
    path.write_bytes(result.stdout_bytes)
    imported = run_import(app, path)
    assert "created 50, updated 0, rejected 0" in imported.stdout, imported.output
    assert imported.exit_code == 0
    assert stored_ad_ids(fake_store) == {a["ad_id"] for a in ads}


def test_demo_is_reproducible_for_a_seed(app):
    runner = app.test_cli_runner()
    one = runner.invoke(args=["ads", "demo", "--count", "5", "--seed", "3"]).stdout_bytes
    two = runner.invoke(args=["ads", "demo", "--count", "5", "--seed", "3"]).stdout_bytes
    ids = [orjson.loads(ln)["ad_id"] for ln in one.splitlines()]
    assert ids == [orjson.loads(ln)["ad_id"] for ln in two.splitlines()]
    assert [(orjson.loads(ln)["lat"], orjson.loads(ln)["title"]) for ln in one.splitlines()] == \
        [(orjson.loads(ln)["lat"], orjson.loads(ln)["title"]) for ln in two.splitlines()]


def test_reindex_rebuilds_every_live_ads_summary_from_its_record(app, client, admin, fake_store):
    """After an upgrade that changed what ads:summary packs: a first-layout summary is
    rebuilt from the ad's record, raw counters become decayed evidence, and an expired ad is
    left out of the indexes."""
    now = time.time()
    put_ad(client, admin, "keep", 52.52, 13.405, category="Care", created_at=now - 3600)
    put_ad(client, admin, "gone", 52.52, 13.405, created_at=now - 7200, expires_at=now + 1)
    first_layout(fake_store, "keep")
    fake_store.r.hset(Keys.stats("impressions"), "keep", 40)
    fake_store.r.hset(Keys.stats("applies"), "keep", 3)
    app.extensions["runtime"].now = lambda: now + 2     # "gone" has expired
    result = app.test_cli_runner().invoke(args=["ads", "reindex"])
    assert result.exit_code == 0 and "reindexed 1 ads (1 expired left out)" in result.stdout
    found = fake_store.ad_summaries(["keep", "gone"])
    assert [i.decode() for i in found.ids] == ["keep"]
    row = found.rows[0]
    assert (row["lat"], row["lon"], row["exp"]) == (52.52, 13.405, NO_EXPIRY)
    assert row["created"] == pytest.approx(now - 3600, abs=1)
    assert row["cat"] == category_code("care")
    [card] = fake_store.ad_cards([row["sn"]])
    ad_id, members = split_card(card)
    assert ad_id == "keep" and "title" in orjson.loads(b"{" + members + b"}")
    assert fake_store.live_ad_ids() == ["keep"]
    evidence = fake_store.decayed_evidence(["keep"])
    assert evidence.values[0].tolist() == [40, 0, 0, 3]
    assert evidence.updated_at[0] == pytest.approx(now + 2)


# ---- events replay ------------------------------------------------------------------

@pytest.fixture
def archived(settings, fake_store, tmp_path) -> Flask:
    """An app whose ARCHIVE_URL holds a few archived, counted events."""
    from config import load_settings
    from pipeline.archive import run_archive
    from pipeline.learning.rollup import run_rollup
    from tests.support.builders import events_of, send
    from webapp import create_app

    s = load_settings({"REDIS_URL": settings.redis_url}, archive_url=str(tmp_path / "arch"),
                      admin_token=settings.admin_token)
    send(fake_store, s, events_of("a1", NOW, impressions=6, views=2, applies=1), NOW)
    run_rollup(fake_store, s, NOW + 1)
    run_archive(fake_store, s, NOW + 2)
    app = create_app(s)
    app.extensions["runtime"].__dict__["store"] = fake_store
    app.extensions["runtime"].now = lambda: NOW + 3
    return app


def replay(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["events", "replay", *args])


ALL_DAYS = ("--from", "2000-01-01", "--to", "2100-12-31")


def test_a_replay_in_place_rebuilds_the_counters(archived, fake_store):
    before = fake_store.ad_stats(["a1"])
    fake_store.r.hset(Keys.counts, "a1", "100 100 100 100 100")     # a counter gone wrong
    result = replay(archived, *ALL_DAYS, "--in-place")
    assert result.exit_code == 0, result.output
    assert "replayed 9 archived events from 1 file (2000-01-01 to 2100-12-31)" in result.stdout
    assert fake_store.ad_stats(["a1"]) == before == {
        "impressions": [6], "views": [2], "saves": [0], "applies": [1], "hides": [0]}


def test_a_replay_into_another_redis_refuses_one_that_holds_counters(archived, fake_store,
                                                                     monkeypatch):
    import fakeredis

    from store import Store
    target = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    monkeypatch.setattr(Store, "from_url", classmethod(lambda cls, url, *a, **k: target))
    result = replay(archived, *ALL_DAYS, "--into", "redis://elsewhere:6379/0")
    assert result.exit_code == 0, result.output
    assert target.ad_stats(["a1"]) == fake_store.ad_stats(["a1"])
    assert target.feed_id_secret() == fake_store.feed_id_secret()
    again = replay(archived, *ALL_DAYS, "--into", "redis://elsewhere:6379/0")
    assert again.exit_code == 1 and "holds counters already" in again.stderr
    assert target.ad_stats(["a1"])["impressions"] == [6]                # nothing added


@pytest.mark.parametrize(("args", "said"), [
    ((*ALL_DAYS,), "give one of --into REDIS_URL or --in-place"),
    ((*ALL_DAYS, "--in-place", "--into", "redis://x:1/0"), "give one of"),
    (("--from", "2026-12-05", "--to", "2026-12-01", "--in-place"), "must not be after --to"),
    (("--from", "05/12/2026", "--to", "2026-12-05", "--in-place"), "'05/12/2026' does not match"),
])
def test_bad_replay_options_are_usage_errors(archived, args, said):
    result = replay(archived, *args)
    assert result.exit_code == 2 and said in result.output


def test_a_replay_of_days_with_nothing_archived_exits_1(archived, fake_store):
    before = fake_store.ad_stats(["a1"])
    result = replay(archived, "--from", "1999-01-01", "--to", "1999-01-02", "--in-place")
    assert result.exit_code == 1 and "no archived events from 1999-01-01" in result.stderr
    assert fake_store.ad_stats(["a1"]) == before                     # nothing deleted
