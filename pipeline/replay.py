"""Replay: rebuild what the rollup counted from the archive's events.

``flask --app webapp events replay --from DAY --to DAY`` reads the archived events of those
days (the archive's day directories: when the events reached Redis) and counts them again,
through the rollup's own step (``rollup_block``, ``Store.apply_rollup``), into another Redis
(``--into URL``, which must hold no counters yet) or in place (``--in-place``: the counters
are deleted first, so give it every archived day, or the all-time counters hold only the
days given). What it rebuilds: the per-ad counters, the per-day and all-time CTR counters
(per strategy too), each ad's decayed evidence, and the strategy credit of the feeds
applies came from (once per feed; in place, feeds credited before stay credited and are not
credited again). Not rebuilt: the strategies' served-feed counts (they come from the served
log) and the position counts, which the examination curve has already folded in.

Impressions are weighed by the examination curve in force now (the live rollups used the
curve of their time: with POSITION_BIAS_EXPONENT set, or a curve that did not move, the
exposure is the same). Decayed evidence does not depend on when it is counted: each
event's weight is decayed from its time to the replay's, as the live sums were decayed
from rollup to rollup.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from bandit import STRATEGIES
from config import Settings
from pipeline.archive import Archive
from pipeline.learning.examination import Examination
from pipeline.learning.ingest import TYPE_INDEX, Columns
from pipeline.learning.rollup import CREDITED_TTL_S, rollup_block
from store import Store

COLUMNS = ["entry_id", "ad_id", "type", "ts", "feed_id", "position"]


@dataclass
class Replayed:
    files: int = 0
    events: int = 0
    counted: int = 0
    credits_settled: int = 0


def archived_days(archive: Archive, first_day: str, last_day: str) -> list[str]:
    """The archived events' files of the days from ``first_day`` to ``last_day``."""
    return [f for f in archive.files("events")
            if first_day <= f.rsplit("/", 2)[-2].removeprefix("date=") <= last_day]


def replay_events(archive: Archive, target: Store, settings: Settings, first_day: str,
                  last_day: str, secret: bytes, examination: Examination,
                  now: float | None = None) -> Replayed:
    """Count the archived events of the days given into ``target`` (see the module's
    docstring), a row group at a time, as of ``now``."""
    now = time.time() if now is None else now
    done = Replayed()
    starts = np.zeros(0, dtype=np.float64)
    for path in archived_days(archive, first_day, last_day):
        with archive.fs.open(path, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=settings.archive_row_group,
                                                         columns=COLUMNS):
                columns = batch.to_pydict()
                done.events += batch.num_rows
                for partition, rows in _by_partition(target, columns["ad_id"]).items():
                    events = _columns(columns, rows)
                    block = rollup_block(events, settings, now, secret, examination, starts)
                    done.counted += target.apply_rollup(
                        block, now, settings.stats_half_life_s, STRATEGIES, CREDITED_TTL_S,
                        partition=partition, acknowledge=False)
        done.files += 1
    for partition in range(1, len(target.parts)):
        done.credits_settled += target.settle_credits(partition, now,
                                                      settings.stats_half_life_s,
                                                      len(STRATEGIES), CREDITED_TTL_S)
    return done


def _by_partition(store: Store, ad_ids: list[str]) -> dict[int, list[int]]:
    """The rows of each partition of ``store`` (an ad's events go to its ad's partition,
    whatever the partition count the archive was written with)."""
    if len(store.parts) == 1:
        return {0: list(range(len(ad_ids)))}
    rows: dict[int, list[int]] = {}
    for i, ad in enumerate(ad_ids):
        rows.setdefault(store.partition_of(ad).index, []).append(i)
    return rows


def _columns(columns: dict[str, list], rows: list[int]) -> Columns:
    """Archived rows as the rollup reads events (``decode_entries``'s columns)."""
    def pick(name: str) -> list:
        column = columns[name]
        return column if len(rows) == len(column) else [column[i] for i in rows]
    return Columns(pick("entry_id"), pick("ad_id"),
                   np.array([TYPE_INDEX.get(t, 0) for t in pick("type")], dtype=np.int64),
                   np.array(pick("ts"), dtype=np.float64),
                   np.array([0 if p is None else p for p in pick("position")],
                            dtype=np.float64),
                   pick("feed_id"))
