"""Rollup: read the events stream through its consumer group and count it, exactly once."""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import datetime, timezone

import orjson

from config import Settings
from pipeline.ingest import sweep_inbox
from store import StreamEntry, Store, consumer_name, stat_type_index

log = logging.getLogger(__name__)

MAX_BLOCKS = 1000  # bounds one run; the next run goes on where this one stopped
APPLIED_TTL_S = 90 * 86_400


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def count_block(store: Store, entries: list[StreamEntry]) -> int:
    """Count one block of entries and acknowledge it, atomically. Returns events counted."""
    rows = []
    applies: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        try:
            event = orjson.loads(entry.payload)
            row = (entry.entry_id, event["ad"], stat_type_index(event["type"]), day_of(event["ts"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError):
            log.warning("unreadable event entry %s acknowledged without counting", entry.entry_id)
            row = (entry.entry_id, "", 0, day_of(int(entry.entry_id.split("-")[0]) / 1000))
        else:
            if event["type"] == "apply" and event.get("user"):
                applies[event["user"]].add(event["ad"])
        rows.append(row)
    if applies:
        store.remember_applies(applies, APPLIED_TTL_S)
    return store.apply_rollup(rows)


def run_rollup(store: Store, settings: Settings, now: float,
               consumer: str | None = None) -> dict[str, float | int]:
    """Roll in lost batches, reclaim entries a dead worker left pending, count every new
    entry, take expired ads out of the index and trim the stream past its retention."""
    started = time.perf_counter()
    consumer = consumer or consumer_name()
    recovered = sweep_inbox(store, settings, now)
    store.ensure_group()
    counted = 0
    entries = store.claim_stale(consumer, settings.rollup_claim_idle_s * 1000, settings.rollup_batch)
    reclaimed = len(entries)
    for _ in range(MAX_BLOCKS):
        if entries:
            counted += count_block(store, entries)
        entries = store.read_new(consumer, settings.rollup_batch)
        if not entries:
            break
    expired = store.drop_expired(now)
    store.trim_events(int((now - settings.events_retention_s) * 1000))
    report = {"counted": counted, "reclaimed": reclaimed, "recovered_events": recovered,
              "expired_ads": len(expired), "duration_s": round(time.perf_counter() - started, 4),
              "finished_at": now}
    store.record_job("rollup", report)
    return report
