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
    SUMMARY,
    SUMMARY_CHUNK,
    SUMMARY_TAG,
    Keys,
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


def _index_expiry(p: redis.client.Pipeline, ids: Sequence[str],
                  expiry: Sequence[float]) -> None:
    """Within a catalogue transaction: the ads that expire go into ads:expiry, with their
    expiry; the ones that never do are kept out of it (an ad missing there never expires)."""
    expiring = {a: e for a, e in zip(ids, expiry, strict=True) if e < NO_EXPIRY}
    lasting = [a for a in ids if a not in expiring]
    if expiring:
        p.zadd(Keys.ads_expiry, expiring)
    if lasting:
        p.zrem(Keys.ads_expiry, *lasting)


def _log_change(p: redis.client.Pipeline, ids: Sequence[str], voids: bool) -> None:
    """Within a catalogue transaction: note the ads whose summaries it writes or removes in
    catalog:changes, and whether it bumps catalog:epoch (``voids``), which keeps the copies
    of the catalogue current (``CatalogueCopy``: an epoch that moved more often than the log
    says was moved by a writer that does not log). A write of more than CHANGE_IDS_MAX ads
    says "*": copies read everything again."""
    listed = " ".join(ids) if len(ids) <= CHANGE_IDS_MAX else "*"
    p.xadd(Keys.catalog_changes, {"ids": listed, "voids": "1" if voids else "0"},
           maxlen=CHANGES_KEPT, approximate=True)


def _locations(rows: np.ndarray) -> list[tuple[float, float]]:
    return list(zip(rows["lat"].tolist(), rows["lon"].tolist(), strict=True))


