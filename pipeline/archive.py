"""The archive: every event and every served feed, once counted, written to Parquet files.

Layout, under ARCHIVE_URL (a local directory, or any fsspec URL such as ``s3://bucket/path``)::

    events/date=2026-12-05/p0_1764892800000-0_1764893400000-7.parquet
    served/date=2026-12-05/p0_1764892800012-0_1764893399998-3.parquet

one directory per kind and UTC day (the day of the stream entries' ids: when they reached
Redis); a file holds the entries of one stream partition from its first to its last, both
named. A file is written in row groups of ARCHIVE_ROW_GROUP rows (memory stays bounded by
one group), under a hidden temporary name, then renamed; then the stream's cursor (the
last entry archived) moves on.

Exactly once: a run starts at the first entry after the cursor. If a file named from that
entry exists, a run that died after renaming it already wrote it: the cursor moves to the
file's last entry and nothing is written again. A run that died before the rename left only
a hidden temporary file, removed by the next run, which writes the file anew. The streams
are trimmed no further than the cursor, so the entry a run starts from is always the same.
One run at a time holds the archive lock. After archiving, a run trims each stream of what it
archived that is older than EVENTS_RETENTION_S: Redis keeps minutes of raw events, the
archive every one.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from config import Settings
from pipeline.learning.rollup import credited_feeds, day_of
from store import Store, StreamEntry, _entry_ms

log = logging.getLogger(__name__)

EVENTS_SCHEMA = pa.schema([
    ("entry_id", pa.string()),       # the events-stream entry (one accepted post's batch)
    ("partition", pa.int16()),
    ("event_id", pa.string()),
    ("ad_id", pa.string()),
    ("type", pa.string()),
    ("ts", pa.float64()),            # when the event happened (seconds, UTC)
    ("user_id", pa.string()),
    ("feed_id", pa.string()),
    ("position", pa.int32()),
    ("accepted_at", pa.float64()),
    ("credited", pa.string()),       # the strategy the rollup credited (null: none)
])
SERVED_SCHEMA = pa.schema([
    ("entry_id", pa.string()),       # the served-log entry
    ("feed_id", pa.string()),
    ("ts", pa.float64()),
    ("cell", pa.string()),
    ("strategy", pa.string()),
    ("propensity", pa.float64()),
    ("variant", pa.int32()),
    ("generated_at", pa.float64()),
    ("cache", pa.string()),
    ("user_id", pa.string()),
    ("ads", pa.list_(pa.string())),
    ("employer_moved", pa.list_(pa.string())),   # ads the employer rule moved down
    ("frequency_moved", pa.list_(pa.string())),  # ads the frequency cap moved down
    ("rules", pa.string()),                      # the feed rules in force ("NAME=value ...")
])
SCHEMAS = {"events": EVENTS_SCHEMA, "served": SERVED_SCHEMA}
READ_CHUNK = 500          # stream entries read per XRANGE (an events entry holds one post)
FILE_NAME = re.compile(r"^p(\d+)_(\d+-\d+)_(\d+-\d+)\.parquet$")
TEMPORARY = ".tmp-"


def day_of_entry(entry_id: str) -> str:
    """The UTC day a stream entry reached Redis.

    >>> day_of_entry("1764892799999-3"), day_of_entry("1764892800000-0")
    ('2025-12-04', '2025-12-05')
    """
    return day_of(_entry_ms(entry_id) / 1000)


class Archive:
    """The files under ARCHIVE_URL, through fsspec (the local file system by default)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.root = url_to_fs(url)      # made by the first write

    def directory(self, kind: str, day: str) -> str:
        return f"{self.root.rstrip('/')}/{kind}/date={day}"

    def find(self, kind: str, day: str, partition: int, first: str) -> str | None:
        """The last entry of the file that starts at ``first``, if one was written."""
        for path in self.fs.glob(f"{self.directory(kind, day)}/p{partition}_{first}_*.parquet"):
            match = FILE_NAME.match(path.rsplit("/", 1)[-1])
            if match:
                return match.group(3)
        return None

    def drop_temporary(self, kind: str, partition: int) -> int:
        """Remove what a run that died before its rename left (only the lock's holder calls
        this, so no run is writing them)."""
        found = self.fs.glob(f"{self.root.rstrip('/')}/{kind}/date=*/{TEMPORARY}p{partition}_*")
        for path in found:
            self.fs.rm(path)
        return len(found)

    def write(self, kind: str, day: str, partition: int, first: str,
              groups: Iterator[tuple[pa.RecordBatch, str]]) -> tuple[str, int]:
        """Write ``groups`` (a row group each, with the last entry it holds) to a temporary
        file, then rename it to its name. Returns the last entry and the rows written."""
        directory = self.directory(kind, day)
        self.fs.makedirs(directory, exist_ok=True)
        temporary = f"{directory}/{TEMPORARY}p{partition}_{first}_{uuid.uuid4().hex}"
        last, rows = first, 0
        with self.fs.open(temporary, "wb") as out, \
                pq.ParquetWriter(out, SCHEMAS[kind], compression="zstd") as writer:
            for batch, last_in in groups:
                writer.write_batch(batch)
                last, rows = last_in, rows + batch.num_rows
        self.fs.mv(temporary, f"{directory}/p{partition}_{first}_{last}.parquet")
        return last, rows

    def files_between(self, kind: str, start_ms: int, end_ms: int) -> list[str]:
        """The files of one kind holding entries that reached Redis from ``start_ms`` to
        ``end_ms`` (by the first and last entry their names give)."""
        out = []
        for path in self.files(kind):
            match = FILE_NAME.match(path.rsplit("/", 1)[-1])
            if (match and _entry_ms(match.group(2)) <= end_ms
                    and _entry_ms(match.group(3)) >= start_ms):
                out.append(path)
        return out

    def files(self, kind: str) -> list[str]:
        """Every file of one kind, oldest day first, but those a compacted file holds (left
        by a compaction that stopped before deleting them: ``superseded``)."""
        found = [p for p in self.fs.glob(f"{self.root.rstrip('/')}/{kind}/date=*/p*.parquet")
                 if FILE_NAME.match(p.rsplit("/", 1)[-1])]
        gone = superseded(found)
        return sorted(p for p in found if p not in gone)

    def merge(self, kind: str, paths: list[str], row_group: int,
              conform: Callable[[pa.RecordBatch], pa.RecordBatch]) -> str:
        """Write the rows of ``paths`` (consecutive files of one day and partition, in
        stream order) into one file named from the first's first entry to the last's last
        entry, in row groups of ``row_group`` rows (memory stays bounded by one), under a
        temporary name then renamed; then delete them. A merge that stops before the rename
        leaves a temporary file (``drop_temporary``), one that stops after it leaves files the
        merged one holds (``superseded``): no row is lost or read twice either way."""
        first_name, last_name = (FILE_NAME.match(p.rsplit("/", 1)[-1])
                                 for p in (paths[0], paths[-1]))
        assert first_name is not None and last_name is not None
        partition, first, last = first_name.group(1), first_name.group(2), last_name.group(3)
        directory = paths[0].rsplit("/", 1)[0]
        temporary = f"{directory}/{TEMPORARY}p{partition}_{first}_{uuid.uuid4().hex}"
        with self.fs.open(temporary, "wb") as out, \
                pq.ParquetWriter(out, SCHEMAS[kind], compression="zstd") as writer:
            pending: list[pa.RecordBatch] = []
            held = 0
            for path in paths:
                with self.fs.open(path, "rb") as f:
                    for batch in pq.ParquetFile(f).iter_batches(batch_size=row_group):
                        pending.append(conform(batch))
                        held += batch.num_rows
                        if held >= row_group:
                            writer.write_table(pa.Table.from_batches(pending),
                                               row_group_size=row_group)
                            pending, held = [], 0
            if pending:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=row_group)
        merged = f"{directory}/p{partition}_{first}_{last}.parquet"
        self.fs.mv(temporary, merged)
        for path in paths:
            self.fs.rm(path)
        return merged


