"""What the store reads and writes, as Python values: rows, summaries, stream entries, and
the helpers that pack and parse them."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, cast, overload

import numpy as np

import geo
from store.keys import (
    EVENT_TYPES,
    FIRST_LAYOUT_SIZE,
    GEO_LAT_LIMIT,
    SECOND_LAYOUT_SIZE,
    SECOND_LAYOUT_TAG,
    SUMMARY,
    SUMMARY_TAG,
    THIRD_LAYOUT_SIZE,
    THIRD_LAYOUT_TAG,
)


@dataclass(frozen=True)
class Summaries:
    """ads:summary values decoded side by side: ``rows[i]`` is ad ``ids[i]``'s."""

    ids: list[bytes]
    rows: np.ndarray          # SUMMARY records

    @classmethod
    def decode(cls, ids: list[bytes], values: list[bytes]) -> Summaries:
        return cls(ids, summary_rows(values))


@dataclass(frozen=True)
class StreamEntry:
    """An events-stream entry: one accepted batch's events in one partition (``payload``,
    as the ingest step encoded them, with ``kept``: a flag an event, b"1" if it was accepted
    and b"0" if not), or, written by an earlier version, one event (``kept`` None)."""

    entry_id: str
    payload: bytes
    kept: bytes | None = None


@dataclass(frozen=True)
class Unrolled:
    """Accepted events the rollup has not counted yet, and the oldest of them."""

    inbox_batches: int               # accepted batches not yet moved to the stream
    oldest_inbox_at: float | None    # when the oldest of them was accepted (epoch s)
    pending: int                     # delivered to a rollup consumer, not acknowledged
    # in the stream, never delivered (UNDELIVERED_COUNTED: at least)
    undelivered: int
    oldest_entry_ms: int | None      # stream id time of the oldest pending or undelivered entry

    def lag_s(self, now: float) -> float:
        """How long the oldest event not counted yet has waited (0 if none waits).

        >>> Unrolled(1, 95.0, 0, 2, 90_000).lag_s(100.0)
        10.0
        """
        oldest = [t for t in (self.oldest_inbox_at, None if self.oldest_entry_ms is None
                              else self.oldest_entry_ms / 1000) if t is not None]
        return max(0.0, now - min(oldest)) if oldest else 0.0

    @classmethod
    def add(cls, parts: Sequence[Unrolled]) -> Unrolled:
        """Several partitions' together: the counts added, the oldest of the oldest.

        >>> both = Unrolled.add([Unrolled(1, 95.0, 2, 3, None), Unrolled(0, None, 1, 0, 9000)])
        >>> both.inbox_batches, both.oldest_inbox_at, both.pending, both.undelivered
        (1, 95.0, 3, 3)
        >>> both.oldest_entry_ms
        9000
        """
        def oldest(values: list[float | int | None]) -> float | int | None:
            return min((v for v in values if v is not None), default=None)
        return cls(sum(u.inbox_batches for u in parts),
                   oldest([u.oldest_inbox_at for u in parts]), sum(u.pending for u in parts),
                   sum(u.undelivered for u in parts),
                   oldest([u.oldest_entry_ms for u in parts]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class AdRow:
    """An ad as the catalogue writes it: its hash fields and what ads:summary packs (made by
    pipeline.catalogue.AdRecord.row, the one place an ad changes shape)."""

    ad_id: str
    fields: Mapping[str, str]
    lat: float
    lon: float
    expires_at: float | None
    created_at: float
    category_code: int
    card: bytes
    employer_code: int = 0       # 0: unknown (no company)


@dataclass(frozen=True)
class UserMemory:
    """How many ads a user's exclusions keep (the newest), and for how long."""

    ttl_s: int = 90 * 86_400
    max_ads: int = 1000


class IngestBatch(NamedTuple):
    """Validated events as the accept step takes them, as columns: each event's id and ad,
    and the user whose feeds leave its ad out from now on (None: nobody). ``payload(at)``
    is what the events stream keeps of the events at positions ``at`` (None: all of them),
    one value however many they are."""

    event_ids: Sequence[str]
    ad_ids: Sequence[str]
    excludes_for: Sequence[str | None]
    payload: Callable[[Sequence[int] | None], bytes]


@dataclass(frozen=True)
class RollupRow:
    """One stream entry as the rollup counts it."""

    entry_id: str
    ad_id: str
    type_index: int          # 1-based in EVENT_TYPES; 0: acknowledge without counting
    day: str                 # YYYY-MM-DD
    weight: float = 1.0      # decay (and, for impressions, position) weight
    cell: str = ""           # the feed's cell and strategy, when the event names a feed
    strategy: str = ""       # ("" also when it came too late to credit the strategy)
    feed_id: str = ""
    feed_day: str = ""       # YYYY-MM-DD the feed was served: its credit is kept per day
    position_column: int = 0  # 1-based column of the ad's position counts (0: none)
    epoch: int = 0           # the position epoch its feed was served in


@dataclass(frozen=True)
class RollupBlock:
    """A block of stream entries as the rollup counts them: RollupRow's fields as columns,
    one item per entry (the rollup builds them without an object per event)."""

    entry_id: list[str]
    ad_id: list[str]
    type_index: np.ndarray   # int64
    day: list[str]
    weight: np.ndarray       # float64
    cell: list[str]
    strategy: list[str]
    feed_id: list[str]
    feed_day: list[str]
    position_column: np.ndarray   # int64
    epoch: np.ndarray        # int64

    @classmethod
    def of(cls, rows: Sequence[RollupRow]) -> RollupBlock:
        """The block of these rows.

        >>> RollupBlock.of([RollupRow("1-0", "ad1", 2, "2030-01-01")]).type_index.tolist()
        [2]
        """
        def column(name: str) -> list:
            return [getattr(r, name) for r in rows]

        return cls(column("entry_id"), column("ad_id"),
                   np.array(column("type_index"), dtype=np.int64), column("day"),
                   np.array(column("weight"), dtype=np.float64), column("cell"),
                   column("strategy"), column("feed_id"), column("feed_day"),
                   np.array(column("position_column"), dtype=np.int64),
                   np.array(column("epoch"), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.entry_id)

    def without(self, entry_ids: set[str]) -> RollupBlock:
        """The block less these entries."""
        keep = [i for i, e in enumerate(self.entry_id) if e not in entry_ids]
        index = np.array(keep, dtype=np.int64)

        def pick(values: list) -> list:
            return [values[i] for i in keep]

        return RollupBlock(pick(self.entry_id), pick(self.ad_id), self.type_index[index],
                           pick(self.day), self.weight[index], pick(self.cell),
                           pick(self.strategy), pick(self.feed_id), pick(self.feed_day),
                           self.position_column[index], self.epoch[index])


@dataclass(frozen=True)
class Decayed:
    """Decayed sums as stored: ``values`` (n, width) as they stood at ``updated_at`` (n);
    rows never written are zeros (their time NaN)."""

    updated_at: np.ndarray
    values: np.ndarray

    @classmethod
    def parse(cls, raw: Sequence[bytes | None], width: int) -> Decayed:
        rows = float_rows(raw, width + 1)
        return cls(rows[:, 0], np.nan_to_num(rows[:, 1:], nan=0.0))


def int_rows(raw: Sequence[bytes | None], width: int) -> np.ndarray:
    """Space-separated counters, one value a row, as an (n, width) int64 array: 0 where a
    value is missing or shorter."""
    return np.nan_to_num(float_rows(raw, width), nan=0.0).astype(np.int64)


def float_rows(raw: Sequence[bytes | None], width: int) -> np.ndarray:
    """Space-separated numbers, one value a row, as an (n, width) array: NaN where a value
    is missing or shorter (written when there were fewer fields)."""
    out = np.full((len(raw), width), np.nan)
    raw = list(raw)
    if raw.count(None):
        present: list[int] | slice = [i for i, v in enumerate(raw) if v is not None]
        values = [v for v in raw if v is not None]
    else:                     # every row there (the usual case): no pass in Python to sort out
        present, values = slice(None), cast(list[bytes], raw)
    if not values:
        return out
    if all(v.count(b" ") == width - 1 for v in values):
        # numpy's own text parser, not a Python bytes object per number
        numbers = np.fromstring(b" ".join(values), dtype=np.float64, sep=" ")
        if len(numbers) != len(values) * width:
            raise ValueError("a stored row of numbers does not parse")
        out[present] = numbers.reshape(len(values), width)
    else:
        rows = range(len(raw)) if isinstance(present, slice) else present
        for i, v in zip(rows, values, strict=True):
            row = np.array(v.split(), dtype=np.float64)[:width]
            out[i, :len(row)] = row
    return out


@overload
def _s(value: bytes | str) -> str: ...
@overload
def _s(value: None) -> None: ...
def _s(value: bytes | str | None) -> str | None:
    """A reply as text (redis-py gives bytes; a client made with decode_responses, str)."""
    return value.decode() if isinstance(value, bytes) else value


def summary_rows(values: Sequence[bytes]) -> np.ndarray:
    """The fixed part of each ads:summary value, as SUMMARY records. Values of the third
    layout read with employer 0 (unknown), older ones with serial 0 too (and, the first,
    with creation time and category 0)."""
    tag = len(SUMMARY_TAG)
    whole, stride = b"".join(values), tag + SUMMARY.itemsize
    if values and len(whole) == len(values) * stride:       # all current, most likely
        tags = np.ndarray((len(values),), dtype=f"V{tag}", buffer=whole, strides=(stride,))
        if (tags == np.frombuffer(SUMMARY_TAG, dtype=f"V{tag}")).all():
            return np.ndarray((len(values),), dtype=SUMMARY, buffer=whole, offset=tag,
                              strides=(stride,)).copy()
    fixed = b"".join(v[tag:] if v[:tag] == SUMMARY_TAG else _older(v) for v in values)
    if len(fixed) != len(values) * SUMMARY.itemsize:
        raise ValueError("an ads:summary value has an unknown layout")
    return np.frombuffer(fixed, dtype=SUMMARY)


def _older(value: bytes) -> bytes:
    """An older ads:summary value's fixed part in the current layout (employer 0; serial 0
    but for the third layout)."""
    if value[:len(THIRD_LAYOUT_TAG)] == THIRD_LAYOUT_TAG:
        start = len(THIRD_LAYOUT_TAG)
        head = value[start:start + THIRD_LAYOUT_SIZE - 8]
        return head + bytes(8) + value[start + THIRD_LAYOUT_SIZE - 8:start + THIRD_LAYOUT_SIZE]
    if value[:len(SECOND_LAYOUT_TAG)] == SECOND_LAYOUT_TAG:
        start = len(SECOND_LAYOUT_TAG)
        return value[start:start + SECOND_LAYOUT_SIZE] + bytes(16)
    return value[:FIRST_LAYOUT_SIZE] + bytes(SUMMARY.itemsize - FIRST_LAYOUT_SIZE)


def summary(ad: AdRow, expires_at: float, serial: int) -> bytes:
    """An ads:summary value: what regeneration needs of an ad, and its serial."""
    fixed = (ad.lat, ad.lon, expires_at, ad.created_at, ad.category_code, ad.employer_code,
             serial)
    return SUMMARY_TAG + np.array([fixed], dtype=SUMMARY).tobytes()


def card_value(ad: AdRow) -> bytes:
    """An ads:cards value: the ad's id, a NUL (ids never hold one), then its card."""
    return ad.ad_id.encode() + b"\x00" + ad.card


def split_card(value: bytes) -> tuple[str, bytes]:
    """(ad id, card) of an ads:cards value."""
    ad_id, _, card = value.partition(b"\x00")
    return ad_id.decode(), card


def searchable(lat: float, lon: float, radius_km: float) -> tuple[float, float]:
    """A search centre Redis accepts, with the radius widened so that the circle still holds
    every point within radius_km of the true centre (all indexed ads lie within the limit)."""
    clamped = max(-GEO_LAT_LIMIT, min(GEO_LAT_LIMIT, lat))
    if clamped == lat:
        return lat, radius_km
    return clamped, radius_km + float(geo.haversine_km(lat, lon, clamped, lon)) + 0.001


def consumer_name() -> str:
    """This process's name as a stream consumer: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _after_entry(entry_id: str) -> tuple[int, int]:
    """The first stream id after ``entry_id``, as (ms, seq): XTRIM MINID at it drops the
    entry and everything before.

    >>> _after_entry("7-2"), _after_entry("9")
    ((7, 3), (9, 1))
    """
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0) + 1


def _entry_ms(entry_id: bytes | str) -> int:
    """The time part of a stream id: milliseconds since the epoch."""
    return int(_s(entry_id).split("-")[0])


def stat_type_index(event_type: str) -> int:
    """1-based index of an event type in STAT_FIELDS; 0 for a type the rollup ignores."""
    try:
        return EVENT_TYPES.index(event_type) + 1
    except ValueError:
        return 0
