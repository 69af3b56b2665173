"""Small builders for pipeline tests: ads around a point, events, and feeds served."""
from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np

import geo
from config import Settings
from pipeline.catalogue import AdRecord
from pipeline.learning.ingest import Event, accept_batch, roll_in
from pipeline.serving.feed import FeedRequest, ServingLog, serve_feed
from store import Store
from tests.conftest import NOW

PARIS = (48.8566, 2.3522)
_ids = itertools.count()


def ads_around(lat: float, lon: float, count: int, spread_km: float, rng: np.random.Generator,
               prefix: str = "ad", expires_at: float | None = None) -> list[AdRecord]:
    """Ads at uniformly random bearings and distances up to spread_km from a point, each of
    an employer of its own (the employer rule holds none back)."""
    bearing = rng.uniform(0, 360, count)
    dist = rng.uniform(0, spread_km, count)
    lats, lons = geo.destination_point(np.full(count, lat), np.full(count, lon), bearing, dist)
    return [AdRecord(f"{prefix}{i}", float(a), float(o), f"title {i}", f"co {prefix}{i}",
                     "retail", "", NOW - 10, expires_at)
            for i, (a, o) in enumerate(zip(lats, lons, strict=True))]


def catalogue(store: Store, ad_ids: Iterable[str], lat: float = 52.52,
              lon: float = 13.405) -> None:
    """Put the ads the catalogue does not hold yet there, at one point: an event for an ad
    the catalogue does not hold is rejected."""
    missing = [a for a in dict.fromkeys(ad_ids) if store.get_ad(a) is None]
    if missing:
        store.put_ads([AdRecord(a, lat, lon, f"title {a}", f"co {a}", "retail", "", NOW - 10,
                                None).row() for a in missing], lambda old: [])


def events_of(ad_id: str, now: float, impressions: int = 0, views: int = 0, applies: int = 0,
              **extra) -> list[Event]:
    """That many impressions, views and applies of one ad, each with an event_id of its own."""
    out = []
    for kind, n in (("impression", impressions), ("view", views), ("apply", applies)):
        out += [Event(f"e{next(_ids)}", ad_id, kind, now, **extra) for _ in range(n)]
    return out


def send(store: Store, settings: Settings, events: list[Event], now: float) -> None:
    """Accept and roll in a batch, as the web and the ingest task do (the ads the events
    name put in the catalogue first, where they are not yet)."""
    catalogue(store, (e.ad_id for e in events))
    accepted = accept_batch(store, settings, events, now)
    roll_in(store, accepted.batch_id)


def serve_many(store: Store, settings: Settings, count: int, rng: np.random.Generator,
               point: tuple[float, float] = PARIS) -> list[dict]:
    """``count`` feeds of 10 ads at ``point``, as the web serves them; the log flushed."""
    log = ServingLog(store, settings.served_maxlen, flush_s=None)
    out = [serve_feed(store, settings, FeedRequest(*point, 10, 5.0), NOW, rng, None,
                      log).as_dict() for _ in range(count)]
    log.flush()
    return out
