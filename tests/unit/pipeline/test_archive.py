"""pipeline.archive on a fakeredis store and a local directory: every counted event and
served feed reaches a Parquet file exactly once, whatever step a run dies at; nothing not yet
counted is taken; files are split by day and written in row groups; the retention trim
never drops an entry not archived yet; once a day is closed its files are merged, rows and
their order unchanged, and a merge that stops before or after its rename loses and doubles
nothing."""
from __future__ import annotations

import random
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from config import Settings, load_settings
from pipeline.archive import Archive, read_archive, run_archive
from pipeline.learning.ingest import Event, accept_batch, roll_in
from pipeline.learning.rollup import run_rollup
from pipeline.serving.feed import make_feed_id
from store import Store
from tests.conftest import NOW
from tests.support.builders import catalogue, events_of, send
from tests.support.served_log import add_events, add_served, event, old_event
from tests.support.served_log import served as served_entry

DAY = 86_400.0


def archived_settings(tmp_path: Path, **overrides) -> Settings:
    return load_settings({}, archive_url=str(tmp_path / "archive"), **overrides)


def served_feeds(store: Store, at: float, count: int) -> list[dict[str, str]]:
    feeds = []
    for i in range(count):
        ts = at + i * 0.01
        feeds.append({"feed_id": make_feed_id(ts, "u33db", "thompson", random.Random(i),
                                              store.feed_id_secret()),
                      "ts": repr(ts), "cell": "u33db", "strategy": "thompson",
                      "propensity": "0.8", "variant": str(i % 8),
                      "generated_at": repr(at - 30), "cache": "hit", "user_id": "",
                      "ads": "a1 a2 a3"})
    add_served(store, feeds)
    return feeds


def stream_entries(store: Store) -> int:
    return sum(len(chunk) for chunk in store.events_between(0, 2**62))


def hidden_files(settings: Settings) -> list[Path]:
    return [p for p in Path(settings.archive_url).rglob("*") if p.name.startswith(".tmp-")]


def event_ids(url: str) -> list[str]:
    return read_archive(url, "events", ["event_id"]).column("event_id").to_pylist()


def test_every_counted_event_and_served_feed_is_archived_once(fake_store, tmp_path):
    settings = archived_settings(tmp_path)
    first = events_of("a1", NOW, impressions=30, views=5) + events_of("a2", NOW, applies=2,
                                                                       user_id="u1")
    send(fake_store, settings, first, NOW)
    # a duplicate and an unknown ad are not accepted, so never archived
    accept_batch(fake_store, settings, [first[0], Event("x", "no-such-ad", "view", NOW)], NOW)
    feeds = served_feeds(fake_store, NOW - 5, 40)
    run_rollup(fake_store, settings, NOW + 1)

    report = run_archive(fake_store, settings, NOW + 2)
    assert report["events_rows"] == len(first) and report["served_rows"] == 40
    assert sorted(event_ids(settings.archive_url)) == sorted(e.event_id for e in first)
    rows = read_archive(settings.archive_url, "events").to_pylist()
    applies = [r for r in rows if r["type"] == "apply"]
    assert {(r["ad_id"], r["user_id"], r["ts"]) for r in applies} == {("a2", "u1", NOW)}
    assert all(r["accepted_at"] == NOW and r["partition"] == 0 for r in rows)
    served = read_archive(settings.archive_url, "served").to_pylist()
    assert [r["feed_id"] for r in served] == [f["feed_id"] for f in feeds]
    assert served[3]["ads"] == ["a1", "a2", "a3"] and served[3]["variant"] == 3
    assert served[3]["propensity"] == 0.8 and served[3]["user_id"] is None

    again = run_archive(fake_store, settings, NOW + 3)     # nothing new: nothing written
    assert again["events_files"] == again["served_files"] == 0
    later = events_of("a1", NOW + 60, views=7)
    send(fake_store, settings, later, NOW + 60)
    run_rollup(fake_store, settings, NOW + 61)
    assert run_archive(fake_store, settings, NOW + 62)["events_rows"] == 7
    ids = event_ids(settings.archive_url)
    assert sorted(ids) == sorted(e.event_id for e in first + later) and len(set(ids)) == len(ids)
    assert len(Archive(settings.archive_url).files("events")) == 2


