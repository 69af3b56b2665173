"""pipeline.reports.evaluate, through `flask --app webapp evaluate`: the served log joined with
the events on fakeredis, on simulated logs whose true values are known. (The command's own
options and table: tests/unit/webapp/test_cli.py.)"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest
from flask import Flask

from bandit import ips, logged_value, mean_estimate, snips
from config import Settings
from pipeline.reports.evaluate import evaluate
from store import Store
from tests.conftest import NOW
from tests.support.served_log import (
    SINCE,
    UNTIL,
    add_events,
    add_served,
    event,
    feed_id,
    old_event,
    run_json,
    served,
    small_log,
)
from webapp import create_app

STRATEGY_NAMES = ("thompson", "popular", "newest", "nearest")
CELLS = {"u33dc0": [0.55, 0.15, 0.15, 0.15], "u33dc1": [0.15, 0.15, 0.15, 0.55]}
RATES = np.array([0.30, 0.45, 0.20, 0.35])    # feeds with an apply, whatever the cell


@pytest.fixture
def app(settings: Settings, fake_store: Store) -> Flask:
    app = create_app(settings)
    app.extensions["runtime"].__dict__["store"] = fake_store
    app.extensions["runtime"].now = lambda: NOW
    return app


@dataclass(frozen=True)
class Simulated:
    strategy: np.ndarray     # index into STRATEGY_NAMES
    propensity: np.ndarray
    reward: np.ndarray       # applies within the attribution window
    policy_value: float


def simulate_log(store: Store, n: int, seed: int, attribution_s: float) -> Simulated:
    """``n`` feeds over [SINCE, UNTIL] in two cells with their own strategy probabilities,
    a Bernoulli apply at the strategy's rate reaching the stream within the attribution
    window; plus what must not count: impressions, late applies, applies naming feeds
    outside the range or no feed at all."""
    rng = np.random.default_rng(seed)
    cells = list(CELLS)
    probs = np.array(list(CELLS.values()))
    ts = np.sort(rng.uniform(SINCE, UNTIL, n))
    cell = rng.integers(len(cells), size=n)
    strategy = (rng.random(n)[:, None] > np.cumsum(probs[cell], axis=1)).sum(axis=1)
    propensity = probs[cell, strategy]
    reward = (rng.random(n) < RATES[strategy]).astype(float)
    ids = [feed_id(t, STRATEGY_NAMES[s], rng, cells[c])
           for t, s, c in zip(ts, strategy, cell, strict=True)]
    add_served(store, [served(f, t, STRATEGY_NAMES[s], p, cells[c])
                       for f, t, s, p, c in zip(ids, ts, strategy, propensity, cell, strict=True)])
    delay = rng.uniform(1, attribution_s, n)
    # half the applies in entries as an earlier version wrote them (an event each)
    events = [(old_event if i % 2 else event)(f, t + d)
              for i, (f, t, d, r) in enumerate(zip(ids, ts, delay, reward, strict=True)) if r]
    events += [event(f, t + 5, "impression") for f, t in zip(ids, ts, strict=True)]
    events += [event(f, t + attribution_s + 60) for f, t in zip(ids[::10], ts[::10], strict=True)]
    before = SINCE - 600
    events += [event(feed_id(before, "thompson", rng), before + 60) for _ in range(20)]
    events += [event(None, t + 60) for t in ts[::20]]
    add_events(store, events)
    return Simulated(strategy, propensity, reward,
                     float((probs.mean(axis=0) * RATES).sum()))


def test_the_estimates_contain_the_true_values_and_count_every_feed(app, fake_store):
    sim = simulate_log(fake_store, 4_000, seed=3, attribution_s=7200)
    report = run_json(app, "--since", repr(SINCE), "--until", repr(UNTIL),
                      "--attribution-s", "7200")
    assert report["feeds"] == 4_000
    assert report["applies"] == int(sim.reward.sum())
    assert report["skipped"] == 0
    assert list(report["strategies"]) == list(STRATEGY_NAMES)
    for code, name in enumerate(STRATEGY_NAMES):
        got = report["strategies"][name]
        assert got["feeds"] == int((sim.strategy == code).sum())
        for estimator in ("logged", "ips", "snips"):
            e = got[estimator]
            assert e["low"] <= RATES[code] <= e["high"], (name, estimator, e)
    assert report["policy"]["low"] <= sim.policy_value <= report["policy"]["high"]


def test_the_report_is_the_estimators_on_the_joined_log(app, fake_store):
    sim = simulate_log(fake_store, 1_500, seed=5, attribution_s=3600)
    report = run_json(app, "--since", repr(SINCE), "--until", repr(UNTIL),
                      "--attribution-s", "3600")
    for code, name in enumerate(STRATEGY_NAMES):
        expected = {"logged": logged_value(sim.strategy, sim.reward, code),
                    "ips": ips(sim.strategy, sim.reward, sim.propensity, code),
                    "snips": snips(sim.strategy, sim.reward, sim.propensity, code)}
        for estimator, e in expected.items():
            assert report["strategies"][name][estimator] == pytest.approx(
                {"value": e.value, "low": e.low, "high": e.high, "n": e.n}), (name, estimator)
    policy = mean_estimate(sim.reward)
    assert report["policy"]["value"] == pytest.approx(policy.value)


def test_applies_outside_the_window_or_naming_unknown_feeds_are_ignored(app, fake_store, rng):
    small_log(fake_store, rng)
    report = run_json(app, "--since", repr(SINCE), "--until", repr(SINCE + 3600),
                      "--attribution-s", "600")
    assert (report["feeds"], report["applies"], report["skipped"]) == (3, 2, 0)
    thompson, popular = report["strategies"]["thompson"], report["strategies"]["popular"]
    assert (thompson["feeds"], thompson["logged"]["value"]) == (1, 1.0)
    assert (popular["feeds"], popular["logged"]["value"]) == (2, 0.5)
    assert thompson["ips"]["value"] == pytest.approx(1 / 0.5 / 3)
    assert popular["ips"]["value"] == pytest.approx(1 / 0.25 / 3)
    assert popular["snips"]["value"] == pytest.approx(0.5)
    assert thompson["logged"]["high"] is None          # one feed: no finite interval


def test_a_longer_window_credits_the_late_apply(app, fake_store, rng):
    small_log(fake_store, rng)
    report = run_json(app, "--since", repr(SINCE), "--until", repr(SINCE + 3600),
                      "--attribution-s", "601")
    assert report["applies"] == 3
    # the feed's second apply is credited, but a feed earns at most 1: it led to an apply
    assert report["strategies"]["thompson"]["logged"]["value"] == 1.0


def test_unusable_served_entries_are_skipped_and_counted(app, fake_store, rng):
    good = feed_id(SINCE + 10, "thompson", rng)
    add_served(fake_store, [
        served(good, SINCE + 10, "thompson", 0.5),
        served(good, SINCE + 11, "thompson", 0.5),                  # logged twice
        served(feed_id(SINCE + 12, "popular", rng), SINCE + 12, "popular", 0.0),
        served(feed_id(SINCE + 13, "popular", rng), SINCE + 13, "popular", 1.5),
        served(feed_id(SINCE + 14, "popular", rng), SINCE + 14, "magic", 0.5),
        {"feed_id": feed_id(SINCE + 15, "popular", rng), "ts": repr(SINCE + 15)},  # no propensity
    ])
    add_events(fake_store, [event(good, SINCE + 20)])
    report = run_json(app, "--since", repr(SINCE), "--until", repr(UNTIL))
    assert (report["feeds"], report["skipped"], report["applies"]) == (1, 5, 1)
    assert list(report["strategies"]) == ["thompson"]


def test_chunk_boundaries_do_not_change_the_report(fake_store, monkeypatch):
    simulate_log(fake_store, 300, seed=2, attribution_s=3600)
    whole = evaluate(fake_store, SINCE, UNTIL, 3600)
    for method in ("served_between", "events_between"):
        monkeypatch.setattr(fake_store, method,
                            functools.partial(getattr(Store, method), fake_store, chunk=7))
    assert evaluate(fake_store, SINCE, UNTIL, 3600) == whole
    assert whole.feeds == 300


def test_the_report_is_the_same_once_the_logs_are_archived_and_trimmed(fake_store, settings):
    from pipeline.archive import Archive, run_archive
    from pipeline.learning.rollup import run_rollup

    simulate_log(fake_store, 1_500, seed=9, attribution_s=3600)
    before = evaluate(fake_store, SINCE, UNTIL, 3600.0)
    archive = Archive(settings.archive_url)
    assert evaluate(fake_store, SINCE, UNTIL, 3600.0, archive) == before   # nothing archived
    run_rollup(fake_store, settings, UNTIL + 7200)
    trimmed = settings.model_copy(update={"events_retention_s": 0})
    report = run_archive(fake_store, trimmed, UNTIL + 7200)
    assert report["served_rows"] == 1_500 and report["served_trimmed"] == 1_500
    assert report["events_trimmed"] > 0        # the last entry's millisecond stays in Redis
    assert evaluate(fake_store, SINCE, UNTIL, 3600.0).feeds == 0           # Redis alone
    assert evaluate(fake_store, SINCE, UNTIL, 3600.0, archive) == before
