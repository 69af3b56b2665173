"""What one serving process keeps between requests: a cache of unpacked cell feeds and a
buffer of what it served. Together they let a feed request for a cached cell finish without
waiting on Redis.

- ``FeedCache`` keeps each cell's feed for at most FEED_CACHE_TTL_S, within FEED_CACHE_MB.
  It subscribes to feed changes and, before every lookup, applies the change messages
  already delivered (a non-blocking read), so a cell rebuilt, or voided by an ad deleted or
  moved, is dropped before the next request that could use it. While the subscription is
  down nothing is cached.
- ``ServingLog`` buffers served feeds and active cells, and a background thread writes them
  every SERVED_FLUSH_S in one round trip. A process that dies loses at most that interval's
  log entries (never events or counters). Users' last locations are not buffered: the feed
  writes them at once, so the user's next request sees them.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping

import redis

from pipeline.serving.feedpack import CellFeed
from store import Store

log = logging.getLogger(__name__)

RECONNECT_S = 1.0
FLUSH_CHUNK = 2000   # served feeds per write, so that one flush never holds Redis long


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


class ServingLog:
    def __init__(self, store: Store, maxlen: int, flush_s: float | None,
                 max_buffered: int = 100_000) -> None:
        self.store, self.maxlen = store, maxlen
        self.flush_s, self.max_buffered = flush_s, max_buffered
        self._lock = threading.Lock()
        self._served: list[dict] = []
        self._chunks: list[tuple[str, list[dict]]] = []   # failed writes, retried with their id
        self._active: dict[str, float] = {}
        self._flusher_pid = -1

    def add(self, entry: Mapping[str, str | float | int], cell: str, now: float) -> None:
        self._ensure_flusher()
        with self._lock:
            self._served.append(dict(entry))
            self._active[cell] = now
            self._bound()

    def flush(self) -> int:
        """Write what is buffered, in chunks; on a Redis error (down, read-only replica, out
        of memory) keep what was not written for the next try. Each chunk keeps its id
        through retries, so a write that happened but whose reply was lost is not repeated."""
        with self._lock:
            chunks = self._chunks + [(uuid.uuid4().hex, self._served[i:i + FLUSH_CHUNK])
                                     for i in range(0, len(self._served), FLUSH_CHUNK)]
            active = self._active
            self._served, self._chunks, self._active = [], [], {}
        if not chunks and active:
            chunks = [(uuid.uuid4().hex, [])]
        written = 0
        for i, (flush_id, chunk) in enumerate(chunks):
            try:
                self.store.record_serving(chunk, active, self.maxlen, flush_id)
            except redis.RedisError as exc:
                with self._lock:
                    self._chunks[:0] = chunks[i:]
                    self._active = {**active, **self._active}
                    self._bound()
                log.warning("serving log: flush failed (%s); %d entries kept",
                            type(exc).__name__, sum(len(c) for _, c in chunks[i:]))
                break
            written += len(chunk)
            active = {}
        return written

    def _bound(self) -> None:
        """Drop the oldest entries beyond ``max_buffered`` (Redis unreachable for long)."""
        excess = len(self._served) + sum(len(c) for _, c in self._chunks) - self.max_buffered
        if excess <= 0:
            return
        dropped = excess
        while excess > 0 and self._chunks:
            _, oldest = self._chunks[0]
            if len(oldest) <= excess:
                excess -= len(oldest)
                self._chunks.pop(0)
            else:
                del oldest[:excess]
                excess = 0
        del self._served[:excess]
        log.warning("serving log: %d served-feed entries dropped (Redis unreachable)", dropped)

    def _ensure_flusher(self) -> None:
        if self.flush_s is None or self._flusher_pid == os.getpid():
            return
        self._flusher_pid = os.getpid()
        threading.Thread(target=self._run, name="serving-log-flush", daemon=True).start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            time.sleep(self.flush_s)
            try:
                self.flush()
            except Exception:  # a flush must never kill the thread that does them
                log.exception("serving log: flush failed")
