"""The catalogue: ads, their geo and expiry indexes, the packed summaries, and the epoch that
voids feeds on a change."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import redis
from redis.commands.core import Script

from store.catalogue_copy import CatalogueCopy
from store.keys import (
    CHANGE_IDS_MAX,
    CHANGES_KEPT,
    EVIDENCE_FIELDS,
    FEEDS_CHANNEL,
    NO_EXPIRY,
    SECOND_LAYOUT_TAG,
    SUMMARY,
    SUMMARY_CHUNK,
    SUMMARY_TAG,
    THIRD_LAYOUT_SIZE,
    THIRD_LAYOUT_TAG,
    VOID_MARK_TTL_S,
    Keys,
    Partition,
    StaleCells,
)
from store.rows import (
    AdRow,
    Summaries,
    _s,
    card_value,
    searchable,
    summary,
    summary_rows,
)
from store.spread import run_each


def _index_expiry(k: type[Keys], p: redis.client.Pipeline, ids: Sequence[str],
                  expiry: Sequence[float]) -> None:
    """Within a catalogue transaction: the ads that expire go into ads:expiry, with their
    expiry; the ones that never do are kept out of it (an ad missing there never expires)."""
    expiring = {a: e for a, e in zip(ids, expiry, strict=True) if e < NO_EXPIRY}
    lasting = [a for a in ids if a not in expiring]
    if expiring:
        p.zadd(k.ads_expiry, expiring)
    if lasting:
        p.zrem(k.ads_expiry, *lasting)


def _log_change(k: type[Keys], p: redis.client.Pipeline, ids: Sequence[str],
                voids: bool) -> None:
    """Within a catalogue transaction: note the ads whose summaries it writes or removes in
    catalog:changes, and whether it bumps catalog:epoch (``voids``), which keeps the copies
    of the catalogue current (``CatalogueCopy``: an epoch that moved more often than the log
    says was moved by a writer that does not log). A write of more than CHANGE_IDS_MAX ads
    says "*": copies read everything again."""
    listed = " ".join(ids) if len(ids) <= CHANGE_IDS_MAX else "*"
    p.xadd(k.catalog_changes, {"ids": listed, "voids": "1" if voids else "0"},
           maxlen=CHANGES_KEPT, approximate=True)


def _locations(rows: np.ndarray) -> list[tuple[float, float]]:
    return list(zip(rows["lat"].tolist(), rows["lon"].tolist(), strict=True))


class CatalogueStore:
    """The catalogue: ads, their geo and expiry indexes, the packed summaries, and the epoch that"""

    r: redis.Redis
    k: type[Keys]
    cluster: bool
    # the Lua scripts this area runs (Store registers them on its client)
    _drop_expired: Script
    _nearby: Script
    _put_records: Script
    _void_feed: Script
    ad_stats: Callable[..., dict[str, list[int]]]   # EventStore's: an ad's counters
    partition_of: Callable[[str], Partition]          # EventStore's: where its events go
    catalogue_copy: Callable[[], CatalogueCopy]      # Store's: this process's copy

    def get_ad(self, ad_id: str) -> dict[str, str] | None:
        raw = self.r.hgetall(self.k.ad(ad_id))
        return {_s(k): _s(v) for k, v in raw.items()} if raw else None

    def all_ad_ids(self, chunk: int = 500) -> Iterator[list[str]]:
        """The id of every ad record (live or expired), in chunks."""
        prefix, pending = len(self.k.ad_prefix), []
        for key in self.r.scan_iter(match=f"{self.k.ad_prefix}*", count=chunk):
            pending.append(_s(key)[prefix:])
            if len(pending) >= chunk:
                yield pending
                pending = []
        if pending:
            yield pending

    def rebuild_indexes(self, ad_ids: Sequence[str],
                        rows_of: Callable[[list[tuple[str, dict[str, str]]]], list[AdRow]],
                        evidence_at: float) -> int:
        """Rewrite the indexes (geo set, expiry, summary, card) of these ads from their
        records, which ``rows_of`` turns into rows (leaving out the ones not to index), in one
        transaction that starts over if a record or a summary changes meanwhile: a record is
        never written, so an ad deleted or replaced meanwhile stays as its writer left it. An
        ad keeps its serial (the feeds that name it stay whole); one an older version
        indexed, without a serial, gets one. An ad with no decayed evidence yet gets its raw
        counters as evidence at ``evidence_at``."""
        keys = [self.k.ad(a) for a in ad_ids]
        evidence: dict[str, str] = {}

        def step(p: redis.client.Pipeline) -> int:
            evidence.clear()
            with self.r.pipeline(transaction=False) as reads:
                for key in keys:
                    reads.hgetall(key)
                *found, = reads.execute()
            summaries = p.hmget(self.k.ads_summary, list(ad_ids))
            indexed = [(a, v) for a, v in zip(ad_ids, summaries, strict=True) if v is not None]
            serial_of = dict(zip([a for a, _ in indexed],
                                 summary_rows([v for _, v in indexed])["sn"].tolist(),
                                 strict=True))
            rows = rows_of([(a, {_s(f): _s(v) for f, v in raw.items()})
                            for a, raw in zip(ad_ids, found, strict=True) if raw])
            counts = self.ad_stats([ad.ad_id for ad in rows], ("impressions", *EVIDENCE_FIELDS[1:]))
            unserialled = [ad.ad_id for ad in rows if not serial_of.get(ad.ad_id)]
            first = self._serials(len(unserialled))
            serial_of.update({a: first + i for i, a in enumerate(unserialled)})
            p.multi()
            for i, ad in enumerate(rows):
                expiry = NO_EXPIRY if ad.expires_at is None else ad.expires_at
                serial = serial_of[ad.ad_id]
                p.geoadd(self.k.ads_geo, (ad.lon, ad.lat, ad.ad_id))
                _index_expiry(self.k, p, [ad.ad_id], [expiry])
                p.hset(self.k.ads_summary, ad.ad_id, summary(ad, expiry, serial))
                p.hset(self.k.ads_cards, str(serial), card_value(ad))
                sums = [counts[f][i] for f in counts]
                if any(sums):
                    evidence[ad.ad_id] = " ".join(map(repr, [evidence_at, *sums]))
            if rows:
                _log_change(self.k, p, [ad.ad_id for ad in rows], voids=False)
            return len(rows)

        # the records are read, not watched: on a cluster they lie in other slots than the
        # catalogue's, and a record is written before its summary, so a record that changes
        # meanwhile also changes the watched summary
        indexed = self.r.transaction(step, self.k.ads_summary, value_from_callable=True)
        with self.r.pipeline(transaction=False) as p:     # the {ev} slots: after, once
            for ad_id, value in evidence.items():
                p.hsetnx(self.partition_of(ad_id).decayed, ad_id, value)
            p.execute()
        return indexed

    def put_ads(self, ads: Sequence[AdRow], stale_cells_of: StaleCells) -> int:
        """Create or replace ads in one transaction, voiding the feeds that may list an old
        version of one of them (``stale_cells_of`` maps old locations to cells). The old
        locations are read under WATCH, so a concurrent change makes the step start over.
        Each ad written gets a new serial, its card is kept under it and the old version's
        card goes. With one id twice, the last wins. Returns how many live ads were
        replaced.

        On Redis Cluster the records (each in a slot of its own) are written first, each
        replaced whole in one step, then the catalogue's transaction runs in its own slot,
        then the voided cells' feeds go: a reader may meet a new record whose ad is not
        indexed yet, never an indexed ad without its record."""
        if not ads:
            return 0
        ads = list({ad.ad_id: ad for ad in ads}.values())
        ids = [a.ad_id for a in ads]
        expiry = [NO_EXPIRY if ad.expires_at is None else ad.expires_at for ad in ads]
        calls = [([self.k.ad(ad.ad_id)], [len(ad.fields), *(v for pair in ad.fields.items()
                                                             for v in pair)]) for ad in ads]
        if self.cluster:
            run_each(self.r, self._put_records, calls)

        def write(p: redis.client.Pipeline) -> tuple[int, list[str]]:
            old = self._old_summaries(p, ids)
            stale = sorted(set(stale_cells_of(_locations(old))))
            first = self._serials(len(ads))
            p.multi()
            if not self.cluster:    # a few commands for the whole batch (one per ad costs
                # more in the client than in Redis)
                self._put_records(keys=[k for (k,), _ in calls],
                                  args=[v for _, args in calls for v in args], client=p)
            p.geoadd(self.k.ads_geo, [v for ad in ads for v in (ad.lon, ad.lat, ad.ad_id)])
            _index_expiry(self.k, p, ids, expiry)
            self._forget_cards(p, old)
            p.hset(self.k.ads_summary, mapping={ad.ad_id: summary(ad, e, first + i) for i, (ad, e)
                                                in enumerate(zip(ads, expiry, strict=True))})
            p.hset(self.k.ads_cards, mapping={str(first + i): card_value(ad)
                                              for i, ad in enumerate(ads)})
            _log_change(self.k, p, ids, voids=bool(stale))
            if stale:
                self._void_feeds(p, stale)
            return len(old), stale

        replaced, stale = self.r.transaction(write, self.k.ads_summary, value_from_callable=True)
        self._void_spread_feeds(stale)
        return replaced

    def delete_ad(self, ad_id: str, stale_cells_of: StaleCells) -> bool:
        """Remove an ad and its card, and void the feeds that may list it (read under WATCH,
        like ``put_ads``). False when there was no such ad. On Redis Cluster the record goes
        after the catalogue's transaction, then the feeds."""
        def write(p: redis.client.Pipeline) -> tuple[bool, list[str]]:
            old = self._old_summaries(p, [ad_id])
            stale = sorted(set(stale_cells_of(_locations(old))))
            # (an expired ad is no longer indexed, but its record is there to delete)
            found = len(old) > 0 or (not self.cluster and bool(p.exists(self.k.ad(ad_id))))
            p.multi()
            if not self.cluster:
                p.delete(self.k.ad(ad_id))
            p.zrem(self.k.ads_geo, ad_id)
            p.zrem(self.k.ads_expiry, ad_id)
            p.hdel(self.k.ads_summary, ad_id)
            _log_change(self.k, p, [ad_id], voids=True)   # (the epoch moves even for no such ad)
            self._forget_cards(p, old)
            self._void_feeds(p, stale)
            return found, stale

        found, stale = self.r.transaction(write, self.k.ads_summary, value_from_callable=True)
        if not self.cluster:
            return found
        removed = bool(self.r.delete(self.k.ad(ad_id)))
        self._void_spread_feeds(stale)
        return found or removed

    def ad_cards(self, serials: Sequence[int]) -> list[bytes | None]:
        """The ads:cards values of these serials (None: no such card), one command."""
        return self.r.hmget(self.k.ads_cards, [str(s) for s in serials]) if serials else []

    def _serials(self, count: int) -> int:
        """The first of ``count`` new serials (a step that starts over takes new ones: gaps
        are harmless)."""
        return int(self.r.incrby(self.k.ad_serial, count)) - count + 1 if count else 1

    def _old_summaries(self, p: redis.client.Pipeline, ad_ids: Sequence[str]) -> np.ndarray:
        """The summaries (SUMMARY records) of the listed ads that are indexed, read on a
        watching connection."""
        return summary_rows([v for v in p.hmget(self.k.ads_summary, list(ad_ids))
                             if v is not None])

    def _forget_cards(self, p: redis.client.Pipeline, old: np.ndarray) -> None:
        """Within a catalogue transaction: delete the cards of these old summaries."""
        serials = [str(s) for s in old["sn"].tolist() if s]
        if serials:
            p.hdel(self.k.ads_cards, *serials)

    def _void_feeds(self, p: redis.client.Pipeline, cells: Sequence[str]) -> None:
        """Within a catalogue transaction: bump the epoch (a regeneration under way will not
        write its now stale feeds); on a single Redis also delete the cells' feeds and tell
        every web process to drop its cached copies (on a cluster, the feeds lie in other
        slots: ``_void_spread_feeds`` does that after the transaction)."""
        p.incr(self.k.catalog_epoch)
        if self.cluster:
            return
        for i in range(0, len(cells), 1000):
            p.delete(*(self.k.feed(c) for c in cells[i:i + 1000]))
        if cells:
            p.publish(FEEDS_CHANNEL, " ".join(cells))

    def _void_spread_feeds(self, cells: Sequence[str]) -> None:
        """On Redis Cluster, after a catalogue transaction moved the epoch: delete the cells'
        feeds and mark each cell voided at the epoch now current, so that a regeneration
        that read an earlier one cannot store a stale feed there (``scripts.SET_FEED``);
        then tell every web process (sharded pub/sub)."""
        if not self.cluster or not cells:
            return
        epoch = self.catalog_epoch()
        run_each(self.r, self._void_feed, [([self.k.feed(c), self.k.feed_void(c)],
                                            [epoch, VOID_MARK_TTL_S]) for c in cells])
        self.r.spublish(FEEDS_CHANNEL, " ".join(cells))

    def drop_expired(self, now: float) -> list[str]:
        """Take ads past their expiry out of the indexes, cards included, atomically (an ad
        renewed at the same moment stays); their records stay readable."""
        expired = self._drop_expired(
            keys=[self.k.ads_expiry, self.k.ads_geo, self.k.ads_summary, self.k.ads_cards,
                  self.k.catalog_changes],
            args=[now, CHANGE_IDS_MAX, CHANGES_KEPT,
                  SUMMARY_TAG, len(SUMMARY_TAG) + SUMMARY.itemsize - 8 + 1,
                  THIRD_LAYOUT_TAG, len(THIRD_LAYOUT_TAG) + THIRD_LAYOUT_SIZE - 8 + 1])
        return [_s(a) for a in expired]

    def nearby(self, lat: float, lon: float, search_radius_km: float, count: int,
               now: float) -> list[tuple[str, float, float]]:
        """Live ads near a point, nearest first (by Redis's own distance), one round trip."""
        lat, search_radius_km = searchable(lat, lon, search_radius_km)
        flat = self._nearby(keys=[self.k.ads_geo, self.k.ads_expiry, self.k.ads_summary],
                            args=[lon, lat, search_radius_km, count, now, SUMMARY_TAG,
                                  THIRD_LAYOUT_TAG, SECOND_LAYOUT_TAG])
        return [(_s(flat[i]), float(flat[i + 1]), float(flat[i + 2]))
                for i in range(0, len(flat), 3)]

    def live_ad_ids(self) -> list[str]:
        return [_s(a) for a in self.r.zrange(self.k.ads_geo, 0, -1)]

    def live_ad_count(self, now: float) -> int:
        """Ads in the geo index not past their expiry (the rollup takes those out), in one
        round trip and without reading the ads."""
        with self.r.pipeline(transaction=False) as p:
            p.zcard(self.k.ads_geo)
            p.zcount(self.k.ads_expiry, "-inf", now)
            indexed, expired = p.execute()
        return max(0, int(indexed) - int(expired))

    def ad_summaries(self, ad_ids: Sequence[str] | None = None) -> Summaries:
        """The listed ads that exist (default: every indexed ad), read in one command and
        decoded without a Python object per number or string."""
        if ad_ids is None:
            raw = self.r.hgetall(self.k.ads_summary)
            ids, values = list(raw), list(raw.values())
        else:
            found = []
            for i in range(0, len(ad_ids), SUMMARY_CHUNK):     # bounded commands
                found += self.r.hmget(self.k.ads_summary, list(ad_ids[i:i + SUMMARY_CHUNK]))
            ids = [a.encode() for a, v in zip(ad_ids, found, strict=True) if v is not None]
            values = [v for v in found if v is not None]
        return Summaries.decode(ids, values)

    def current_summaries(self) -> Summaries:
        """Every indexed ad's summary, from this process's copy of the catalogue brought up
        to date (``CatalogueCopy``: after its first read, only what changed is read)."""
        copy = self.catalogue_copy()
        copy.refresh()
        return copy.summaries()

    def catalog_epoch(self) -> str:
        return _s(self.r.get(self.k.catalog_epoch)) or "0"