def _span(path: str) -> tuple[str, str, tuple[int, int], tuple[int, int]] | None:
    """A file's directory, partition and first and last entry (as numbers, to compare)."""
    directory, _, name = path.rpartition("/")
    match = FILE_NAME.match(name)
    if match is None:
        return None
    first, last = (_entry_key(match.group(i)) for i in (2, 3))
    return directory, match.group(1), first, last


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def superseded(paths: list[str]) -> set[str]:
    """The files whose entries another file of the same directory and partition holds (its
    span within the other's): what a compaction merged but had not deleted yet.

    >>> sorted(superseded(["d/p0_1-0_5-0.parquet", "d/p0_1-0_2-0.parquet",
    ...                    "d/p0_3-0_5-0.parquet", "d/p1_1-0_2-0.parquet"]))
    ['d/p0_1-0_2-0.parquet', 'd/p0_3-0_5-0.parquet']
    """
    spans = sorted((s[0], s[1], s[2], (-s[3][0], -s[3][1]), path)
                   for path in paths if (s := _span(path)) is not None)
    gone: set[str] = set()
    group, reach = ("", ""), (-1, -1)
    for directory, partition, _, (ms, seq), path in spans:
        last = (-ms, -seq)
        if (directory, partition) != group:
            group, reach = (directory, partition), last
        elif last <= reach:
            gone.add(path)
        else:
            reach = last
    return gone


