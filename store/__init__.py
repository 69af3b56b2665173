"""The store: the one layer that names Redis keys and runs Lua scripts.

Callers hand it validated values only; it turns them into keys. Keys that one atomic step
touches together share the ``{ev}`` hash tag, so a move to Redis Cluster changes only this file.
"""
from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import orjson
import redis

import geo
from store import scripts

# ads:summary values: a layout tag, then lat, lon, expires_at, created_at, a 64-bit code of
# the category, then the ad's card (opaque bytes: the fields a feed shows, pre-rendered by
# the caller). Values without the tag have the first layout: lat, lon, expires_at, card;
# they read with creation time and category 0 until `flask ads reindex` rewrites them.
SUMMARY = np.dtype([("lat", "<f8"), ("lon", "<f8"), ("exp", "<f8"), ("created", "<f8"),
                    ("cat", "<u8")])
SUMMARY_TAG = b"AS2\x00"
FIRST_LAYOUT_SIZE = 24
FEEDS_CHANNEL = "feeds:changed"
UNDELIVERED_COUNTED = 10_000  # counted one by one when Redis cannot tell; this many: at least
GEO_LAT_LIMIT = 85.05112878  # Redis geo sets hold latitudes within +-this
NO_EXPIRY = 253402300799.0  # 9999-12-31: the expiry score of an ad that never expires
EVENT_TYPES = ("impression", "view", "save", "apply", "hide")
STAT_FIELDS = ("impressions", "views", "saves", "applies", "hides")
EVIDENCE_FIELDS = ("exposure", "views", "saves", "applies")  # the decayed sums, per ad
ROLLUP_GROUP = "rollup"
SUMMARY_CHUNK = 20_000          # ads read by one HMGET of ads:summary
STRATEGY_HISTORY_LEN = 20_000   # regenerations kept: two weeks at one a minute
GLOBAL_CELL = "*"   # the strategies hash's field for every cell together
FLUSH_MARKER_TTL_S = 3600  # a served-feed flush retried within this is recognised
LOCATION_TTL_S = 30 * 86_400  # a user's last location is forgotten this long after their last feed


StaleCells = Callable[[list[tuple[float, float]]], Iterable[str]]


