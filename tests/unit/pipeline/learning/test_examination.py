"""The examination curve through the pipeline: position counts by epoch in the rollup,
folded once an epoch is over, the curve stored and used to weigh exposure."""
from __future__ import annotations

import itertools

import pytest

from config import load_settings
from pipeline.learning.examination import stored_curve
from pipeline.learning.ingest import Event
from pipeline.learning.rollup import run_rollup
from pipeline.reports.adstats import ad_report
from pipeline.serving.feed import make_feed_id
from tests.conftest import NOW
from tests.support.builders import send

_ids = itertools.count()


def shown(ad: str, position: int, feed: str, impressions: int, views: int) -> list[Event]:
    return ([Event(f"e{next(_ids)}", ad, "impression", NOW, feed_id=feed, position=position)
             for _ in range(impressions)]
            + [Event(f"e{next(_ids)}", ad, "view", NOW, feed_id=feed, position=position)
               for _ in range(views)])


def test_an_epoch_is_folded_once_it_is_over_and_the_curve_weighs_later_impressions(
        fake_store, rng):
    """30 ads, each shown at positions 1 and 2 in one generation's feeds and viewed half as
    often at 2: once the next generation has run for the settling time, the rollup folds
    that epoch and learns b(2) near 0.5; an impression at position 2 then counts for about
    half an exposure."""
    settings = load_settings({}, regen_interval_s=60)
    fake_store.record_generation(NOW - 30)                    # the feeds' generation
    secret = fake_store.feed_id_secret()
    feed = make_feed_id(NOW, "u09tvw", "thompson", rng, secret)
    events = []
    for i in range(30):
        events += shown(f"ad{i}", 1, feed, 10, 6) + shown(f"ad{i}", 2, feed, 10, 3)
    send(fake_store, settings, events, NOW)
    report = run_rollup(fake_store, settings, NOW, rng=rng)
    assert report["position_epochs_folded"] == 0              # its generation still serves
    assert stored_curve(fake_store)[1] is None
    fake_store.record_generation(NOW + 30)                    # the next one
    assert run_rollup(fake_store, settings, NOW + 70, rng=rng)["position_epochs_folded"] == 0
    report = run_rollup(fake_store, settings, NOW + 150, rng=rng)   # 2 x 10 s + 30 s settled
    assert report["position_epochs_folded"] == 1
    curve, learnt_at = stored_curve(fake_store)
    assert learnt_at == NOW + 150
    assert curve.curve[1] == pytest.approx(0.5, abs=0.08)
    assert curve.low[1] < curve.curve[1] < curve.high[1]
    assert curve.comparisons > 100
    assert run_rollup(fake_store, settings, NOW + 200, rng=rng)["position_epochs_folded"] == 0
    assert fake_store.position_epochs() == []
    send(fake_store, settings, [Event("late", "new", "impression", NOW + 200, position=2)],
         NOW + 200)
    run_rollup(fake_store, settings, NOW + 200, rng=rng)
    exposure = ad_report(fake_store, settings, "new", NOW + 200)["evidence"]["exposure"]
    assert exposure == pytest.approx(curve.curve[1], abs=1e-3)


def test_the_exponent_setting_overrides_the_learnt_curve(fake_store, rng):
    settings = load_settings({}, position_bias_exponent=1.0)
    fake_store.write_position_curve({"bins": [], "curve": [1.0] * 12, "low": [1.0] * 12,
                                     "high": [1.0] * 12, "comparisons": 5.0, "updated_at": NOW})
    send(fake_store, settings, [Event("p4", "ad", "impression", NOW, position=4)], NOW)
    run_rollup(fake_store, settings, NOW, rng=rng)
    assert ad_report(fake_store, settings, "ad", NOW)["evidence"]["exposure"] == \
        pytest.approx(0.25)