def events_rows(entries: list[StreamEntry], partition: int, secret: bytes, max_age_s: float
                ) -> tuple[dict[str, list], int]:
    """The accepted events of events-stream entries as columns, each with the strategy the
    rollup credited (``credited_feeds``: the archive answers for its days without the feed
    id secret); and how many entries could not be read (the rollup acknowledged them
    without counting: they are left out here too, with a warning)."""
    columns: dict[str, list] = {name: [] for name in EVENTS_SCHEMA.names}
    unreadable = 0
    for entry in entries:
        try:
            batch = _batch(entry)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("archive: unreadable event entry %s left out", entry.entry_id)
            unreadable += 1
            continue
        n = len(batch["ad"])
        columns["entry_id"] += [entry.entry_id] * n
        columns["partition"] += [partition] * n
        for name, key in (("event_id", "id"), ("ad_id", "ad"), ("type", "type"),
                          ("ts", "ts"), ("user_id", "user"), ("feed_id", "feed"),
                          ("position", "pos")):
            columns[name] += batch[key]
        columns["accepted_at"] += [batch["at"]] * n
    columns["credited"] = credited_strategies(columns["feed_id"], columns["ts"], secret,
                                              max_age_s)
    return columns, unreadable


def credited_strategies(feed_ids: list[str | None], ts: list[float | None], secret: bytes,
                        max_age_s: float) -> list[str | None]:
    """The strategy each event credits, by the rollup's rule; None where it credits none."""
    when = np.array([np.nan if t is None else t for t in ts], dtype=np.float64)
    credits, _ = credited_feeds(feed_ids, when, secret, max_age_s)
    return [None if c is None else c.strategy for c in credits]


def _batch(entry: StreamEntry) -> dict[str, list]:
    """An entry's accepted events, column by column (``Batch.encode``'s keys)."""
    if entry.kept is None:                  # an earlier version's entry: one event
        event = orjson.loads(entry.payload)
        columns = {k: [event.get(k)] for k in ("id", "ad", "type", "ts", "user", "feed", "pos")}
        columns["id"] = [event.get("event_id", event.get("id"))]
        return {**columns, "at": event.get("at")}
    columns = orjson.loads(entry.payload)
    names = ("id", "ad", "type", "ts", "user", "feed", "pos")
    n = len(columns["ad"])
    if any(len(columns.get(k) or [None] * n) != n for k in names):
        raise ValueError("columns of different lengths")
    kept = [flag == ord("1") for flag in entry.kept]
    if len(kept) != n:
        raise ValueError("one flag an event")
    out = {k: [v for v, keep in zip(columns.get(k) or [None] * n, kept, strict=True) if keep]
           for k in names}
    return {**out, "at": columns.get("at")}