@dataclass(frozen=True)
class Summaries:
    """ads:summary values side by side: ``buffer`` holds them concatenated, ``rows`` their
    fixed parts; each card is buffer[card_starts[i]:card_starts[i] + card_lengths[i]]."""

    ids: list[bytes]
    buffer: bytes
    rows: np.ndarray          # SUMMARY records
    card_starts: np.ndarray   # int64
    card_lengths: np.ndarray  # int64

    @classmethod
    def decode(cls, ids: list[bytes], values: list[bytes]) -> Summaries:
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        starts = np.zeros(len(values), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        rows, card_offsets = summary_rows(values)
        return cls(ids, b"".join(values), rows, starts + card_offsets, lengths - card_offsets)


@dataclass(frozen=True)
class StreamEntry:
    entry_id: str
    payload: bytes


@dataclass(frozen=True)
class Unrolled:
    """Accepted events the rollup has not counted yet, and the oldest of them."""

    inbox_batches: int               # accepted batches not yet moved to the stream
    oldest_inbox_at: float | None    # when the oldest of them was accepted (epoch s)
    pending: int                     # delivered to a rollup consumer, not acknowledged
    # in the stream, never delivered (UNDELIVERED_COUNTED: at least)
    undelivered: int
    oldest_entry_ms: int | None      # stream id time of the oldest pending or undelivered entry


@dataclass(frozen=True)
class AdRow:
    """An ad as the catalogue writes it: its hash fields and what ads:summary packs."""

    ad_id: str
    fields: Mapping[str, str]
    lat: float
    lon: float
    expires_at: float | None
    created_at: float
    category_code: int
    card: bytes


@dataclass(frozen=True)
class UserMemory:
    """How many ads a user's exclusions keep (the newest), and for how long."""

    ttl_s: int = 90 * 86_400
    max_ads: int = 1000


ACCEPTED, DUPLICATE, UNKNOWN_AD = 1, 0, -1   # what the accept step says of each event


class IngestRow(NamedTuple):
    """One validated event as the accept step takes it: ``payload`` is what the events
    stream keeps; ``excludes_for`` the user whose feeds leave its ad out from now on."""

    event_id: str
    ad_id: str
    payload: bytes
    excludes_for: str | None = None


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
class Decayed:
    """Decayed sums as stored: ``values`` (n, width) as they stood at ``updated_at`` (n);
    rows never written are zeros (their time NaN)."""

    updated_at: np.ndarray
    values: np.ndarray

    @classmethod
    def parse(cls, raw: Sequence[bytes | None], width: int) -> Decayed:
        rows = float_rows(raw, width + 1)
        return cls(rows[:, 0], np.nan_to_num(rows[:, 1:], nan=0.0))


def float_rows(raw: Sequence[bytes | None], width: int) -> np.ndarray:
    """Space-separated numbers, one value a row, as an (n, width) array: NaN where a value
    is missing or shorter (written when there were fewer fields)."""
    out = np.full((len(raw), width), np.nan)
    present = [i for i, v in enumerate(raw) if v is not None]
    if not present:
        return out
    if all(raw[i].count(b" ") == width - 1 for i in present):
        numbers = b" ".join(raw[i] for i in present).split()
        out[present] = np.array(numbers, dtype=np.float64).reshape(len(present), width)
    else:
        for i in present:
            row = np.array(raw[i].split(), dtype=np.float64)[:width]
            out[i, :len(row)] = row
    return out


class Keys:
    """Every key name. Nothing outside this module spells one."""

    ads_geo = "ads:geo"
    ads_expiry = "ads:expiry"
    ads_summary = "ads:summary"
    catalog_epoch = "catalog:epoch"
    cells_active = "cells:active"
    served = "served"
    inbox = "{ev}:inbox"
    inbox_due = "{ev}:inbox:due"
    events = "{ev}:events"
    decayed = "{ev}:decayed"            # ad -> decayed evidence
    position_epochs = "{ev}:positions:epochs"   # epoch keys -> when last added to
    generations = "regen:generations"           # when each regeneration wrote its feeds
    position_pairs = "{ev}:position-pairs"      # "pairs" -> decayed pair counts
    position_curve = "position:curve"           # the learnt examination curve (JSON)
    strategies = "{ev}:strategies"      # cell (or "*") -> decayed served feeds and applies
    served_cursor = "{ev}:served:cursor"  # the last served entry counted into strategies

    @staticmethod
    def ad(ad_id: str) -> str:
        return f"ad:{ad_id}"

    ad_prefix = "ad:"

    @staticmethod
    def seen(bucket: int) -> str:
        return f"{{ev}}:seen:{bucket}"

    @staticmethod
    def stats(field: str) -> str:
        return f"{{ev}}:stats:{field}"

    @staticmethod
    def ctr(day: str) -> str:
        return f"{{ev}}:ctr:{day}"

    ctr_all = "{ev}:ctr:all"     # the per-day counters' fields, summed over all time
    strategy_current = "strategy:probability"
    strategy_history = "strategy:history"

    @staticmethod
    def feed(cell: str) -> str:
        return f"feed:{cell}"

    @staticmethod
    def lock(name: str) -> str:
        return f"lock:{name}"

    @staticmethod
    def job(name: str) -> str:
        return f"job:{name}"

    @staticmethod
    def user_excluded(user_id: str) -> str:
        return f"user:{user_id}:excluded"

    @staticmethod
    def user_location(user_id: str) -> str:
        return f"user:{user_id}:loc"

    @staticmethod
    def position_epoch(epoch: int) -> str:
        """An epoch's impressions and views by ad and position (epoch: the generation's
        start, in ms)."""
        return f"{{ev}}:positions:{epoch}"

    @staticmethod
    def position_folding(epoch: int) -> str:
        return f"{{ev}}:positions:{epoch}:folding"

    @staticmethod
    def priors(model: str) -> str:
        return f"priors:{model}"

    @staticmethod
    def served_flush(flush_id: str) -> str:
        return f"served:flush:{flush_id}"

    @staticmethod
    def credited(day: str) -> str:
        return f"{{ev}}:credited:{day}"

    feed_id_secret = "secret:feed_ids"


def _s(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Store:
    """Redis access for the whole service. Takes its client; opens nothing itself."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._accept = client.register_script(scripts.ACCEPT)
        self._exclude = client.register_script(scripts.EXCLUDE)
        self._roll_in = client.register_script(scripts.ROLL_IN)
        self._rollup = client.register_script(scripts.ROLLUP)
        self._count_served = client.register_script(scripts.COUNT_SERVED)
        self._write_feeds = client.register_script(scripts.WRITE_FEEDS)
        self._nearby = client.register_script(scripts.NEARBY)
        self._append_served = client.register_script(scripts.APPEND_SERVED)
        self._drop_expired = client.register_script(scripts.DROP_EXPIRED)
        self._begin_fold = client.register_script(scripts.BEGIN_FOLD)
        self._fold_positions = client.register_script(scripts.FOLD_POSITIONS)

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> Store:
        return cls(redis.Redis.from_url(url, **kwargs))

    def ping(self) -> bool:
        return bool(self.r.ping())

    # ---- catalogue -------------------------------------------------------------------

    def get_ad(self, ad_id: str) -> dict[str, str] | None:
        raw = self.r.hgetall(Keys.ad(ad_id))
        return {_s(k): _s(v) for k, v in raw.items()} if raw else None

    def all_ad_ids(self, chunk: int = 500) -> Iterator[list[str]]:
        """The id of every ad record (live or expired), in chunks."""
        prefix, pending = len(Keys.ad_prefix), []
        for key in self.r.scan_iter(match=f"{Keys.ad_prefix}*", count=chunk):
            pending.append(_s(key)[prefix:])
            if len(pending) >= chunk:
                yield pending
                pending = []
        if pending:
            yield pending

    def rebuild_indexes(self, ad_ids: Sequence[str],
                        rows_of: Callable[[list[tuple[str, dict[str, str]]]], list[AdRow]],
                        evidence_at: float) -> int:
        """Rewrite the indexes (geo set, expiry, summary) of these ads from their records,
        which ``rows_of`` turns into rows (leaving out the ones not to index), in one
        transaction that starts over if a record changes meanwhile: a record is never
        written, so an ad deleted or replaced meanwhile stays as its writer left it. An ad
        with no decayed evidence yet gets its raw counters as evidence at ``evidence_at``."""
        keys = [Keys.ad(a) for a in ad_ids]

        def step(p: redis.client.Pipeline) -> int:
            with self.r.pipeline(transaction=False) as reads:
                for key in keys:
                    reads.hgetall(key)
                found = reads.execute()
            rows = rows_of([(a, {_s(f): _s(v) for f, v in raw.items()})
                            for a, raw in zip(ad_ids, found, strict=True) if raw])
            counts = self.ad_stats([ad.ad_id for ad in rows], ("impressions", *EVIDENCE_FIELDS[1:]))
            p.multi()
            for i, ad in enumerate(rows):
                expiry = NO_EXPIRY if ad.expires_at is None else ad.expires_at
                p.geoadd(Keys.ads_geo, (ad.lon, ad.lat, ad.ad_id))
                p.zadd(Keys.ads_expiry, {ad.ad_id: expiry})
                p.hset(Keys.ads_summary, ad.ad_id, summary(ad, expiry))
                sums = [counts[f][i] for f in counts]
                if any(sums):
                    p.hsetnx(Keys.decayed, ad.ad_id, " ".join(map(repr, [evidence_at, *sums])))
            return len(rows)

        return self.r.transaction(step, *keys, value_from_callable=True)

    def put_ads(self, ads: Sequence[AdRow], stale_cells_of: StaleCells) -> int:
        """Create or replace ads in one transaction, voiding the feeds that may list an old
        version of one of them (``stale_cells_of`` maps old locations to cells). The old
        locations are read under WATCH, so a concurrent change makes the step start over.
        Returns how many live ads were replaced."""
        ids = [a.ad_id for a in ads]

        def write(p: redis.client.Pipeline) -> int:
            old = self._summary_locations(p, ids)
            stale = sorted(set(stale_cells_of(old)))
            p.multi()
            for ad in ads:
                expiry = NO_EXPIRY if ad.expires_at is None else ad.expires_at
                p.delete(Keys.ad(ad.ad_id))
                p.hset(Keys.ad(ad.ad_id), mapping=dict(ad.fields))
                p.geoadd(Keys.ads_geo, (ad.lon, ad.lat, ad.ad_id))
                p.zadd(Keys.ads_expiry, {ad.ad_id: expiry})
                p.hset(Keys.ads_summary, ad.ad_id, summary(ad, expiry))
            if stale:
                self._void_feeds(p, stale)
            return len(old)

        return self.r.transaction(write, Keys.ads_summary, value_from_callable=True)

    def delete_ad(self, ad_id: str, stale_cells_of: StaleCells) -> bool:
        """Remove an ad and void the feeds that may list it (read under WATCH, like
        ``put_ads``). False when there was no such ad."""
        def write(p: redis.client.Pipeline) -> None:
            stale = sorted(set(stale_cells_of(self._summary_locations(p, [ad_id]))))
            p.multi()
            p.delete(Keys.ad(ad_id))
            p.zrem(Keys.ads_geo, ad_id)
            p.zrem(Keys.ads_expiry, ad_id)
            p.hdel(Keys.ads_summary, ad_id)
            self._void_feeds(p, stale)

        return bool(self.r.transaction(write, Keys.ads_summary)[0])

    @staticmethod
    def _summary_locations(p: redis.client.Pipeline,
                           ad_ids: Sequence[str]) -> list[tuple[float, float]]:
        """(lat, lon) of the listed ads that are indexed, read on a watching connection."""
        rows, _ = summary_rows([v for v in p.hmget(Keys.ads_summary, list(ad_ids))
                                if v is not None])
        return list(zip(rows["lat"].tolist(), rows["lon"].tolist(), strict=True))

    @staticmethod
    def _void_feeds(p: redis.client.Pipeline, cells: Sequence[str]) -> None:
        """Within a catalogue transaction: bump the epoch (a regeneration under way will not
        write its now stale feeds), delete the cells' feeds, and tell every web process to
        drop its cached copies."""
        p.incr(Keys.catalog_epoch)
        for i in range(0, len(cells), 1000):
            p.delete(*(Keys.feed(c) for c in cells[i:i + 1000]))
        if cells:
            p.publish(FEEDS_CHANNEL, " ".join(cells))

    def drop_expired(self, now: float) -> list[str]:
        """Take ads past their expiry out of the indexes, atomically (an ad renewed at the
        same moment stays); their records stay readable."""
        expired = self._drop_expired(keys=[Keys.ads_expiry, Keys.ads_geo, Keys.ads_summary],
                                     args=[now])
        return [_s(a) for a in expired]

    def nearby(self, lat: float, lon: float, search_radius_km: float, count: int,
               now: float) -> list[tuple[str, float, float]]:
        """Live ads near a point, nearest first (by Redis's own distance), one round trip."""
        lat, search_radius_km = searchable(lat, lon, search_radius_km)
        flat = self._nearby(keys=[Keys.ads_geo, Keys.ads_expiry],
                            args=[lon, lat, search_radius_km, count, now, Keys.ad_prefix])
        return [(_s(flat[i]), float(flat[i + 1]), float(flat[i + 2]))
                for i in range(0, len(flat), 3)]

    def live_ad_ids(self) -> list[str]:
        return [_s(a) for a in self.r.zrange(Keys.ads_geo, 0, -1)]

    def live_ad_count(self, now: float) -> int:
        """Ads in the geo index not past their expiry (the rollup takes those out), in one
        round trip and without reading the ads."""
        with self.r.pipeline(transaction=False) as p:
            p.zcard(Keys.ads_geo)
            p.zcount(Keys.ads_expiry, "-inf", now)
            indexed, expired = p.execute()
        return max(0, int(indexed) - int(expired))

    def ad_summaries(self, ad_ids: Sequence[str] | None = None) -> Summaries:
        """The listed ads that exist (default: every indexed ad), read in one command and
        decoded without a Python object per number or string."""
        if ad_ids is None:
            raw = self.r.hgetall(Keys.ads_summary)
            ids, values = list(raw), list(raw.values())
        else:
            found = []
            for i in range(0, len(ad_ids), SUMMARY_CHUNK):     # bounded commands
                found += self.r.hmget(Keys.ads_summary, list(ad_ids[i:i + SUMMARY_CHUNK]))
            ids = [a.encode() for a, v in zip(ad_ids, found, strict=True) if v is not None]
            values = [v for v in found if v is not None]
        return Summaries.decode(ids, values)

    def catalog_epoch(self) -> str:
        return _s(self.r.get(Keys.catalog_epoch)) or "0"

    def search_ids(self, lat: float, lon: float, radius_km: float) -> list[str]:
        """Every ad in the geo index within radius_km (Redis's distance). Off the hot path."""
        lat, radius_km = searchable(lat, lon, radius_km)
        found = self.r.geosearch(Keys.ads_geo, longitude=lon, latitude=lat,
                                 radius=radius_km, unit="km")
        return [_s(a) for a in found]

    # ---- ingest ----------------------------------------------------------------------

    def accept_events(self, batch_id: str, rows: Sequence[IngestRow], now: float,
                      window_s: int, memory: UserMemory | None = None) -> list[int]:
        """Accept a batch in one atomic step (``scripts.ACCEPT``): each event is ACCEPTED
        (kept durably in the inbox), a DUPLICATE of one accepted before, or UNKNOWN_AD (its
        ad has no record: rejected, nothing written). Exclusions (``excludes_for``) of
        known ads are added in the same step."""
        memory = memory or UserMemory()
        bucket = int(now // window_s)
        keys = [Keys.inbox, Keys.inbox_due, Keys.seen(bucket), Keys.seen(bucket - 1)]
        args: list[object] = [batch_id, now, 2 * window_s, memory.max_ads, memory.ttl_s,
                              Keys.ad_prefix, len(rows)]
        exclusions: list[object] = []
        users: dict[str, int] = {}
        for n, row in enumerate(rows, start=1):
            args += row[:3]
            if row.excludes_for:
                if row.excludes_for not in users:
                    keys.append(Keys.user_excluded(row.excludes_for))
                    users[row.excludes_for] = len(keys)
                exclusions += [n, users[row.excludes_for]]
        args += exclusions
        return [int(f) for f in self._accept(keys=keys, args=args)]

    def accepted_count(self, now: float, window_s: int) -> int:
        """How many event ids were accepted in this dedupe window and the last (each
        accepted event's id is in exactly one of the two seen sets)."""
        bucket = int(now // window_s)
        with self.r.pipeline(transaction=False) as p:
            p.scard(Keys.seen(bucket))
            p.scard(Keys.seen(bucket - 1))
            return sum(p.execute())

    def roll_in(self, batch_id: str) -> int:
        """Move an accepted batch into the events stream; 0 if it was already moved."""
        return int(self._roll_in(keys=[Keys.inbox, Keys.inbox_due, Keys.events], args=[batch_id]))

    def overdue_batches(self, older_than: float) -> list[str]:
        return [_s(b) for b in self.r.zrangebyscore(Keys.inbox_due, "-inf", older_than)]

    def inbox_size(self) -> int:
        return int(self.r.zcard(Keys.inbox_due))

    # ---- rollup ----------------------------------------------------------------------

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(Keys.events, ROLLUP_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[StreamEntry]:
        """Entries delivered to a consumer that died before acknowledging them."""
        _next, claimed, *_ = self.r.xautoclaim(Keys.events, ROLLUP_GROUP, consumer,
                                               min_idle_time=min_idle_ms, start_id="0-0",
                                               count=count)
        return [StreamEntry(_s(i), f[b"e"]) for i, f in claimed if f]

    def read_new(self, consumer: str, count: int) -> list[StreamEntry]:
        reply = self.r.xreadgroup(ROLLUP_GROUP, consumer, {Keys.events: ">"}, count=count)
        if not reply:
            return []
        return [StreamEntry(_s(i), f[b"e"]) for i, f in reply[0][1]]

    def apply_rollup(self, rows: Sequence[RollupRow], now: float, half_life_s: float,
                     strategies: Sequence[str], credited_ttl_s: int = 8 * 86_400,
                     position_width: int = 0, epoch_ttl_s: int = 86_400) -> int:
        """Count a block of events and XACK it, atomically: raw counters, per-day counters
        (also per strategy), each ad's decayed evidence and its position counts in its
        epoch (rows of ``position_width``), and, once per feed, the strategy and cell of the
        feed an apply came from. Returns the events counted."""
        days = sorted({row.day for row in rows})
        feed_days = sorted({row.feed_day for row in rows if row.strategy})
        epochs = sorted({row.epoch for row in rows if row.position_column})
        fixed = [Keys.events, *(Keys.stats(f) for f in STAT_FIELDS), Keys.decayed,
                 Keys.strategies, Keys.ctr_all, Keys.position_epochs]
        day_index = {d: len(fixed) + 1 + i for i, d in enumerate(days)}
        credit_index = {d: len(fixed) + len(days) + 1 + i for i, d in enumerate(feed_days)}
        epoch_index = {e: len(fixed) + len(days) + len(feed_days) + 1 + i
                       for i, e in enumerate(epochs)}
        strategy_index = {name: i for i, name in enumerate(strategies, start=1)}
        args: list[object] = [ROLLUP_GROUP, repr(now), repr(half_life_s), credited_ttl_s,
                              position_width, epoch_ttl_s, len(STAT_FIELDS), *STAT_FIELDS,
                              len(EVIDENCE_FIELDS), stat_type_index("apply"),
                              len(strategies), *strategies]
        for row in rows:
            s = strategy_index.get(row.strategy, 0)
            args += [row.entry_id, row.ad_id, row.type_index, day_index[row.day],
                     repr(row.weight), row.cell, s, row.feed_id,
                     credit_index[row.feed_day] if s else 0, row.position_column,
                     epoch_index[row.epoch] if row.position_column else 0]
        keys = [*fixed, *(Keys.ctr(d) for d in days), *(Keys.credited(d) for d in feed_days),
                *(Keys.position_epoch(e) for e in epochs)]
        return int(self._rollup(keys=keys, args=args))

    def feed_id_secret(self) -> bytes:
        """The secret that signs feed ids: made once, on first use, and shared by every
        process through the store (delete the key to rotate it: older feed ids then credit
        no strategy)."""
        self.r.set(Keys.feed_id_secret, secrets.token_hex(32), nx=True)
        return self.r.get(Keys.feed_id_secret)

    def decayed_evidence(self, ad_ids: Sequence[str], chunk: int = 50_000) -> Decayed:
        """Each ad's decayed evidence (EVIDENCE_FIELDS) as last updated, and when."""
        values: list[bytes | None] = []
        for i in range(0, len(ad_ids), chunk):
            values.extend(self.r.hmget(Keys.decayed, list(ad_ids[i:i + chunk])))
        return Decayed.parse(values, len(EVIDENCE_FIELDS))

    def position_epochs(self) -> list[int]:
        """The epochs with position counts not folded yet, oldest first."""
        prefix = len(Keys.position_epoch(0)) - 1
        return sorted(int(k[prefix:]) for k in self.r.zrange(Keys.position_epochs, 0, -1))

    def begin_fold(self, epoch: int) -> int:
        """Set an epoch's counts aside for folding (``scripts.BEGIN_FOLD``)."""
        return int(self._begin_fold(keys=[Keys.position_epoch(epoch),
                                          Keys.position_folding(epoch)]))

    def folding_counts(self, epoch: int, width: int, chunk: int = 10_000) -> np.ndarray:
        """An epoch's set-aside impressions and views by position, a row per ad."""
        values = [v for _, v in self.r.hscan_iter(Keys.position_folding(epoch), count=chunk)]
        return Decayed.parse(values, width).values

    def fold_positions(self, epoch: int, pairs: Sequence[float], now: float,
                       half_life_s: float) -> bool:
        """Add an epoch's set-aside pair counts to the decayed ones and drop them, once."""
        keys = [Keys.position_folding(epoch), Keys.position_pairs, Keys.position_epochs,
                Keys.position_epoch(epoch)]
        args = [repr(now), repr(half_life_s), len(pairs), *map(repr, pairs)]
        return bool(self._fold_positions(keys=keys, args=args))

    def record_generation(self, now: float, keep: int = 10_000) -> None:
        """A regeneration wrote its feeds at ``now``: the start of a position epoch."""
        with self.r.pipeline(transaction=False) as p:
            p.zadd(Keys.generations, {repr(now): now})
            p.zremrangebyrank(Keys.generations, 0, -keep - 1)
            p.execute()

    def generations(self, since: float) -> np.ndarray:
        """When each regeneration since ``since`` wrote its feeds, oldest first."""
        return np.array([s for _, s in self.r.zrangebyscore(Keys.generations, since, "+inf",
                                                            withscores=True)])

    def position_pairs(self, width: int) -> Decayed:
        """The decayed pair counts, as last updated, and when."""
        return Decayed.parse([self.r.hget(Keys.position_pairs, "pairs")], width)

    def write_position_curve(self, curve: Mapping[str, object]) -> None:
        self.r.set(Keys.position_curve, orjson.dumps(curve))

    def position_curve(self) -> dict | None:
        """The last examination curve the rollup learnt, or None before the first."""
        raw = self.r.get(Keys.position_curve)
        try:
            return orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return None

    def strategy_stats(self, cells: Sequence[str], width: int) -> Decayed:
        """Each cell's (or GLOBAL_CELL's) decayed served feeds then applies, ``width`` / 2
        strategies each, as last updated, and when."""
        values = self.r.hmget(Keys.strategies, list(cells)) if cells else []
        return Decayed.parse(values, width)

    def write_priors(self, model: str, rows: Mapping[int, Sequence[float]],
                     overall: Sequence[float]) -> None:
        """Replace the empirical-Bayes prior means of ``model``: a row per category code,
        and the overall row."""
        values = {str(code): " ".join(map(repr, row)) for code, row in rows.items()}
        values[GLOBAL_CELL] = " ".join(map(repr, overall))
        with self.r.pipeline(transaction=True) as p:
            p.delete(Keys.priors(model))
            p.hset(Keys.priors(model), mapping=values)
            p.execute()

    def prior_rows(self, model: str, codes: Sequence[int],
                   width: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows for ``codes``, overall row) of the stored prior means; NaN where none."""
        raw = self.r.hmget(Keys.priors(model), [*map(str, codes), GLOBAL_CELL])
        rows = float_rows(raw, width)
        return rows[:-1], rows[-1]

    def served_after(self, cursor: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """Served-feed entries logged after ``cursor`` (a stream id), oldest first."""
        rows = self.r.xrange(Keys.served, f"({cursor}", "+", count=count)
        return [(_s(i), {_s(k): _s(v) for k, v in f.items()}) for i, f in rows]

    def served_between(self, start_ms: int, end_ms: int,
                       chunk: int = 10_000) -> Iterator[list[tuple[str, dict[str, str]]]]:
        """Served-feed entries logged from ``start_ms`` to ``end_ms`` (inclusive), oldest
        first, in chunks (for the off-policy evaluation)."""
        start = f"{max(0, start_ms)}-0"
        while True:
            rows = self.r.xrange(Keys.served, start, str(end_ms), count=chunk)
            if not rows:
                return
            yield [(_s(i), {_s(k): _s(v) for k, v in f.items()}) for i, f in rows]
            start = f"({_s(rows[-1][0])}"

    def events_between(self, start_ms: int, end_ms: int,
                       chunk: int = 10_000) -> Iterator[list[StreamEntry]]:
        """Accepted events that reached the stream from ``start_ms`` to ``end_ms``
        (inclusive), oldest first, in chunks; only what the stream still holds
        (EVENTS_RETENTION_S)."""
        start = f"{max(0, start_ms)}-0"
        while True:
            rows = self.r.xrange(Keys.events, start, str(end_ms), count=chunk)
            if not rows:
                return
            yield [StreamEntry(_s(i), f[b"e"]) for i, f in rows if b"e" in f]
            start = f"({_s(rows[-1][0])}"

    def served_cursor(self) -> str:
        return _s(self.r.get(Keys.served_cursor)) or "0-0"

    def count_served(self, expected_cursor: str, new_cursor: str,
                     rows: Sequence[tuple[str, int, float]], now: float, half_life_s: float,
                     strategies: int) -> int:
        """Add served feeds ((cell, 1-based strategy index, weight) rows) to the decayed
        strategy counts and move the cursor, unless another run moved it first (-1)."""
        args: list[object] = [expected_cursor, new_cursor, repr(now), repr(half_life_s),
                              strategies]
        for cell, index, weight in rows:
            args += [cell, index, repr(weight)]
        return int(self._count_served(keys=[Keys.served_cursor, Keys.strategies], args=args))

    def trim_events(self, min_id_ms: int) -> int:
        """Drop rolled-up entries older than min_id_ms; never one still pending."""
        info = self.r.xpending(Keys.events, ROLLUP_GROUP)
        cut = min_id_ms
        if info["pending"]:
            cut = min(cut, int(_s(info["min"]).split("-")[0]))
        groups = self.r.xinfo_groups(Keys.events)
        for g in groups:
            if _s(g["name"]) == ROLLUP_GROUP:
                cut = min(cut, int(_s(g["last-delivered-id"]).split("-")[0]))
        return int(self.r.xtrim(Keys.events, minid=f"{cut}-0", approximate=False))

    def backlog(self) -> dict[str, int]:
        """Events not yet rolled up: waiting in the stream and pending with a consumer."""
        info = {_s(g["name"]): g for g in self.r.xinfo_groups(Keys.events)}
        group = info.get(ROLLUP_GROUP)
        pending = int(group["pending"]) if group else 0
        lag = group.get("lag") if group else None
        return {"pending": pending, "lag": int(lag) if lag is not None else -1,
                "inbox": self.inbox_size()}

    def unrolled(self) -> Unrolled:
        """Accepted events not counted yet: batches in the inbox, stream entries pending with
        a rollup consumer or never delivered, and the oldest of each (two round trips at
        most; nothing is read or changed)."""
        with self.r.pipeline(transaction=False) as p:
            p.zcard(Keys.inbox_due)
            p.zrange(Keys.inbox_due, 0, 0, withscores=True)
            p.xlen(Keys.events)
            p.xinfo_groups(Keys.events)
            p.xpending(Keys.events, ROLLUP_GROUP)
            batches, first_batch, length, groups, pending = p.execute(raise_on_error=False)
        oldest_inbox_at = float(first_batch[0][1]) if first_batch else None
        group = None
        if int(length):   # with no stream or no group yet, XINFO and XPENDING fail
            if isinstance(groups, Exception):
                raise groups
            group = next((g for g in groups if _s(g["name"]) == ROLLUP_GROUP), None)
        if group is None:
            first = self.r.xrange(Keys.events, "-", "+", count=1) if int(length) else []
            return Unrolled(int(batches), oldest_inbox_at, 0, int(length),
                            _entry_ms(first[0][0]) if first else None)
        if isinstance(pending, Exception):
            raise pending
        lag = group.get("lag")
        oldest = [_entry_ms(pending["min"])] if pending["pending"] else []
        if lag != 0:
            # Redis gives no lag once entries were trimmed or deleted: count what follows
            # the last delivered entry instead, up to UNDELIVERED_COUNTED
            after = self.r.xrange(Keys.events, f"({_s(group['last-delivered-id'])}", "+",
                                  count=1 if lag is not None else UNDELIVERED_COUNTED)
            oldest += [_entry_ms(after[0][0])] if after else []
            if lag is None:
                lag = len(after)
        return Unrolled(int(batches), oldest_inbox_at, int(pending["pending"]), int(lag),
                        min(oldest, default=None))

    def ad_stats(self, ad_ids: Sequence[str], fields: Sequence[str] = STAT_FIELDS,
                 chunk: int = 20_000) -> dict[str, list[int]]:
        """Each stat field as a list aligned with ad_ids (0 where an ad has none)."""
        out: dict[str, list[int]] = {f: [] for f in fields}
        for i in range(0, len(ad_ids), chunk):
            part = list(ad_ids[i:i + chunk])
            with self.r.pipeline(transaction=False) as p:
                for field in fields:
                    p.hmget(Keys.stats(field), part)
                rows = p.execute()
            for field, row in zip(fields, rows, strict=True):
                out[field].extend(int(v) if v is not None else 0 for v in row)
        return out

    def ads_with_impressions(self) -> list[str]:
        """Every ad that has been shown at least once (deleted ones included)."""
        return [_s(a) for a in self.r.hkeys(Keys.stats("impressions"))]

    def active_cells_since(self, since: float, limit: int) -> list[tuple[str, float]]:
        """Up to ``limit`` cells requested since ``since``, most recent first, with when
        (read only: unlike ``active_cells``, it forgets none)."""
        rows = self.r.zrevrangebyscore(Keys.cells_active, "+inf", since, start=0, num=limit,
                                       withscores=True)
        return [(_s(c), float(t)) for c, t in rows]

    def ctr_all_time(self) -> dict[str, int]:
        """The per-day counters' fields (impressions, ..., thompson:applies, ...) summed over
        all time: monotonic, for Prometheus counters."""
        return {_s(k): int(v) for k, v in self.r.hgetall(Keys.ctr_all).items()}

    def ctr_days(self, days: Sequence[str]) -> dict[str, dict[str, int]]:
        with self.r.pipeline(transaction=False) as p:
            for day in days:
                p.hgetall(Keys.ctr(day))
            rows = p.execute()
        return {d: {_s(k): int(v) for k, v in row.items()}
                for d, row in zip(days, rows, strict=True)}

    # ---- cells and feeds ---------------------------------------------------------------

    def active_cells(self, since: float) -> list[str]:
        """Cells requested since ``since``; older ones are forgotten here."""
        with self.r.pipeline(transaction=False) as p:
            p.zremrangebyscore(Keys.cells_active, "-inf", f"({since}")
            p.zrange(Keys.cells_active, 0, -1)
            _, cells = p.execute()
        return [_s(c) for c in cells]

    def mark_active(self, cells: Mapping[str, float]) -> None:
        self.r.zadd(Keys.cells_active, dict(cells))

    def active_cell_count(self, since: float) -> int:
        """How many cells were requested since ``since`` (read only: unlike
        ``active_cells``, it forgets none)."""
        return int(self.r.zcount(Keys.cells_active, since, "+inf"))

    def write_feeds(self, epoch: str, feeds: Mapping[str, bytes], ttl_s: int) -> bool:
        """Store packed feeds unless the catalogue changed since ``epoch``."""
        if not feeds:
            return True
        cells = list(feeds)
        done = self._write_feeds(keys=[Keys.catalog_epoch, *(Keys.feed(c) for c in cells)],
                                 args=[epoch, ttl_s, *(feeds[c] for c in cells)])
        if int(done) < 0:
            return False
        self.r.publish(FEEDS_CHANNEL, " ".join(cells))    # web processes drop stale copies
        return True

    def feed_value(self, cell: str) -> bytes | None:
        return self.r.get(Keys.feed(cell))

    def excluded_ads(self, user_id: str) -> set[str]:
        """Ads the user applied to or hid: never shown to them again."""
        return {_s(a) for a in self.r.zrange(Keys.user_excluded(user_id), 0, -1)}

    def locate_user(self, user_id: str, location: str) -> set[str]:
        """Keep ``location`` ("lat,lon") as the user's last one and read their excluded ads,
        in one round trip: the user's next request, on any process, already sees it."""
        with self.r.pipeline(transaction=False) as p:
            p.set(Keys.user_location(user_id), location, ex=LOCATION_TTL_S)
            p.zrange(Keys.user_excluded(user_id), 0, -1)
            _, excluded = p.execute()
        return {_s(a) for a in excluded}

    def user_context(self, user_id: str) -> tuple[str | None, set[str]]:
        """The user's last location ("lat,lon"), kept LOCATION_TTL_S longer since they are
        served there again, and their excluded ads, in one round trip."""
        with self.r.pipeline(transaction=False) as p:
            p.getex(Keys.user_location(user_id), ex=LOCATION_TTL_S)
            p.zrange(Keys.user_excluded(user_id), 0, -1)
            location, excluded = p.execute()
        return _s(location), {_s(a) for a in excluded}

    def record_serving(self, served: Sequence[Mapping[str, str | float | int]],
                       active: Mapping[str, float], maxlen: int,
                       flush_id: str | None = None) -> None:
        """Write what serving buffered, in one round trip: served feeds to the ``served``
        stream (entries with the same fields, in order; once per ``flush_id``, so a retry
        of a write that happened adds nothing) and cells to ``cells:active``. (Users' last
        locations are not buffered: ``locate_user`` writes them as they are served.)"""
        with self.r.pipeline(transaction=False) as p:
            if served:
                names = list(served[0])
                args: list[object] = [maxlen, FLUSH_MARKER_TTL_S, len(names), *names]
                for entry in served:
                    args.extend(entry[name] for name in names)
                marker = Keys.served_flush(flush_id or secrets.token_hex(8))
                self._append_served(keys=[Keys.served, marker], args=args, client=p)
            if active:
                p.zadd(Keys.cells_active, dict(active), gt=True)   # a late flush never ages a cell
            p.execute()

    def served_feed(self, feed_id: str, around_ms: int, window_ms: int = 60_000,
                    scan: int = 50_000) -> dict[str, str] | None:
        """A served feed by its feed_id, looked up among the entries logged from one second
        before ``around_ms`` (when it was served) to ``window_ms`` after."""
        rows = self.r.xrange(Keys.served, f"{max(0, around_ms - 1000)}-0",
                             f"{around_ms + window_ms}-0", count=scan)
        target = feed_id.encode()
        for _, fields in rows:
            if fields.get(b"feed_id") == target:
                return {_s(k): _s(v) for k, v in fields.items()}
        return None

    def feed_changes(self) -> redis.client.PubSub:
        """A subscription to feed changes: each message lists cells whose feed was rebuilt
        or voided by an ad change, so that copies cached elsewhere are dropped."""
        pubsub = self.r.pubsub(ignore_subscribe_messages=False)
        pubsub.subscribe(FEEDS_CHANNEL)
        return pubsub

    def exclude_for_users(self, by_user: Mapping[str, Iterable[str]], now: float,
                          memory: UserMemory) -> None:
        """Add ads to users' exclusions, as an accepted apply or hide does."""
        keys, args = [], [memory.max_ads, memory.ttl_s, repr(now)]
        for user_id, ads in by_user.items():
            listed = list(ads)
            keys.append(Keys.user_excluded(user_id))
            args += [len(listed), *listed]
        if keys:
            self._exclude(keys=keys, args=args)

    def user_location(self, user_id: str) -> str | None:
        return _s(self.r.get(Keys.user_location(user_id)))

    # ---- periodic jobs --------------------------------------------------------------------

    def claim_slot(self, job: str, slot: int, interval_s: float) -> bool:
        """True for the first caller of a schedule slot (a periodic job's run number): a job
        fired by two beats runs once per slot, whatever their phases."""
        return bool(self.r.set(Keys.lock(f"{job}:{slot}"), consumer_name(), nx=True,
                               px=max(1000, int(2 * interval_s * 1000))))

    def record_job(self, job: str, fields: Mapping[str, float | int | str]) -> None:
        """The job's last report, and one more run counted."""
        with self.r.pipeline(transaction=False) as p:
            p.hset(Keys.job(job), mapping=dict(fields))
            p.hincrby(Keys.job(job), "runs", 1)
            p.execute()

    def record_strategy_probabilities(self, chances: Mapping[str, float], now: float,
                                      keep: int = STRATEGY_HISTORY_LEN) -> None:
        """The strategy bandit's overall probabilities, as the last regeneration found them,
        appended to a capped history (for the dashboard) and kept as the current ones."""
        with self.r.pipeline(transaction=False) as p:
            p.xadd(Keys.strategy_history, {"ts": repr(now), **chances}, maxlen=keep,
                   approximate=True)
            p.delete(Keys.strategy_current)
            p.hset(Keys.strategy_current, mapping=dict(chances))
            p.execute()

    def strategy_probabilities(self) -> dict[str, float]:
        """Each strategy's current probability of being served (overall)."""
        return {_s(k): float(v) for k, v in self.r.hgetall(Keys.strategy_current).items()}

    def strategy_history(self, since: float) -> list[tuple[float, dict[str, float]]]:
        """(time, probabilities) of each regeneration since ``since``, oldest first."""
        rows = self.r.xrange(Keys.strategy_history, f"{int(since * 1000)}-0", "+")
        out = []
        for _, fields in rows:
            values = {_s(k): float(v) for k, v in fields.items()}
            out.append((values.pop("ts"), values))
        return out

    def job_status(self, job: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.r.hgetall(Keys.job(job)).items()}


def summary_rows(values: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The fixed part of each ads:summary value, as SUMMARY records, and where each value's
    card begins. A value of the first layout (no tag) reads with creation time and category
    0."""
    tag, size = len(SUMMARY_TAG), SUMMARY.itemsize
    padding = bytes(size - FIRST_LAYOUT_SIZE)
    tagged = [v[:tag] == SUMMARY_TAG for v in values]
    fixed = b"".join(v[tag:tag + size] if t else v[:FIRST_LAYOUT_SIZE] + padding
                     for v, t in zip(values, tagged, strict=True))
    offsets = np.where(np.array(tagged, dtype=bool), tag + size, FIRST_LAYOUT_SIZE)
    return np.frombuffer(fixed, dtype=SUMMARY), offsets.astype(np.int64)


def summary(ad: AdRow, expires_at: float) -> bytes:
    """An ads:summary value: what regeneration and serving need of an ad."""
    fixed = (ad.lat, ad.lon, expires_at, ad.created_at, ad.category_code)
    return SUMMARY_TAG + np.array([fixed], dtype=SUMMARY).tobytes() + ad.card


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


def _entry_ms(entry_id: bytes | str) -> int:
    """The time part of a stream id: milliseconds since the epoch."""
    return int(_s(entry_id).split("-")[0])


def stat_type_index(event_type: str) -> int:
    """1-based index of an event type in STAT_FIELDS; 0 for a type the rollup ignores."""
    try:
        return EVENT_TYPES.index(event_type) + 1
    except ValueError:
        return 0


__all__ = ["Store", "Keys", "StreamEntry", "Unrolled", "AdRow", "IngestRow", "RollupRow",
           "Decayed", "ACCEPTED", "DUPLICATE", "UNKNOWN_AD",
           "UserMemory", "NO_EXPIRY", "LOCATION_TTL_S",
           "EVENT_TYPES", "STAT_FIELDS", "EVIDENCE_FIELDS", "GLOBAL_CELL", "consumer_name",
           "float_rows",
           "stat_type_index"]
