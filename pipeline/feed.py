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
    """The ordered ads for a point. Costs two Redis round trips (read, log) on a hit,
    whatever the size of the catalogue; a miss builds the cell first, with the beat's code."""
    cell = geo.encode(req.lat, req.lon, settings.geohash_precision)
    location = f"{req.lat:.6f},{req.lon:.6f}" if req.user_id else None
    raw, applied = store.read_feed(cell, now, req.user_id, location)
    cache = "hit"
    if raw is None:
        raw = build_one_cell(store, cell, settings, now, rng)
        cache = "miss"
    feed = CellFeed.unpack(raw)
    variant = int(rng.integers(feed.variants.shape[0])) if feed.variants.size else 0
    order = feed.variants[variant] if feed.variants.size else np.empty(0, dtype=np.int32)
    distance_km = geo.haversine_km(req.lat, req.lon, feed.lat[order], feed.lon[order])
    keep = (distance_km <= req.radius_km) & (feed.expires_at[order] > now)
    if applied:
        keep &= np.fromiter((feed.ad_ids[i] not in applied for i in order), bool, len(order))
    chosen = order[keep][:req.limit]
    chosen_km = distance_km[keep][:req.limit]
    ad_ids = [feed.ad_ids[i] for i in chosen]
    propensity = 1.0
    feed_id = store.log_served({
        "ts": now, "cell": cell, "strategy": STRATEGY, "propensity": propensity,
        "variant": variant, "generated_at": feed.generated_at, "cache": cache,
        "user_id": req.user_id or "", "ads": " ".join(ad_ids),
    }, settings.served_maxlen)
    return {
        "feed_id": feed_id, "cell": cell, "strategy": STRATEGY, "propensity": propensity,
        "generated_at": feed.generated_at, "cache": cache,
        "ads": [{"ad_id": ad_ids[p], "position": p + 1, "distance_km": round(float(d), 3),
                 "title": feed.titles[i], "company": feed.companies[i]}
                for p, (i, d) in enumerate(zip(chosen, chosen_km))],
    }
