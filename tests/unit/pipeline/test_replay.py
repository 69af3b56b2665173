"""pipeline.replay on fakeredis: after a simulated day of traffic (posts every ten minutes,
rolled up and archived as beat does), the archive replayed into an empty Redis, or in place,
rebuilds every per-ad counter and per-day and all-time CTR counter exactly, and every ad's
decayed evidence to within rounding; with the events split over partitions too."""
from __future__ import annotations

import fakeredis
import numpy as np
import pytest

from bandit import decay_factor
from config import Settings, load_settings
from pipeline.archive import Archive
from pipeline.learning.examination import current
from pipeline.replay import replay_events
from store import EVIDENCE_FIELDS, Store
from tests.support.day_of_traffic import ADS, a_day_of_traffic


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
