"""A cell's feed: its packed value (everything serving needs but the ads' cards, in one Redis
string that decodes without a Python object per ad), the cache each web process keeps of it,
and the cards, which each web process keeps once, by serial.

``FeedCache`` keeps each cell's feed for at most FEED_CACHE_TTL_S, within FEED_CACHE_MB. It
subscribes to feed changes and, before every lookup, applies the change messages already
delivered (a non-blocking read), so a cell rebuilt, or voided by an ad deleted or moved, is
dropped before the next request that could use it. While the subscription is down nothing
is cached.

``CardCache`` keeps the cards of the ads a process has shown, within CARD_CACHE_MB. A serial
names one version of an ad (a replaced ad gets a new one), so a card never goes stale; one it
lacks costs one HMGET, once.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import msgpack
import numpy as np
import orjson
import redis

import geo
from store import FeedChanges, Store, split_card

if TYPE_CHECKING:
    from pipeline.serving.feed import Prepared

log = logging.getLogger(__name__)

FORMAT_VERSION = 7
RECONNECT_S = 1.0          # between attempts to subscribe to feed changes
COORD_SCALE = 10_000_000   # coordinates are packed in 1e-7 degrees (about a centimetre)
NEVER = 2**32 - 1          # the packed expiry of an ad that never expires (or after 2106)
CARD_OVERHEAD = 120        # bytes a cached card costs beyond its id and JSON (measured ~)


def ad_card(title: str, company: str) -> bytes:
    """The part of a feed entry that is the ad's own but its id, as JSON object members:
    rendered once when the ad is written, not per request (``open_card`` adds the id).

    >>> orjson.loads(b"{" + ad_card('Barista "day"', "Café") + b"}")
    {'title': 'Barista "day"', 'company': 'Café'}
    """
    return orjson.dumps({"title": title, "company": company})[1:-1]


def open_card(ad_id: str, card: bytes) -> bytes:
    """A feed entry's JSON object, left open for its position and distance: the ad's id,
    then its card.

    >>> orjson.loads(open_card("a1", ad_card("Cook", "Inn")) + b', "position": 1}')
    {'ad_id': 'a1', 'title': 'Cook', 'company': 'Inn', 'position': 1}
    """
    return b'{"ad_id":' + orjson.dumps(ad_id) + b"," + card


@dataclass(frozen=True)
class CellFeed:
    """A cell's precomputed feed: the ads it can show (by serial, with where they are and
    when they expire), the orders kept over them (``bandit.order_sources``), what the
    screened strategies sort each screen by, and the probability each strategy is served
    with. Packed, an ad costs 28 bytes: coordinates to 1e-7 degrees, expiry to the second
    (rounded down), sort keys as float32 from the cell's highest, and its employer's code
    in 32 bits (``short_employers``: equal within a feed is what the employer rule asks).
    A feed packed before employers were kept reads with every employer unknown."""

    cell: str
    generated_at: float
    serials: np.ndarray      # uint64 (n): each ad's serial, its card's key
    lat: np.ndarray          # float64 (n), degrees
    lon: np.ndarray
    expires_at: np.ndarray   # float64 (n); inf: never
    strategies: tuple[str, ...]
    probabilities: np.ndarray  # float64, one per strategy
    orders: dict[str, np.ndarray]  # strategy -> int32 (rows, L): positions into the ads
    keys: dict[str, np.ndarray]    # screened strategy -> float64 (n): its sort key per ad
    employers: np.ndarray | None = None   # uint32 (n): employer codes, 0 unknown (None: all)

    def __len__(self) -> int:
        return len(self.serials)

    @cached_property
    def xyz(self) -> np.ndarray:
        """(n, 3) unit vectors, for distances at serve time."""
        return geo.unit_vectors(self.lat, self.lon)

    @cached_property
    def cumulative(self) -> list[float]:
        """The strategies' cumulative probabilities (np.cumsum's sums), for a draw."""
        return np.cumsum(self.probabilities).tolist()

    @cached_property
    def probabilities_list(self) -> list[float]:
        return self.probabilities.tolist()

    @cached_property
    def prepared(self) -> dict[tuple[str, int], Prepared]:
        """This feed's variants as the serving process laid them out
        (``pipeline.serving.feed.Prepared``), each on first use: they go with the feed."""
        return {}

    def pack(self) -> bytes:
        columns = AdColumns.of(self.serials, self.lat, self.lon, self.expires_at, self.keys,
                               self.employers)
        return pack_feed(columns, np.arange(len(self)), self.cell, self.generated_at,
                         self.strategies, self.probabilities, self.orders)

    @classmethod
    def unpack(cls, raw: bytes) -> CellFeed:
        d = msgpack.unpackb(raw, raw=False)
        if not isinstance(d, dict) or d.get("v") != FORMAT_VERSION:
            version = d.get("v") if isinstance(d, dict) else None
            raise ValueError(f"unknown feed format version {version!r}")
        coords = np.frombuffer(d["ll"], dtype="<i4").reshape(-1, 2) / COORD_SCALE
        n = len(coords)
        serials = np.frombuffer(d["sn"], dtype="<u8" if len(d["sn"]) == 8 * n else "<u4")
        expiry = np.frombuffer(d["exp"], dtype="<u4").astype(np.float64)
        expiry[expiry == NEVER] = np.inf

        def order(rows: int, packed: bytes) -> np.ndarray:
            width = "<u4" if n > 2**16 else "<u2"
            return np.frombuffer(packed, dtype=width).astype(np.int32).reshape(rows, -1)
        employers = (np.frombuffer(d["emp"], dtype="<u4").astype(np.uint32)
                     if d.get("emp") else np.zeros(n, dtype=np.uint32))
        return cls(cell=d["cell"], generated_at=d["gen"], serials=serials.astype(np.uint64),
                   lat=coords[:, 0], lon=coords[:, 1], expires_at=expiry,
                   strategies=tuple(d["strategies"]),
                   probabilities=np.frombuffer(d["probs"], dtype="<f8"),
                   orders={k: order(rows, v) for k, (rows, v) in d["orders"].items()},
                   keys={k: top + np.frombuffer(v, dtype="<f4").astype(np.float64)
                         for k, (top, v) in d["keys"].items()},
                   employers=employers)


@dataclass(frozen=True)
class AdColumns:
    """Ads' columns as a feed packs them, so that a cell's feed packs by gathering (a
    regeneration makes them once for the whole catalogue). Sort keys are kept as float32
    less the highest (near the top, where the order matters, float32 keeps them fine: a
    second in a month's creation times)."""

    serials: np.ndarray                          # <u4, or <u8 once a serial needs it
    coords: np.ndarray                           # <i4 (n, 2): lat, lon in 1e-7 degrees
    expiry: np.ndarray                           # <u4 whole seconds, rounded down; NEVER
    keys: dict[str, tuple[float, np.ndarray]]    # name -> (highest, <f4 values less it)
    employers: np.ndarray                        # <u4 (``short_employers``)

    @classmethod
    def of(cls, serials: np.ndarray, lat: np.ndarray, lon: np.ndarray,
           expires_at: np.ndarray, keys: dict[str, np.ndarray],
           employers: np.ndarray | None = None) -> AdColumns:
        serials = np.asarray(serials, dtype=np.uint64)
        wide = len(serials) > 0 and int(serials.max()) >= 2**32
        coords = np.empty((len(serials), 2), dtype="<i4")
        coords[:, 0] = np.rint(lat * COORD_SCALE)
        coords[:, 1] = np.rint(lon * COORD_SCALE)
        expiry = np.clip(np.floor(expires_at), 0, NEVER).astype("<u4")
        packed_keys = {}
        for name, values in keys.items():
            values = np.asarray(values, dtype=np.float64)
            top = float(values.max()) if len(values) else 0.0
            packed_keys[name] = (top, (values - top).astype("<f4"))
        short = (np.zeros(len(serials), dtype="<u4") if employers is None
                 else short_employers(np.asarray(employers, dtype=np.uint64)))
        return cls(serials.astype("<u8" if wide else "<u4"), coords, expiry, packed_keys, short)


def short_employers(codes: np.ndarray) -> np.ndarray:
    """64-bit employer codes in 32 bits, 0 (unknown) kept 0 and no other code made 0.

    >>> short_employers(np.array([0, 5, 2**32, 2**32 + 7], dtype=np.uint64)).tolist()
    [0, 5, 1, 7]
    """
    low = (codes & np.uint64(0xFFFFFFFF)).astype("<u4")
    return np.where((codes != 0) & (low == 0), 1, low).astype("<u4")


def pack_feed(columns: AdColumns, shown: np.ndarray, cell: str, generated_at: float,
              strategies: Sequence[str], probabilities: np.ndarray,
              orders: dict[str, np.ndarray]) -> bytes:
    """The packed feed (``FORMAT_VERSION``) of the ads at ``shown`` in ``columns``, with
    ``orders`` as positions into ``shown``."""
    width = "<u4" if len(shown) > 2**16 else "<u2"
    return _packed(cell, generated_at, columns.serials[shown].tobytes(),
                   columns.coords[shown].tobytes(), columns.expiry[shown].tobytes(),
                   strategies, np.asarray(probabilities, dtype="<f8").tobytes(),
                   {k: [int(v.shape[0]), v.astype(width).tobytes()] for k, v in orders.items()},
                   {k: [top, values[shown].tobytes()] for k, (top, values) in columns.keys.items()},
                   columns.employers[shown].tobytes())


def pack_feeds(columns: AdColumns, cells: Sequence[str], generated_at: float,
               strategies: Sequence[str], probabilities: np.ndarray,
               orders: dict[str, np.ndarray]) -> list[bytes]:
    """Many cells' packed feeds at once, each the same bytes as ``pack_feed`` of the ads its
    orders name. ``orders``: name -> (cells, rows, length) positions into ``columns``, best
    first, -1 past a cell's last (every row of a cell's orders ends at the same place);
    ``probabilities``: one row per cell.

    Every cell's distinct ads are found by sorting each cell's listed ads, all cells in one
    call (``distinct_by_row``), and each column is gathered once for all cells: a cell's
    feed is slices of those."""
    count = len(cells)
    listed = np.concatenate([o.reshape(count, -1) for o in orders.values()], axis=1)
    shown, local, sizes = distinct_by_row(listed)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    widths = (next(iter(orders.values()))[:, 0, :] >= 0).sum(axis=1).tolist()

    def sliced(column: np.ndarray) -> Callable[[int], memoryview]:
        data = memoryview(column[shown].tobytes())
        size = column[:1].nbytes
        return lambda c: data[bounds[c] * size:bounds[c + 1] * size]

    serials, coords, expiry, employers = (sliced(v) for v in (
        columns.serials, columns.coords, columns.expiry, columns.employers))
    keys = {k: (top, sliced(values)) for k, (top, values) in columns.keys.items()}
    probs = np.ascontiguousarray(probabilities, dtype="<f8").reshape(count, -1)
    spans = np.cumsum([0] + [o[0].size for o in orders.values()]).tolist()
    narrow = local.astype("<u2")
    out = []
    for c, cell in enumerate(cells):
        wide = bounds[c + 1] - bounds[c] > 2**16
        packed_orders = {}
        for (name, order), lo, hi in zip(orders.items(), spans, spans[1:], strict=False):
            rows, length = order.shape[1:]
            if wide or widths[c] < length:
                mine = local[c, lo:hi].reshape(rows, length)[:, :widths[c]]
                packed_orders[name] = [rows, mine.astype("<u4" if wide else "<u2").tobytes()]
            else:
                packed_orders[name] = [rows, narrow[c, lo:hi].tobytes()]
        out.append(_packed(cell, generated_at, serials(c), coords(c), expiry(c), strategies,
                           probs[c].tobytes(), packed_orders,
                           {k: [top, values(c)] for k, (top, values) in keys.items()},
                           employers(c)))
    return out


def distinct_by_row(listed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct non-negative values of each row of ``listed`` (rows, width): all rows'
    in one array, each row's ascending (``np.unique`` of each row, concatenated); each
    entry's position among its row's (-1 where the entry is negative); each row's count.
    One sort of each row, not a Python pass per row.

    >>> distinct_by_row(np.array([[7, 3, 7, -1], [2, 2, 5, 9]]))
    (array([3, 7, 2, 5, 9]), array([[ 1,  0,  1, -1],
           [ 0,  0,  1,  2]]), array([2, 3]))
    """
    rows, width = listed.shape
    small = listed.astype(np.int32 if listed.size and listed.max() < 2**31 else np.int64)
    order = np.argsort(small, axis=1)          # equal values share a rank: any order will do
    flat = (order + np.arange(rows, dtype=np.int64)[:, None] * width).ravel()
    ascending = small.ravel()[flat].reshape(rows, width)
    new = np.empty(ascending.shape, dtype=bool)
    new[:, :1] = True
    np.not_equal(ascending[:, 1:], ascending[:, :-1], out=new[:, 1:])
    new &= ascending >= 0
    rank = np.cumsum(new, axis=1, dtype=np.int32) - 1
    local = np.empty(listed.shape, dtype=np.int64)
    local.ravel()[flat] = np.where(ascending >= 0, rank, -1).ravel()
    return ascending[new].astype(np.int64), local, np.count_nonzero(new, axis=1)


def _packed(cell: str, generated_at: float, serials: bytes | memoryview,
            coords: bytes | memoryview, expiry: bytes | memoryview, strategies: Sequence[str],
            probabilities: bytes, orders: dict[str, list], keys: dict[str, list],
            employers: bytes | memoryview) -> bytes:
    return msgpack.packb({
        "v": FORMAT_VERSION, "cell": cell, "gen": generated_at, "sn": serials, "ll": coords,
        "exp": expiry, "strategies": list(strategies), "probs": probabilities,
        "orders": orders, "keys": keys, "emp": employers}, use_bin_type=True)


class CardCache:
    """Ad cards by serial, as many as fit ``max_bytes``, least recently used out first."""

    def __init__(self, store: Store, max_bytes: int = 128 << 20) -> None:
        self.store, self.max_bytes = store, max_bytes
        self._entries: OrderedDict[int, tuple[str, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every card: when the feed cache drops every cell (a new subscription, as
        after Redis restarted or failed over, possibly to data whose serials were given
        again), the cards go with them."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def get_many(self, serials: Sequence[int]) -> list[tuple[str, bytes] | None]:
        """(ad id, its feed entry's open JSON object: ``open_card``) of each serial, None
        where the ad is gone; the ones not kept here are read in one command (and kept)."""
        with self._lock:
            found = [self._entries.get(s) for s in serials]
            for s, entry in zip(serials, found, strict=True):
                if entry is not None:
                    self._entries.move_to_end(s)
        missing = [s for s, entry in zip(serials, found, strict=True) if entry is None]
        if not missing:
            return found
        read = {s: _entry(v) for s, v in zip(missing, self.store.ad_cards(missing),
                                             strict=True) if v is not None}
        with self._lock:
            for s, entry in read.items():
                self._keep(s, entry)
        return [entry if entry is not None else read.get(s)
                for s, entry in zip(serials, found, strict=True)]

    def _keep(self, serial: int, entry: tuple[str, bytes]) -> None:
        if serial in self._entries:
            return
        self._entries[serial] = entry
        self._bytes += _card_size(entry)
        while self._bytes > self.max_bytes and self._entries:
            _, gone = self._entries.popitem(last=False)
            self._bytes -= _card_size(gone)


def _entry(value: bytes) -> tuple[str, bytes]:
    """An ads:cards value as a cached entry: (ad id, the feed entry's open JSON object)."""
    ad_id, card = split_card(value)
    return ad_id, open_card(ad_id, card)


def _card_size(entry: tuple[str, bytes]) -> int:
    return len(entry[0]) + len(entry[1]) + CARD_OVERHEAD


class FeedCache:
    def __init__(self, store: Store, ttl_s: float, max_bytes: int = 256 << 20,
                 clock: Callable[[], float] = time.monotonic,
                 on_reset: Callable[[], None] | None = None) -> None:
        self.store, self.ttl_s, self.max_bytes, self.clock = store, ttl_s, max_bytes, clock
        self.on_reset = on_reset     # called whenever every cell is dropped
        self._entries: OrderedDict[str, tuple[float, CellFeed, int]] = OrderedDict()
        self._bytes = 0
        self._generation = 0
        self._pubsub: FeedChanges | None = None
        self._pid = -1
        self._listening = False
        self._next_attempt = 0.0
        self._lock = threading.RLock()   # a threaded server may share one cache

    @property
    def generation(self) -> int:
        """Changes whenever cells are dropped: a feed read before a change is not cached."""
        return self._generation

    def get(self, cell: str) -> CellFeed | None:
        with self._lock:
            if not self._sync():
                return None
            hit = self._entries.get(cell)
            if hit is None:
                return None
            if self.clock() - hit[0] > self.ttl_s:
                self._forget(cell)
                return None
            self._entries.move_to_end(cell)
            return hit[1]

    def put(self, cell: str, feed: CellFeed, generation: int, size: int) -> None:
        """Cache a feed (``size`` bytes packed) read when ``generation`` was current, unless
        cells were dropped since or the change subscription is down. The least recently
        used cells make room."""
        with self._lock:
            if not self._listening or generation != self._generation or size > self.max_bytes:
                return
            self._forget(cell)
            self._entries[cell] = (self.clock(), feed, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._forget(next(iter(self._entries)))

    def drop(self, cells: list[str] | None) -> None:
        """Forget these cells (None: every cell)."""
        with self._lock:
            self._generation += 1
            if cells is None:
                self._entries.clear()
                self._bytes = 0
                if self.on_reset is not None:
                    self.on_reset()
            else:
                for cell in cells:
                    self._forget(cell)

    def _forget(self, cell: str) -> None:
        gone = self._entries.pop(cell, None)
        if gone is not None:
            self._bytes -= gone[2]

    def _sync(self) -> bool:
        """Apply every change message already delivered, without waiting; (re)subscribe when
        needed. True while the subscription is up, so the cache may be used."""
        if self.ttl_s <= 0:
            return False
        if self._pid != os.getpid():                    # a forked worker subscribes anew
            self._pid, self._pubsub, self._listening = os.getpid(), None, False
            self.drop(None)
        try:
            if self._pubsub is None:
                if self.clock() < self._next_attempt:
                    return False
                self._next_attempt = self.clock() + RECONNECT_S
                self._pubsub = self.store.feed_changes()
            while (message := self._pubsub.get_message(timeout=0)) is not None:
                if message["type"] == "subscribe":
                    self.drop(None)                     # anything may have changed meanwhile
                    self._listening = True
                elif message["type"] == "message":
                    self.drop(message["data"].decode().split())
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            if self._listening:
                log.warning("feed cache: change subscription lost (%s); not caching until it "
                            "is back", type(exc).__name__)
            self._pubsub, self._listening = None, False
            self.drop(None)
        return self._listening
