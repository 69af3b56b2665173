"""pipeline.replay on fakeredis: after a simulated day of traffic (posts every ten minutes,
rolled up and archived as beat does), the archive replayed into an empty Redis, or in place,
rebuilds every per-ad counter and per-day and all-time CTR counter exactly, and every ad's
decayed evidence to within rounding; with the events split over partitions too."""
from __future__ import annotations

import random

import fakeredis
import numpy as np
import pytest

from bandit import decay_factor
from config import Settings, load_settings
from pipeline.archive import Archive, run_archive
from pipeline.learning.examination import current
from pipeline.learning.ingest import Event, accept_batch
from pipeline.learning.rollup import run_rollup
from pipeline.replay import replay_events
from pipeline.serving.feed import make_feed_id
from store import EVIDENCE_FIELDS, Store
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


def counters(store: Store) -> dict[str, dict[bytes, bytes]]:
    """Every per-ad and CTR counter hash, by key."""
    keys = [k for p in store.parts for k in [p.counts, p.ctr_all]]
    keys += [k.decode() for p in store.parts for k in store.r.scan_iter(match=p.ctr("*"))]
    hashes = {k: store.r.hgetall(k) for k in sorted(set(keys))}
    return {k: h for k, h in hashes.items() if h}


def evidence_at(store: Store, settings: Settings, at: float) -> np.ndarray:
    d = store.decayed_evidence(ADS)
    return d.values * decay_factor(at - d.updated_at, settings.stats_half_life_s)[:, None]


@pytest.mark.parametrize("partitions", [1, 3])
def test_a_replay_into_an_empty_redis_rebuilds_every_counter(tmp_path, partitions):
    settings = load_settings({}, archive_url=str(tmp_path / "archive"),
                             position_bias_exponent=0.6, event_partitions=partitions)
    live = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()), partitions)
    ended = a_day_of_traffic(live, settings)
    fresh = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()), partitions)
    assert fresh.adopt_feed_id_secret(live.feed_id_secret())
    archive = Archive(settings.archive_url)
    done = replay_events(archive, fresh, settings, "2000-01-01", "2100-12-31",
                         live.feed_id_secret(), current(live, settings), ended + 60)

    assert done.events == done.counted > 2000
    live_counters = counters(live)
    assert len(live_counters) >= 4 and any(b"thompson:applies" in h
                                          for h in live_counters.values())
    assert counters(fresh) == live_counters
    np.testing.assert_allclose(evidence_at(fresh, settings, ended + 60),
                               evidence_at(live, settings, ended + 60), rtol=1e-9)
    assert evidence_at(live, settings, ended).shape == (len(ADS), len(EVIDENCE_FIELDS))


def test_a_replay_in_place_gives_back_the_same_counters(tmp_path):
    settings = load_settings({}, archive_url=str(tmp_path / "archive"),
                             position_bias_exponent=0.6)
    live = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    ended = a_day_of_traffic(live, settings, seed=8)
    before, evidence = counters(live), evidence_at(live, settings, ended + 60)
    assert live.holds_counters() and live.clear_counters() >= 3
    assert not live.holds_counters() and counters(live) == {}
    replay_events(Archive(settings.archive_url), live, settings, "2000-01-01", "2100-12-31",
                  live.feed_id_secret(), current(live, settings), ended + 60)
    assert counters(live) == before
    np.testing.assert_allclose(evidence_at(live, settings, ended + 60), evidence, rtol=1e-9)


def test_only_the_days_given_are_replayed(tmp_path):
    settings = load_settings({}, archive_url=str(tmp_path / "archive"))
    live = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    ended = a_day_of_traffic(live, settings, seed=5)
    fresh = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    archive = Archive(settings.archive_url)
    days = sorted({f.rsplit("/", 2)[-2].removeprefix("date=") for f in archive.files("events")})
    done = replay_events(archive, fresh, settings, "1999-01-01", "1999-12-31",
                         live.feed_id_secret(), current(live, settings), ended)
    assert done.files == done.events == 0 and not fresh.holds_counters()
    done = replay_events(archive, fresh, settings, days[0], days[-1], live.feed_id_secret(),
                         current(live, settings), ended)
    assert done.files == len(archive.files("events"))
