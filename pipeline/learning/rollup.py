"""Rollup: read the events stream through its consumer group and count it, exactly once.

Each block of events goes to the store in one atomic step that acknowledges it and adds
it to the raw counters, the per-day counters, each ad's decayed evidence (impressions
weighed by the examination curve) and position counts, and the strategy credit of the feeds
the applies came from. Served
feeds are counted per cell and strategy from the served log, behind a cursor that moves in
the same step.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson

from bandit import STRATEGIES, decay_factor
from config import Settings
from pipeline.learning.examination import WIDTH as POSITION_WIDTH
from pipeline.learning.examination import (
    Examination,
    current,
    epoch_of,
    epoch_ttl_s,
    fold_epochs,
    generations,
    position_columns,
)
from pipeline.learning.ingest import sweep_inbox
from pipeline.serving.feed import FeedRef, parse_feed_id
from store import RollupRow, Store, StreamEntry, consumer_name, stat_type_index

log = logging.getLogger(__name__)

MAX_BLOCKS = 1000  # bounds one run; the next run goes on where this one stopped
IMPRESSION = stat_type_index("impression")
CREDITED_TTL_S = 8 * 86_400   # how long a feed's credit is remembered, per day it was served


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Parsed:
    """What the rollup reads of one event entry."""

    entry_id: str
    ad_id: str
    type_index: int
    day: str
    ts: float
    position: float          # 0: unknown
    feed: FeedRef | None


def parse_entry(entry: StreamEntry, secret: bytes) -> Parsed | None:
    """The entry as the rollup counts it, or None if it is unreadable (acknowledged without
    counting: it can never become readable, and must not hold the stream up)."""
    try:
        event = orjson.loads(entry.payload)
        ts = float(event["ts"])
        position = float(event.get("pos") or 0)
        if not isinstance(event["ad"], str) or not isinstance(event["type"], str):
            raise TypeError("ad and type must be strings")
        feed = event.get("feed")
        return Parsed(entry.entry_id, event["ad"], stat_type_index(event["type"]), day_of(ts),
                      ts, position,
                      parse_feed_id(feed, secret) if isinstance(feed, str) else None)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError,
            AttributeError):
        return None


def count_block(store: Store, settings: Settings, entries: list[StreamEntry], now: float,
                secret: bytes, examination: Examination, starts: np.ndarray) -> int:
    """Count one block of entries and acknowledge it, atomically, impressions weighed by
    ``examination`` and position counts kept by epoch (``starts``: the generations').
    Returns events counted."""
    parsed: list[Parsed] = []
    rows: list[RollupRow] = []
    for entry in entries:
        event = parse_entry(entry, secret)
        if event is None:
            log.warning("unreadable event entry %s acknowledged without counting", entry.entry_id)
            ms = int(entry.entry_id.split("-")[0])
            rows.append(RollupRow(entry.entry_id, "", 0, day_of(ms / 1000)))
        else:
            parsed.append(event)
    ts = np.array([e.ts for e in parsed])
    positions = np.array([e.position for e in parsed])
    types = np.array([e.type_index for e in parsed], dtype=np.int64)
    impression = types == IMPRESSION
    decay = decay_factor(now - ts, settings.stats_half_life_s)
    weights = np.where(impression, decay * examination.weights(positions), decay).tolist()
    served = np.array([e.ts if e.feed is None else e.feed.served_ms / 1000 for e in parsed])
    epochs = epoch_of(served, starts).tolist()
    columns = position_columns(types, positions).tolist()
    for e, weight, served_s, epoch, column in zip(parsed, weights, served.tolist(), epochs,
                                                  columns, strict=True):
        feed = e.feed
        # an event more than EVENT_MAX_AGE_S after its feed still counts for its ad, but
        # credits no strategy (the evaluation's default attribution window is the same)
        if feed is None or e.ts - served_s > settings.event_max_age_s:
            rows.append(RollupRow(e.entry_id, e.ad_id, e.type_index, e.day, weight,
                                  position_column=column, epoch=epoch))
        else:
            rows.append(RollupRow(e.entry_id, e.ad_id, e.type_index, e.day, weight, feed.cell,
                                  feed.strategy, feed.feed_id, day_of(served_s), column, epoch))
    return store.apply_rollup(rows, now, settings.stats_half_life_s, STRATEGIES,
                              CREDITED_TTL_S, POSITION_WIDTH, epoch_ttl_s(settings))


def count_served(store: Store, settings: Settings, now: float, secret: bytes) -> int:
    """Add the feeds served since the last run to each cell's and strategy's decayed
    served count. Stops if another run moved the cursor (it is counting them)."""
    total = 0
    for _ in range(MAX_BLOCKS):
        cursor = store.served_cursor()
        entries = store.served_after(cursor, settings.rollup_batch)
        if not entries:
            break
        refs = [parse_feed_id(fields.get("feed_id"), secret) for _, fields in entries]
        known = [r for r in refs if r is not None]
        weights = decay_factor(now - np.array([r.served_ms / 1000 for r in known]),
                               settings.stats_half_life_s).tolist()
        rows = [(r.cell, STRATEGIES.index(r.strategy) + 1, w)
                for r, w in zip(known, weights, strict=True)]
        counted = store.count_served(cursor, entries[-1][0], rows, now,
                                     settings.stats_half_life_s, len(STRATEGIES))
        if counted < 0:
            break
        total += counted
    return total


def run_rollup(store: Store, settings: Settings, now: float,
               consumer: str | None = None,
               rng: np.random.Generator | None = None) -> dict[str, float | int]:
    """Roll in lost batches, reclaim entries a dead worker left pending, count every new
    entry and every feed served, fold the position epochs that are over into the examination
    curve, take expired ads out of the index and trim the stream past its retention."""
    started = time.perf_counter()
    consumer = consumer or consumer_name()
    secret = store.feed_id_secret()
    examination = current(store, settings)
    starts = generations(store, settings, now)
    recovered = sweep_inbox(store, settings, now)
    store.ensure_group()
    counted = 0
    entries = store.claim_stale(consumer, settings.rollup_claim_idle_s * 1000,
                                settings.rollup_batch)
    reclaimed = len(entries)
    for _ in range(MAX_BLOCKS):
        if entries:
            counted += count_block(store, settings, entries, now, secret, examination, starts)
        entries = store.read_new(consumer, settings.rollup_batch)
        if not entries:
            break
    served = count_served(store, settings, now, secret)
    folded = fold_epochs(store, settings, now, starts, rng or np.random.default_rng())
    expired = store.drop_expired(now)
    store.trim_events(int((now - settings.events_retention_s) * 1000))
    report = {"counted": counted, "reclaimed": reclaimed, "recovered_events": recovered,
              "served_feeds": served, "expired_ads": len(expired),
              "position_epochs_folded": folded,
              "duration_s": round(time.perf_counter() - started, 4), "finished_at": now}
    store.record_job("rollup", report)
    return report
