"""pipeline.learning.rollup on a fakeredis store: decayed evidence, so that the ranking
follows a change of the true rates; exposure weighed by the position an ad was shown at;
strategy credit only for a recent feed the service signed, once."""
from __future__ import annotations

import pytest

import geo
from config import load_settings
from pipeline.learning.ingest import Event
from pipeline.learning.rollup import run_rollup
from pipeline.reports.adstats import ad_report
from pipeline.serving.feed import make_feed_id
from store import GLOBAL_CELL, STAT_FIELDS, Keys
from tests.conftest import NOW
from tests.support.builders import PARIS, events_of, send


@pytest.mark.parametrize("half_life_s, within, beyond", [(300.0, 30, None), (1e9, None, 60)])
def test_the_ranking_follows_a_change_of_the_true_rates(fake_store, half_life_s, within,
                                                        beyond):
    """Two ads, 80 rollups (10 s apart) of one being better, then their true rates swap.
    With a 300 s half-life the posterior means swap within 30 rollups (27 measured);
    without decay it takes about as long as the old evidence took to build (80)."""
    settings = load_settings({}, stats_half_life_s=half_life_s)
    better = {"a": 2, "b": 0}
    crossed, now = None, NOW
    for r in range(160):
        if r == 80:
            better = {"a": 0, "b": 2}
        events = []
        for ad, applies in better.items():
            events += events_of(ad, now, impressions=20, views=5, applies=applies)
        send(fake_store, settings, events, now)
        run_rollup(fake_store, settings, now)
        if r >= 80 and crossed is None:
            a = ad_report(fake_store, settings, "a", now)["posterior"]["mean"]
            b = ad_report(fake_store, settings, "b", now)["posterior"]["mean"]
            crossed = r - 79 if b > a else None
        now += 10.0
    if within is not None:
        assert crossed is not None and crossed <= within
    if beyond is not None:
        assert crossed is None or crossed > beyond


def test_impressions_far_down_the_feed_count_as_less_exposure(fake_store):
    settings = load_settings({}, position_bias_exponent=0.5)
    events = [Event(f"p{p}", "ad1", "impression", NOW, position=p) for p in (1, 4, 16)]
    events.append(Event("p0", "ad1", "impression", NOW))      # no position: counts fully
    send(fake_store, settings, events, NOW)
    run_rollup(fake_store, settings, NOW)
    report = ad_report(fake_store, settings, "ad1", NOW)
    assert report["counters"]["impressions"] == 4
    assert report["evidence"]["exposure"] == pytest.approx(1 + 0.5 + 0.25 + 1)


def test_only_a_real_recent_feed_earns_its_strategy_one_credit(fake_store, paris_settings, rng):
    """Credit needs a feed id the service signed, an apply within EVENT_MAX_AGE_S of the
    feed, and counts once per feed however many applies name it."""
    settings = paris_settings
    cell = geo.encode(*PARIS, settings.geohash_precision)
    secret = fake_store.feed_id_secret()
    genuine = make_feed_id(NOW - 60, cell, "newest", rng, secret)
    old = make_feed_id(NOW - settings.event_max_age_s - 60, cell, "newest", rng, secret)
    forged = make_feed_id(NOW - 60, cell, "newest", rng, b"a guess")
    applies = [Event(f"x{i}", f"ad{i}", "apply", NOW, feed_id=f)
               for i, f in enumerate([genuine, genuine, old, forged, forged])]
    send(fake_store, settings, applies, NOW)
    report = run_rollup(fake_store, settings, NOW)
    assert report["counted"] == 5                              # every apply counts for its ad
    credit = fake_store.strategy_stats([cell, GLOBAL_CELL], 12).values[:, 6 + 2]
    assert credit.tolist() == pytest.approx([1.0, 1.0], abs=1e-3)


def test_unreadable_entries_are_acknowledged_and_the_rest_of_their_block_counted(fake_store):
    settings = load_settings({})
    send(fake_store, settings, events_of("a", NOW, impressions=3, views=1), NOW)
    for garbage in (b"not json", b'{"ad": "a", "type": "view"}',             # no ts
                    b'{"ad": "a", "type": "view", "ts": -5}', b'["a list"]'):
        fake_store.r.xadd(Keys.events, {"e": garbage})
    report = run_rollup(fake_store, settings, NOW)
    assert report["counted"] == 4
    assert fake_store.ad_stats(["a"]) == {**dict.fromkeys(STAT_FIELDS, [0]),
                                           "impressions": [3], "views": [1]}
    assert fake_store.backlog()["pending"] == 0 and fake_store.backlog()["lag"] == 0
