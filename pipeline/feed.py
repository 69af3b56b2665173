"""Serving a feed: the cell's packed feed (from this process's cache, else one Redis read),
then pure work in memory."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import geo
from config import Settings
from pipeline.feedpack import CellFeed
from pipeline.regenerate import build_one_cell
from pipeline.serving import FeedCache, ServingLog
from store import Store

STRATEGY = "thompson"


@dataclass(frozen=True)
class FeedRequest:
    lat: float
    lon: float
    limit: int
    radius_km: float
    user_id: str | None = None


def load_cell(store: Store, settings: Settings, cell: str, now: float,
              rng: np.random.Generator, cache: FeedCache | None) -> tuple[CellFeed, str]:
    """The cell's feed and where it came from: "hit" (cached here or read from Redis) or
    "miss" (built now, with the beat's code, and stored)."""
    generation = cache.generation if cache else 0
    feed = cache.get(cell) if cache else None
    if feed is not None:
        return feed, "hit"
    feed, outcome = _decode(store.feed_value(cell)), "hit"
    if feed is None:
        feed, outcome = CellFeed.unpack(build_one_cell(store, cell, settings, now, rng)), "miss"
    if cache:
        cache.put(cell, feed, generation)
    return feed, outcome


def serve_feed(store: Store, settings: Settings, req: FeedRequest, now: float,
               rng: np.random.Generator, cache: FeedCache | None, served: ServingLog) -> dict:
    """The ordered ads for a point. A cached cell costs no Redis round trip (one to read the
    user's applied ads when a user_id is given); an uncached one a single GET, whatever the
    size of the catalogue. The served feed is logged through ``served``."""
    cell = geo.encode(req.lat, req.lon, settings.geohash_precision)
    feed, outcome = load_cell(store, settings, cell, now, rng, cache)
    applied = store.applied_ads(req.user_id) if req.user_id else set()
    variant = int(rng.integers(feed.variants.shape[0])) if feed.variants.size else 0
    order = feed.variants[variant] if feed.variants.size else np.empty(0, dtype=np.int32)
    distance_km = geo.haversine_km(req.lat, req.lon, feed.lat[order], feed.lon[order])
    keep = (distance_km <= req.radius_km) & (feed.expires_at[order] > now)
    if applied:
        keep &= np.fromiter((feed.ad_ids[i] not in applied for i in order), bool, len(order))
    chosen = order[keep][:req.limit].tolist()
    chosen_km = distance_km[keep][:req.limit].tolist()
    ad_ids = feed.ad_ids.take(chosen)
    feed_id = f"{int(now * 1000)}-{rng.integers(1 << 62):016x}"
    propensity = 1.0
    served.add({"feed_id": feed_id, "ts": now, "cell": cell, "strategy": STRATEGY,
                "propensity": propensity, "variant": variant,
                "generated_at": feed.generated_at, "cache": outcome,
                "user_id": req.user_id or "", "ads": " ".join(ad_ids)},
               cell, now, req.user_id, f"{req.lat:.6f},{req.lon:.6f}" if req.user_id else None)
    return {
        "feed_id": feed_id, "cell": cell, "strategy": STRATEGY, "propensity": propensity,
        "generated_at": feed.generated_at, "cache": outcome,
        "ads": [{"ad_id": ad_id, "position": p, "distance_km": round(km, 3),
                 "title": feed.titles[i], "company": feed.companies[i]}
                for p, (ad_id, i, km) in enumerate(zip(ad_ids, chosen, chosen_km), start=1)],
    }


def feed_time_ms(feed_id: str) -> int | None:
    """When a feed was served, from its id ("<ms>-<16 hex>"); None if it is not one."""
    ms, _, rest = feed_id.partition("-")
    if not (ms.isdigit() and len(ms) <= 15 and len(rest) == 16
            and all(c in "0123456789abcdef" for c in rest)):
        return None
    return int(ms)


def _decode(raw: bytes | None) -> CellFeed | None:
    """A stored feed, or None for a miss (absent, or packed by another format version)."""
    if raw is None:
        return None
    try:
        return CellFeed.unpack(raw)
    except (ValueError, KeyError):
        return None
