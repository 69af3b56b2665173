"""pipeline.reports.adstats on a fakeredis store: what the service knows of one ad (its
counters, evidence and posterior), and the ads with the best posterior means."""
from __future__ import annotations

import pytest

from pipeline.learning.rollup import run_rollup
from pipeline.reports.adstats import ad_report, top_ads
from tests.conftest import NOW
from tests.support.builders import catalogue, events_of, send


def test_a_report_holds_the_ads_counters_evidence_and_posterior(fake_store, settings):
    assert ad_report(fake_store, settings, "never", NOW) is None    # never heard of
    send(fake_store, settings, events_of("ad-1", NOW, impressions=50, views=10, applies=2),
         NOW)
    run_rollup(fake_store, settings, NOW)
    report = ad_report(fake_store, settings, "ad-1", NOW)
    assert report["counters"] == {"impressions": 50, "views": 10, "saves": 0, "applies": 2,
                                  "hides": 0}
    assert report["evidence"]["exposure"] == pytest.approx(50)     # no positions: each counts 1
    assert report["posterior"]["model"] == settings.reward_model
    assert report["posterior"]["mean"] > settings.prior_mean      # 2 in 50 beats the prior's 2 %


def test_top_ads_are_the_ads_shown_best_first(fake_store, settings):
    send(fake_store, settings,
         events_of("fair", NOW, impressions=100, views=10, applies=1)
         + events_of("good", NOW, impressions=100, views=30, applies=12), NOW)
    catalogue(fake_store, ["unseen"])
    run_rollup(fake_store, settings, NOW)
    top = top_ads(fake_store, settings, NOW)
    assert [a["ad_id"] for a in top] == ["good", "fair"]           # never shown: not listed
    assert (top[0]["impressions"], top[0]["applies"]) == (100, 12)
    assert top[0]["posterior_mean"] > top[1]["posterior_mean"]
    assert [a["ad_id"] for a in top_ads(fake_store, settings, NOW, n=1)] == ["good"]
