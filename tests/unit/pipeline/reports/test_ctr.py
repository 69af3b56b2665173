"""Daily CTR read back from what the real ingest and rollup wrote, on fakeredis: every day of
the range, overall and per strategy, with Wilson intervals."""
from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

import numpy as np
import pytest

from bandit import wilson_interval
from config import Settings
from pipeline.learning.ingest import Event, accept_batch, roll_in
from pipeline.learning.rollup import run_rollup
from pipeline.reports.ctr import DailyCtr, RateInterval, daily_ctr, days_between, utc_today
from pipeline.serving.feed import make_feed_id
from store import Keys, Store
from tests.conftest import NOW
from tests.support.builders import catalogue

TODAY = date(2027, 1, 15)                    # NOW is 2027-01-15T08:00:00Z
_ids = itertools.count()


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def events(ts: float, feed_id: str | None = None, **counts: int) -> list[Event]:
    """``counts`` events of each type (impression=3, view=1, ...) at ``ts``."""
    return [Event(f"e{next(_ids)}", f"ad{i % 7}", kind, ts, "u1", feed_id, 1)
            for kind, n in counts.items() for i in range(n)]


def rolled_up(store: Store, settings: Settings, batch: list[Event],
              now: float = NOW + 3600) -> None:
    """Accept, roll in and roll up, as the web, the ingest task and the rollup do."""
    catalogue(store, (e.ad_id for e in batch))
    roll_in(store, accept_batch(store, settings, batch, now).batch_id)
    run_rollup(store, settings, now)


def feed_of(store: Store, strategy: str, served_at: float) -> str:
    return make_feed_id(served_at, "u33dc0", strategy, np.random.default_rng(7),
                        store.feed_id_secret())


def counts(report: DailyCtr) -> dict[str, tuple[int, int, int, int]]:
    rows = dict(zip(report.days, report.rows, strict=True), total=report.totals)
    return {d: (r.impressions, r.views, r.saves, r.applies) for d, r in rows.items()}


@pytest.fixture
def counted(fake_store: Store, settings: Settings) -> Store:
    """Two days of events, a quiet day between, and feeds of two strategies on the last."""
    popular = feed_of(fake_store, "popular", NOW - 3600)
    thompson = feed_of(fake_store, "thompson", NOW - 3600)
    stale = feed_of(fake_store, "popular", NOW - 3 * 86_400)   # beyond EVENT_MAX_AGE_S
    batch = (events(at("2027-01-12T12:00:00"), impression=200, view=20, save=4, apply=6)
             + events(at("2027-01-15T07:30:00"), popular, impression=50, view=10, apply=2)
             + events(at("2027-01-15T07:40:00"), thompson, impression=20, save=1, apply=1)
             + events(at("2027-01-15T07:50:00"), stale, impression=5, view=1)
             + events(at("2027-01-15T07:55:00"), impression=30, hide=2))
    rolled_up(fake_store, settings, batch)
    return fake_store


def test_every_day_of_the_range_reads_what_the_rollup_counted(counted):
    report = daily_ctr(counted, date(2027, 1, 11), TODAY)
    assert report.days == ("2027-01-11", "2027-01-12", "2027-01-13", "2027-01-14",
                           "2027-01-15")
    assert counts(report) == {"2027-01-11": (0, 0, 0, 0), "2027-01-12": (200, 20, 4, 6),
                              "2027-01-13": (0, 0, 0, 0), "2027-01-14": (0, 0, 0, 0),
                              "2027-01-15": (105, 11, 1, 3), "total": (305, 31, 5, 9)}
    assert (report.start, report.end, report.strategy) == (date(2027, 1, 11), TODAY, None)


