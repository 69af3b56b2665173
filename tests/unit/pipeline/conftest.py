"""Catalogues around Paris on the fake store, and serving without a process cache, for the
pipeline tests. ``serve`` and ``paris`` take the ``settings`` of the module that asks."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from config import Settings, load_settings
from pipeline.catalogue import AdRecord, upsert_ads
from pipeline.serving.feed import FeedRequest, ServingLog, serve_feed
from store import Store
from tests.support.builders import PARIS, ads_around


@pytest.fixture
def serve(fake_store: Store, settings: Settings, rng) -> Callable[[FeedRequest, float], dict]:
    """serve_feed without a process cache, its log flushed after each request."""
    log = ServingLog(fake_store, settings.served_maxlen, flush_s=None)

    def run(req: FeedRequest, now: float) -> dict:
        body = serve_feed(fake_store, settings, req, now, rng, None, log).as_dict()
        log.flush()
        return body
    return run


@pytest.fixture
def paris(fake_store: Store, settings: Settings, rng) -> dict[str, AdRecord]:
    """300 ads within 9 km of Paris, by ad_id."""
    ads = ads_around(*PARIS, 300, 9.0, rng)
    upsert_ads(fake_store, settings, ads)
    return {a.ad_id: a for a in ads}


@pytest.fixture
def paris_settings(fake_store: Store, rng) -> Settings:
    """60 ads within 4 km of Paris; the settings they are served with (feeds of 400)."""
    settings = load_settings({}, feed_length=400)
    upsert_ads(fake_store, settings, ads_around(*PARIS, 60, 4.0, rng))
    return settings