def test_only_what_the_rollup_counted_is_archived(fake_store, tmp_path):
    settings = archived_settings(tmp_path, rollup_claim_idle_s=1)
    send(fake_store, settings, events_of("a1", NOW, views=3), NOW)
    assert run_archive(fake_store, settings, NOW)["events_rows"] == 0   # not counted yet
    run_rollup(fake_store, settings, NOW + 1)
    send(fake_store, settings, events_of("a1", NOW + 2, views=4), NOW + 2)
    fake_store.read_new("a-consumer", 10)     # delivered, pending: not counted either
    send(fake_store, settings, events_of("a1", NOW + 3, views=5), NOW + 3)
    served_feeds(fake_store, NOW, 5)           # served, not yet counted into the strategies
    report = run_archive(fake_store, settings, NOW + 4)
    assert report["events_rows"] == 3 and report["served_rows"] == 0
    time.sleep(1.1)                               # ROLLUP_CLAIM_IDLE_S: the entry is reclaimed
    run_rollup(fake_store, settings, NOW + 5)
    report = run_archive(fake_store, settings, NOW + 6)
    assert report["events_rows"] == 9 and report["served_rows"] == 5
    assert len(event_ids(settings.archive_url)) == 12


class Died(BaseException):
    """A worker dying at a step (BaseException: no ``except Exception`` catches it)."""


@pytest.mark.parametrize("step", ["writing", "renamed", "cursor_moved"])
def test_a_run_that_dies_at_any_step_loses_and_doubles_nothing(fake_store, tmp_path,
                                                               monkeypatch, step):
    settings = archived_settings(tmp_path, archive_row_group=100)
    events = [e for a in range(20) for e in events_of(f"a{a}", NOW, impressions=25)]
    for i in range(0, len(events), 50):
        send(fake_store, settings, events[i:i + 50], NOW)
    run_rollup(fake_store, settings, NOW + 1)
    real_write, real_move = Archive.write, Store.move_archive_cursor

    def dying_write(self, kind, day, partition, first, groups):
        if kind != "events":
            return real_write(self, kind, day, partition, first, groups)
        if step == "writing":
            def die_after_one():
                yield next(groups)
                raise Died
            return real_write(self, kind, day, partition, first, die_after_one())
        done = real_write(self, kind, day, partition, first, groups)
        if step == "renamed":
            raise Died
        return done

    def dying_move(self, kind, partition, expected, new):
        moved = real_move(self, kind, partition, expected, new)
        if step == "cursor_moved":
            raise Died
        return moved

    monkeypatch.setattr(Archive, "write", dying_write)
    monkeypatch.setattr(Store, "move_archive_cursor", dying_move)
    with pytest.raises(Died):
        run_archive(fake_store, settings, NOW + 2)
    monkeypatch.undo()
    assert len(hidden_files(settings)) == (1 if step == "writing" else 0)

    report = run_archive(fake_store, settings, NOW + 3)
    assert report["events_adopted"] == (1 if step == "renamed" else 0)
    ids = event_ids(settings.archive_url)
    assert sorted(ids) == sorted(e.event_id for e in events)        # none lost, none twice
    assert hidden_files(settings) == []


