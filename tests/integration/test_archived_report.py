"""bench.report_ctr, small, on a real redis-server of its own: a quarter of archived events,
one file an archive run, compacted to a file a closed day; ``flask --app webapp report ctr
--days 90``, run as a user runs it against a Redis that holds no daily counters, reports
every event of those days from the archive, and the report names the archived days."""
from __future__ import annotations

from bench.report_ctr import DAYS, markdown, measure


def test_report_ctr_over_a_quarter_of_archived_events_counts_every_event():
    r = measure(events=18_000, runs_per_day=24, repeats=1)
    assert r["totals_match"], (r["totals_expected"], r["totals_reported"])
    assert r["totals_reported"]["impressions"] > 10_000 and r["totals_reported"]["applies"] > 0
    assert r["files_written"] > 10 * (DAYS - 1)       # about 13 of 24 runs a day wrote one
    # every closed day merged into one file; today's (open) files are left as they are
    assert r["files_after_compaction"] == r["files_written"] - r["files_merged"] + (DAYS - 1)
    assert r["files_after_compaction"] <= DAYS + 24
    assert r["archived_days_reported"] >= DAYS - 1
    text = markdown({**r, "machine": {"date": "2026-12-06T00:00:00+00:00",
                                      "git_commit": "0" * 40, "os_cpu_count": 2,
                                      "python": "3.11"}})
    assert f"{r['report_median_s']}" in text and "**True**" in text
