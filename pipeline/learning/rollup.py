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
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

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
from pipeline.learning.frequency import record_showings
from pipeline.learning.ingest import Columns, decode_entries, sweep_inbox
from pipeline.serving.feed import FeedRef, parse_feed_id
from store import (
    RollupBlock,
    Store,
    StreamEntry,
    consumer_name,
    factorize,
    stat_type_index,
    strategy_fields,
)

log = logging.getLogger(__name__)

MAX_BLOCKS = 1000  # bounds one run; the next run goes on where this one stopped
SERVED_BLOCK = 5000   # served-log entries (a feed each) counted per step
IMPRESSION = stat_type_index("impression")
CREDITED_TTL_S = 8 * 86_400   # how long a feed's credit is remembered, per day it was served


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


def count_block(store: Store, settings: Settings, entries: list[StreamEntry], now: float,
                secret: bytes, examination: Examination, starts: np.ndarray,
                partition: int = 0) -> int:
    """Count one block of entries and acknowledge it, atomically, impressions weighed by
    ``examination`` and position counts kept by epoch (``starts``: the generations').
    The block is read as columns, with no object per event; a feed id is checked once per
    block however many events name it. Then its users' impressions and engagements go to
    the frequency cap (``frequency.record_showings``). Returns events counted."""
    events = decode_entries(entries)
    block = rollup_block(events, settings, now, secret, examination, starts)
    elsewhere: set[str] = set()          # entries another consumer counted: not ours
    counted = store.apply_rollup(block, now, settings.stats_half_life_s, STRATEGIES,
                                 CREDITED_TTL_S, POSITION_WIDTH, epoch_ttl_s(settings),
                                 partition, left_out=elsewhere)
    record_showings(store, settings, events.without(elsewhere) if elsewhere else events, now)
    return counted


def rollup_block(events: Columns, settings: Settings, now: float, secret: bytes,
                 examination: Examination, starts: np.ndarray) -> RollupBlock:
    """What a block of events adds, as of ``now``: each event's day and weight (decayed,
    an impression weighed by its position's examination), and the feed, cell and strategy
    it credits (a signed feed id served at most EVENT_MAX_AGE_S before the event)."""
    kinds, when, place = events.type_index, events.ts, events.position
    decay = decay_factor(now - when, settings.stats_half_life_s)
    weights = np.where(kinds == IMPRESSION, decay * examination.weights(place), decay)
    credits, served = credited_feeds(events.feed_id, when, secret, settings.event_max_age_s)
    return RollupBlock(
        events.entry_id, events.ad_id, kinds, days_of(when), weights,
        [strategy_fields(f.cell, settings.region_precision) if f else "" for f in credits],
        [f.strategy if f else "" for f in credits],
        [f.feed_id if f else "" for f in credits], days_of(served),
        position_columns(kinds, place), epoch_of(served, starts))


def credited_feeds(feed_ids: list[str | None], when: np.ndarray, secret: bytes,
                   max_age_s: float) -> tuple[list[FeedRef | None], np.ndarray]:
    """The feed each event credits: the one its id names, if this service signed it and
    served it at most ``max_age_s`` before the event (the evaluation's default attribution
    window is the same; a later event still counts for its ad, but credits no strategy);
    and when each event's feed was served (the event's own time where it names none).
    Each distinct feed id is checked once, however many events name it."""
    names, feed_of = factorize(["" if f is None else f for f in feed_ids])
    refs = [parse_feed_id(name, secret) if name else None for name in names]
    ref_served = np.array([np.nan if r is None else r.served_ms / 1000 for r in refs],
                          dtype=np.float64)[feed_of] if refs else when
    served = np.where(np.isnan(ref_served), when, ref_served)
    late = (when - served).tolist()
    return [refs[i] if t <= max_age_s else None
            for i, t in zip(feed_of.tolist(), late, strict=True)], served


def days_of(ts: np.ndarray) -> list[str]:
    """The UTC day (YYYY-MM-DD) of each time, each distinct day formatted once.

    >>> days_of(np.array([0.0, 86_399.0, 86_400.0, 86_399.9999998]))
    ['1970-01-01', '1970-01-01', '1970-01-02', '1970-01-02']
    """
    days, index = np.unique(day_numbers(ts), return_inverse=True)
    names = [day_of(d * 86_400.0) for d in days.tolist()]
    return [names[i] for i in index.tolist()]


