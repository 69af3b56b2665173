"""The ad catalogue: PUT creates then replaces, GET shows an ad and whether it is live, DELETE
removes it; `flask ads import` loads a JSON-lines file line by line, reporting each bad line,
and `flask ads demo` writes a catalogue that imports cleanly."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from pipeline.catalogue import AdRecord, category_code, delete_ad, reindex, upsert_ads
from pipeline.serving.cellfeed import ad_card
from store import NO_EXPIRY, Keys
from tests.support.api import ad_body, error_of, put_ad


def stored_ad_ids(fake_store) -> set[str]:
    return {k.decode().removeprefix("ad:") for k in fake_store.r.scan_iter("ad:*")}


def test_put_creates_then_replaces(client, admin, fake_store):
    created = client.put("/v1/ads/ad-1", headers=admin,
                         json=ad_body(52.52, 13.405, title="Barista", category="hospitality"))
    assert created.status_code == 201
    body = created.get_json()
    assert body["ad_id"] == "ad-1" and body["title"] == "Barista" and body["live"] is True
    assert (body["lat"], body["lon"]) == (52.52, 13.405)

    replaced = client.put("/v1/ads/ad-1", headers=admin,
                          json=ad_body(52.50, 13.40, title="Head Barista"))
    assert replaced.status_code == 200
    shown = client.get("/v1/ads/ad-1").get_json()
    assert shown["title"] == "Head Barista"
    assert (shown["lat"], shown["lon"]) == (52.50, 13.40)
    # a replacement is whole: a field the new version leaves out is gone
    assert shown["category"] == "other"
    assert stored_ad_ids(fake_store) == {"ad-1"}


def test_get_returns_the_ad_as_put(client, admin):
    now = time.time()
    put_ad(client, admin, "ad-1", 48.8566, 2.3522, title="  Line Cook  ", company="Open Kitchen",
           category="hospitality", description="Evenings.", created_at=now - 3600,
           expires_at=now + 86_400)
    response = client.get("/v1/ads/ad-1")
    assert response.status_code == 200
    ad = response.get_json()
    assert ad == {"ad_id": "ad-1", "lat": 48.8566, "lon": 2.3522, "title": "Line Cook",
                  "company": "Open Kitchen", "category": "hospitality",
                  "description": "Evenings.", "created_at": now - 3600,
                  "expires_at": now + 86_400, "live": True}


def test_put_answers_the_ad_as_get_shows_it_and_its_record_reads(client, admin, fake_store):
    now = time.time()
    put = put_ad(client, admin, "ad-1", -33.8688, 151.2093, title="Bäcker", created_at=now - 60,
                 expires_at=now + 86_400)
    got = client.get("/v1/ads/ad-1")
    assert put.get_data() == got.get_data()
    assert got.get_json() == AdRecord.from_fields("ad-1", fake_store.get_ad("ad-1")).wire(now)


def test_created_at_defaults_to_now(client, admin):
    before = time.time()
    ad = put_ad(client, admin, "ad-1", 1.0, 2.0).get_json()
    assert before <= ad["created_at"] <= time.time()
    assert ad["expires_at"] is None and ad["live"] is True


def test_an_ad_past_its_expiry_is_not_live(client, admin):
    now = time.time()
    put_ad(client, admin, "old", 52.52, 13.405, created_at=now - 7200, expires_at=now - 3600)
    put_ad(client, admin, "iso", 52.52, 13.405, created_at="2020-01-01T00:00:00+01:00",
           expires_at="2020-02-01T00:00:00Z")
    for ad_id in ("old", "iso"):
        ad = client.get(f"/v1/ads/{ad_id}").get_json()
        assert ad["live"] is False, ad
        assert ad["expires_at"] < now
    assert client.get("/v1/ads/iso").get_json()["expires_at"] == 1_580_515_200.0


def test_delete_removes_the_ad(client, admin, fake_store):
    put_ad(client, admin, "ad-1", 52.52, 13.405)
    put_ad(client, admin, "ad-2", 52.52, 13.405)
    response = client.delete("/v1/ads/ad-1", headers=admin)
    assert response.status_code == 204 and response.get_data() == b""
    error_of(client.get("/v1/ads/ad-1"), 404, "ad_id")
    error_of(client.delete("/v1/ads/ad-1", headers=admin), 404, "ad_id")
    near = client.get("/v1/ads/nearby", query_string={"lat": 52.52, "lon": 13.405}).get_json()
    assert [a["ad_id"] for a in near["ads"]] == ["ad-2"]
    assert client.get("/v1/ads/ad-2").status_code == 200


def test_get_and_delete_of_an_unknown_ad_are_404(client, admin):
    error_of(client.get("/v1/ads/never"), 404, "ad_id")
    error_of(client.delete("/v1/ads/never", headers=admin), 404, "ad_id")


def test_an_ad_at_a_valid_polar_latitude_is_not_a_500(client, admin, fake_store):
    """lat 86 is inside the contract's [-90, 90], but Redis geo sets only hold latitudes up
    to 85.05112878. The PUT must either store the ad or refuse it with a 400 on lat; it
    must not fail half-way with a 500 and leave a record the geo index does not know."""
    response = client.put("/v1/ads/polar", headers=admin, json=ad_body(86.0, 2.0))
    assert response.status_code in (201, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        error_of(response, 400, "lat")
        error_of(client.get("/v1/ads/polar"), 404, "ad_id")
        assert stored_ad_ids(fake_store) == set()
    else:
        assert client.get("/v1/ads/polar").get_json()["live"] is True


# ---- flask ads import / ads demo ----------------------------------------------------------

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


def first_layout(store, ad_id: str) -> None:
    """Rewrite an ad's summary as the first version wrote it: lat, lon, expiry, card."""
    fields = store.get_ad(ad_id)
    expiry = float(fields.get("expires_at", NO_EXPIRY))
    fixed = np.array([(float(fields["lat"]), float(fields["lon"]), expiry)], dtype="<f8,<f8,<f8")
    store.r.hset(Keys.ads_summary, ad_id,
                 fixed.tobytes() + ad_card(ad_id, fields["title"], fields["company"]))


