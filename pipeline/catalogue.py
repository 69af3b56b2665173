"""The ad catalogue: writes that keep every feed honest.

Replacing or deleting an ad voids the feeds of every cell that may list it (and bumps the
catalogue epoch so a regeneration already under way does not write them back), so a deleted
ad never reaches a feed; an expired one is filtered at serve time by the expiry each feed
carries.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import geo
from config import Settings
from pipeline.serving.cellfeed import ad_card
from store import AdRow, Store

HALF_DIAGONAL_MARGIN = 1.1  # cells a few km away are a little larger nearer the equator


@dataclass(frozen=True)
class AdRecord:
    ad_id: str
    lat: float
    lon: float
    title: str
    company: str
    category: str
    description: str
    created_at: float
    expires_at: float | None

    def row(self) -> AdRow:
        """The ad as ``Store.put_ads`` takes it."""
        return AdRow(self.ad_id, self.fields(), self.lat, self.lon, self.expires_at,
                     self.created_at, category_code(self.category),
                     ad_card(self.ad_id, self.title, self.company))

    def fields(self) -> dict[str, str]:
        out = {"lat": repr(self.lat), "lon": repr(self.lon), "title": self.title,
               "company": self.company, "category": self.category,
               "created_at": repr(self.created_at)}
        if self.description:
            out["description"] = self.description
        if self.expires_at is not None:
            out["expires_at"] = repr(self.expires_at)
        return out


def category_code(category: str) -> int:
    """A 64-bit code for a category (case-insensitive): the empirical-Bayes prior groups ads
    by it without storing the names with every ad.

    >>> category_code("Retail") == category_code("retail") != category_code("care")
    True
    """
    digest = hashlib.blake2b(category.strip().lower().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def cells_listing(locations: Iterable[tuple[float, float]], settings: Settings) -> set[str]:
    """The cells whose feeds may hold an ad at any of these locations."""
    cells: set[str] = set()
    for lat, lon in locations:
        here = geo.encode(lat, lon, settings.geohash_precision)
        reach_km = settings.feed_radius_km + HALF_DIAGONAL_MARGIN * geo.cell_half_diagonal_km(here)
        cells.update(geo.cells_covering(lat, lon, reach_km, settings.geohash_precision))
    return cells


def upsert_ads(store: Store, settings: Settings, ads: Sequence[AdRecord]) -> tuple[int, int]:
    """Create or replace ads. Returns (created, replaced)."""
    replaced = store.put_ads([a.row() for a in ads], lambda old: cells_listing(old, settings))
    return len(ads) - replaced, replaced


def delete_ad(store: Store, settings: Settings, ad_id: str) -> bool:
    return store.delete_ad(ad_id, lambda old: cells_listing(old, settings))


def reindex(store: Store, settings: Settings, now: float) -> tuple[int, int]:
    """Rebuild the indexes (geo set, expiry, summaries) of every live ad from its record, as
    after an upgrade that changed what the summaries pack, and give ads without decayed
    evidence their raw counters as evidence (as of now). Expired ads leave the indexes.
    Returns (reindexed, left out because expired)."""
    store.drop_expired(now)
    done = seen = 0

    def live_rows(records: list[tuple[str, dict[str, str]]]) -> list:
        views = [ad_view(ad_id, fields, now) for ad_id, fields in records]
        return [AdRecord(v["ad_id"], v["lat"], v["lon"], v["title"], v["company"],
                         v["category"] or "other", v["description"], v["created_at"],
                         v["expires_at"]).row() for v in views if v["live"]]

    for ad_ids in store.all_ad_ids():
        done += store.rebuild_indexes(ad_ids, live_rows, now)
        seen += len(ad_ids)
    return done, seen - done


def ad_view(ad_id: str, fields: dict[str, str], now: float) -> dict:
    """An ad as the API shows it."""
    expires_at = float(fields["expires_at"]) if "expires_at" in fields else None
    return {"ad_id": ad_id, "lat": float(fields["lat"]), "lon": float(fields["lon"]),
            "title": fields.get("title", ""), "company": fields.get("company", ""),
            "category": fields.get("category", ""), "description": fields.get("description", ""),
            "created_at": float(fields.get("created_at", 0.0)), "expires_at": expires_at,
            "live": expires_at is None or expires_at > now}
