"""Serving a feed: the cell's packed feed (from this process's cache, else one Redis read),
then pure work in memory."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

import geo
from bandit import SCREENED, choose, screen_orders
from config import Settings
from pipeline.learning.regenerate import build_one_cell
from pipeline.serving.feedid import make_feed_id
from pipeline.serving.feedpack import CellFeed
from pipeline.serving.process import FeedCache, ServingLog
from store import Store


@dataclass(frozen=True)
class FeedRequest:
    lat: float
    lon: float
    limit: int
    radius_km: float
    user_id: str | None = None


def parse_location(value: str | None) -> tuple[float, float] | None:
    """A stored "lat,lon" as numbers, or None if there is none (or it is unusable).

    >>> parse_location("52.520000,13.405000"), parse_location("x,1"), parse_location(None)
    ((52.52, 13.405), None, None)
    """
    try:
        lat, lon = (float(v) for v in (value or "").split(","))
    except ValueError:
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def location_text(lat: float, lon: float) -> str:
    return f"{lat:.6f},{lon:.6f}"


def load_cell(store: Store, settings: Settings, cell: str, now: float,
              rng: np.random.Generator, cache: FeedCache | None) -> tuple[CellFeed, str]:
    """The cell's feed and where it came from: "hit" (cached here or read from Redis) or
    "miss" (built now, with the beat's code, and stored)."""
    feed = cache.get(cell) if cache else None
    if feed is not None:
        return feed, "hit"
    # after the lookup, which applied every change delivered so far: the read below is newer
    generation = cache.generation if cache else 0
    raw = store.feed_value(cell)
    feed, outcome = _decode(raw), "hit"
    if feed is None:
        raw = build_one_cell(store, cell, settings, now, rng)
        feed, outcome = CellFeed.unpack(raw), "miss"
    if cache:
        cache.put(cell, feed, generation, len(raw))
    return feed, outcome


@dataclass(frozen=True)
class FeedAnswer:
    """A feed as served; ``json()`` is the response body, assembled from the ads' cards."""

    feed_id: str
    cell: str
    strategy: str
    propensity: float
    generated_at: float
    cache: str
    ads_json: bytes

    def json(self, **extra: object) -> bytes:
        """The response body; ``extra`` fields go before the ads."""
        head = orjson.dumps({"feed_id": self.feed_id, "cell": self.cell,
                             "strategy": self.strategy, "propensity": self.propensity,
                             "generated_at": self.generated_at, "cache": self.cache, **extra})
        return head[:-1] + b',"ads":[' + self.ads_json + b"]}"

    def as_dict(self) -> dict:
        return orjson.loads(self.json())


@dataclass(frozen=True)
class Pick:
    """The strategy a feed is served by, the probability it had, and its order of the ads."""

    strategy: str
    propensity: float
    variant: int
    order: np.ndarray


def pick_order(feed: CellFeed, rng: np.random.Generator) -> Pick:
    """Draw a strategy with the cell's probabilities, then one of its variants uniformly (a
    screened strategy's variants are Thompson's)."""
    s = choose(feed.probabilities, rng.random()) if len(feed.strategies) > 1 else 0
    strategy = feed.strategies[s]
    rows = feed.orders["thompson" if strategy in SCREENED else strategy]
    variant = int(rng.integers(rows.shape[0])) if rows.shape[0] > 1 else 0
    return Pick(strategy, float(feed.probabilities[s]), variant, rows[variant])


def serve_feed(store: Store, settings: Settings, req: FeedRequest, now: float,
               rng: np.random.Generator, cache: FeedCache | None, served: ServingLog,
               excluded: set[str] | None = None, secret: bytes | None = None) -> FeedAnswer:
    """The ordered ads for a point. A cached cell costs no Redis round trip; an uncached one
    a single GET, whatever the size of the catalogue. With a user_id and no ``excluded``, one
    more round trip keeps the point as the user's last location and reads their excluded
    ads (given ``excluded``, the caller read the user's context, location included). The
    served feed is logged through ``served``. ``secret`` signs the feed id (serving
    processes keep it: else it is read)."""
    cell = geo.encode(req.lat, req.lon, settings.geohash_precision)
    feed, outcome = load_cell(store, settings, cell, now, rng, cache)
    if excluded is None:
        excluded = (store.locate_user(req.user_id, location_text(req.lat, req.lon))
                    if req.user_id else set())
    pick = pick_order(feed, rng)
    order = pick.order
    dot = feed.xyz[order] @ geo.unit_vector(req.lat, req.lon)
    keep = (dot >= geo.km_to_dot(req.radius_km)) & (feed.expires_at[order] > now)
    if excluded:
        keep &= np.fromiter((feed.ad_ids[i] not in excluded for i in order), bool, len(order))
    shown = np.flatnonzero(keep)[:req.limit]
    if pick.strategy in SCREENED:
        key = dot[shown] if pick.strategy == "nearest" else feed.keys[pick.strategy][order[shown]]
        shown = shown[screen_orders(key[None, :])[0]]
    chosen = order[shown].tolist()
    chosen_km = geo.dot_to_km(dot[shown]).tolist()
    ad_ids = feed.ad_ids.take(chosen)
    feed_id = make_feed_id(now, cell, pick.strategy, rng, secret or store.feed_id_secret())
    served.add({"feed_id": feed_id, "ts": now, "cell": cell, "strategy": pick.strategy,
                "propensity": pick.propensity, "variant": pick.variant,
                "generated_at": feed.generated_at, "cache": outcome,
                "user_id": req.user_id or "", "ads": " ".join(ad_ids)}, cell, now)
    ads_json = b",".join(b'%s,"position":%d,"distance_km":%.3f}' % (feed.cards.raw(i), p, km)
                         for p, (i, km) in enumerate(zip(chosen, chosen_km, strict=True), start=1))
    return FeedAnswer(feed_id, cell, pick.strategy, pick.propensity, feed.generated_at, outcome,
                      ads_json)


def _decode(raw: bytes | None) -> CellFeed | None:
    """A stored feed, or None for a miss (absent, or packed by another format version)."""
    if raw is None:
        return None
    try:
        return CellFeed.unpack(raw)
    except (ValueError, KeyError):
        return None
