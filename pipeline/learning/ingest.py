"""Ingest: accept a batch of validated events durably, then move it into the events stream.

The web calls ``accept_batch``: one atomic step drops event_ids already accepted, rejects
events for ads the catalogue does not hold, and keeps the rest in the inbox, so the batch is
safe in Redis before the 202 goes out. The ingest task calls ``roll_in`` to move it to the
stream (idempotent); the rollup's sweep rolls in any batch whose task was lost. The rollup
counts every event accepted, even if its ad is deleted before it is counted.

A batch travels as columns (``Batch``): the inbox and the stream keep one JSON object a
batch (``Batch.encode``), with one flag an event for whether it was accepted, and readers
decode it back to columns (``decode_entries``), so no step builds an object per event.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import NamedTuple

import numpy as np
import orjson

from config import Settings
from store import (
    ACCEPTED,
    DUPLICATE,
    EVENT_TYPES,
    UNKNOWN_AD,
    IngestBatch,
    Store,
    StreamEntry,
    UserMemory,
    stat_type_index,
)

log = logging.getLogger(__name__)

LAST_DAY_S = 253_402_300_800  # 10000-01-01: no event time is at or after it


class Event(NamedTuple):
    """One validated event."""

    event_id: str
    ad_id: str
    type: str
    ts: float
    user_id: str | None = None
    feed_id: str | None = None
    position: int | None = None


@dataclass(frozen=True)
class Batch:
    """Validated events as columns: ``ad_id[i]`` is event ``i``'s ad."""

    event_id: list[str]
    ad_id: list[str]
    type: list[str]
    ts: list[float]
    user_id: list[str | None]
    feed_id: list[str | None]
    position: list[int | None]

    @classmethod
    def of(cls, events: Sequence[Event]) -> Batch:
        columns = list(zip(*events, strict=True)) if events else [()] * 7
        return cls(*(list(c) for c in columns))

    def __len__(self) -> int:
        return len(self.event_id)

    def encode(self, accepted_at: float, at: Sequence[int] | None = None) -> bytes:
        """The events (those at positions ``at``, or all) as the stream keeps them: one
        JSON object of columns, and when they were accepted."""
        def pick(column: list) -> list:
            return column if at is None else [column[i] for i in at]
        return orjson.dumps({"id": pick(self.event_id), "ad": pick(self.ad_id),
                             "type": pick(self.type), "ts": pick(self.ts),
                             "user": pick(self.user_id), "feed": pick(self.feed_id),
                             "pos": pick(self.position), "at": accepted_at})


@dataclass(frozen=True)
class Accepted:
    batch_id: str | None     # None when no event was accepted
    outcomes: tuple[str, ...] = ()   # per event: "accepted", "duplicate" or "unknown_ad"

    @property
    def accepted(self) -> int:
        return self.outcomes.count("accepted")

    @property
    def duplicates(self) -> int:
        return self.outcomes.count("duplicate")

    @property
    def unknown(self) -> int:
        return self.outcomes.count("unknown_ad")


EXCLUDING = ("apply", "hide")   # event types after which a user never sees the ad again
OUTCOMES = {ACCEPTED: "accepted", DUPLICATE: "duplicate", UNKNOWN_AD: "unknown_ad"}


def accept_batch(store: Store, settings: Settings, events: Batch | Sequence[Event],
                 now: float) -> Accepted:
    """Accept a batch in one round trip. An event for an ad the catalogue does not hold
    (never created, or deleted, even after its impression was served) is rejected alone
    ("unknown_ad"): nothing of it is kept or counted, so invented ids cannot grow the store.
    An ad that merely expired keeps its record, so its late events still count. The new
    events go to the inbox, and ads a user applied to or hid join that user's exclusions
    at once (a retried post repeats that harmlessly), so the next feed already leaves them
    out."""
    batch = events if isinstance(events, Batch) else Batch.of(events)
    batch_id = uuid.uuid4().hex
    excludes_for = [user if kind in EXCLUDING else None
                    for user, kind in zip(batch.user_id, batch.type, strict=True)]
    flags = store.accept_events(
        batch_id, IngestBatch(batch.event_id, batch.ad_id, excludes_for,
                              lambda at: batch.encode(now, at)),
        now, settings.dedupe_window_s,
        UserMemory(settings.user_memory_ttl_s, settings.user_memory_max))
    outcomes = tuple(OUTCOMES[f] for f in flags)
    return Accepted(batch_id if "accepted" in outcomes else None, outcomes)


def roll_in(store: Store, batch_id: str) -> int:
    return store.roll_in(batch_id)


