"""Small builders for pipeline tests."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

import geo
from pipeline.catalogue import AdRecord
from store import Store
from tests.conftest import NOW


def ads_around(lat: float, lon: float, count: int, spread_km: float, rng: np.random.Generator,
               prefix: str = "ad", expires_at: float | None = None) -> list[AdRecord]:
    """Ads at uniformly random bearings and distances up to spread_km from a point."""
    bearing = rng.uniform(0, 360, count)
    dist = rng.uniform(0, spread_km, count)
    lats, lons = geo.destination_point(np.full(count, lat), np.full(count, lon), bearing, dist)
    return [AdRecord(f"{prefix}{i}", float(a), float(o), f"title {i}", "co", "retail", "", NOW - 10,
                     expires_at) for i, (a, o) in enumerate(zip(lats, lons, strict=True))]


def catalogue(store: Store, ad_ids: Iterable[str], lat: float = 52.52,
              lon: float = 13.405) -> None:
    """Put the ads the catalogue does not hold yet there, at one point: an event for an ad
    the catalogue does not hold is rejected."""
    missing = [a for a in dict.fromkeys(ad_ids) if store.get_ad(a) is None]
    if missing:
        store.put_ads([AdRecord(a, lat, lon, f"title {a}", "co", "retail", "", NOW - 10,
                                None).row() for a in missing], lambda old: [])
