"""A cell's feed: its packed value (everything serving needs, in one Redis string that
decodes without a Python object per ad) and the cache each web process keeps of it.

``FeedCache`` keeps each cell's feed for at most FEED_CACHE_TTL_S, within FEED_CACHE_MB. It
subscribes to feed changes and, before every lookup, applies the change messages already
delivered (a non-blocking read), so a cell rebuilt, or voided by an ad deleted or moved, is
dropped before the next request that could use it. While the subscription is down nothing
is cached.
"""
from __future__ import annotations

import logging
import operator
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgpack
import numpy as np
import orjson
import redis

from store import Store

log = logging.getLogger(__name__)

FORMAT_VERSION = 6
RECONNECT_S = 1.0          # between attempts to subscribe to feed changes


@dataclass(frozen=True)
class StringTable:
    """Many byte strings and their lengths, so that a subset packs with one join and one
    cumulative sum (measured faster than gathering bytes with index arrays)."""

    items: list[bytes]
    lengths: np.ndarray      # int64

    @classmethod
    def of(cls, strings: Sequence[str | bytes]) -> StringTable:
        """
        >>> StringTable.of(["ab", "c", "def"]).gather(np.array([2, 0])).blob
        b'defab'
        """
        items = [s.encode() if isinstance(s, str) else bytes(s) for s in strings]
        return cls(items, np.fromiter(map(len, items), dtype=np.int64, count=len(items)))

    @classmethod
    def slices(cls, buffer: bytes, starts: np.ndarray, lengths: np.ndarray) -> StringTable:
        """The strings buffer[start:start + length].

        >>> StringTable.slices(b"xxabyc", np.array([2, 5]), np.array([2, 1])).items
        [b'ab', b'c']
        """
        ends = (starts + lengths).tolist()
        return cls([buffer[a:b] for a, b in zip(starts.tolist(), ends, strict=True)],
                   np.asarray(lengths, dtype=np.int64))

    def gather(self, positions: np.ndarray) -> PackedStrings:
        """The strings at ``positions``, packed together."""
        offsets = np.zeros(len(positions) + 1, dtype=np.int32)
        np.cumsum(self.lengths[positions], out=offsets[1:])
        if len(positions) == 0:
            return PackedStrings(b"", offsets)
        picked = operator.itemgetter(*positions.tolist())(self.items)
        return PackedStrings(picked if len(positions) == 1 else b"".join(picked), offsets)


@dataclass(frozen=True)
class PackedStrings:
    """Strings concatenated in ``blob``; string i is blob[offsets[i]:offsets[i + 1]]."""

    blob: bytes
    offsets: np.ndarray      # int32 (n + 1)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.raw(i).decode()

    def raw(self, i: int) -> bytes:
        return self.blob[self.offsets[i]:self.offsets[i + 1]]

    def take(self, positions: Sequence[int] | np.ndarray) -> list[str]:
        return [self[int(i)] for i in positions]

    def all(self) -> list[str]:
        return self.take(range(len(self)))


def ad_card(ad_id: str, title: str, company: str) -> bytes:
    """The part of a feed entry that is the ad's own, as a JSON object left open for the
    entry's position and distance: rendered once when the ad is written, not per request.

    >>> orjson.loads(ad_card("a1", 'Barista "day"', "Café") + b', "position": 1}')
    {'ad_id': 'a1', 'title': 'Barista "day"', 'company': 'Café', 'position': 1}
    """
    return orjson.dumps({"ad_id": ad_id, "title": title, "company": company})[:-1]


@dataclass(frozen=True)
class CellFeed:
    """A cell's precomputed feed: the ads it can show, the orders kept over them
    (``bandit.order_sources``), what the screened strategies sort each screen by, and the
    probability each strategy is served with."""

    cell: str
    generated_at: float
    ad_ids: PackedStrings
    cards: PackedStrings     # ad_card of each ad
    xyz: np.ndarray          # float64 (n, 3): unit vectors, for distances at serve time
    expires_at: np.ndarray   # float64 (n)
    strategies: tuple[str, ...]
    probabilities: np.ndarray  # float64, one per strategy
    orders: dict[str, np.ndarray]  # strategy -> int32 (rows, L): positions into the ads
    keys: dict[str, np.ndarray]    # screened strategy -> float64 (n): its sort key per ad

    def __len__(self) -> int:
        return len(self.ad_ids)

    def pack(self) -> bytes:
        def strings(p: PackedStrings) -> list:
            return [p.blob, p.offsets.astype("<i4").tobytes()]
        return msgpack.packb({
            "v": FORMAT_VERSION, "cell": self.cell, "gen": self.generated_at,
            "ids": strings(self.ad_ids), "cards": strings(self.cards),
            "xyz": self.xyz.astype("<f8").tobytes(),
            "exp": self.expires_at.astype("<f8").tobytes(),
            "strategies": list(self.strategies),
            "probs": np.asarray(self.probabilities, dtype="<f8").tobytes(),
            "orders": {k: [int(v.shape[0]), v.astype("<i4").tobytes()]
                       for k, v in self.orders.items()},
            "keys": {k: np.asarray(v, dtype="<f8").tobytes() for k, v in self.keys.items()},
        }, use_bin_type=True)

    @classmethod
    def unpack(cls, raw: bytes) -> CellFeed:
        d = msgpack.unpackb(raw, raw=False)
        if d.get("v") != FORMAT_VERSION:
            raise ValueError(f"unknown feed format version {d.get('v')!r}")

        def strings(pair: list) -> PackedStrings:
            return PackedStrings(pair[0], np.frombuffer(pair[1], dtype="<i4"))
        return cls(cell=d["cell"], generated_at=d["gen"], ad_ids=strings(d["ids"]),
                   cards=strings(d["cards"]),
                   xyz=np.frombuffer(d["xyz"], dtype="<f8").reshape(-1, 3),
                   expires_at=np.frombuffer(d["exp"], dtype="<f8"),
                   strategies=tuple(d["strategies"]),
                   probabilities=np.frombuffer(d["probs"], dtype="<f8"),
                   orders={k: np.frombuffer(v, dtype="<i4").reshape(rows, -1)
                           for k, (rows, v) in d["orders"].items()},
                   keys={k: np.frombuffer(v, dtype="<f8") for k, v in d["keys"].items()})


class FeedCache:
    def __init__(self, store: Store, ttl_s: float, max_bytes: int = 256 << 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.ttl_s, self.max_bytes, self.clock = store, ttl_s, max_bytes, clock
        self._entries: OrderedDict[str, tuple[float, CellFeed, int]] = OrderedDict()
        self._bytes = 0
        self._generation = 0
        self._pubsub: redis.client.PubSub | None = None
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
