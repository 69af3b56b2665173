"""Serving a feed: one read of the cell's packed value, then pure work in memory."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import geo
from config import Settings
from pipeline.feedpack import CellFeed
from pipeline.regenerate import build_one_cell
from store import Store

STRATEGY = "thompson"


@dataclass(frozen=True)
class FeedRequest:
    lat: float
    lon: float
    limit: int
    radius_km: float
    user_id: str | None = None


def serve_feed(store: Store, settings: Settings, req: FeedRequest, now: float,
               rng: np.random.Generator) -> dict:
    """The ordered ads for a point. Two Redis round trips on a hit (read the cell; read the
    chosen ads' titles and log the feed), whatever the size of the catalogue; a miss first
    builds the cell with the beat's code."""
    cell = geo.encode(req.lat, req.lon, settings.geohash_precision)
    location = f"{req.lat:.6f},{req.lon:.6f}" if req.user_id else None
    raw, applied = store.read_feed(cell, now, req.user_id, location)
    feed = _decode(raw)
    cache = "hit"
    if feed is None:
        feed = CellFeed.unpack(build_one_cell(store, cell, settings, now, rng))
        cache = "miss"
    variant = int(rng.integers(feed.variants.shape[0])) if feed.variants.size else 0
    order = feed.variants[variant] if feed.variants.size else np.empty(0, dtype=np.int32)
    distance_km = geo.haversine_km(req.lat, req.lon, feed.lat[order], feed.lon[order])
    keep = (distance_km <= req.radius_km) & (feed.expires_at[order] > now)
    if applied:
        keep &= np.fromiter((feed.ad_id(i) not in applied for i in order), bool, len(order))
    chosen = order[keep][:req.limit]
    km = dict(zip(feed.ad_ids(chosen), distance_km[keep][:req.limit].tolist()))
    propensity = 1.0
    feed_id, cards = store.log_served({
        "ts": now, "cell": cell, "strategy": STRATEGY, "propensity": propensity,
        "variant": variant, "generated_at": feed.generated_at, "cache": cache,
        "user_id": req.user_id or ""}, list(km), settings.served_maxlen)
    return {
        "feed_id": feed_id, "cell": cell, "strategy": STRATEGY, "propensity": propensity,
        "generated_at": feed.generated_at, "cache": cache,
        "ads": [{"ad_id": ad_id, "position": p, "distance_km": round(km[ad_id], 3),
                 "title": title, "company": company}
                for p, (ad_id, title, company) in enumerate(cards, start=1)],
    }


def _decode(raw: bytes | None) -> CellFeed | None:
    """The cached feed, or None for a miss (absent, or packed by another format version)."""
    if raw is None:
        return None
    try:
        return CellFeed.unpack(raw)
    except (ValueError, KeyError):
        return None
