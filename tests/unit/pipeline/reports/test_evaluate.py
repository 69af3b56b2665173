"""`flask --app webapp evaluate`: the served log joined with the events on fakeredis, on
simulated logs whose true values are known."""
from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest
from flask import Flask

from bandit import ips, logged_value, mean_estimate, snips
from config import Settings
from pipeline.learning.ingest import Event
from pipeline.reports.evaluate import evaluate
from pipeline.serving.feed import make_feed_id
from store import Keys, Store
from tests.conftest import NOW
from webapp import create_app

SINCE, UNTIL = NOW - 6 * 3600, NOW
STRATEGY_NAMES = ("thompson", "popular", "newest", "nearest")
CELLS = {"u33dc0": [0.55, 0.15, 0.15, 0.15], "u33dc1": [0.15, 0.15, 0.15, 0.55]}
RATES = np.array([0.30, 0.45, 0.20, 0.35])    # feeds with an apply, whatever the cell
EVENT_IDS = itertools.count()


@pytest.fixture
def app(settings: Settings, fake_store: Store) -> Flask:
    app = create_app(settings)
    app.extensions["runtime"].__dict__["store"] = fake_store
    app.extensions["runtime"].now = lambda: NOW
    return app


def run(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["evaluate", *args])


def run_json(app: Flask, *args: str) -> dict:
    result = run(app, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def add_served(store: Store, feeds: list[dict[str, str]]) -> None:
    """Served-log entries, each at the time its feed was served."""
    with store.r.pipeline(transaction=False) as p:
        for i, fields in enumerate(sorted(feeds, key=lambda f: float(f["ts"]))):
            p.xadd(Keys.served, fields, id=f"{int(float(fields['ts']) * 1000)}-{i}")
        p.execute()


def add_events(store: Store, events: list[tuple[float, bytes]]) -> None:
    """Events-stream entries, each reaching the stream at its time."""
    with store.r.pipeline(transaction=False) as p:
        for j, (reached, payload) in enumerate(sorted(events, key=lambda e: e[0])):
            p.xadd(Keys.events, {"e": payload}, id=f"{int(reached * 1000)}-{j}")
        p.execute()


def served(feed_id: str, ts: float, strategy: str, propensity: float,
           cell: str = "u33dc0") -> dict[str, str]:
    ts, propensity = float(ts), float(propensity)
    return {"feed_id": feed_id, "ts": repr(ts), "cell": cell, "strategy": strategy,
            "propensity": repr(propensity), "variant": "0", "generated_at": repr(ts - 30),
            "cache": "hit", "user_id": "", "ads": "ad1 ad2 ad3"}


def event(feed_id: str | None, at: float, type_: str = "apply") -> tuple[float, bytes]:
    """An accepted event as it reaches the stream at ``at``."""
    at = float(at)
    return at, Event(f"e{next(EVENT_IDS)}", "ad1", type_, at - 1, "u1", feed_id, 1).encode(at)


def feed_id(ts: float, strategy: str, rng: np.random.Generator, cell: str = "u33dc0") -> str:
    return make_feed_id(ts, cell, strategy, rng, b"test secret")


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
    events = [event(f, t + d) for f, t, d, r in zip(ids, ts, delay, reward, strict=True) if r]
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


def small_log(store: Store, rng: np.random.Generator) -> dict[str, str]:
    """Three feeds in range (a thompson with one apply, two popular: one apply, none) and
    one served before the range; applies that must not count around them."""
    ids = {"a": feed_id(SINCE + 100, "thompson", rng), "b": feed_id(SINCE + 200, "popular", rng),
           "d": feed_id(SINCE + 300, "popular", rng), "old": feed_id(SINCE - 100, "thompson", rng)}
    add_served(store, [served(ids["a"], SINCE + 100, "thompson", 0.5),
                       served(ids["b"], SINCE + 200, "popular", 0.25),
                       served(ids["d"], SINCE + 300, "popular", 0.25),
                       served(ids["old"], SINCE - 100, "thompson", 0.5)])
    add_events(store, [
        event(ids["a"], SINCE + 160),                   # counts
        event(ids["a"], SINCE + 100 + 601),             # after the 600 s window
        event(ids["a"], SINCE + 170, "view"),           # not an apply
        event(ids["b"], SINCE + 200 + 600),             # counts: the window's last moment
        event(ids["old"], SINCE + 10),                  # its feed was served before the range
        event(feed_id(SINCE + 150, "thompson", rng), SINCE + 180),  # a feed never served
        event(None, SINCE + 190),                       # no feed
        (SINCE + 195, b'{"type": "apply", "feed": '),   # unreadable
    ])
    return ids


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


def test_the_table_shows_each_strategy_and_the_totals(app, fake_store, rng):
    small_log(fake_store, rng)
    result = run(app, "--since", repr(SINCE), "--until", repr(SINCE + 3600),
                 "--attribution-s", "600")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == ("served from 2027-01-15T02:00:00Z to 2027-01-15T03:00:00Z; "
                        "applies credited within 600 s of serving")
    assert lines[1].split() == ["strategy", "feeds", "logged", "value", "[95", "%", "CI]",
                                "IPS", "[95", "%", "CI]", "SNIPS", "[95", "%", "CI]"]
    assert lines[2].split()[:2] == ["thompson", "1"]
    assert lines[3].split()[:4] == ["popular", "2", "0.5000", "[-0.4800,"]
    assert lines[-2] == "feeds used: 3 (applies credited: 2, log entries skipped: 0)"
    assert lines[-1].startswith("logging policy: 0.6667 [")
    assert len(lines) == 6


def test_iso_times_and_the_defaults(app, fake_store, settings, rng):
    ids = [feed_id(NOW - 2 * 86_400, "newest", rng), feed_id(NOW - 3600, "nearest", rng)]
    add_served(fake_store, [served(ids[0], NOW - 2 * 86_400, "newest", 0.2),
                            served(ids[1], NOW - 3600, "nearest", 0.2)])
    report = run_json(app)
    assert (report["since"], report["until"]) == (NOW - 86_400, NOW)
    assert report["attribution_s"] == settings.event_max_age_s
    assert report["feeds"] == 1 and list(report["strategies"]) == ["nearest"]
    iso = datetime.fromtimestamp(NOW - 3 * 86_400, tz=UTC).isoformat()
    report = run_json(app, "--since", iso, "--until", "2027-01-15T10:00:00+02:00")
    assert (report["since"], report["until"]) == (NOW - 3 * 86_400, NOW)
    assert report["feeds"] == 2 and list(report["strategies"]) == ["newest", "nearest"]


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


def test_an_empty_range_exits_1_with_a_message(app, fake_store, rng):
    small_log(fake_store, rng)
    result = run(app, "--since", repr(UNTIL), "--until", repr(UNTIL + 3600))
    assert result.exit_code == 1
    assert "no served feeds from 2027-01-15T08:00:00Z to 2027-01-15T09:00:00Z" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args, option", [
    (["--since", "yesterday"], "--since"),
    (["--since", "2027-01-15T00:00:00"], "--since"),           # ISO without a zone
    (["--until", "nan"], "--until"),
    (["--since", repr(NOW), "--until", repr(NOW - 60)], "--since"),
    (["--attribution-s", "-1"], "--attribution-s"),
    (["--format", "xml"], "--format"),
])
def test_bad_options_are_usage_errors(app, args, option):
    result = run(app, *args)
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.stderr and option in result.stderr


def test_chunk_boundaries_do_not_change_the_report(fake_store, monkeypatch):
    simulate_log(fake_store, 300, seed=2, attribution_s=3600)
    whole = evaluate(fake_store, SINCE, UNTIL, 3600)
    for method in ("served_between", "events_between"):
        monkeypatch.setattr(fake_store, method,
                            functools.partial(getattr(Store, method), fake_store, chunk=7))
    assert evaluate(fake_store, SINCE, UNTIL, 3600) == whole
    assert whole.feeds == 300