def test_files_are_split_by_the_day_entries_reached_redis_and_in_row_groups(fake_store,
                                                                          tmp_path):
    settings = archived_settings(tmp_path, archive_row_group=100)
    midnight = (NOW // DAY + 1) * DAY
    entries = [event(None, midnight - 300 + i) for i in range(250)]
    entries += [old_event(None, midnight + 10 + i) for i in range(20)]   # an earlier layout
    add_events(fake_store, entries)
    add_served(fake_store, [served_entry(f"f{i}", midnight - 1 + i, "thompson", 0.5)
                            for i in range(3)])
    run_rollup(fake_store, settings, midnight + 60)
    run_archive(fake_store, settings, midnight + 61)
    archive = Archive(settings.archive_url)
    files = archive.files("events")
    assert [Path(f).parent.name for f in files] == ["date=2027-01-15", "date=2027-01-16"]
    first = pq.ParquetFile(files[0])
    assert first.metadata.num_rows == 250 and first.num_row_groups == 3
    assert pq.read_table(files[1]).num_rows == 20
    assert [Path(f).parent.name for f in archive.files("served")] == ["date=2027-01-15",
                                                                      "date=2027-01-16"]
    rows = read_archive(settings.archive_url, "events").to_pylist()
    assert [r["ts"] for r in rows] == [t - 1 for t, _ in entries]
    assert {(r["ad_id"], r["type"], r["user_id"], r["position"]) for r in rows} == {
        ("ad1", "apply", "u1", 1)}


def test_the_retention_trim_keeps_what_is_not_archived(fake_store, tmp_path):
    settings = archived_settings(tmp_path)
    send(fake_store, settings, events_of("a1", NOW, views=3), NOW)
    time.sleep(0.002)     # the next entry a later millisecond (the trim keeps the last one's)
    send(fake_store, settings, events_of("a1", NOW, views=4), NOW)
    run_rollup(fake_store, settings, NOW + 1)
    much_later = NOW + settings.events_retention_s + 3600
    run_rollup(fake_store, settings, much_later)              # past retention, not archived
    assert stream_entries(fake_store) == 2
    run_archive(fake_store, settings, much_later)
    run_rollup(fake_store, settings, much_later + 1)          # archived: now trimmed
    assert stream_entries(fake_store) == 1
    assert len(event_ids(settings.archive_url)) == 7


def test_roll_in_helper_is_used_as_the_ingest_task_does(fake_store, tmp_path):
    """An accepted batch that never reached the stream is not archived until it does."""
    settings = archived_settings(tmp_path)
    catalogue(fake_store, ["a1"])
    accepted = accept_batch(fake_store, settings, events_of("a1", NOW, views=2), NOW)
    run_archive(fake_store, settings, NOW)
    assert event_ids(settings.archive_url) == []
    roll_in(fake_store, accepted.batch_id)
    run_rollup(fake_store, settings, NOW + 1)
    run_archive(fake_store, settings, NOW + 2)
    assert len(event_ids(settings.archive_url)) == 2


def test_a_run_trims_what_it_archived_once_past_the_retention(fake_store, tmp_path):
    settings = archived_settings(tmp_path, events_retention_s=900)
    for _ in range(3):
        send(fake_store, settings, events_of("a1", NOW, views=2), NOW)
        time.sleep(0.002)           # each entry its own millisecond
    wall = time.time()              # the events' stream ids are the server's clock
    served_feeds(fake_store, wall - 5, 6)
    run_rollup(fake_store, settings, NOW + 1)
    report = run_archive(fake_store, settings, wall)                 # all within 900 s
    assert report["events_trimmed"] == report["served_trimmed"] == 0
    assert stream_entries(fake_store) == 3 and fake_store.served_count() == 6
    send(fake_store, settings, events_of("a1", NOW, views=5), NOW)   # counted, not archived
    report = run_archive(fake_store, settings, wall + 901)
    assert report["events_trimmed"] == 2 and report["served_trimmed"] == 6
    # the last archived entry's millisecond stays (the rollup's trim keeps its group's last
    # delivered entry), and the entry not yet counted, of course
    assert stream_entries(fake_store) == 2 and fake_store.served_count() == 0
    run_rollup(fake_store, settings, NOW + 2)
    run_archive(fake_store, settings, wall + 902)
    assert sorted(event_ids(settings.archive_url)) == sorted(set(event_ids(settings.archive_url)))
    assert len(event_ids(settings.archive_url)) == 11

# ---- compaction: a closed day's files merged into as few as ARCHIVE_FILE_ROWS allows ----

MIDNIGHT = (NOW // DAY + 1) * DAY            # 2027-01-16T00:00:00Z


class Dying:
    """A file system whose ``step`` method kills the worker."""

    def __init__(self, fs, step: str) -> None:
        self.fs, self.step = fs, step

    def __getattr__(self, name: str):
        if name == self.step:
            raise Died
        return getattr(self.fs, name)


@pytest.fixture
def compacting(tmp_path):
    """Small row groups and files, so that a few archive runs make a merge."""
    return archived_settings(tmp_path, archive_row_group=100, archive_file_rows=1000)


def archive_runs(store: Store, settings: Settings, at: float, runs: int, rows: int) -> list:
    """``runs`` archive runs ten minutes apart from ``at``, each after ``rows`` events reached
    the stream and were counted; returns the events' (time, payload)."""
    sent = []
    secret = store.feed_id_secret()
    for r in range(runs):
        start = at + r * 600
        feed = make_feed_id(start - 5, "u33dbc", "popular", random.Random(r), secret)
        batch = [event(feed, start + i * 0.01, "impression") for i in range(rows)]
        add_events(store, batch)
        sent += batch
        run_rollup(store, settings, start + 60)
        run_archive(store, settings, start + 61)
    return sent


def files_of(settings: Settings, day: str) -> list[str]:
    return [f for f in Archive(settings.archive_url).files("events") if f"date={day}" in f]


def all_event_ids(settings: Settings) -> list[str]:
    return event_ids(settings.archive_url)


def test_a_closed_days_files_are_merged_and_the_open_day_is_left_alone(fake_store, compacting):
    sent = archive_runs(fake_store, compacting, MIDNIGHT - 3000, runs=4, rows=200)
    before = all_event_ids(compacting)
    assert len(files_of(compacting, "2027-01-15")) == 4
    # a run on the next day closes 2027-01-15
    sent += archive_runs(fake_store, compacting, MIDNIGHT + 600, runs=2, rows=150)
    merged = files_of(compacting, "2027-01-15")
    assert len(merged) == 1                     # 800 rows, under ARCHIVE_FILE_ROWS
    name = Path(merged[0]).name
    assert name.startswith(f"p0_{int((MIDNIGHT - 3000) * 1000)}-")
    assert name.endswith(f"_{int((MIDNIGHT - 1200 + 199 * 0.01) * 1000)}-199.parquet")
    table = pq.ParquetFile(merged[0])
    assert table.metadata.num_rows == 800 and table.num_row_groups == 8
    assert pq.read_table(merged[0]).column("credited").to_pylist() == ["popular"] * 800
    assert len(files_of(compacting, "2027-01-16")) == 2          # still open
    assert all_event_ids(compacting)[:800] == before                   # in the same order
    assert len(all_event_ids(compacting)) == len(sent) == 1100


def test_a_merge_holds_at_most_archive_file_rows(fake_store, compacting):
    archive_runs(fake_store, compacting, MIDNIGHT - 3600, runs=5, rows=300)
    archive_runs(fake_store, compacting, MIDNIGHT + 600, runs=1, rows=10)
    rows = [pq.read_metadata(f).num_rows for f in files_of(compacting, "2027-01-15")]
    assert rows == [900, 600]                    # 3 files, then 2: each at most 1000
    assert len(all_event_ids(compacting)) == 1510


@pytest.mark.parametrize("step", ["before_rename", "after_rename"])
def test_a_merge_that_stops_loses_and_doubles_nothing(fake_store, compacting, monkeypatch,
                                                      step):
    archive_runs(fake_store, compacting, MIDNIGHT - 3000, runs=3, rows=100)
    expected = all_event_ids(compacting)
    real_merge = Archive.merge

    def dying_merge(self, *args):
        self.fs = Dying(self.fs, "mv" if step == "before_rename" else "rm")
        return real_merge(self, *args)

    monkeypatch.setattr(Archive, "merge", dying_merge)
    with pytest.raises(Died):
        archive_runs(fake_store, compacting, MIDNIGHT + 600, runs=1, rows=10)
    monkeypatch.undo()
    left = sorted(p.name for p in (Path(compacting.archive_url) / "events" / "date=2027-01-15")
                  .iterdir())
    assert len(left) == 4                   # the 3 inputs, and the temporary or merged file
    assert all_event_ids(compacting)[:300] == expected               # read once, either way
    assert len(files_of(compacting, "2027-01-15")) == (3 if step == "before_rename" else 1)

    run_archive(fake_store, compacting, MIDNIGHT + 2000)      # the next run finishes it
    on_disk = list((Path(compacting.archive_url) / "events" / "date=2027-01-15").iterdir())
    assert len(on_disk) == 1 and not on_disk[0].name.startswith(".tmp-")
    assert all_event_ids(compacting)[:300] == expected
    assert len(all_event_ids(compacting)) == 310


def test_files_of_an_earlier_version_get_the_credited_strategy(fake_store, compacting):
    archive_runs(fake_store, compacting, MIDNIGHT - 3000, runs=2, rows=100)
    for path in files_of(compacting, "2027-01-15"):          # as an earlier version wrote
        pq.write_table(pq.read_table(path).drop_columns(["credited"]), path)
    archive_runs(fake_store, compacting, MIDNIGHT + 600, runs=1, rows=10)
    merged = files_of(compacting, "2027-01-15")
    assert len(merged) == 1
    assert pq.read_table(merged[0]).column("credited").to_pylist() == ["popular"] * 200
