"""The daily CTR counters of days Redis no longer holds, counted again from the archived
events: what GET /v1/stats/ctr and ``flask report ctr`` read for the days before the first
one Redis holds (``pipeline.reports.ctr.day_counters``)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bandit import STRATEGIES
from config import Settings
from pipeline.archive import Archive, credited_strategies
from pipeline.learning.rollup import day_numbers
from store import EVENT_TYPES, STAT_FIELDS, Store


def ctr_counters(archive: Archive, days: Sequence[str], secret: bytes, max_age_s: float
                 ) -> dict[str, dict[str, int]]:
    """The per-day counters the rollup keeps in Redis (``{ev}:ctr:{day}``: impressions,
    ..., and per credited strategy, thompson:applies, ...), counted again from the archived
    events of ``days`` (the events' own UTC days, as the rollup files them), a file at a
    time, three columns of each. An event is filed under the day it reached Redis: its own
    day (or the day before, for a clock ahead of Redis's) up to EVENT_MAX_AGE_S and a day
    later, as a rule. The files of those days are read; any other is read only if its
    footer's statistics of ``ts`` overlap the days (a pipeline that lagged, a clock that was
    wrong). ``secret`` credits the events of files written before the archive kept the
    credited strategy."""
    if not days:
        return {}
    wanted = np.array(sorted({_day_number(d) for d in days}), dtype=np.int64)
    after = int(max_age_s // 86_400) + 2
    directories = {f"date={date.fromordinal(EPOCH_ORDINAL + n + k).isoformat()}"
                   for n in wanted.tolist() for k in range(-1, after + 1)}
    span = (float(wanted[0]) * 86_400 - 1, float(wanted[-1] + 1) * 86_400 + 1)
    width = len(STAT_FIELDS)
    sums = np.zeros((len(wanted), 1 + len(STRATEGIES), width), dtype=np.int64)
    for path in archive.files("events"):
        if path.rsplit("/", 2)[-2] in directories or _may_hold(archive, path, *span):
            _count_file(archive, path, wanted, sums, secret, max_age_s)
    names = [list(STAT_FIELDS), *([f"{s}:{f}" for f in STAT_FIELDS] for s in STRATEGIES)]
    out: dict[str, dict[str, int]] = {}
    for i, n in enumerate(wanted.tolist()):
        found = {name: int(v) for row, row_names in zip(sums[i], names, strict=True)
                 for name, v in zip(row_names, row.tolist(), strict=True) if v}
        out[date.fromordinal(EPOCH_ORDINAL + n).isoformat()] = found
    return {d: out[d] for d in days}


def archived_ctr(store: Store, settings: Settings
                 ) -> Callable[[Sequence[str]], dict[str, dict[str, int]]]:
    """``ctr_counters`` over ARCHIVE_URL, as the CTR report reads days Redis does not hold
    (the feed id secret is read only then)."""
    archive = Archive(settings.archive_url)
    return lambda days: ctr_counters(archive, days, store.feed_id_secret(),
                                     settings.event_max_age_s)


EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _day_number(day: str) -> int:
    """Days since 1970-01-01.

    >>> _day_number("1970-01-02"), _day_number("2026-12-05")
    (1, 20792)
    """
    return date.fromisoformat(day).toordinal() - EPOCH_ORDINAL


def _may_hold(archive: Archive, path: str, low: float, high: float) -> bool:
    """Whether a file's row groups' statistics of ``ts`` overlap [low, high] (True where a
    row group has none)."""
    metadata = pq.read_metadata(path, filesystem=archive.fs)
    column = metadata.schema.to_arrow_schema().get_field_index("ts")
    for i in range(metadata.num_row_groups):
        stats = metadata.row_group(i).column(column).statistics
        if stats is None or not stats.has_min_max or (stats.min <= high and stats.max >= low):
            return True
    return False


def _count_file(archive: Archive, path: str, wanted: np.ndarray, sums: np.ndarray,
                secret: bytes, max_age_s: float) -> None:
    """Add one file's events of the ``wanted`` days (day numbers, sorted) to ``sums``
    (day, then 0 for all or 1 + the credited strategy's index, then type)."""
    with archive.fs.open(path, "rb") as f:
        parquet = pq.ParquetFile(f)
        kept = "credited" in parquet.schema_arrow.names
        table = parquet.read(columns=["ts", "type", "credited" if kept else "feed_id"])
    ts = table.column("ts").to_numpy()
    day = day_numbers(ts)                       # the rollup's day of each event
    at = np.minimum(np.searchsorted(wanted, day), len(wanted) - 1)
    kind = _index_in(table.column("type"), EVENT_TYPES)
    ok = (wanted[at] == day) & (kind >= 0)
    if kept:
        credited = _index_in(table.column("credited"), STRATEGIES)
    else:
        strategies = credited_strategies(table.column("feed_id").to_pylist(), ts.tolist(),
                                         secret, max_age_s)
        credited = _index_in(pa.array(strategies, pa.string()), STRATEGIES)
    width = sums.shape[2]
    cells = sums.shape[1] * width
    flat = at[ok] * cells + kind[ok]
    sums += np.bincount(flat, minlength=sums.size).reshape(sums.shape)
    fed = ok & (credited >= 0)
    flat = at[fed] * cells + (1 + credited[fed]) * width + kind[fed]
    sums += np.bincount(flat, minlength=sums.size).reshape(sums.shape)


def _index_in(column: pa.ChunkedArray | pa.Array, values: Sequence[str]) -> np.ndarray:
    """Each value's index in ``values``, -1 for a null or another value."""
    found = pc.index_in(column, value_set=pa.array(values, pa.string()))
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
