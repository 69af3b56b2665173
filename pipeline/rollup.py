"""Rollup: read the events stream through its consumer group and count it, exactly once.

Each block of events goes to the store in one atomic step that acknowledges it and adds
it to the raw counters, the per-day counters, each ad's decayed evidence (impressions
weighted by position) and the strategy credit of the feeds the applies came from. Served
feeds are counted per cell and strategy from the served log, behind a cursor that moves in
the same step.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

import numpy as np
import orjson

from bandit import STRATEGIES, decay_factor, exposure_weight
from config import Settings
from pipeline.feedid import parse_feed_id
from pipeline.ingest import sweep_inbox
from store import RollupRow, StreamEntry, Store, consumer_name, stat_type_index

log = logging.getLogger(__name__)

MAX_BLOCKS = 1000  # bounds one run; the next run goes on where this one stopped


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def count_block(store: Store, settings: Settings, entries: list[StreamEntry], now: float) -> int:
    """Count one block of entries and acknowledge it, atomically. Returns events counted."""
    events: list[tuple[StreamEntry, dict]] = []
    unreadable: list[RollupRow] = []
    for entry in entries:
        try:
            event = orjson.loads(entry.payload)
            event["day"] = day_of(float(event["ts"]))
            event["type_index"] = stat_type_index(event["type"])
            if not isinstance(event["ad"], str):
                raise TypeError("ad")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError):
            log.warning("unreadable event entry %s acknowledged without counting", entry.entry_id)
            ms = int(entry.entry_id.split("-")[0])
            unreadable.append(RollupRow(entry.entry_id, "", 0, day_of(ms / 1000)))
            continue
        events.append((entry, event))
    ts = np.array([float(e["ts"]) for _, e in events])
    positions = np.array([e.get("pos") or 0 for _, e in events], dtype=np.float64)
    impression = np.array([e["type"] == "impression" for _, e in events], dtype=bool)
    weights = decay_factor(now - ts, settings.stats_half_life_s)
    weights = np.where(impression, weights * exposure_weight(positions,
                                                             settings.position_bias_exponent),
                       weights).tolist()
    rows = list(unreadable)
    for (entry, event), weight in zip(events, weights):
        ref = parse_feed_id(event.get("feed"))
        rows.append(RollupRow(entry.entry_id, event["ad"], event["type_index"], event["day"],
                              weight, ref.cell if ref else "", ref.strategy if ref else ""))
    return store.apply_rollup(rows, now, settings.stats_half_life_s, STRATEGIES)


def count_served(store: Store, settings: Settings, now: float) -> int:
    """Add the feeds served since the last run to each cell's and strategy's decayed
    served count. Stops if another run moved the cursor (it is counting them)."""
    total = 0
    for _ in range(MAX_BLOCKS):
        cursor = store.served_cursor()
        entries = store.served_after(cursor, settings.rollup_batch)
        if not entries:
            break
        refs = [parse_feed_id(fields.get("feed_id")) for _, fields in entries]
        known = [r for r in refs if r is not None]
        weights = decay_factor(now - np.array([r.served_ms / 1000 for r in known]),
                               settings.stats_half_life_s).tolist()
        rows = [(r.cell, STRATEGIES.index(r.strategy) + 1, w) for r, w in zip(known, weights)]
        counted = store.count_served(cursor, entries[-1][0], rows, now,
                                     settings.stats_half_life_s, len(STRATEGIES))
        if counted < 0:
            break
        total += counted
    return total


def run_rollup(store: Store, settings: Settings, now: float,
               consumer: str | None = None) -> dict[str, float | int]:
    """Roll in lost batches, reclaim entries a dead worker left pending, count every new
    entry and every feed served, take expired ads out of the index and trim the stream past
    its retention."""
    started = time.perf_counter()
    consumer = consumer or consumer_name()
    recovered = sweep_inbox(store, settings, now)
    store.ensure_group()
    counted = 0
    entries = store.claim_stale(consumer, settings.rollup_claim_idle_s * 1000, settings.rollup_batch)
    reclaimed = len(entries)
    for _ in range(MAX_BLOCKS):
        if entries:
            counted += count_block(store, settings, entries, now)
        entries = store.read_new(consumer, settings.rollup_batch)
        if not entries:
            break
    served = count_served(store, settings, now)
    expired = store.drop_expired(now)
    store.trim_events(int((now - settings.events_retention_s) * 1000))
    report = {"counted": counted, "reclaimed": reclaimed, "recovered_events": recovered,
              "served_feeds": served, "expired_ads": len(expired),
              "duration_s": round(time.perf_counter() - started, 4), "finished_at": now}
    store.record_job("rollup", report)
    return report