def test_a_strategy_counts_only_the_events_naming_a_feed_it_served_in_time(counted):
    popular = daily_ctr(counted, date(2027, 1, 14), TODAY, "popular")
    assert counts(popular) == {"2027-01-14": (0, 0, 0, 0), "2027-01-15": (50, 10, 0, 2),
                               "total": (50, 10, 0, 2)}
    thompson = daily_ctr(counted, TODAY, TODAY, "thompson")
    assert counts(thompson)["total"] == (20, 0, 1, 1)
    assert counts(daily_ctr(counted, TODAY, TODAY, "newest"))["total"] == (0, 0, 0, 0)
    assert popular.strategy == "popular"


def test_days_are_utc_days_of_the_events_own_times(fake_store, settings):
    rolled_up(fake_store, settings,
              events(at("2027-01-13T23:59:59.999"), impression=2)
              + events(at("2027-01-14T00:00:00"), impression=3))
    assert counts(daily_ctr(fake_store, date(2027, 1, 13), date(2027, 1, 14))) == {
        "2027-01-13": (2, 0, 0, 0), "2027-01-14": (3, 0, 0, 0), "total": (5, 0, 0, 0)}


def test_each_rate_is_its_wilson_interval_and_none_without_a_denominator(counted):
    report = daily_ctr(counted, date(2027, 1, 12), date(2027, 1, 13))
    day, quiet = report.rows
    expected = {"view_rate": (20, 200), "save_rate": (4, 200), "apply_rate": (6, 200),
                "apply_per_view": (6, 20)}
    for name, (k, n) in expected.items():
        p = wilson_interval(k, n)
        near = {"abs": 5e-7}      # the report rounds to 6 decimals
        assert getattr(day, name) == RateInterval(pytest.approx(k / n, **near),
                                          pytest.approx(float(p.low), **near),
                                          pytest.approx(float(p.high), **near))
        assert getattr(quiet, name) == RateInterval(None, 0.0, 1.0)
    assert report.totals.apply_per_view.rate == pytest.approx(0.3)
    assert day.view_rate.low == pytest.approx(0.0657, abs=1e-4)       # 20 / 200: 6.57 %
    assert day.view_rate.high == pytest.approx(0.1494, abs=1e-4)      # to 14.94 %


def test_a_day_with_more_successes_than_trials_caps_the_rate_at_one(fake_store):
    fake_store.r.hset(Keys.ctr("2027-01-14"), mapping={"views": 3, "applies": 4})
    row = daily_ctr(fake_store, date(2027, 1, 14), date(2027, 1, 14)).rows[0]
    assert (row.views, row.applies) == (3, 4)
    assert row.apply_per_view.rate == 1.0 and row.apply_per_view.high == 1.0
    assert row.apply_per_view.low == pytest.approx(float(wilson_interval(3, 3).low))
    assert row.apply_rate == RateInterval(None, 0.0, 1.0)


def test_the_report_as_json_names_the_range_and_every_figure(counted):
    body = daily_ctr(counted, TODAY, TODAY, "popular").as_dict()
    assert (body["from"], body["to"], body["strategy"], body["level"]) == (
        "2027-01-15", "2027-01-15", "popular", 0.95)
    assert body["days"][0]["day"] == "2027-01-15"
    assert set(body["days"][0]) == {"day", "source", "impressions", "views", "saves",
                                    "applies", "view_rate", "save_rate", "apply_rate",
                                    "apply_per_view"}
    assert body["days"][0]["source"] == "redis"
    assert body["days"][0]["apply_rate"] == {"rate": 0.04, "low": pytest.approx(0.011, abs=1e-3),
                                             "high": pytest.approx(0.1346, abs=1e-3)}
    assert set(body["totals"]) == set(body["days"][0]) - {"day", "source"}


def test_a_range_that_ends_before_it_starts_is_refused(fake_store):
    with pytest.raises(ValueError):
        daily_ctr(fake_store, TODAY, date(2027, 1, 14))


def test_today_is_the_utc_day_and_ranges_include_both_ends():
    assert utc_today(NOW) == TODAY
    assert utc_today(at("2027-01-15T23:59:59")) == TODAY
    assert days_between(TODAY, TODAY) == ("2027-01-15",)
    assert len(days_between(date(2027, 1, 1), date(2027, 4, 2))) == 92
