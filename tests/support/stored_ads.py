"""Ads as the store holds them, for the tests of the store and of the catalogue: an ad put
straight into the store, the ids of the ad records it holds, and an ad's summary rewritten
as the first layout wrote it."""
from __future__ import annotations

import numpy as np

from pipeline.serving.cellfeed import ad_card
from store import NO_EXPIRY, AdRow, Keys, Store, split_card
from tests.conftest import NOW


def put(store: Store, ad_id: str, lat: float, lon: float, expires_at: float | None = None,
        stale=()) -> None:
    store.put_ads([AdRow(ad_id, {"lat": repr(lat), "lon": repr(lon), "title": "t", "company": "c"},
                         lat, lon, expires_at, NOW - 60, 7, b"card:" + ad_id.encode())],
                  lambda old: stale)


def stored_ad_ids(fake_store) -> set[str]:
    return {k.decode().removeprefix("ad:") for k in fake_store.r.scan_iter("ad:*")}


def first_layout(store, ad_id: str) -> None:
    """Rewrite an ad's summary as the first version wrote it: lat, lon, expiry, card (and,
    as that version kept none, no card in ads:cards)."""
    serial = int(store.ad_summaries([ad_id]).rows["sn"][0])
    store.r.hdel(Keys.ads_cards, str(serial))
    fields = store.get_ad(ad_id)
    expiry = float(fields.get("expires_at", NO_EXPIRY))
    fixed = np.array([(float(fields["lat"]), float(fields["lon"]), expiry)], dtype="<f8,<f8,<f8")
    store.r.hset(Keys.ads_summary, ad_id,
                 fixed.tobytes() + ad_card(fields["title"], fields["company"]))


def feed_ad_ids(store: Store, feed) -> list[str]:
    """The ids of the ads a cell feed lists (``CellFeed``), by position, through their cards."""
    return [split_card(v)[0] for v in store.ad_cards(feed.serials.tolist())]
