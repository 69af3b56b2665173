"""Events and the rollup: accepting batches, the inbox, the events stream, counting, the
decayed evidence, the position epochs and the served log's cursor, and the counters reports read."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import orjson
import redis
from redis.commands.core import Script

from store import dedupe
from store.keys import (
    EVIDENCE_FIELDS,
    ROLLUP_GROUP,
    STAT_FIELDS,
    UNDELIVERED_COUNTED,
    Keys,
    Partition,
)
from store.rows import (
    Decayed,
    IngestBatch,
    RollupBlock,
    RollupRow,
    StreamEntry,
    Unrolled,
    UserMemory,
    _after_entry,
    _entry_ms,
    _s,
    int_rows,
    stat_type_index,
)

PARTITIONS_RECHECK_S = 10.0   # an accept looks for the recorded partition count this often


class PartitionsChanged(RuntimeError):
    """EVENT_PARTITIONS differs from the count the store's events were partitioned by."""


class EventStore:
    """Events and the rollup: accepting batches, the inbox, the events stream, counting, the"""

    r: redis.Redis
    k: type[Keys]
    cluster: bool
    parts: list[Partition]       # the event pipeline's partitions (EVENT_PARTITIONS)
    _partitions_checked: bool    # this process has checked them against the store's
    _partitions_next_check: float   # (monotonic) when to look for the count again
    _partitions_failure: PartitionsChanged | None   # what the last look found wrong
    exclude_for_users: Callable[..., None]      # UserStore's
    # the Lua scripts this area runs (Store registers them on its client)
    _accept: Script
    _size_dedupe: Script
    _dedupe_shards: dedupe.ShardCounts      # what this process knows of the buckets
    _roll_in: Script
    _rollup: Script
    _begin_fold: Script
    _fold_positions: Script
    _count_served: Script
    _settle_credits: Script
    _drop_settled: Script

    def partition_of(self, ad_id: str) -> Partition:
        """The partition an ad's events go to (a hash of its id: always the same one)."""
        if len(self.parts) == 1:
            return self.parts[0]
        return self.parts[zlib.crc32(ad_id.encode()) % len(self.parts)]

    def _by_partition(self, ad_ids: Sequence[str | bytes]) -> dict[int, list[int]]:
        """The positions in ``ad_ids`` of each partition's ads."""
        if len(self.parts) == 1:
            return {0: list(range(len(ad_ids)))}
        out: dict[int, list[int]] = {}
        for i, ad in enumerate(ad_ids):
            out.setdefault(self.partition_of(_s(ad)).index, []).append(i)
        return out

    def accept_events(self, batch_id: str, batch: IngestBatch, now: float,
                      window_s: int, memory: UserMemory | None = None) -> list[int]:
        """Accept a batch in one atomic step (``scripts.ACCEPT``): each event is ACCEPTED
        (kept durably in the inbox), a DUPLICATE of one accepted before, or UNKNOWN_AD (its
        ad has no record: rejected, nothing written). Exclusions (``excludes_for``) of
        known ads are added in the same step. On Redis Cluster the records and the users'
        exclusions lie in other slots than the event pipeline's: which ads have a record is
        asked first, and the exclusions are added after the step, for duplicates too (adding
        one twice changes nothing), so a post retried after a failure in between still adds
        them. With several partitions each keeps its own events, in a step of its own."""
        memory = memory or UserMemory()
        if not self._partitions_checked:
            self._check_partitions_now_and_then()
        for column in (batch.event_ids, batch.ad_ids):
            if any("\n" in value for value in column):
                raise ValueError("an event or ad id holds a line break")
        parts = self._by_partition(batch.ad_ids)
        if len(parts) > 1:
            flags = [0] * len(batch.event_ids)
            for index, at in parts.items():
                got = self._accept_in(self.parts[index], batch_id, batch, at, now, window_s,
                                      memory)
                for i, flag in zip(at, got, strict=True):
                    flags[i] = flag
            return flags
        part = self.parts[next(iter(parts))] if batch.ad_ids else self.parts[0]
        return self._accept_in(part, batch_id, batch, None, now, window_s, memory)

    def _accept_in(self, part: Partition, batch_id: str, batch: IngestBatch,
                   at: list[int] | None, now: float, window_s: int,
                   memory: UserMemory) -> list[int]:
        """The step for one partition: the batch's events at positions ``at`` (None:
        all)."""
        def pick(column: Sequence) -> Sequence:
            return column if at is None else [column[i] for i in at]
        ids, ad_ids, excludes_for = (pick(c) for c in batch[:3])
        bucket = dedupe.bucket_of(now, window_s)
        legacy = int(now // dedupe.LEGACY_WINDOW_S)
        keys = [part.inbox, part.inbox_due, part.dedupe(bucket), part.seen(legacy),
                part.seen(legacy - 1)]
        prints, buckets = self._dedupe_sets(part, bucket, ids, keys, now, window_s)
        ads = list(dict.fromkeys(ad_ids))
        unknown: list[str] = []
        if self.cluster:
            with self.r.pipeline(transaction=False) as p:
                for ad in ads:
                    p.exists(self.k.ad(ad))
                unknown = [ad for ad, n in zip(ads, p.execute(), strict=True) if not n]
        exclusions: list[object] = []
        users: dict[str, int] = {}
        if not self.cluster:
            for n, user in enumerate(excludes_for, start=1):
                if user:
                    if user not in users:
                        keys.append(self.k.user_excluded(user))
                        users[user] = len(keys)
                    exclusions += [n, users[user]]
        records = 0 if self.cluster else len(keys) + 1
        if not self.cluster:       # each ad's record, in the order the script meets them
            keys += [self.k.ad(ad) for ad in ads]
        args: list[object] = [batch_id, now, dedupe.ttl_s(bucket, now, window_s),
                              memory.max_ads, memory.ttl_s, records, len(ids),
                              len(exclusions) // 2, "\n".join(ids), "\n".join(ad_ids),
                              batch.payload(at), "\n".join(prints), buckets,
                              *exclusions, *unknown]
        flags = [int(f) for f in self._accept(keys=keys, args=args)]
        if self.cluster:
            gone = set(unknown)
            by_user: dict[str, list[str]] = {}
            for user, ad in zip(excludes_for, ad_ids, strict=True):
                if user and ad not in gone:
                    by_user.setdefault(user, []).append(ad)
            self.exclude_for_users(by_user, now, memory)
        return flags

    def _dedupe_sets(self, part: Partition, bucket: int, ids: Sequence[str],
                     keys: list[str], now: float, window_s: int) -> tuple[list[str], int]:
        """The events' fingerprints, and how many dedupe buckets are consulted; for each of
        them, the current first, the set each event's fingerprint falls in is added to
        ``keys``. The current bucket's shard count is decided on its first accept."""
        consulted = dedupe.consulted(bucket)
        known = self._dedupe_shards
        missing = known.missing(part.tag, consulted)
        if missing:
            with self.r.pipeline(transaction=False) as p:
                for b in missing:
                    p.hget(part.dedupe(b), "shards")
                for b, shards in zip(missing, p.execute(), strict=True):
                    known.learn(part.tag, b, int(shards) if shards else None)
        shards = known.of(part.tag, consulted)
        if bucket not in shards:
            decided = self._size_dedupe(
                keys=[part.dedupe(bucket), part.dedupe(bucket - 1)],
                args=[dedupe.LEAST_SHARDS, dedupe.IDS_PER_SHARD,
                      dedupe.ttl_s(bucket, now, window_s)])
            known.learn(part.tag, bucket, int(decided))
            shards = known.of(part.tag, consulted)
        prints = [dedupe.fingerprint(i) for i in ids]
        buckets = [b for b in consulted if b in shards]
        for b in buckets:
            prefix, n = part.dedupe_shard(b, 0)[:-1], shards[b]
            keys += [prefix + str((fp & dedupe.MASK) % n) for fp in prints]
        return [str(fp) for fp in prints], len(buckets)

    def accepted_count(self, now: float, window_s: int) -> int:
        """How many event ids the dedupe buckets still consulted hold (with any the sets of
        earlier versions hold): the events accepted in the last one to one and a half
        windows."""
        legacy = int(now // dedupe.LEGACY_WINDOW_S)
        with self.r.pipeline(transaction=False) as p:
            for part in self.parts:
                for b in dedupe.consulted(dedupe.bucket_of(now, window_s)):
                    p.hget(part.dedupe(b), "ids")
                p.scard(part.seen(legacy))
                p.scard(part.seen(legacy - 1))
            return sum(int(n or 0) for n in p.execute())

    def roll_in(self, batch_id: str) -> int:
        """Move an accepted batch into the events streams (its events in each partition
        into that partition's); 0 if it was already moved."""
        return sum(int(self._roll_in(keys=[part.inbox, part.inbox_due, part.events],
                                     args=[batch_id])) for part in self.parts)

    def overdue_batches(self, older_than: float) -> list[str]:
        """Batches accepted before ``older_than`` and still in an inbox (once each)."""
        found: dict[str, None] = {}
        for part in self.parts:
            found.update(dict.fromkeys(
                _s(b) for b in self.r.zrangebyscore(part.inbox_due, "-inf", older_than)))
        return list(found)

    def inbox_size(self) -> int:
        """Batches waiting in the inboxes (a batch split over partitions counts in each)."""
        with self.r.pipeline(transaction=False) as p:
            for part in self.parts:
                p.zcard(part.inbox_due)
            return sum(int(n) for n in p.execute())

    def _check_partitions_now_and_then(self) -> None:
        """``check_partitions`` for an accept: once a process when it passes with a count
        recorded; till then at most every PARTITIONS_RECHECK_S (a post stays one round
        trip), a failure raised again meanwhile without asking."""
        if time.monotonic() < self._partitions_next_check:
            if self._partitions_failure is not None:
                raise self._partitions_failure
            return
        self._partitions_next_check = time.monotonic() + PARTITIONS_RECHECK_S
        try:
            self._partitions_checked = self.check_partitions(record=False)
            self._partitions_failure = None
        except PartitionsChanged as exc:
            self._partitions_failure = exc
            raise

    def check_partitions(self, record: bool = True) -> bool:
        """Refuse (PartitionsChanged) another number of partitions than the store's events
        were first counted in: an ad's events would move to another partition, and its
        counts with them. The first rollup records the count (``record``) before it counts
        anything, so counts without a recorded count were left by an earlier version, which
        had one partition. Whether a count was recorded (an accept only reads it)."""
        found = self.r.get(self.k.partitions)
        if found is None:
            earlier = self.r.exists(self.k.counts, self.k.decayed, self.k.ctr_all)
            if not record:           # (an accept: the count is the rollup's to record)
                if earlier and len(self.parts) != 1:
                    found = b"1"
                else:
                    return False
            else:
                self.r.set(self.k.partitions, 1 if earlier else len(self.parts), nx=True)
                found = self.r.get(self.k.partitions)
        first = int(found)
        if first != len(self.parts):
            raise PartitionsChanged(
                f"EVENT_PARTITIONS is {len(self.parts)}, but this store's events were "
                f"partitioned {first} ways: set it back to {first} (the partition count is "
                f"fixed for a store's life)")
        return True

    def ensure_group(self) -> None:
        """Make each partition's stream and consumer group, once (after
        ``check_partitions``)."""
        self.check_partitions()
        for part in self.parts:
            try:
                self.r.xgroup_create(part.events, ROLLUP_GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def claim_stale(self, consumer: str, min_idle_ms: int, count: int,
                    partition: int = 0) -> list[StreamEntry]:
        """Entries of a partition delivered to a consumer that died before acknowledging
        them."""
        _next, claimed, *_ = self.r.xautoclaim(self.parts[partition].events, ROLLUP_GROUP,
                                               consumer, min_idle_time=min_idle_ms,
                                               start_id="0-0", count=count)
        return [_stream_entry(i, f) for i, f in claimed if f]

    def read_new(self, consumer: str, count: int, partition: int = 0) -> list[StreamEntry]:
        reply = self.r.xreadgroup(ROLLUP_GROUP, consumer, {self.parts[partition].events: ">"},
                                  count=count)
        if not reply:
            return []
        return [_stream_entry(i, f) for i, f in reply[0][1]]

    def apply_rollup(self, rows: Sequence[RollupRow] | RollupBlock, now: float,
                     half_life_s: float, strategies: Sequence[str],
                     credited_ttl_s: int = 8 * 86_400, position_width: int = 0,
                     epoch_ttl_s: int = 86_400, partition: int = 0,
                     acknowledge: bool = True, left_out: set[str] | None = None) -> int:
        """Count a block of events and XACK it, atomically (``scripts.ROLLUP``): raw
        counters, per-day counters (also per strategy), each ad's decayed evidence and its
        position counts in its epoch (rows of ``position_width``), and, once per feed, the
        strategy and cell of the feed an apply came from. The block is summed here, so the
        step's work grows with the ads and days it touches, not with its events. An entry
        that is no longer pending (reclaimed and counted by another consumer) is left out:
        the step refuses a block holding one, and the block is summed again without it.
        In a partition other than 0 the strategy credits are listed in the partition, and
        ``settle_credits`` applies them. Without ``acknowledge`` (a replay of archived
        events, which no stream holds) the block is counted with no entry checked or
        acknowledged. Returns the events counted; ``left_out`` (when given) receives the
        entries left out."""
        block = rows if isinstance(rows, RollupBlock) else RollupBlock.of(rows)
        part = self.parts[partition]
        strategies_key = self.k.strategies if partition == 0 else part.credits
        while True:
            keys, args = _rollup_step(part, strategies_key, block, now, half_life_s, strategies,
                                      credited_ttl_s, position_width, epoch_ttl_s, acknowledge)
            reply = self._rollup(keys=keys, args=args)
            if not isinstance(reply, list):
                return int(reply)
            gone = {_s(entry) or "" for entry in reply}
            if left_out is not None:
                left_out |= gone
            block = block.without(gone)

    def settle_credits(self, partition: int, now: float, half_life_s: float, strategies: int,
                       credited_ttl_s: int = 8 * 86_400, chunk: int = 100) -> int:
        """Apply in partition 0 the strategy credits a partition's rollup listed, once per
        feed (``scripts.SETTLE_CREDITS``), then drop them from the list if they are still
        its head (``scripts.DROP_SETTLED``): a settle cut short leaves them listed, two
        settles at once drop them once, and doing them again adds nothing. Returns the
        credits read."""
        if partition == 0:
            return 0
        part, settled = self.parts[partition], 0
        while texts := self.r.lrange(part.credits, 0, chunk - 1):
            items = [item for text in texts for item in orjson.loads(text)]
            days = sorted({day for day, *_ in items})
            index = {day: 2 + i for i, day in enumerate(days)}
            args: list[object] = [repr(now), repr(half_life_s), credited_ttl_s, strategies]
            for day, feed_id, cell, strategy, weight in items:
                args += [index[day], feed_id, cell, strategy, repr(weight)]
            self._settle_credits(keys=[self.k.strategies, *(self.k.credited(d) for d in days)],
                                 args=args)
            self._drop_settled(keys=[part.credits], args=texts)
            settled += len(items)
        return settled

    def decayed_evidence(self, ad_ids: Sequence[str | bytes], chunk: int = 50_000) -> Decayed:
        """Each ad's decayed evidence (EVIDENCE_FIELDS) as last updated, and when."""
        values: list[bytes | None] = [None] * len(ad_ids)
        for index, at in self._by_partition(ad_ids).items():
            for i in range(0, len(at), chunk):
                part = at[i:i + chunk]
                found = self.r.hmget(self.parts[index].decayed, [ad_ids[j] for j in part])
                for j, value in zip(part, found, strict=True):
                    values[j] = value
        return Decayed.parse(values, len(EVIDENCE_FIELDS))

    def position_epochs(self, partition: int = 0) -> list[int]:
        """A partition's epochs with position counts not folded yet, oldest first."""
        part = self.parts[partition]
        prefix = len(part.position_epoch(0)) - 1
        return sorted(int(k[prefix:]) for k in self.r.zrange(part.position_epochs, 0, -1))

    def begin_fold(self, epoch: int, partition: int = 0) -> int:
        """Set an epoch's counts aside for folding (``scripts.BEGIN_FOLD``)."""
        part = self.parts[partition]
        return int(self._begin_fold(keys=[part.position_epoch(epoch),
                                          part.position_folding(epoch)]))

    def folding_counts(self, epoch: int, width: int, chunk: int = 10_000,
                       partition: int = 0) -> np.ndarray:
        """An epoch's set-aside impressions and views by position, a row per ad. The rollup
        keeps a field "<ad> <column>" per ad and column; an earlier version kept one field
        per ad holding its whole row ("t v1 ... v<width>"), which is read too."""
        rows: dict[bytes, int] = {}
        cells: list[tuple[int, int, float]] = []
        whole: list[tuple[int, bytes]] = []
        folding = self.parts[partition].position_folding(epoch)
        for field, value in self.r.hscan_iter(folding, count=chunk):
            if b" " in value:                 # an earlier version's whole row
                whole.append((rows.setdefault(field, len(rows)), value))
                continue
            ad, _, column = field.rpartition(b" ")
            cells.append((rows.setdefault(ad, len(rows)), int(column) - 1, float(value)))
        counts = np.zeros((len(rows), width))
        if cells:
            row_of, column_of, n = (np.array(c) for c in zip(*cells, strict=True))
            np.add.at(counts, (row_of.astype(np.int64), column_of.astype(np.int64)), n)
        if whole:
            at, values = zip(*whole, strict=True)
            counts[list(at)] += Decayed.parse(list(values), width).values
        return counts

    def fold_positions(self, epoch: int, pairs: Sequence[float], now: float,
                       half_life_s: float, partition: int = 0) -> bool:
        """Add an epoch's set-aside pair counts to the partition's decayed ones and drop
        them, once."""
        part = self.parts[partition]
        keys = [part.position_folding(epoch), part.position_pairs, part.position_epochs,
                part.position_epoch(epoch)]
        args = [repr(now), repr(half_life_s), len(pairs), *map(repr, pairs)]
        return bool(self._fold_positions(keys=keys, args=args))

    def record_generation(self, now: float, keep: int = 10_000) -> None:
        """A regeneration wrote its feeds at ``now``: the start of a position epoch."""
        with self.r.pipeline(transaction=False) as p:
            p.zadd(self.k.generations, {repr(now): now})
            p.zremrangebyrank(self.k.generations, 0, -keep - 1)
            p.execute()

    def generations(self, since: float) -> np.ndarray:
        """When each regeneration since ``since`` wrote its feeds, oldest first."""
        return np.array([s for _, s in self.r.zrangebyscore(self.k.generations, since, "+inf",
                                                            withscores=True)])

    def position_pairs(self, width: int) -> Decayed:
        """The decayed pair counts, as last updated, and when: a row per partition (each
        partition folds its own; decay them to one time, then add)."""
        with self.r.pipeline(transaction=False) as p:
            for part in self.parts:
                p.hget(part.position_pairs, "pairs")
            return Decayed.parse(p.execute(), width)

    def write_position_curve(self, curve: Mapping[str, object]) -> None:
        self.r.set(self.k.position_curve, orjson.dumps(curve))

    def position_curve(self) -> dict | None:
        """The last examination curve the rollup learnt, or None before the first."""
        raw = self.r.get(self.k.position_curve)
        try:
            return orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return None

    def served_after(self, cursor: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """Served-feed entries logged after ``cursor`` (a stream id), oldest first."""
        rows = self.r.xrange(self.k.served, f"({cursor}", "+", count=count)
        return [(_s(i), {_s(k): _s(v) for k, v in f.items()}) for i, f in rows]

    def served_between(self, start_ms: int, end_ms: int, chunk: int = 10_000,
                       after: str | None = None) -> Iterator[list[tuple[str, dict[str, str]]]]:
        """Served-feed entries logged from ``start_ms`` to ``end_ms`` (inclusive), oldest
        first, in chunks (for the off-policy evaluation); given ``after``, only the entries
        after it (those the archive does not hold)."""
        start = _range_start(start_ms, after)
        while True:
            rows = self.r.xrange(self.k.served, start, str(end_ms), count=chunk)
            if not rows:
                return
            yield [(_s(i), {_s(k): _s(v) for k, v in f.items()}) for i, f in rows]
            start = f"({_s(rows[-1][0])}"

    def events_between(self, start_ms: int, end_ms: int, chunk: int = 10_000,
                       after: Mapping[int, str] | None = None) -> Iterator[list[StreamEntry]]:
        """Accepted events that reached the streams from ``start_ms`` to ``end_ms``
        (inclusive), in chunks, each partition's oldest first; only what the streams still
        hold (EVENTS_RETENTION_S), and given ``after`` (by partition), only each partition's
        entries after it (those the archive does not hold)."""
        for part in self.parts:
            start = _range_start(start_ms, (after or {}).get(part.index))
            while True:
                rows = self.r.xrange(part.events, start, str(end_ms), count=chunk)
                if not rows:
                    break
                yield [_stream_entry(i, f) for i, f in rows if f]
                start = f"({_s(rows[-1][0])}"

    def served_cursor(self) -> str:
        return _s(self.r.get(self.k.served_cursor)) or "0-0"

    def count_served(self, expected_cursor: str, new_cursor: str,
                     rows: Sequence[tuple[str, int, float]], now: float, half_life_s: float,
                     strategies: int) -> int:
        """Add served feeds ((cell, 1-based strategy index, weight) rows) to the decayed
        strategy counts and move the cursor, unless another run moved it first (-1)."""
        args: list[object] = [expected_cursor, new_cursor, repr(now), repr(half_life_s),
                              strategies]
        for cell, index, weight in rows:
            args += [cell, index, repr(weight)]
        return int(self._count_served(keys=[self.k.served_cursor, self.k.strategies], args=args))

    def trim_events(self, min_id_ms: int, partition: int | None = None,
                    keep_after: str | None = None) -> int:
        """Drop rolled-up entries older than min_id_ms (of one partition, or of all); never
        one still pending, nor (given ``keep_after``, an entry id) one after it."""
        parts = self.parts if partition is None else [self.parts[partition]]
        return sum(self._trim(part, min_id_ms, keep_after) for part in parts)

    def _trim(self, part: Partition, min_id_ms: int, keep_after: str | None) -> int:
        info = self.r.xpending(part.events, ROLLUP_GROUP)
        cut = (min_id_ms, 0)
        if info["pending"]:
            cut = min(cut, (_entry_ms(info["min"]), 0))
        groups = self.r.xinfo_groups(part.events)
        for g in groups:
            if _s(g["name"]) == ROLLUP_GROUP:
                cut = min(cut, (_entry_ms(g["last-delivered-id"]), 0))
        if keep_after is not None:
            cut = min(cut, _after_entry(keep_after))
        return int(self.r.xtrim(part.events, minid=f"{cut[0]}-{cut[1]}", approximate=False))

    def backlog(self) -> dict[str, int]:
        """Events not yet rolled up, over every partition: waiting in the streams and
        pending with a consumer."""
        pending, lag = 0, 0
        for part in self.parts:
            info = {_s(g["name"]): g for g in self.r.xinfo_groups(part.events)}
            group = info.get(ROLLUP_GROUP)
            pending += int(group["pending"]) if group else 0
            known = group.get("lag") if group else None
            lag = -1 if known is None or lag < 0 else lag + int(known)
        return {"pending": pending, "lag": lag, "inbox": self.inbox_size()}

    def unrolled(self) -> Unrolled:
        """Accepted events not counted yet, over every partition: batches in the inboxes,
        stream entries pending with a rollup consumer or never delivered, and the oldest of
        each (two round trips a partition at most; nothing is read or changed)."""
        return Unrolled.add([self._unrolled(part) for part in self.parts])

    def _unrolled(self, part: Partition) -> Unrolled:
        with self.r.pipeline(transaction=False) as p:
            p.zcard(part.inbox_due)
            p.zrange(part.inbox_due, 0, 0, withscores=True)
            p.xlen(part.events)
            p.xinfo_groups(part.events)
            p.xpending(part.events, ROLLUP_GROUP)
            batches, first_batch, length, groups, pending = p.execute(raise_on_error=False)
        oldest_inbox_at = float(first_batch[0][1]) if first_batch else None
        group = None
        if int(length):   # with no stream or no group yet, XINFO and XPENDING fail
            if isinstance(groups, Exception):
                raise groups
            group = next((g for g in groups if _s(g["name"]) == ROLLUP_GROUP), None)
        if group is None:
            first = self.r.xrange(part.events, "-", "+", count=1) if int(length) else []
            return Unrolled(int(batches), oldest_inbox_at, 0, int(length),
                            _entry_ms(first[0][0]) if first else None)
        if isinstance(pending, Exception):
            raise pending
        lag = group.get("lag")
        oldest = [_entry_ms(pending["min"])] if pending["pending"] else []
        if lag != 0:
            # Redis gives no lag once entries were trimmed or deleted: count what follows
            # the last delivered entry instead, up to UNDELIVERED_COUNTED
            after = self.r.xrange(part.events, f"({_s(group['last-delivered-id'])}", "+",
                                  count=1 if lag is not None else UNDELIVERED_COUNTED)
            oldest += [_entry_ms(after[0][0])] if after else []
            if lag is None:
                lag = len(after)
        return Unrolled(int(batches), oldest_inbox_at, int(pending["pending"]), int(lag),
                        min(oldest, default=None))

    def ad_stats(self, ad_ids: Sequence[str], fields: Sequence[str] = STAT_FIELDS,
                 chunk: int = 20_000) -> dict[str, list[int]]:
        """Each stat field as a list aligned with ad_ids (0 where an ad has none), with
        what an older version counted in its per-field hashes added."""
        columns = [STAT_FIELDS.index(f) for f in fields]
        out = {f: np.zeros(len(ad_ids), dtype=np.int64) for f in fields}
        for index, at in self._by_partition(ad_ids).items():
            for i in range(0, len(at), chunk):
                rows = at[i:i + chunk]
                part = [ad_ids[j] for j in rows]
                with self.r.pipeline(transaction=False) as p:
                    p.hmget(self.parts[index].counts, part)
                    older = fields if index == 0 else []   # (an older version: one partition)
                    for field in older:
                        p.hmget(self.k.stats(field), part)
                    packed, *older_rows = p.execute()
                counts = int_rows(packed, len(STAT_FIELDS))
                for field, column in zip(fields, columns, strict=True):
                    out[field][rows] = counts[:, column]
                for field, row in zip(older, older_rows, strict=True):
                    out[field][rows] += int_rows(row, 1)[:, 0]
        return {f: column.tolist() for f, column in out.items()}

    def seed_ad_counts(self, ad_ids: Sequence[str], counts: Mapping[str, Sequence[int]],
                       as_of: float, chunk: int = 10_000) -> None:
        """Set ads' counters (``counts``: every STAT_FIELDS field, aligned with ``ad_ids``)
        and their decayed evidence, equal to the counts as of ``as_of``: as the rollup would
        leave them after some traffic. For benchmarks and tests (the service counts through
        ``apply_rollup`` only)."""
        if set(counts) != set(STAT_FIELDS):
            raise ValueError(f"counts must hold exactly {STAT_FIELDS}, not {sorted(counts)}")
        evidence = [counts["impressions"], *(counts[f] for f in EVIDENCE_FIELDS[1:])]
        when = repr(float(as_of))
        for index, at in self._by_partition(ad_ids).items():
            for i in range(0, len(at), chunk):
                rows = at[i:i + chunk]
                ids = [ad_ids[j] for j in rows]
                with self.r.pipeline(transaction=False) as p:
                    p.hset(self.parts[index].counts, mapping={
                        a: " ".join(str(int(counts[f][j])) for f in STAT_FIELDS)
                        for a, j in zip(ids, rows, strict=True)})
                    p.hset(self.parts[index].decayed, mapping={
                        a: " ".join([when, *(str(int(e[j])) for e in evidence)])
                        for a, j in zip(ids, rows, strict=True)})
                    p.execute()

    def ads_with_impressions(self) -> list[str]:
        """Every ad that has been shown at least once (deleted ones included)."""
        shown = {_s(a) for part in self.parts
                 for a, v in self.r.hscan_iter(part.counts, count=10_000)
                 if int(v.split(b" ", 1)[0]) > 0}
        return sorted(shown | {_s(a) for a in self.r.hkeys(self.k.stats("impressions"))})

    def ctr_all_time(self) -> dict[str, int]:
        """The per-day counters' fields (impressions, ..., thompson:applies, ...) summed over
        all time (and over the partitions): monotonic, for Prometheus counters."""
        with self.r.pipeline(transaction=False) as p:
            for part in self.parts:
                p.hgetall(part.ctr_all)
            return _summed(p.execute())

    def ctr_days(self, days: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each day's counters, summed over the partitions."""
        with self.r.pipeline(transaction=False) as p:
            for day in days:
                for part in self.parts:
                    p.hgetall(part.ctr(day))
            rows = p.execute()
        n = len(self.parts)
        return {d: _summed(rows[i * n:(i + 1) * n]) for i, d in enumerate(days)}


def _range_start(start_ms: int, after: str | None) -> str:
    """The XRANGE start of entries from ``start_ms`` on, and after ``after`` if given.

    >>> _range_start(5, None), _range_start(5, "7-2"), _range_start(9, "7-2")
    ('5-0', '(7-2', '9-0')
    """
    if after is not None and after != "0-0" and _entry_ms(after) >= start_ms:
        return f"({after}"
    return f"{max(0, start_ms)}-0"


def _stream_entry(entry_id: bytes, fields: Mapping[bytes, bytes]) -> StreamEntry:
    """An events-stream entry as XADD wrote it (``scripts.ROLL_IN``): a batch's flags and
    payload, or an earlier version's single event (an entry with neither reads as
    unreadable)."""
    if b"e" in fields:
        return StreamEntry(_s(entry_id), fields[b"e"])
    return StreamEntry(_s(entry_id), fields.get(b"b", b""), fields.get(b"k", b""))


def _summed(hashes: Sequence[Mapping[bytes, bytes]]) -> dict[str, int]:
    """Counter hashes added field by field."""
    out: dict[str, int] = {}
    for row in hashes:
        for k, v in row.items():
            out[_s(k)] = out.get(_s(k), 0) + int(v)
    return out


def factorize(values: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct values, in order of first appearance, and each value's index among them.

    >>> factorize(["b", "a", "b"])
    (['b', 'a'], array([0, 1, 0]))
    """
    index: dict[str, int] = {}
    codes = [index.setdefault(v, len(index)) for v in values]
    return list(index), np.array(codes, dtype=np.int64)


def _rollup_step(k: Partition, strategies_key: str, block: RollupBlock, now: float,
                 half_life_s: float, strategies: Sequence[str], credited_ttl_s: int,
                 position_width: int, epoch_ttl_s: int, acknowledge: bool = True
                 ) -> tuple[list[str], list[object]]:
    """The KEYS and ARGV of ``scripts.ROLLUP`` for ``block`` in partition ``k``: its entries
    in stream order, then its events summed by ad, by counter, by position epoch, and its
    applies that name a feed (``store/lua/rollup.lua`` lists the sections): credited in the
    step in partition 0, listed as one text for ``settle_credits`` in another."""
    ntypes, nev, nstrat = len(STAT_FIELDS), len(EVIDENCE_FIELDS), len(strategies)
    t = block.type_index
    valid = np.flatnonzero(t > 0)
    # distinct, in the order read: a block read from the stream is oldest first, which lets
    # the step check them with one range (in another order each is checked alone)
    entries = list(dict.fromkeys(block.entry_id)) if acknowledge else []
    tv = t[valid] - 1                                         # 0-based types
    args: list[object] = [ROLLUP_GROUP, repr(now), repr(half_life_s), credited_ttl_s,
                          position_width, epoch_ttl_s, ntypes, nev, nstrat,
                          len(valid), len(entries), *entries]
    ads, ad_of = factorize([block.ad_id[i] for i in valid.tolist()])
    counts = np.bincount(ad_of * ntypes + tv, minlength=len(ads) * ntypes)
    args.append(len(ads))
    for ad, row in zip(ads, counts.reshape(len(ads), ntypes).tolist(), strict=True):
        args += [ad, *row]

    fixed = [k.events, k.counts, k.decayed, strategies_key, k.ctr_all, k.position_epochs]
    all_time, first_day = fixed.index(k.ctr_all) + 1, len(fixed) + 1   # KEYS, 1-based
    days, day_of = factorize([block.day[i] for i in valid.tolist()])
    strategy_index = {name: i for i, name in enumerate(strategies)}
    s = np.array([strategy_index.get(block.strategy[i], -1) for i in valid.tolist()],
                 dtype=np.int64)
    fed = s >= 0
    counters: list[object] = []

    def count(field: np.ndarray, day: np.ndarray, names: list[str]) -> None:
        """HINCRBYs of ``names[field]`` on each day's ctr hash and on the all-time one."""
        width = len(names)
        sums = np.bincount(day * width + field, minlength=len(days) * width)
        for flat in np.flatnonzero(sums).tolist():
            counters.extend((first_day + flat // width, names[flat % width], int(sums[flat])))
        for k, n in enumerate(sums.reshape(len(days), width).sum(axis=0).tolist()):
            if n:
                counters.extend((all_time, names[k], n))

    count(tv, day_of, list(STAT_FIELDS))
    if fed.any():
        count(s[fed] * ntypes + tv[fed], day_of[fed],
              [f"{name}:{kind}" for name in strategies for kind in STAT_FIELDS])
    args += [len(counters) // 3, *counters]

    weights = block.weight[valid]
    evidence = tv < nev
    ev_ads, ev_of = np.unique(ad_of[evidence], return_inverse=True)
    sums = np.bincount(ev_of * nev + tv[evidence], weights=weights[evidence],
                       minlength=len(ev_ads) * nev).reshape(len(ev_ads), nev)
    args.append(len(ev_ads))
    for a, row in zip(ev_ads.tolist(), sums.tolist(), strict=True):
        args += [ads[a], *map(repr, row)]

    applies = np.flatnonzero(fed & (tv == stat_type_index("apply") - 1)).tolist()
    listed: list[list[object]] = []
    if k.index:                         # credited in partition 0, by settle_credits
        for j in applies:
            i = int(valid[j])
            listed.append([block.feed_day[i], block.feed_id[i], block.cell[i], int(s[j]) + 1,
                           float(weights[j])])
        applies = []
    credit_days = sorted({block.feed_day[valid[j]] for j in applies})
    columns = block.position_column[valid]
    placed = np.flatnonzero((columns > 0) & (columns <= position_width))
    epochs, epoch_of = np.unique(block.epoch[valid][placed], return_inverse=True)
    epoch_base = first_day + len(days) + len(credit_days)
    width = position_width + 1
    cells, cell_counts = np.unique((epoch_of * len(ads) + ad_of[placed]) * width
                                   + columns[placed], return_counts=True)
    args.append(len(cells))
    for flat, n in zip(cells.tolist(), cell_counts.tolist(), strict=True):
        pair, column = divmod(flat, width)
        e, a = divmod(pair, len(ads))
        args += [epoch_base + e, ads[a], column, n]

    credit_index = {d: first_day + len(days) + i for i, d in enumerate(credit_days)}
    args.append(len(applies))
    for j in applies:
        i = int(valid[j])
        args += [credit_index[block.feed_day[i]], block.feed_id[i], block.cell[i],
                 int(s[j]) + 1, repr(float(weights[j]))]
    args.append(orjson.dumps(listed) if listed else "")
    keys = [*fixed, *(k.ctr(d) for d in days), *(k.credited(d) for d in credit_days),
            *(k.position_epoch(int(e)) for e in epochs.tolist())]
    return keys, args
