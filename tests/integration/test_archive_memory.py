"""bench.archive on a real redis-server of its own, small: every element of the telemetry is
counted, the event ids are fingerprints in intsets, an archive run with EVENTS_RETENTION_S=0
leaves only the last entry's millisecond of the stream and none of the served log in Redis,
and the steady state it reports follows from the per-item bytes it measured."""
from __future__ import annotations

from bench.archive import OLD_RETENTION_S, RETENTION_S, markdown, measure


def test_the_archive_run_empties_the_streams_and_the_report_adds_up():
    r = measure(posts=400, feeds=1000)
    held, left = r["redis_bytes"], r["redis_bytes_after_archive"]
    assert r["archive_report"]["events_rows"] == r["events"] == 20_000
    assert r["archive_report"]["served_rows"] == 1000
    assert left["events"] < held["events"] / 20 and left["served"] < held["served"] / 100
    assert left["dedupe"] == held["dedupe"]          # the dedupe sets are not the archive's
    per = r["per_event"]
    assert 50 < per["stream"] < 1000
    # the fingerprints: 10,000 a bucket in 256 intsets, 8 bytes each and the sets' keys
    for bucket in r["dedupe_buckets"].values():
        assert bucket["ids"] == 10_000 and bucket["intsets"] == bucket["shards"] == 256
    assert 8 <= per["dedupe_id"] < 16 and per["dedupe_id_before"] > 4 * per["dedupe_id"]
    s = r["steady_state_per_event_per_s"]
    assert s["before"]["stream"] == per["stream"] * OLD_RETENTION_S
    assert s["after"]["stream"] == per["stream"] * RETENTION_S
    assert s["ratio"] == s["before"]["total"] / s["after"]["total"] > 1
    text = markdown({**r, "machine": {"date": "2026-12-05T17:00:00+00:00"}})
    assert f"{s['ratio']:.1f} x" in text
