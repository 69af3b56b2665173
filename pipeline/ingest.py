"""Ingest: accept a batch of validated events durably, then move it into the events stream.

The web calls ``accept_batch``: one atomic step drops event_ids already accepted and keeps
the rest in the inbox, so the batch is safe in Redis before the 202 goes out. The ingest
task calls ``roll_in`` to move it to the stream (idempotent); the rollup's sweep rolls in
any batch whose task was lost.
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from config import Settings
from store import Store, UserMemory


@dataclass(frozen=True)
class Event:
    event_id: str
    ad_id: str
    type: str
    ts: float
    user_id: str | None = None
    feed_id: str | None = None
    position: int | None = None

    def encode(self, accepted_at: float) -> bytes:
        return orjson.dumps({"id": self.event_id, "ad": self.ad_id, "type": self.type,
                             "ts": self.ts, "user": self.user_id, "feed": self.feed_id,
                             "pos": self.position, "at": accepted_at})


@dataclass(frozen=True)
class Accepted:
    batch_id: str | None     # None when every event was a duplicate
    accepted: int
    duplicates: int
    new: tuple[bool, ...] = ()   # per event: accepted (True) or a duplicate


EXCLUDING = ("apply", "hide")   # event types after which a user never sees the ad again


def accept_batch(store: Store, settings: Settings, events: Sequence[Event],
                 now: float) -> Accepted:
    """Accept a batch in one round trip: the new events go to the inbox, and ads a user
    applied to or hid join that user's exclusions at once (a retried post repeats that
    harmlessly), so the next feed already leaves them out."""
    batch_id = uuid.uuid4().hex
    exclusions: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.type in EXCLUDING and e.user_id:
            exclusions[e.user_id].add(e.ad_id)
    flags = store.accept_events(batch_id, [(e.event_id, e.encode(now)) for e in events], now,
                                settings.dedupe_window_s, exclusions,
                                UserMemory(settings.user_memory_ttl_s, settings.user_memory_max))
    accepted = sum(flags)
    return Accepted(batch_id if accepted else None, accepted, len(flags) - accepted,
                    tuple(bool(f) for f in flags))


def roll_in(store: Store, batch_id: str) -> int:
    return store.roll_in(batch_id)


def sweep_inbox(store: Store, settings: Settings, now: float) -> int:
    """Roll in batches accepted more than INBOX_REDELIVER_S ago whose task never ran."""
    return sum(store.roll_in(b) for b in store.overdue_batches(now - settings.inbox_redeliver_s))
