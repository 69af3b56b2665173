"""Feeds: the packed cell feeds, active cells, the served-feed log, the strategy bandit's
sums and probabilities, the category priors and the feed-id secret."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

from store.catalogue_copy import CatalogueCopy
from store.keys import (
    EVIDENCE_FIELDS,
    FEEDS_CHANNEL,
    FLUSH_MARKER_TTL_S,
    GLOBAL_CELL,
    STRATEGY_HISTORY_LEN,
    SUMMARY_CHUNK,
    Keys,
)
from store.rows import (
    Decayed,
    Summaries,
    _s,
    float_rows,
    searchable,
)
from store.spread import run_each


class FeedChanges(Protocol):
    """A subscription to FEEDS_CHANNEL: ``get_message`` gives type "subscribe" once
    subscribed, then "message"s, whose data lists cells."""

    def get_message(self, ignore_subscribe_messages: bool = False,
                    timeout: float = 0.0) -> dict | None: ...

    def close(self) -> None: ...


class ShardedChanges:
    """FeedChanges on Redis Cluster: a sharded channel (SSUBSCRIBE, Redis 7), carried by the
    one node that holds its slot instead of by every node of the cluster, its messages
    given as a plain subscription gives them."""

    KINDS = {"ssubscribe": "subscribe", "smessage": "message"}

    def __init__(self, client: RedisCluster) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=False)
        self._pubsub.ssubscribe(FEEDS_CHANNEL)

    def get_message(self, ignore_subscribe_messages: bool = False,
                    timeout: float = 0.0) -> dict | None:
        message = self._pubsub.get_sharded_message(
            ignore_subscribe_messages=ignore_subscribe_messages, timeout=timeout)
        if message is None:
            return None
        kind = _s(message["type"])
        return {**message, "type": self.KINDS.get(kind, kind)}

    def close(self) -> None:
        self._pubsub.close()


class FeedStore:
    """Feeds: the packed cell feeds, active cells, the served-feed log, the strategy bandit's"""

    r: redis.Redis
    k: type[Keys]
    cluster: bool
    # the Lua scripts this area runs (Store registers them on its client)
    _append_served: Script
    _set_feed: Script
    catalogue_copy: Callable[[], CatalogueCopy]                  # Store's
    decayed_evidence: Callable[[Sequence[str | bytes]], Decayed]  # EventStore's
    parts: list                                                    # Store's: event partitions

    def feed_id_secret(self) -> bytes:
        """The secret that signs feed ids: made once, on first use, and shared by every
        process through the store (delete the key to rotate it: older feed ids then credit
        no strategy)."""
        self.r.set(self.k.feed_id_secret, secrets.token_hex(32), nx=True)
        return self.r.get(self.k.feed_id_secret)

    def strategy_stats(self, cells: Sequence[str], width: int) -> Decayed:
        """Each cell's (or GLOBAL_CELL's) decayed served feeds then applies, ``width`` / 2
        strategies each, as last updated, and when."""
        values = self.r.hmget(self.k.strategies, list(cells)) if cells else []
        return Decayed.parse(values, width)

    def seed_strategy_stats(self, rows: Mapping[str, Sequence[float]], as_of: float) -> None:
        """Set cells' (or GLOBAL_CELL's) decayed served feeds then applies, as
        ``strategy_stats`` reads them, as of ``as_of``: for benchmarks and tests (the
        service's come from ``count_served`` and ``apply_rollup`` only)."""
        if rows:
            self.r.hset(self.k.strategies, mapping={
                cell: " ".join([repr(float(as_of)), *map(str, row)])
                for cell, row in rows.items()})

    def write_priors(self, model: str, rows: Mapping[int, Sequence[float]],
                     overall: Sequence[float],
                     regional: Mapping[str, Mapping[int, Sequence[float]]] | None = None,
                     regional_ttl_s: int = 86_400) -> None:
        """Replace the empirical-Bayes prior means of ``model``: a row per category code,
        and the overall row; and each region's rows (``regional``: region -> code -> row),
        kept ``regional_ttl_s`` (a region no longer written is forgotten then)."""
        values = {str(code): " ".join(map(repr, row)) for code, row in rows.items()}
        values[GLOBAL_CELL] = " ".join(map(repr, overall))
        with self.r.pipeline(transaction=not self.cluster) as p:
            p.delete(self.k.priors(model))
            p.hset(self.k.priors(model), mapping=values)
            for region, by_code in (regional or {}).items():
                key = self.k.regional_priors(model, region)
                p.delete(key)
                if by_code:
                    p.hset(key, mapping={str(c): " ".join(map(repr, row))
                                         for c, row in by_code.items()})
                    p.expire(key, regional_ttl_s)
            p.execute()

    def regional_prior_rows(self, model: str, regions: Sequence[str], codes: Sequence[int],
                            width: int) -> np.ndarray:
        """(regions, codes, width): each region's stored prior row of each code; NaN where
        none (a region or a category with no means of its own)."""
        if not regions or not len(codes):
            return np.full((len(regions), len(codes), width), np.nan)
        with self.r.pipeline(transaction=False) as p:
            for region in regions:
                p.hmget(self.k.regional_priors(model, region), [str(c) for c in codes])
            replies = p.execute()
        return np.stack([float_rows(r, width) for r in replies])

    def prior_rows(self, model: str, codes: Sequence[int],
                   width: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows for ``codes``, overall row) of the stored prior means; NaN where none."""
        return _prior_rows(self.r.hmget(self.k.priors(model), [*map(str, codes), GLOBAL_CELL]),
                           width)

    def active_cells_since(self, since: float, limit: int) -> list[tuple[str, float]]:
        """Up to ``limit`` cells requested since ``since``, most recent first, with when
        (read only: unlike ``active_cells``, it forgets none)."""
        rows = self.r.zrevrangebyscore(self.k.cells_active, "+inf", since, start=0, num=limit,
                                       withscores=True)
        return [(_s(c), float(t)) for c, t in rows]

    def active_cells(self, since: float) -> list[str]:
        """Cells requested since ``since``; older ones are forgotten here."""
        with self.r.pipeline(transaction=False) as p:
            p.zremrangebyscore(self.k.cells_active, "-inf", f"({since}")
            p.zrange(self.k.cells_active, 0, -1)
            _, cells = p.execute()
        return [_s(c) for c in cells]

    def mark_active(self, cells: Mapping[str, float]) -> None:
        self.r.zadd(self.k.cells_active, dict(cells))

    def active_cell_count(self, since: float) -> int:
        """How many cells were requested since ``since`` (read only: unlike
        ``active_cells``, it forgets none)."""
        return int(self.r.zcount(self.k.cells_active, since, "+inf"))

    def write_feeds(self, epoch: str, feeds: Mapping[str, bytes], ttl_s: int) -> bool:
        """Store packed feeds unless the catalogue changed since ``epoch``: one transaction
        that WATCHes the epoch (a Lua script would copy every feed into Lua strings and out
        again, several times Redis's own work for the SETs). On Redis Cluster the feeds lie
        in many slots: each is stored unless its cell was voided since ``epoch``
        (``scripts.SET_FEED``), and False means some were refused."""
        if not feeds:
            return True
        if self.cluster:
            stored = run_each(self.r, self._set_feed, [
                ([self.k.feed(cell), self.k.feed_void(cell)], [epoch, packed, ttl_s])
                for cell, packed in feeds.items()])
            written = [cell for cell, ok in zip(feeds, stored, strict=True) if ok]
            if written:
                self.r.spublish(FEEDS_CHANNEL, " ".join(written))
            return len(written) == len(feeds)
        with self.r.pipeline(transaction=True) as p:
            try:
                p.watch(self.k.catalog_epoch)
                if (_s(p.get(self.k.catalog_epoch)) or "0") != epoch:
                    return False
                p.multi()
                for cell, packed in feeds.items():   # (SET's own method: 4x the client's CPU)
                    p.execute_command("SET", self.k.feed(cell), packed, "EX", ttl_s)
                p.execute()
            except redis.WatchError:        # the catalogue changed between the read and EXEC
                return False
        self.r.publish(FEEDS_CHANNEL, " ".join(feeds))    # web processes drop stale copies
        return True

    def feed_value(self, cell: str) -> bytes | None:
        return self.r.get(self.k.feed(cell))

    def feed_values(self, cells: Sequence[str]) -> list[bytes | None]:
        """Each cell's packed feed (None where it has none), in one round trip."""
        with self.r.pipeline(transaction=False) as p:
            for cell in cells:
                p.get(self.k.feed(cell))
            return p.execute()

    def packed_feed_sizes(self, cells: Sequence[str]) -> list[int]:
        """Each cell's packed feed size in bytes (0 where it has none), in one round trip
        and without reading the feeds."""
        with self.r.pipeline(transaction=False) as p:
            for cell in cells:
                p.strlen(self.k.feed(cell))
            return [int(n) for n in p.execute()]

    def record_serving(self, served: Sequence[Mapping[str, str | float | int]],
                       active: Mapping[str, float], maxlen: int,
                       flush_id: str | None = None) -> None:
        """Write what serving buffered, in one round trip: served feeds to the ``served``
        stream (entries with the same fields, in order; once per ``flush_id``, so a retry
        of a write that happened adds nothing) and cells to ``cells:active``. (Users' last
        locations are not buffered: ``locate_user`` writes them as they are served.)"""
        append: tuple[list[str], list[object]] | None = None
        if served:
            names = list(served[0])
            args: list[object] = [maxlen, FLUSH_MARKER_TTL_S, len(names), *names]
            for entry in served:
                args.extend(entry[name] for name in names)
            append = ([self.k.served, self.k.served_flush(flush_id or secrets.token_hex(8))],
                      args)
        if self.cluster:     # (a cluster's pipelines take no scripts; the keys differ in slot)
            if append:
                self._append_served(keys=append[0], args=append[1])
            if active:
                self.r.zadd(self.k.cells_active, dict(active), gt=True)
            return
        with self.r.pipeline(transaction=False) as p:
            if append:
                self._append_served(keys=append[0], args=append[1], client=p)
            if active:
                p.zadd(self.k.cells_active, dict(active), gt=True)   # a late flush ages no cell
            p.execute()

    def served_feed(self, feed_id: str, around_ms: int, window_ms: int = 60_000,
                    scan: int = 50_000) -> dict[str, str] | None:
        """A served feed by its feed_id, looked up among the entries logged from one second
        before ``around_ms`` (when it was served) to ``window_ms`` after."""
        rows = self.r.xrange(self.k.served, f"{max(0, around_ms - 1000)}-0",
                             f"{around_ms + window_ms}-0", count=scan)
        target = feed_id.encode()
        for _, fields in rows:
            if fields.get(b"feed_id") == target:
                return {_s(k): _s(v) for k, v in fields.items()}
        return None

    def served_count(self) -> int:
        """Served-feed entries the log holds (it is capped: the newest ``maxlen`` or so)."""
        return int(self.r.xlen(self.k.served))

    def latest_served(self, count: int) -> list[tuple[str, dict[str, str]]]:
        """The last ``count`` served-feed entries logged, newest first."""
        rows = self.r.xrevrange(self.k.served, count=count)
        return [(_s(i), {_s(k): _s(v) for k, v in f.items()}) for i, f in rows]

    def feed_changes(self) -> FeedChanges:
        """A subscription to feed changes: each message lists cells whose feed was rebuilt
        or voided by an ad change, so that copies cached elsewhere are dropped."""
        if self.cluster:
            return ShardedChanges(self.r)
        pubsub = self.r.pubsub(ignore_subscribe_messages=False)
        pubsub.subscribe(FEEDS_CHANNEL)
        return pubsub

    def record_strategy_probabilities(self, chances: Mapping[str, float], now: float,
                                      keep: int = STRATEGY_HISTORY_LEN) -> None:
        """The strategy bandit's overall probabilities, as the last regeneration found them,
        appended to a capped history (for the dashboard) and kept as the current ones."""
        with self.r.pipeline(transaction=False) as p:
            p.xadd(self.k.strategy_history, {"ts": repr(now), **chances}, maxlen=keep,
                   approximate=True)
            p.delete(self.k.strategy_current)
            p.hset(self.k.strategy_current, mapping=dict(chances))
            p.execute()

    def strategy_probabilities(self) -> dict[str, float]:
        """Each strategy's current probability of being served (overall)."""
        return {_s(k): float(v) for k, v in self.r.hgetall(self.k.strategy_current).items()}

    def strategy_history(self, since: float) -> list[tuple[float, dict[str, float]]]:
        """(time, probabilities) of each regeneration since ``since``, oldest first."""
        rows = self.r.xrange(self.k.strategy_history, f"{int(since * 1000)}-0", "+")
        out = []
        for _, fields in rows:
            values = {_s(k): float(v) for k, v in fields.items()}
            out.append((values.pop("ts"), values))
        return out

    def cell_inputs(self, cell: str, lat: float, lon: float, radius_km: float,
                    prior_model: str, strategy_width: int,
                    strategy_fields: Sequence[str] | None = None,
                    regions: Sequence[str] = ()) -> CellInputs:
        """Everything building one cell's feed on demand reads, in two round trips: the
        catalogue epoch, the ads within ``radius_km`` of (lat, lon) by Redis's distance
        (their summaries and decayed evidence), the stored priors of ``prior_model``, and
        the strategy bandit's sums of ``strategy_fields`` (default: the cell then
        GLOBAL_CELL), and the prior means of ``regions``."""
        search_lat, search_km = searchable(lat, lon, radius_km)
        with self.r.pipeline(transaction=False) as p:
            p.get(self.k.catalog_epoch)
            p.geosearch(self.k.ads_geo, longitude=lon, latitude=search_lat, radius=search_km,
                        unit="km")
            p.hgetall(self.k.priors(prior_model))
            p.hmget(self.k.strategies, list(strategy_fields or [cell, GLOBAL_CELL]))
            for region in regions:
                p.hgetall(self.k.regional_priors(prior_model, region))
            epoch, ids, priors, strategies, *regional = p.execute()
        ads, evidence = self._ads_of(ids)
        return CellInputs(epoch=_s(epoch) or "0", ads=ads, evidence=evidence,
                          priors=dict(priors),
                          strategies=Decayed.parse(strategies, strategy_width),
                          regional_priors=dict(zip(regions, map(dict, regional), strict=True)))

    def ads_within(self, circles: Sequence[tuple[float, float, float]]) -> AreaInputs:
        """Everything a shard of a regeneration reads of the catalogue: the catalogue epoch
        and the ads within any of the ``circles`` (lat, lon, radius_km) from this process's
        copy of the catalogue brought up to date (``CatalogueCopy``: only what changed since
        its last read is read), then their decayed evidence, in bounded HMGETs."""
        copy = self.catalogue_copy()
        epoch = copy.refresh()
        ads = copy.within(circles)
        return AreaInputs(epoch=epoch, ads=ads, evidence=self.decayed_evidence(ads.ids))

    def _ads_of(self, ids: list[bytes]) -> tuple[Summaries, Decayed]:
        """The summaries and decayed evidence of the listed ads that still exist, aligned,
        in one round trip of bounded commands (with EVENT_PARTITIONS above 1, one more
        for each partition's evidence)."""
        summaries: list[bytes | None] = []
        evidence: list[bytes | None] = []
        together = len(self.parts) == 1       # the evidence in one hash: one round trip
        if ids:
            with self.r.pipeline(transaction=False) as p:
                for i in range(0, len(ids), SUMMARY_CHUNK):
                    p.hmget(self.k.ads_summary, ids[i:i + SUMMARY_CHUNK])
                    if together:
                        p.hmget(self.k.decayed, ids[i:i + SUMMARY_CHUNK])
                replies = p.execute()
            step = 2 if together else 1
            for j, part in enumerate(replies[::step]):
                summaries += part
                if together:
                    evidence += replies[2 * j + 1]
        present = [i for i, v in enumerate(summaries) if v is not None]
        found = Summaries.decode([ids[i] for i in present],
                                 [v for v in summaries if v is not None])
        if not together:       # partitioned: each ad's evidence in its own partition
            return found, self.decayed_evidence([ids[i] for i in present])
        return found, Decayed.parse([evidence[i] for i in present], len(EVIDENCE_FIELDS))


@dataclass(frozen=True)
class AreaInputs:
    """The ads of an area, read at one moment (``FeedStore.ads_within``)."""

    epoch: str                   # the catalogue epoch when they were read
    ads: Summaries               # the ads found (that still exist)
    evidence: Decayed            # their decayed evidence, a row per ad of ``ads``


@dataclass(frozen=True)
class CellInputs(AreaInputs):
    """What one cell's feed is built from, read at one moment (``FeedStore.cell_inputs``):
    the ads of its area (its feed is written only if the epoch is still the one read), the
    stored priors and the strategy sums."""

    priors: dict[bytes, bytes]   # the stored prior means: category code (or GLOBAL_CELL) -> row
    strategies: Decayed          # the strategy sums of the cell (its region), GLOBAL_CELL
    regional_priors: dict[str, dict[bytes, bytes]] = field(default_factory=dict)

    def prior_rows(self, codes: Sequence[int], width: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows for ``codes``, overall row) of the priors, as ``prior_rows`` gives them."""
        return _prior_rows([self.priors.get(key.encode())
                            for key in [*map(str, codes), GLOBAL_CELL]], width)

    def regional_prior_rows(self, regions: Sequence[str], codes: Sequence[int],
                            width: int) -> np.ndarray:
        """``FeedStore.regional_prior_rows`` from what was read (regions not read: NaN)."""
        return np.stack([float_rows([self.regional_priors.get(r, {}).get(str(c).encode())
                                     for c in codes], width) for r in regions]) \
            if regions else np.full((0, len(codes), width), np.nan)


def _prior_rows(raw: Sequence[bytes | None], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Stored prior rows read for [*codes, GLOBAL_CELL]: (the codes' rows, the overall row)."""
    rows = float_rows(raw, width)
    return rows[:-1], rows[-1]