def sweep_inbox(store: Store, settings: Settings, now: float) -> int:
    """Roll in batches accepted more than INBOX_REDELIVER_S ago whose task never ran."""
    return sum(store.roll_in(b) for b in store.overdue_batches(now - settings.inbox_redeliver_s))


@dataclass(frozen=True)
class Columns:
    """Accepted events read back from the stream, as columns: the stream entry that holds
    each, its ad, its type (``stat_type_index``: 0 for an event that cannot be read, which
    is acknowledged with its entry and counted nowhere), its time, its position (0: none),
    the feed it names and its user (None: none)."""

    entry_id: list[str]
    ad_id: list[str]
    type_index: np.ndarray
    ts: np.ndarray
    position: np.ndarray
    feed_id: list[str | None]
    user_id: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entry_id)

    def without(self, entries: set[str]) -> Columns:
        """These columns but the events of ``entries``."""
        keep = [i for i, e in enumerate(self.entry_id) if e not in entries]
        users = self.user_id or [None] * len(self)
        return Columns([self.entry_id[i] for i in keep], [self.ad_id[i] for i in keep],
                       self.type_index[keep], self.ts[keep], self.position[keep],
                       [self.feed_id[i] for i in keep], [users[i] for i in keep])


TYPE_INDEX = {kind: stat_type_index(kind) for kind in EVENT_TYPES}


def decode_entries(entries: Sequence[StreamEntry],
                   unreadable: str = "acknowledged without counting") -> Columns:
    """The accepted events of stream entries, as columns, in the order the entries hold
    them. An entry that cannot be read, or holds no accepted event, gives one event of type
    0, so that the rollup acknowledges it with its block; a warning names an unreadable one
    and says what becomes of it (``unreadable``)."""
    entry_ids: list[str] = []
    ads: list[str] = []
    types, ts, positions = [], [], []
    feeds: list[str | None] = []
    users: list[str | None] = []
    for entry in entries:
        try:
            ad, kind, at_s, slot, feed, user = _decode(entry)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError,
                AttributeError):
            log.warning("unreadable event entry %s %s", entry.entry_id, unreadable)
            ad = []
        if not ad:
            ad, kind, at_s, slot, feed, user = [""], NONE, NONE_AT, NONE_AT, [None], [None]
        entry_ids += [entry.entry_id] * len(ad)
        ads += ad
        types.append(kind)
        ts.append(at_s)
        positions.append(slot)
        feeds += feed
        users += user
    if not entries:
        return Columns([], [], NONE[:0], NONE_AT[:0], NONE_AT[:0], [], [])
    return Columns(entry_ids, ads, np.concatenate(types), np.concatenate(ts),
                   np.concatenate(positions), feeds, users)


NONE, NONE_AT = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.float64)


def _decode(entry: StreamEntry) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray,
                                         list[str | None], list[str | None]]:
    """(ads, type indexes, times, positions, feeds, users) of an entry's accepted events;
    raises when it cannot be read."""
    if entry.kept is None:           # an earlier version's entry: one event
        event = orjson.loads(entry.payload)
        columns = {"ad": [event["ad"]], "type": [event["type"]], "ts": [event["ts"]],
                   "pos": [event.get("pos")], "feed": [event.get("feed")],
                   "user": [event.get("user")]}
    else:
        columns = orjson.loads(entry.payload)
    ad, kind, feed = columns["ad"], columns["type"], columns["feed"]
    user = columns.get("user") or [None] * len(ad)
    when = np.array(columns["ts"], dtype=np.float64)
    place = np.array([0 if p is None else p for p in columns["pos"]], dtype=np.float64)
    if not len(ad) == len(kind) == len(when) == len(place) == len(feed) == len(user):
        raise ValueError("columns of different lengths")
    if entry.kept is not None:
        kept = np.frombuffer(entry.kept, dtype=np.uint8) == ord("1")
        if len(kept) != len(ad):
            raise ValueError("one flag an event")
        if not kept.all():
            ad, kind, feed, user = (list(compress(c, kept)) for c in (ad, kind, feed, user))
            when, place = when[kept], place[kept]
    if not all(type(a) is str for a in ad):
        raise TypeError("ad must be a string")
    if not (np.all((when >= 0) & (when < LAST_DAY_S)) and np.all(np.isfinite(place))):
        raise ValueError("ts out of range, or pos not finite")
    index = np.array([TYPE_INDEX.get(k, 0) for k in kind], dtype=np.int64)
    return (ad, index, when, place, [f if type(f) is str else None for f in feed],
            [u if type(u) is str and u else None for u in user])
