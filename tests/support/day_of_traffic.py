"""A simulated day of traffic through the whole pipeline (posts every ten minutes naming
feeds of every strategy, rolled up and archived as beat does), for the tests that compare
what the archive gives back with what the rollup counted live."""
from __future__ import annotations

import random

from config import Settings
from pipeline.archive import run_archive
from pipeline.learning.ingest import Event, accept_batch
from pipeline.learning.rollup import run_rollup
from pipeline.serving.feed import make_feed_id
from store import Store
from tests.conftest import NOW
from tests.support.builders import send

TYPES = ("impression", "impression", "impression", "view", "save", "apply", "hide")
ADS = [f"ad{i}" for i in range(40)]


def a_day_of_traffic(store: Store, settings: Settings, seed: int = 3) -> float:
    """Posts every ten minutes for a day (impressions at positions, views, saves, applies
    naming their feed, a retried post now and then), each rolled up; the archive runs every
    hour. Returns when the day ended."""
    rng = random.Random(seed)
    secret = store.feed_id_secret()
    now, sent = NOW, []
    for step in range(144):
        now = NOW + step * 600.0
        events = []
        for _ in range(rng.randint(5, 40)):
            strategy = rng.choice(("thompson", "popular", "newest", "nearest"))
            feed = make_feed_id(now - rng.uniform(0, 900), "u33dbc", strategy, rng, secret)
            events.append(Event(f"e{len(sent) + len(events)}", rng.choice(ADS),
                                rng.choice(TYPES), now - rng.uniform(0, 3600),
                                f"user{rng.randint(1, 30)}", feed, rng.randint(1, 30)))
        send(store, settings, events, now)
        if sent and rng.random() < 0.2:           # a retried post: its events are duplicates
            assert accept_batch(store, settings, sent[-3:], now).batch_id is None
        sent += events
        run_rollup(store, settings, now + 5)
        if step % 6 == 5:
            run_archive(store, settings, now + 6)
    run_rollup(store, settings, now + 10)
    run_archive(store, settings, now + 11)
    return now + 11
