"""A day's traffic for the daily-CTR tests (GET /v1/stats/ctr and `flask report ctr`), and
reading the answer. A test module binds the ``served`` fixture by name
(``served = daily_ctr.served``) and stops its app's clock at NOW (2027-01-15T08:00:00Z)."""
from __future__ import annotations

import itertools

import pytest

from config import Settings
from pipeline.learning.ingest import Event, accept_batch, roll_in
from pipeline.learning.rollup import run_rollup
from store import Store
from tests.conftest import NOW
from tests.support.api import put_ad

HERE = {"lat": 52.52, "lon": 13.405}
TODAY = "2027-01-15"                     # NOW is 2027-01-15T08:00:00Z
YESTERDAY = NOW - 86_400
_ids = itertools.count()


def events(ts: float, feed_id: str | None = None, **counts: int) -> list[Event]:
    return [Event(f"e{next(_ids)}", "ad-1", kind, ts, "u1", feed_id, 1)
            for kind, n in counts.items() for _ in range(n)]


@pytest.fixture
def served(client, admin, fake_store: Store, settings: Settings) -> dict:
    """A feed served through the API today; events on it today, others (naming no feed)
    yesterday; accepted, rolled in and rolled up by the service's own code."""
    put_ad(client, admin, "ad-1", HERE["lat"], HERE["lon"])
    feed = client.get("/v1/feed", query_string=HERE).get_json()
    batch = (events(YESTERDAY, impression=400, view=40, save=8, apply=12)
             + events(NOW + 60, feed["feed_id"], impression=90, view=9, save=3, apply=2)
             + events(NOW + 120, impression=10))
    accepted = accept_batch(fake_store, settings, batch, NOW + 300)
    roll_in(fake_store, accepted.batch_id)
    run_rollup(fake_store, settings, NOW + 600)
    return feed


def ctr(client, **query: str):
    return client.get("/v1/stats/ctr", query_string=query)


def figures(row: dict) -> tuple[int, int, int, int]:
    return row["impressions"], row["views"], row["saves"], row["applies"]
