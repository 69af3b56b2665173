"""Ingest: accept a batch of validated events durably, then move it into the events stream.

The web calls ``accept_batch``: one atomic step drops event_ids already accepted, rejects
events for ads the catalogue does not hold, and keeps the rest in the inbox, so the batch is
safe in Redis before the 202 goes out. The ingest task calls ``roll_in`` to move it to the
stream (idempotent); the rollup's sweep rolls in any batch whose task was lost. The rollup
counts every event accepted, even if its ad is deleted before it is counted.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import orjson

from config import Settings
from store import ACCEPTED, DUPLICATE, UNKNOWN_AD, IngestRow, Store, UserMemory


class Event(NamedTuple):
    """One validated event (a tuple: a post makes hundreds, and building a frozen dataclass
    costs several times more)."""

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
    batch_id: str | None     # None when no event was accepted
    outcomes: tuple[str, ...] = ()   # per event: "accepted", "duplicate" or "unknown_ad"

    @property
    def accepted(self) -> int:
        return self.outcomes.count("accepted")

    @property
    def duplicates(self) -> int:
        return self.outcomes.count("duplicate")


EXCLUDING = ("apply", "hide")   # event types after which a user never sees the ad again
OUTCOMES = {ACCEPTED: "accepted", DUPLICATE: "duplicate", UNKNOWN_AD: "unknown_ad"}


def accept_batch(store: Store, settings: Settings, events: Sequence[Event],
                 now: float) -> Accepted:
    """Accept a batch in one round trip. An event for an ad the catalogue does not hold
    (never created, or deleted, even after its impression was served) is rejected alone
    ("unknown_ad"): nothing of it is kept or counted, so invented ids cannot grow the store.
    An ad that merely expired keeps its record, so its late events still count. The new
    events go to the inbox, and ads a user applied to or hid join that user's exclusions
    at once (a retried post repeats that harmlessly), so the next feed already leaves them
    out."""
    batch_id = uuid.uuid4().hex
    rows = [IngestRow(e.event_id, e.ad_id, e.encode(now),
                      e.user_id if e.type in EXCLUDING else None) for e in events]
    flags = store.accept_events(batch_id, rows, now, settings.dedupe_window_s,
                                UserMemory(settings.user_memory_ttl_s, settings.user_memory_max))
    outcomes = tuple(OUTCOMES[f] for f in flags)
    return Accepted(batch_id if "accepted" in outcomes else None, outcomes)


def roll_in(store: Store, batch_id: str) -> int:
    return store.roll_in(batch_id)


def sweep_inbox(store: Store, settings: Settings, now: float) -> int:
    """Roll in batches accepted more than INBOX_REDELIVER_S ago whose task never ran."""
    return sum(store.roll_in(b) for b in store.overdue_batches(now - settings.inbox_redeliver_s))
