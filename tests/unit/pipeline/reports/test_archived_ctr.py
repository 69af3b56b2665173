"""The daily CTR counted again from the archive (pipeline.archive.ctr_counters) after a
simulated day of traffic: the same counters, field by field, as the rollup kept in Redis,
whichever secret the reader holds (the archive keeps the credited strategy), and for files
an earlier version wrote without it; and the report reading the archive for exactly the
days before the first one Redis holds."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import fakeredis
import pyarrow.parquet as pq
import pytest

from config import load_settings
from pipeline.archive import Archive
from pipeline.reports.archived_ctr import archived_ctr, ctr_counters
from pipeline.reports.ctr import daily_ctr
from store import Store
from tests.support.day_of_traffic import a_day_of_traffic


def new_store(partitions: int = 1) -> Store:
    return Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()), partitions)


def held_days(store: Store) -> list[str]:
    found = {k.decode().rsplit(":", 1)[-1] for p in store.parts
             for k in store.r.scan_iter(match=p.ctr("*"))}
    return sorted(found - {"all"})


@pytest.fixture(scope="module", params=[1, 3], ids=["1-partition", "3-partitions"])
def day(request, tmp_path_factory):
    """A live store after a day of traffic, its settings, and the days it counted."""
    partitions = request.param
    archive = tmp_path_factory.mktemp("archive")
    settings = load_settings({}, archive_url=str(archive), event_partitions=partitions)
    live = new_store(partitions)
    a_day_of_traffic(live, settings, seed=11)
    return live, settings, held_days(live)


def test_the_archive_gives_back_each_days_counters_as_the_rollup_kept_them(day):
    live, settings, days = day
    assert len(days) >= 2                     # the day crosses midnight, and some events
    kept = live.ctr_days(days)                # came up to an hour late
    assert all(any(":applies" in f for f in kept[d]) for d in days)
    archive = Archive(settings.archive_url)
    assert ctr_counters(archive, days, live.feed_id_secret(), settings.event_max_age_s) == kept
    # a reader with another secret (a Redis started anew) credits the same strategies
    assert ctr_counters(archive, days, b"another", settings.event_max_age_s) == kept
    quiet = ["1999-12-31", "2030-06-01"]
    assert ctr_counters(archive, quiet, b"another", settings.event_max_age_s) == {
        d: {} for d in quiet}


def test_files_without_the_credited_strategy_are_credited_with_the_secret(day, tmp_path):
    live, settings, days = day
    old = tmp_path / "old"
    for path in Path(settings.archive_url).rglob("p*.parquet"):   # as an earlier version
        table = pq.read_table(path)                               # wrote them
        copy = old / path.relative_to(settings.archive_url)
        copy.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.drop_columns(["credited"]), copy)
    archive = Archive(str(old))
    kept = live.ctr_days(days)
    assert ctr_counters(archive, days, live.feed_id_secret(), settings.event_max_age_s) == kept
    uncredited = ctr_counters(archive, days, b"another", settings.event_max_age_s)
    assert uncredited == {d: {f: n for f, n in kept[d].items() if ":" not in f} for d in days}


def test_the_report_reads_the_archive_for_the_days_before_the_first_one_redis_holds(day):
    live, settings, days = day
    start, end = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    expected = daily_ctr(live, start, end, "thompson")
    assert expected.sources == ("redis",) * len(days)

    fresh = new_store(len(live.parts))         # a Redis started after these days
    report = daily_ctr(fresh, start, end, "thompson", archived=archived_ctr(fresh, settings))
    assert report.sources == ("archive",) * len(days)
    assert (report.rows, report.totals) == (expected.rows, expected.totals)
    assert daily_ctr(fresh, start, end).totals.impressions == 0   # without the archive

    # a Redis that holds the last day: the days before it from the archive, it from Redis
    last = live.ctr_days([days[-1]])[days[-1]]
    fresh.r.hset(fresh.parts[0].ctr(days[-1]), mapping={f: n - 1 for f, n in last.items()})
    report = daily_ctr(fresh, start, end, archived=archived_ctr(fresh, settings))
    assert report.sources == ("archive",) * (len(days) - 1) + ("redis",)
    assert report.rows[-1].impressions == last["impressions"] - 1
    assert report.rows[:-1] == daily_ctr(live, start, end).rows[:-1]
