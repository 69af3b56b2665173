"""The archive's side of Redis: which stream entries are counted and not archived yet, the
cursor that marks how far each stream was archived, and the lock one archive run holds."""

from __future__ import annotations

import redis
from redis.commands.core import Script
from redis.lock import Lock

from store.event_store import _stream_entry
from store.keys import ROLLUP_GROUP, STAT_FIELDS, Keys, Partition
from store.rows import StreamEntry, _after_entry, _s


class ArchiveStore:
    """The entries the archive may take and its cursors. An events-stream entry may be
    archived once the rollup has counted it (delivered to the consumer group, and not
    pending); a served-log entry once it was counted into the strategies (the served
    cursor). Each stream has a cursor: the last entry archived."""

    r: redis.Redis
    k: type[Keys]
    parts: list[Partition]
    _move_cursor: Script

    def _archive_cursor_key(self, kind: str, partition: int) -> str:
        if kind == "events":
            return self.parts[partition].archived
        if kind == "served" and partition == 0:
            return self.k.served_archived
        raise ValueError(f"no archived stream {kind!r} in partition {partition}")

    def archive_cursor(self, kind: str, partition: int = 0) -> str:
        """The last entry of the stream (``events`` of a partition, or ``served``) archived:
        '0-0' before the first."""
        return _s(self.r.get(self._archive_cursor_key(kind, partition))) or "0-0"

    def move_archive_cursor(self, kind: str, partition: int, expected: str, new: str) -> bool:
        """Move the cursor from ``expected`` to ``new``, unless another run moved it."""
        key = self._archive_cursor_key(kind, partition)
        return bool(self._move_cursor(keys=[key], args=[expected, new]))

    def archivable_events(self, partition: int, after: str, count: int
                          ) -> list[StreamEntry]:
        """Up to ``count`` entries of a partition's events stream after ``after`` that the
        rollup has counted, oldest first."""
        key = self.parts[partition].events
        end = self._counted_end(key)
        if end is None:
            return []
        return [_stream_entry(i, f) for i, f in self.r.xrange(key, f"({after}", end,
                                                                 count=count)]

    def archivable_served(self, after: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` served-log entries after ``after`` that were counted into the
        strategies, oldest first."""
        end = self.r.get(self.k.served_cursor)
        if end is None:
            return []
        rows = self.r.xrange(self.k.served, f"({after}", _s(end), count=count)
        return [(_s(i), {_s(k): _s(v) for k, v in f.items()}) for i, f in rows]

    def _counted_end(self, key: str) -> str | None:
        """The XRANGE end that takes only the entries the rollup counted: up to its group's
        last delivered entry, and before the first one still pending with a consumer."""
        try:
            groups = self.r.xinfo_groups(key)
        except redis.ResponseError:      # no stream yet
            return None
        group = next((g for g in groups if _s(g["name"]) == ROLLUP_GROUP), None)
        if group is None:
            return None
        pending = self.r.xpending(key, ROLLUP_GROUP)
        if pending["pending"]:
            return f"({_s(pending['min'])}"
        return _s(group["last-delivered-id"])

    def trim_served(self, min_id_ms: int, keep_after: str) -> int:
        """Drop served-log entries older than ``min_id_ms`` that are archived (up to
        ``keep_after``, the archive's cursor, included)."""
        cut = min((min_id_ms, 0), _after_entry(keep_after))
        return int(self.r.xtrim(self.k.served, minid=f"{cut[0]}-{cut[1]}", approximate=False))

    def archive_lock(self, ttl_s: float) -> Lock:
        """The lock an archive run holds (redis-py's: a token of its own, released only by
        its holder, and expiring after ``ttl_s`` should the holder die)."""
        return self.r.lock(self.k.archive_lock, timeout=ttl_s, blocking=False)

    def holds_counters(self) -> bool:
        """Whether any partition holds per-ad counters, decayed evidence or CTR counters."""
        keys = [k for p in self.parts for k in (p.counts, p.decayed, p.ctr_all)]
        return any(self.r.exists(k) for k in keys)

    def clear_counters(self) -> int:
        """Delete what a replay rebuilds, in every partition: the per-ad counters (and an
        older version's per-field ones), the decayed evidence, the per-day and all-time CTR
        counters. The strategy counts and the feeds already credited stay. Returns keys
        deleted."""
        deleted = 0
        for p in self.parts:
            days = list(self.r.scan_iter(match=p.ctr("*"), count=1000))
            older = [self.k.stats(f) for f in STAT_FIELDS] if p.index == 0 else []
            for key in [p.counts, p.decayed, p.ctr_all, *days, *older]:
                deleted += int(self.r.delete(key))
        return deleted

    def adopt_feed_id_secret(self, secret: bytes) -> bool:
        """Take ``secret`` as the one that signs feed ids (a replay into another Redis, so
        that the same feeds credit the same strategies), unless one is set: whether the
        secret now stored is ``secret``."""
        self.r.set(self.k.feed_id_secret, secret, nx=True)
        return self.r.get(self.k.feed_id_secret) == secret

    def telemetry_memory(self) -> dict[str, int]:
        """Bytes Redis holds for raw telemetry (MEMORY USAGE, every element counted): the
        events streams, the dedupe sets (and those of earlier versions) and the served log,
        each summed over partitions."""
        out = {"events": 0, "dedupe": 0, "served": 0}
        for p in self.parts:
            out["events"] += int(self.r.memory_usage(p.events, samples=0) or 0)
            for pattern in (p.seen(0)[:-1], p.dedupe(0)[:-1]):
                for key in self.r.scan_iter(match=pattern + "*", count=1000):
                    out["dedupe"] += int(self.r.memory_usage(key, samples=0) or 0)
        out["served"] = int(self.r.memory_usage(self.k.served, samples=0) or 0)
        return out

    def legacy_dedupe_bytes(self, ids: list[str]) -> float:
        """Bytes an id takes in the dedupe sets as versions before ``store.dedupe`` kept
        them (the id itself, in one set a window): written to a set of that layout, measured
        and deleted. For benchmarks, on a server of their own."""
        key = self.parts[0].seen(-1)        # a bucket no clock reaches
        try:
            for i in range(0, len(ids), 1000):
                self.r.sadd(key, *ids[i:i + 1000])
            return int(self.r.memory_usage(key, samples=0) or 0) / len(ids)
        finally:
            self.r.delete(key)

    def dedupe_bucket_memory(self, bucket: int) -> dict[str, int]:
        """One dedupe bucket, over partitions: its sets' bytes (with its record's), the ids
        it holds, its sets, and how many of them Redis keeps as intsets."""
        out = {"bytes": 0, "ids": 0, "shards": 0, "intsets": 0}
        for p in self.parts:
            record = self.r.hgetall(p.dedupe(bucket))
            out["bytes"] += int(self.r.memory_usage(p.dedupe(bucket), samples=0) or 0)
            out["ids"] += int(record.get(b"ids", 0))
            out["shards"] += int(record.get(b"shards", 0))
            for key in self.r.scan_iter(match=p.dedupe_shard(bucket, 0)[:-1] + "*",
                                        count=1000):
                out["bytes"] += int(self.r.memory_usage(key, samples=0) or 0)
                out["intsets"] += self.r.object("encoding", key) == b"intset"
        return out

    def archive_cursors(self) -> dict[str, str]:
        """Every cursor, by name: ``events`` (``events.<partition>`` beyond the first) and
        ``served``."""
        cursors = {"events" if p.index == 0 else f"events.{p.index}":
                   self.archive_cursor("events", p.index) for p in self.parts}
        return {**cursors, "served": self.archive_cursor("served")}