class CatalogueStore:
    """The catalogue: ads, their geo and expiry indexes, the packed summaries, and the epoch that"""

    r: redis.Redis
    # the Lua scripts this area runs (Store registers them on its client)
    _drop_expired: Script
    _nearby: Script
    _put_records: Script
    ad_stats: Callable[..., dict[str, list[int]]]   # EventStore's: an ad's counters
    catalogue_copy: Callable[[], CatalogueCopy]      # Store's: this process's copy

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
        """Rewrite the indexes (geo set, expiry, summary, card) of these ads from their
        records, which ``rows_of`` turns into rows (leaving out the ones not to index), in one
        transaction that starts over if a record or a summary changes meanwhile: a record is
        never written, so an ad deleted or replaced meanwhile stays as its writer left it. An
        ad keeps its serial (the feeds that name it stay whole); one an older version
        indexed, without a serial, gets one. An ad with no decayed evidence yet gets its raw
        counters as evidence at ``evidence_at``."""
        keys = [Keys.ad(a) for a in ad_ids]

        def step(p: redis.client.Pipeline) -> int:
            with self.r.pipeline(transaction=False) as reads:
                for key in keys:
                    reads.hgetall(key)
                reads.hmget(Keys.ads_summary, list(ad_ids))
                *found, summaries = reads.execute()
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
                p.geoadd(Keys.ads_geo, (ad.lon, ad.lat, ad.ad_id))
                _index_expiry(p, [ad.ad_id], [expiry])
                p.hset(Keys.ads_summary, ad.ad_id, summary(ad, expiry, serial))
                p.hset(Keys.ads_cards, str(serial), card_value(ad))
                sums = [counts[f][i] for f in counts]
                if any(sums):
                    p.hsetnx(Keys.decayed, ad.ad_id, " ".join(map(repr, [evidence_at, *sums])))
            if rows:
                _log_change(p, [ad.ad_id for ad in rows], voids=False)
            return len(rows)

        return self.r.transaction(step, *keys, Keys.ads_summary, value_from_callable=True)

    def put_ads(self, ads: Sequence[AdRow], stale_cells_of: StaleCells) -> int:
        """Create or replace ads in one transaction, voiding the feeds that may list an old
        version of one of them (``stale_cells_of`` maps old locations to cells). The old
        locations are read under WATCH, so a concurrent change makes the step start over.
        Each ad written gets a new serial, its card is kept under it and the old version's
        card goes. With one id twice, the last wins. Returns how many live ads were
        replaced."""
        if not ads:
            return 0
        ads = list({ad.ad_id: ad for ad in ads}.values())
        ids = [a.ad_id for a in ads]
        expiry = [NO_EXPIRY if ad.expires_at is None else ad.expires_at for ad in ads]
        records: list[str | float | int] = []
        for ad in ads:
            records.append(len(ad.fields))
            for pair in ad.fields.items():
                records += pair

        def write(p: redis.client.Pipeline) -> int:
            old = self._old_summaries(p, ids)
            stale = sorted(set(stale_cells_of(_locations(old))))
            first = self._serials(len(ads))
            p.multi()
            # a few commands for the whole batch (one per ad costs more in the client than
            # in Redis)
            self._put_records(keys=[Keys.ad(a) for a in ids], args=records, client=p)
            p.geoadd(Keys.ads_geo, [v for ad in ads for v in (ad.lon, ad.lat, ad.ad_id)])
            _index_expiry(p, ids, expiry)
            self._forget_cards(p, old)
            p.hset(Keys.ads_summary, mapping={ad.ad_id: summary(ad, e, first + i) for i, (ad, e)
                                              in enumerate(zip(ads, expiry, strict=True))})
            p.hset(Keys.ads_cards, mapping={str(first + i): card_value(ad)
                                            for i, ad in enumerate(ads)})
            _log_change(p, ids, voids=bool(stale))
            if stale:
                self._void_feeds(p, stale)
            return len(old)

        return self.r.transaction(write, Keys.ads_summary, value_from_callable=True)

    def delete_ad(self, ad_id: str, stale_cells_of: StaleCells) -> bool:
        """Remove an ad and its card, and void the feeds that may list it (read under WATCH,
        like ``put_ads``). False when there was no such ad."""
        def write(p: redis.client.Pipeline) -> None:
            old = self._old_summaries(p, [ad_id])
            stale = sorted(set(stale_cells_of(_locations(old))))
            p.multi()
            p.delete(Keys.ad(ad_id))
            p.zrem(Keys.ads_geo, ad_id)
            p.zrem(Keys.ads_expiry, ad_id)
            p.hdel(Keys.ads_summary, ad_id)
            _log_change(p, [ad_id], voids=True)      # (the epoch moves even for no such ad)
            self._forget_cards(p, old)
            self._void_feeds(p, stale)

        return bool(self.r.transaction(write, Keys.ads_summary)[0])

    def ad_cards(self, serials: Sequence[int]) -> list[bytes | None]:
        """The ads:cards values of these serials (None: no such card), one command."""
        return self.r.hmget(Keys.ads_cards, [str(s) for s in serials]) if serials else []

    def _serials(self, count: int) -> int:
        """The first of ``count`` new serials (a step that starts over takes new ones: gaps
        are harmless)."""
        return int(self.r.incrby(Keys.ad_serial, count)) - count + 1 if count else 1

    @staticmethod
    def _old_summaries(p: redis.client.Pipeline, ad_ids: Sequence[str]) -> np.ndarray:
        """The summaries (SUMMARY records) of the listed ads that are indexed, read on a
        watching connection."""
        return summary_rows([v for v in p.hmget(Keys.ads_summary, list(ad_ids))
                             if v is not None])

    @staticmethod
    def _forget_cards(p: redis.client.Pipeline, old: np.ndarray) -> None:
        """Within a catalogue transaction: delete the cards of these old summaries."""
        serials = [str(s) for s in old["sn"].tolist() if s]
        if serials:
            p.hdel(Keys.ads_cards, *serials)

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
        """Take ads past their expiry out of the indexes, cards included, atomically (an ad
        renewed at the same moment stays); their records stay readable."""
        expired = self._drop_expired(
            keys=[Keys.ads_expiry, Keys.ads_geo, Keys.ads_summary, Keys.ads_cards,
                  Keys.catalog_changes],
            args=[now, SUMMARY_TAG, len(SUMMARY_TAG) + SUMMARY.itemsize - 8 + 1,
                  CHANGE_IDS_MAX, CHANGES_KEPT])
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

    def current_summaries(self) -> Summaries:
        """Every indexed ad's summary, from this process's copy of the catalogue brought up
        to date (``CatalogueCopy``: after its first read, only what changed is read)."""
        copy = self.catalogue_copy()
        copy.refresh()
        return copy.summaries()

    def catalog_epoch(self) -> str:
        return _s(self.r.get(Keys.catalog_epoch)) or "0"
