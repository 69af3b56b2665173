"""The ad catalogue: writes that keep every feed honest.

Replacing or deleting an ad voids the feeds of every cell that may list it (and bumps the
catalogue epoch so a regeneration already under way does not write them back), so a deleted
ad never reaches a feed; an expired one is filtered at serve time by the expiry each feed
carries.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

import geo
from config import Settings
from pipeline.serving.cellfeed import ad_card
from store import AdRow, Store

HALF_DIAGONAL_MARGIN = 1.1  # cells a few km away are a little larger nearer the equator
DEFAULT_CATEGORY = "other"


@dataclass(frozen=True)
class AdRecord:
    """An ad as the catalogue knows it: the one shape of an ad between the wire (the JSON
    webapp.validation.AdIn checks and webapp.apidoc.Ad answers) and the store (``AdRow``),
    and the one place it changes shape: ``from_wire``, ``wire``, ``row`` and ``from_fields``.
    """

    ad_id: str
    lat: float
    lon: float
    title: str
    company: str
    category: str
    description: str
    created_at: float
    expires_at: float | None

    @classmethod
    def from_wire(cls, ad_id: str, body: Mapping[str, Any], now: float) -> AdRecord:
        """The record of an ad as written: ``body`` is a PUT body or an import line as
        webapp.validation.AdIn validates it (as a dict); the ad is created now unless it says
        when. ValueError when it would expire before it is created.

        >>> AdRecord.from_wire("a1", {"lat": 52.5, "lon": 13.4, "title": "Cook",
        ...                           "company": "Co"}, now=100.0)  # doctest: +NORMALIZE_WHITESPACE
        AdRecord(ad_id='a1', lat=52.5, lon=13.4, title='Cook', company='Co', category='other',
                 description='', created_at=100.0, expires_at=None)
        """
        created_at = body.get("created_at")
        created_at = now if created_at is None else created_at
        expires_at = body.get("expires_at")
        if expires_at is not None and expires_at <= created_at:
            raise ValueError("expires_at: must be after created_at")
        return cls(ad_id, body["lat"], body["lon"], body["title"], body["company"],
                   body.get("category", DEFAULT_CATEGORY), body.get("description", ""),
                   created_at, expires_at)

    @classmethod
    def from_fields(cls, ad_id: str, fields: Mapping[str, str]) -> AdRecord:
        """The record of an ad's stored hash (``Store.get_ad``): the inverse of ``fields``.
        A text an older version left out reads as empty, a missing created_at as 0."""
        expires_at = fields.get("expires_at")
        return cls(ad_id, float(fields["lat"]), float(fields["lon"]), fields.get("title", ""),
                   fields.get("company", ""), fields.get("category", ""),
                   fields.get("description", ""), float(fields.get("created_at", 0.0)),
                   None if expires_at is None else float(expires_at))

    def live(self, now: float) -> bool:
        """Not expired at ``now``."""
        return self.expires_at is None or self.expires_at > now

    def wire(self, now: float) -> dict[str, Any]:
        """The ad as the API answers it (webapp.apidoc.Ad): every field, and whether it is
        live at ``now``."""
        return {**asdict(self), "live": self.live(now)}

    def row(self) -> AdRow:
        """The ad as ``Store.put_ads`` takes it."""
        return AdRow(self.ad_id, self.fields(), self.lat, self.lon, self.expires_at,
                     self.created_at, category_code(self.category),
                     ad_card(self.title, self.company), employer_code(self.company))

    def fields(self) -> dict[str, str]:
        """The ad's stored hash: the inverse of ``from_fields`` (an empty description and a
        missing expiry are not written)."""
        out = {"lat": repr(self.lat), "lon": repr(self.lon), "title": self.title,
               "company": self.company, "category": self.category,
               "created_at": repr(self.created_at)}
        if self.description:
            out["description"] = self.description
        if self.expires_at is not None:
            out["expires_at"] = repr(self.expires_at)
        return out


@lru_cache(maxsize=4096)   # a catalogue has few categories; an import asks once per ad
def category_code(category: str) -> int:
    """A 64-bit code for a category (case-insensitive): the empirical-Bayes prior groups ads
    by it without storing the names with every ad.

    >>> category_code("Retail") == category_code("retail") != category_code("care")
    True
    """
    digest = hashlib.blake2b(category.strip().lower().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@lru_cache(maxsize=65_536)
def employer_code(company: str) -> int:
    """A 64-bit code for an employer, from its company's name compared without case and
    with its spacing collapsed (the employer rule, ``bandit.diversity``, reads it); 0 for
    no name (an unknown employer: no rule holds its ads back).

    >>> employer_code("Acme  GmbH") == employer_code(" acme gmbh") != employer_code("Acme")
    True
    >>> employer_code("  ")
    0
    """
    name = " ".join(company.casefold().split())
    if not name:
        return 0
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"employer").digest()
    return int.from_bytes(digest, "little") or 1


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
    """Rebuild the indexes (geo set, expiry, summaries, cards) of every live ad from its
    record, as after an upgrade that changed what the summaries pack, and give ads without
    decayed evidence their raw counters as evidence (as of now). Expired ads leave the
    indexes. Returns (reindexed, left out because expired)."""
    store.drop_expired(now)
    done = seen = 0
    for ad_ids in store.all_ad_ids():
        done += reindex_ads(store, settings, ad_ids, now)
        seen += len(ad_ids)
    return done, seen - done


def reindex_ads(store: Store, settings: Settings, ad_ids: Sequence[str], now: float,
                chunk: int = 500) -> int:
    """``reindex`` for these ads (the live ones). Returns how many were reindexed."""
    def live_rows(records: list[tuple[str, dict[str, str]]]) -> list[AdRow]:
        ads = (AdRecord.from_fields(ad_id, fields) for ad_id, fields in records)
        return [replace(ad, category=ad.category or DEFAULT_CATEGORY).row()
                for ad in ads if ad.live(now)]

    return sum(store.rebuild_indexes(ad_ids[i:i + chunk], live_rows, now)
               for i in range(0, len(ad_ids), chunk))