def served_rows(entries: list[tuple[str, dict[str, str]]]) -> dict[str, list]:
    """Served-log entries as columns (a field an older entry lacks is null)."""
    def number(value: str | None, kind: type) -> float | int | None:
        try:
            return kind(value) if value not in (None, "") else None
        except ValueError:
            return None
    return {"entry_id": [i for i, _ in entries],
            "feed_id": [f.get("feed_id") for _, f in entries],
            "ts": [number(f.get("ts"), float) for _, f in entries],
            "cell": [f.get("cell") for _, f in entries],
            "strategy": [f.get("strategy") for _, f in entries],
            "propensity": [number(f.get("propensity"), float) for _, f in entries],
            "variant": [number(f.get("variant"), int) for _, f in entries],
            "generated_at": [number(f.get("generated_at"), float) for _, f in entries],
            "cache": [f.get("cache") for _, f in entries],
            "user_id": [f.get("user_id") or None for _, f in entries],
            "ads": [(f.get("ads") or "").split() for _, f in entries],
            "employer_moved": [(f.get("employer_moved") or "").split() for _, f in entries],
            "frequency_moved": [(f.get("frequency_moved") or "").split() for _, f in entries],
            "rules": [f.get("rules") or None for _, f in entries]}


@dataclass
class Progress:
    files: int = 0
    rows: int = 0
    adopted: int = 0        # files a run that died had written: the cursor moved to them
    unreadable: int = 0


def archive_stream(store: Store, archive: Archive, settings: Settings, kind: str,
                   partition: int, deadline: float, secret: bytes) -> Progress:
    """Archive one stream's counted entries, a file at a time, until none is left or the
    run's time is up."""
    progress = Progress()
    while time.monotonic() < deadline:
        cursor = store.archive_cursor(kind, partition)
        head = _read(store, kind, partition, cursor, 1)
        if not head:
            break
        first = head[0][0]
        day = day_of_entry(first)
        done = archive.find(kind, day, partition, first)
        if done is None:
            groups = _groups(store, settings, kind, partition, cursor, day, progress, secret)
            done, rows = archive.write(kind, day, partition, first, groups)
            progress.files, progress.rows = progress.files + 1, progress.rows + rows
        else:
            log.info("archive: %s file from %s found (a run stopped before moving the "
                     "cursor): cursor moved to %s", kind, first, done)
            progress.adopted += 1
        if not store.move_archive_cursor(kind, partition, cursor, done):
            raise RuntimeError(f"archive: the {kind} cursor of partition {partition} moved "
                               "under a run holding the lock")
    return progress


def _read(store: Store, kind: str, partition: int, after: str, count: int) -> list[tuple]:
    if kind == "served":
        return store.archivable_served(after, count)
    return [(e.entry_id, e) for e in store.archivable_events(partition, after, count)]


def _groups(store: Store, settings: Settings, kind: str, partition: int, cursor: str,
            day: str, progress: Progress, secret: bytes
            ) -> Iterator[tuple[pa.RecordBatch, str]]:
    """Row groups of the entries after ``cursor`` of day ``day``, up to about
    ARCHIVE_FILE_ROWS rows, each with the last entry it holds."""
    after, rows, pending = cursor, 0, []
    while rows < settings.archive_file_rows:
        read = _read(store, kind, partition, after,
                     min(READ_CHUNK, settings.archive_row_group))
        same_day = [r for r in read if day_of_entry(r[0]) == day]
        pending += same_day
        after = same_day[-1][0] if same_day else after
        end = len(same_day) < len(read) or not read
        if pending and (end or _size(kind, pending) >= settings.archive_row_group):
            if kind == "served":
                columns = served_rows(pending)
            else:
                columns, unreadable = events_rows([e for _, e in pending], partition, secret,
                                                  settings.event_max_age_s)
                progress.unreadable += unreadable
            batch = pa.RecordBatch.from_pydict(columns, schema=SCHEMAS[kind])
            rows += batch.num_rows
            yield batch, pending[-1][0]
            pending = []
        if end:
            break


def _size(kind: str, pending: list[tuple]) -> int:
    """Rows that ``pending`` entries make (an events entry holds a post's events)."""
    if kind == "served":
        return len(pending)
    return sum(e.kept.count(b"1") if e.kept is not None else 1 for _, e in pending)