def day_numbers(ts: np.ndarray) -> np.ndarray:
    """The UTC day of each time as days since 1970-01-01: to the microsecond first, as
    datetime.fromtimestamp rounds (``days_of`` names them).

    >>> day_numbers(np.array([86_399.0, 86_399.9999998])).tolist()
    [0, 1]
    """
    return np.floor_divide(np.round(ts, 6), 86_400).astype(np.int64)


def count_served(store: Store, settings: Settings, now: float, secret: bytes) -> int:
    """Add the feeds served since the last run to each cell's, region's and strategy's
    decayed served count. Stops if another run moved the cursor (it is counting them)."""
    total = 0
    for _ in range(MAX_BLOCKS):
        cursor = store.served_cursor()
        entries = store.served_after(cursor, SERVED_BLOCK)
        if not entries:
            break
        refs = [parse_feed_id(fields.get("feed_id"), secret) for _, fields in entries]
        known = [r for r in refs if r is not None]
        weights = decay_factor(now - np.array([r.served_ms / 1000 for r in known]),
                               settings.stats_half_life_s).tolist()
        rows = [(strategy_fields(r.cell, settings.region_precision),
                 STRATEGIES.index(r.strategy) + 1, w)
                for r, w in zip(known, weights, strict=True)]
        counted = store.count_served(cursor, entries[-1][0], rows, now,
                                     settings.stats_half_life_s, len(STRATEGIES))
        if counted < 0:
            break
        total += counted
    return total


def run_rollup(store: Store, settings: Settings, now: float,
               consumer: str | None = None,
               rng: np.random.Generator | None = None,
               fan_out: Callable[[int], object] | None = None) -> dict[str, float | int]:
    """Roll in lost batches, count every partition's new entries (``count_partition``),
    count every feed served, take expired ads out of the index. With EVENT_PARTITIONS above
    1, ``fan_out`` (the rollup task's) hands each partition but 0 to a task of its own;
    without it they are all counted here, one after the other."""
    started = time.perf_counter()
    consumer = consumer or consumer_name()
    rng = rng or np.random.default_rng()
    recovered = sweep_inbox(store, settings, now)
    store.ensure_group()
    report: dict[str, float | int] = {**count_partition(store, settings, now, 0, consumer, rng)}
    for partition in range(1, len(store.parts)):
        if fan_out is not None:
            fan_out(partition)
            continue
        done = count_partition(store, settings, now, partition, consumer, rng)
        report = {k: v + done[k] for k, v in report.items()}
    served = count_served(store, settings, now, store.feed_id_secret())
    expired = store.drop_expired(now)
    report = {**report, "recovered_events": recovered, "served_feeds": served,
              "expired_ads": len(expired), "partitions_sent": len(store.parts) - 1 if fan_out
              else 0, "duration_s": round(time.perf_counter() - started, 4),
              "finished_at": now}
    store.record_job("rollup", report)
    return report


def count_partition(store: Store, settings: Settings, now: float, partition: int,
                    consumer: str | None = None,
                    rng: np.random.Generator | None = None) -> dict[str, int]:
    """One partition of the event pipeline: reclaim the entries a dead worker left pending,
    count every new entry, settle the strategy credits it found in partition 0, fold its
    position epochs that are over into the examination curve, and trim its stream past its
    retention (never an entry not yet archived)."""
    consumer = consumer or consumer_name()
    secret = store.feed_id_secret()
    examination = current(store, settings)
    starts = generations(store, settings, now)
    counted = 0
    entries = store.claim_stale(consumer, settings.rollup_claim_idle_s * 1000,
                                settings.rollup_batch, partition)
    reclaimed = len(entries)
    for _ in range(MAX_BLOCKS):
        if entries:
            counted += count_block(store, settings, entries, now, secret, examination, starts,
                                   partition)
        entries = store.read_new(consumer, settings.rollup_batch, partition)
        if not entries:
            break
    settled = store.settle_credits(partition, now, settings.stats_half_life_s,
                                   len(STRATEGIES), CREDITED_TTL_S)
    folded = fold_epochs(store, settings, now, starts, rng or np.random.default_rng(),
                         partition)
    # past its retention, and never beyond what was archived
    store.trim_events(int((now - settings.events_retention_s) * 1000), partition,
                      keep_after=store.archive_cursor("events", partition))
    return {"counted": counted, "reclaimed": reclaimed, "credits_settled": settled,
            "position_epochs_folded": folded}