def test_summaries_of_the_first_layout_still_serve_valid_feeds(client, admin, fake_store):
    for i in range(5):
        put_ad(client, admin, f"old-{i}", 52.52 + i * 1e-3, 13.405, title=f"Job {i}",
               category="care")
        first_layout(fake_store, f"old-{i}")
    response = client.get("/v1/feed", query_string={"lat": 52.52, "lon": 13.405})
    assert response.status_code == 200
    body = orjson.loads(response.get_data())          # valid JSON, cards whole
    assert {a["ad_id"]: a["title"] for a in body["ads"]} == {f"old-{i}": f"Job {i}"
                                                            for i in range(5)}
    rows = fake_store.ad_summaries().rows
    assert (rows["created"] == 0).all() and (rows["cat"] == 0).all()


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
    card = found.buffer[found.card_starts[0]:found.card_starts[0] + found.card_lengths[0]]
    assert orjson.loads(card + b"}")["ad_id"] == "keep"
    assert fake_store.live_ad_ids() == ["keep"]
    evidence = fake_store.decayed_evidence(["keep"])
    assert evidence.values[0].tolist() == [40, 0, 0, 3]
    assert evidence.updated_at[0] == pytest.approx(now + 2)


def test_reindex_never_brings_back_an_ad_deleted_while_it_runs(fake_store, settings,
                                                               monkeypatch):
    upsert_ads(fake_store, settings, [AdRecord("a1", 52.52, 13.405, "t", "c", "care", "", 0.0,
                                               None)])
    real = fake_store.rebuild_indexes
    raced = []

    def delete_during(ad_ids, rows_of, evidence_at):
        def racing_rows_of(records):
            if not raced:                         # the ad goes between the read and the write
                raced.append(1)
                delete_ad(fake_store, settings, "a1")
            return rows_of(records)
        return real(ad_ids, racing_rows_of, evidence_at)

    monkeypatch.setattr(fake_store, "rebuild_indexes", delete_during)
    assert reindex(fake_store, settings, time.time()) == (0, 1)
    assert fake_store.get_ad("a1") is None
    assert fake_store.live_ad_ids() == [] and fake_store.ad_summaries().ids == []