def run_archive(store: Store, settings: Settings, now: float | None = None
                ) -> dict[str, float | int | str]:
    """Archive every stream's counted entries (each partition's events, the served log),
    holding the archive lock; a run that finds it held does nothing."""
    started = time.monotonic()
    lock = store.archive_lock(settings.task_time_limit_s)
    if not lock.acquire():
        return {"skipped_run": "another archive run holds the lock"}
    report: dict[str, float | int | str] = {}
    try:
        archive = Archive(settings.archive_url)
        deadline = started + settings.task_time_limit_s * 0.8
        secret = store.feed_id_secret()       # credits archived events, and old files'
        for kind, partitions in (("events", range(len(store.parts))), ("served", [0])):
            for partition in partitions:
                archive.drop_temporary(kind, partition)
                done = archive_stream(store, archive, settings, kind, partition, deadline,
                                      secret)
                name = kind if partition == 0 else f"{kind}.{partition}"
                report.update({f"{name}_{k}": v for k, v in vars(done).items()})
                report[f"{name}_trimmed"] = trim(store, settings, kind, partition,
                                                 time.time() if now is None else now)
                report[f"{name}_compacted"] = compact_closed_days(
                    archive, store, settings, kind, partition, deadline, secret)
        report.update({f"cursor_{k}": v for k, v in store.archive_cursors().items()})
    finally:
        try:
            lock.release()
        except Exception:   # expired meanwhile: the run took longer than the lock's time
            log.warning("archive: the lock expired before the run ended")
    report["duration_s"] = round(time.monotonic() - started, 3)
    report["finished_at"] = now if now is not None else time.time()
    store.record_job("archive", report)
    return report


def trim(store: Store, settings: Settings, kind: str, partition: int, now: float) -> int:
    """Drop from Redis the stream's entries that are archived and older than
    EVENTS_RETENTION_S (an events entry still pending with a rollup is never dropped)."""
    cursor = store.archive_cursor(kind, partition)
    if cursor == "0-0":                  # nothing archived yet: nothing to drop
        return 0
    min_id_ms = int((now - settings.events_retention_s) * 1000)
    if kind == "served":
        return store.trim_served(min_id_ms, cursor)
    return store.trim_events(min_id_ms, partition, keep_after=cursor)


def compact_closed_days(archive: Archive, store: Store, settings: Settings, kind: str,
                        partition: int, deadline: float, secret: bytes) -> int:
    """Merge each closed day's files of one stream (the days before its cursor's: no entry
    of theirs is still to come) into as few files as ARCHIVE_FILE_ROWS allows, so that a
    day costs a reader one file, not one a run (``secret`` credits the events of files
    written before the archive kept the credited strategy). Returns the files merged away."""
    cursor = store.archive_cursor(kind, partition)
    if cursor == "0-0":
        return 0
    closed = f"date={day_of_entry(cursor)}"
    days: dict[str, list[str]] = {}
    found = archive.fs.glob(f"{archive.root.rstrip('/')}/{kind}/date=*/p{partition}_*.parquet")
    for path in found:
        directory = path.rsplit("/", 2)[-2]
        if directory < closed and FILE_NAME.match(path.rsplit("/", 1)[-1]):
            days.setdefault(directory, []).append(path)

    def conform(batch: pa.RecordBatch) -> pa.RecordBatch:
        return conformed(batch, kind, secret, settings.event_max_age_s)

    merged = 0
    for paths in days.values():
        gone = superseded(paths)
        for path in gone:                  # a merge that stopped before deleting them
            archive.fs.rm(path)
        live = sorted((p for p in paths if p not in gone), key=_span)   # type: ignore[arg-type]
        if len(live) < 2:
            continue
        for run in _runs(archive, live, settings.archive_file_rows):
            if time.monotonic() >= deadline:
                return merged
            archive.merge(kind, run, settings.archive_row_group, conform)
            merged += len(run)
    return merged


def _runs(archive: Archive, paths: list[str], max_rows: int) -> list[list[str]]:
    """Consecutive files of at most ``max_rows`` rows together, each run of two or more."""
    runs: list[list[str]] = [[]]
    rows = 0
    for path in paths:
        n = pq.read_metadata(path, filesystem=archive.fs).num_rows
        if runs[-1] and rows + n > max_rows:
            runs.append([])
            rows = 0
        runs[-1].append(path)
        rows += n
    return [run for run in runs if len(run) > 1]


def conformed(batch: pa.RecordBatch, kind: str, secret: bytes, max_age_s: float
              ) -> pa.RecordBatch:
    """A batch read from a file an earlier version wrote, with the schema written now: an
    events batch without ``credited`` gets it by the rollup's rule (with ``secret``), any
    other column it lacks is null."""
    schema = SCHEMAS[kind]
    if batch.schema.equals(schema):
        return batch
    columns = []
    for field in schema:
        if field.name in batch.schema.names:
            columns.append(batch.column(field.name).cast(field.type))
        elif kind == "events" and field.name == "credited":
            columns.append(pa.array(credited_strategies(
                batch.column("feed_id").to_pylist(), batch.column("ts").to_pylist(), secret,
                max_age_s), pa.string()))
        else:
            columns.append(pa.nulls(batch.num_rows, field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _entry_ms_column(table: pa.Table) -> np.ndarray:
    """When each row's stream entry reached Redis (ms), from its ``entry_id``."""
    heads = pc.list_element(pc.split_pattern(table.column("entry_id"), "-", max_splits=1), 0)
    return pc.cast(heads, pa.int64()).to_numpy(zero_copy_only=False)


def served_between(archive: Archive, start_ms: int, end_ms: int
                   ) -> Iterator[list[tuple[str, dict[str, str]]]]:
    """Archived served feeds logged from ``start_ms`` to ``end_ms`` (inclusive), a file at a
    time, as (entry id, fields) with the fields' values as the served log spells them."""
    columns = ["entry_id", "feed_id", "ts", "strategy", "propensity"]
    for path in archive.files_between("served", start_ms, end_ms):
        table = pq.read_table(path, columns=columns, filesystem=archive.fs)
        reached = _entry_ms_column(table)
        table = table.filter(pa.array((reached >= start_ms) & (reached <= end_ms)))
        yield [(row["entry_id"], {"feed_id": row["feed_id"] or "", "ts": repr(row["ts"]),
                                  "strategy": row["strategy"] or "",
                                  "propensity": repr(row["propensity"])})
               for row in table.to_pylist()]


def applies_between(archive: Archive, start_ms: int, end_ms: int
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The feed ids that archived applies name, and when each reached Redis (ms), of the
    events that reached it from ``start_ms`` to ``end_ms``, a file at a time."""
    for path in archive.files_between("events", start_ms, end_ms):
        table = pq.read_table(path, columns=["entry_id", "type", "feed_id"],
                              filesystem=archive.fs)
        table = table.filter(pc.and_(pc.equal(table.column("type"), "apply"),
                                     pc.is_valid(table.column("feed_id"))))
        reached = _entry_ms_column(table)
        keep = (reached >= start_ms) & (reached <= end_ms)
        feeds = table.column("feed_id").to_pylist()
        yield (np.array([f.encode() for f, k in zip(feeds, keep.tolist(), strict=True) if k],
                        dtype=bytes), reached[keep].astype(np.int64))


def find_served(archive: Archive, feed_id: str, around_ms: int, window_ms: int = 60_000
                ) -> dict[str, object] | None:
    """An archived served feed by its id, among those logged from one second before
    ``around_ms`` (when it was served) to ``window_ms`` after."""
    for path in archive.files_between("served", around_ms - 1000, around_ms + window_ms):
        table = pq.read_table(path, filesystem=archive.fs,
                              filters=[("feed_id", "=", feed_id)])
        if table.num_rows:
            return table.slice(0, 1).to_pylist()[0]
    return None


def read_archive(url: str, kind: str, columns: list[str] | None = None) -> pa.Table:
    """Every archived row of one kind, as one table (for tests, tools and small ranges)."""
    archive = Archive(url)
    files = archive.files(kind)
    if not files:
        return SCHEMAS[kind].empty_table()
    return pa.concat_tables(pq.read_table(f, columns=columns, filesystem=archive.fs)
                            for f in files)

