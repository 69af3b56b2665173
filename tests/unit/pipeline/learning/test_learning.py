"""What the bandit learns, through the service's own code on a fakeredis store: the prior a
new ad starts from, how fast the ranking follows a changing market, position-weighted
exposure, and the strategy bandit choosing the strategy whose feeds people apply from."""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

import geo
from bandit import AdPriors, Evidence, PriorSpec, ad_posterior, empirical_rates
from config import load_settings
from devtools.demo import demo_ads
from pipeline.catalogue import AdRecord, upsert_ads
from pipeline.learning.ingest import Event, accept_batch, roll_in
from pipeline.learning.regenerate import build_one_cell, run_regenerate
from pipeline.learning.rollup import run_rollup
from pipeline.reports.adstats import ad_report
from pipeline.serving.cellfeed import CellFeed
from pipeline.serving.feed import FeedRequest, ServingLog, make_feed_id, serve_feed
from store import GLOBAL_CELL, Keys, Store
from tests.conftest import NOW
from tests.support.builders import ads_around, catalogue

PARIS = (48.8566, 2.3522)
_ids = itertools.count()


def send(store: Store, settings, events: list[Event], now: float) -> None:
    """Accept and roll in a batch, as the web and the ingest task do (the ads the events
    name put in the catalogue first, where they are not yet)."""
    catalogue(store, (e.ad_id for e in events))
    accepted = accept_batch(store, settings, events, now)
    roll_in(store, accepted.batch_id)


def events_of(ad_id: str, now: float, impressions: int = 0, views: int = 0, applies: int = 0,
              **extra) -> list[Event]:
    out = []
    for kind, n in (("impression", impressions), ("view", views), ("apply", applies)):
        out += [Event(f"e{next(_ids)}", ad_id, kind, now, **extra) for _ in range(n)]
    return out


def thompson_ranks_of_last(evidence: Evidence, priors: AdPriors,
                           rng: np.random.Generator, draws: int = 4000) -> np.ndarray:
    """How many ads outrank the last one, in each of ``draws`` Thompson draws."""
    post = ad_posterior(evidence, priors, "funnel", 0.25)
    scores = post.sample(draws, rng)
    return (scores > scores[-1]).sum(axis=0)


def test_a_fresh_ad_neither_floods_the_top_nor_is_buried(rng):
    """200 established ads (about 2 % applies per impression, the best near 9 %) and one
    with no evidence. From its category's rate it comes first in about 1 % of the feeds
    (Beta(1, 1) would put it first in 9 of 10) and in the top 20 about as often as an
    average ad (about 10 %)."""
    n = 200
    view_rate, apply_rate = rng.beta(4, 36, n), rng.beta(2, 8, n)
    exposure = np.full(n, 3000.0)
    views = np.round(exposure * view_rate)
    evidence = Evidence(np.append(exposure, 0), np.append(views, 0), np.zeros(n + 1),
                        np.append(np.round(views * apply_rate), 0))
    groups = np.zeros(n + 1, dtype=int)
    rates = empirical_rates(evidence, groups, "funnel", 0.25, PriorSpec())
    rank = thompson_ranks_of_last(evidence, rates.for_ads(groups), rng)
    assert (rank == 0).mean() < 0.05                    # does not flood the top
    assert 0.05 < (rank < 20).mean() < 0.3              # is not buried either
    assert 0.3 * n < np.median(rank) < 0.8 * n
    # the same catalogue with Beta(1, 1) on P(apply | impression): the new ad floods the top
    flat = ad_posterior(evidence, AdPriors(np.full((n + 1, 1), 0.5), np.full((n + 1, 1), 2.0)),
                        "direct", 0.25).sample(4000, rng)
    assert ((flat > flat[-1]).sum(axis=0) == 0).mean() > 0.8


def in_category(ads: list, category: str) -> list:
    return [replace(a, category=category) for a in ads]


def test_a_new_ad_starts_from_the_rate_of_its_category(fake_store, rng):
    """100 care ads at 8 % and 100 logistics ads at 1 % (applies per impression, 200
    impressions each, written as the rollup would): a new ad of each starts near its
    category's rate, one of a category never seen near the rate of all ads; each with the
    prior strength the regeneration learnt. (A weak configured prior, PRIOR_STRENGTH 5, so
    that this much evidence outweighs it.)"""
    settings = load_settings({}, reward_model="direct", prior_strength=5.0)
    upsert_ads(fake_store, settings,
               in_category(ads_around(*PARIS, 100, 1.0, rng, prefix="care-"), "care")
               + in_category(ads_around(*PARIS, 100, 1.0, rng, prefix="log-"), "logistics"))
    fake_store.r.hset(Keys.decayed, mapping={
        **{f"care-{i}": f"{NOW!r} 200 0 0 16" for i in range(100)},
        **{f"log-{i}": f"{NOW!r} 200 0 0 2" for i in range(100)}})
    fake_store.mark_active({geo.encode(*PARIS, settings.geohash_precision): NOW})
    run_regenerate(fake_store, settings, NOW, rng)             # learns the category priors
    new = ads_around(*PARIS, 1, 1.0, rng, prefix="new-")[0]
    upsert_ads(fake_store, settings, [replace(new, ad_id=f"new-{c}", category=c)
                                      for c in ("care", "logistics", "unheard-of")])
    care, logistics, unknown = (ad_report(fake_store, settings, f"new-{c}", NOW)["posterior"]
                                for c in ("care", "logistics", "unheard-of"))
    assert care["mean"] == pytest.approx(0.08, abs=0.01)
    assert logistics["mean"] == pytest.approx(0.01, abs=0.005)
    assert unknown["mean"] == pytest.approx(0.045, abs=0.01)   # every category together
    stage = care["stages"][0]
    assert stage["alpha"] + stage["beta"] == pytest.approx(stage["prior_strength"])
    assert stage["prior_strength"] != settings.prior_strength   # learnt, not the setting
    for report in (care, logistics, unknown):   # no last-bit noise (0.19999999999999998)
        numbers = [report["mean"]] + [v for st in report["stages"] for v in st.values()
                                      if isinstance(v, float)]
        assert all(len(repr(v).replace("0.", "", 1).lstrip("0")) <= 13 for v in numbers), \
            numbers


def test_one_ads_applies_do_not_lift_its_whole_category(fake_store, rng):
    """The demo's case: the 3,000 demo ads, a few feeds' worth of impressions and views in
    Berlin, and one Berlin office ad with 24 applies. An office ad in Tokyo that nobody has
    seen keeps its prior mean within 20 % of what it was, and neither Berlin's Thompson nor
    its popular top 10 fills up with office ads."""
    settings = load_settings({}, feed_strategies="thompson,popular", feed_length=100)
    lines = list(demo_ads(3000, NOW))
    upsert_ads(fake_store, settings, [AdRecord(a["ad_id"], a["lat"], a["lon"], a["title"],
                                               a["company"], a["category"], "", a["created_at"],
                                               a.get("expires_at")) for a in lines])
    category = {a["ad_id"]: a["category"] for a in lines}
    berlin = [a["ad_id"] for a in lines if a["ad_id"].startswith("berlin")]
    tokyo_office = next(a for a in category if a.startswith("tokyo") and category[a] == "office")
    star = next(a for a in berlin if category[a] == "office")
    cell = geo.encode(52.52, 13.405, settings.geohash_precision)
    fake_store.mark_active({cell: NOW})
    run_regenerate(fake_store, settings, NOW, rng)
    before = ad_report(fake_store, settings, tokyo_office, NOW)["posterior"]["mean"]
    events = []
    for ad in berlin[:200]:                                   # 20 feeds of 10, seen
        events += events_of(ad, NOW, impressions=1, views=int(rng.random() < 0.1))
    events += events_of(star, NOW, impressions=30, views=24, applies=24)
    send(fake_store, settings, events, NOW)
    run_rollup(fake_store, settings, NOW)
    run_regenerate(fake_store, settings, NOW, rng)
    after = ad_report(fake_store, settings, tokyo_office, NOW)["posterior"]["mean"]
    assert abs(after - before) <= 0.2 * before
    feed = CellFeed.unpack(fake_store.feed_value(cell))
    ids = feed.ad_ids.all()
    for row in feed.orders["thompson"]:     # popular's first screen is the same ads, reordered
        assert sum(category[ids[i]] == "office" for i in row[:10]) <= 5


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


@pytest.fixture
def paris(fake_store, rng):
    settings = load_settings({}, feed_length=400)
    upsert_ads(fake_store, settings, ads_around(*PARIS, 60, 4.0, rng))
    return settings


def serve_many(store: Store, settings, count: int, rng, point=PARIS) -> list[dict]:
    log = ServingLog(store, settings.served_maxlen, flush_s=None)
    out = [serve_feed(store, settings, FeedRequest(*point, 10, 5.0), NOW, rng, None,
                      log).as_dict() for _ in range(count)]
    log.flush()
    return out


def test_the_strategy_bandit_learns_which_strategy_people_apply_from(fake_store, paris, rng):
    settings = paris.model_copy(update={"strategy_cell_min_feeds": 50.0})
    cell = geo.encode(*PARIS, settings.geohash_precision)
    first = serve_many(fake_store, settings, 400, rng)
    by_strategy = {s: [f for f in first if f["strategy"] == s] for s in settings.feed_strategies}
    assert all(len(v) > 60 for v in by_strategy.values())          # uniform before evidence
    assert all(f["propensity"] == pytest.approx(0.25, abs=0.05) for f in first)
    # every feed ordered by "newest" leads to an apply; the others to none
    applies = [Event(f"apply-{f['feed_id']}", f["ads"][0]["ad_id"], "apply", NOW,
                     feed_id=f["feed_id"], position=1) for f in by_strategy["newest"]]
    send(fake_store, settings, applies, NOW)
    report = run_rollup(fake_store, settings, NOW)
    assert report["served_feeds"] == 400 and report["counted"] == len(applies)
    stats = fake_store.strategy_stats([cell, GLOBAL_CELL], 12)
    served = stats.values[:, :6]
    assert served[0].tolist() == served[1].tolist() == pytest.approx(
        [len(by_strategy.get(s, [])) for s in ("thompson", "popular", "newest", "nearest",
                                                "random", "egreedy")])
    assert stats.values[0, 6 + 2] == pytest.approx(len(applies))
    fake_store.mark_active({cell: NOW})
    run_regenerate(fake_store, settings, NOW, rng)
    feed = CellFeed.unpack(fake_store.r.get(Keys.feed(cell)))
    probs = dict(zip(feed.strategies, feed.probabilities.tolist(), strict=True))
    floor = settings.strategy_floor
    assert probs == pytest.approx({"thompson": floor, "popular": floor, "newest": 1 - 3 * floor,
                                   "nearest": floor}, abs=0.01)
    second = serve_many(fake_store, settings, 2000, rng)
    share = sum(f["strategy"] == "newest" for f in second) / len(second)
    assert share == pytest.approx(1 - 3 * floor, abs=0.03)
    assert all(sum(f["strategy"] == s for f in second) > 0 for s in probs)   # all still tried
    assert {(f["strategy"], f["propensity"]) for f in second} == set(probs.items())


@pytest.mark.parametrize("strategy", ["nearest", "newest"])
def test_nearest_orders_by_distance_from_the_user_and_newest_by_age(fake_store, rng, strategy):
    settings = load_settings({}, feed_strategies=(strategy,), feed_length=400)
    ads = ads_around(*PARIS, 40, 4.0, rng)
    ads = [replace(a, created_at=NOW - 1000 * i) for i, a in enumerate(ads)]
    upsert_ads(fake_store, settings, ads)
    created = {a.ad_id: a.created_at for a in ads}
    user = geo.destination_point(*PARIS, 30.0, 0.4)           # not the cell's centre
    for body in serve_many(fake_store, settings, 5, rng, (float(user[0]), float(user[1]))):
        assert body["strategy"] == strategy and body["propensity"] == 1.0
        shown = body["ads"]
        if strategy == "nearest":
            assert [a["distance_km"] for a in shown] == sorted(a["distance_km"] for a in shown)
        else:
            ages = [created[a["ad_id"]] for a in shown]
            assert ages == sorted(ages, reverse=True)


@pytest.mark.parametrize("strategy", ["popular", "newest", "nearest"])
def test_a_screened_strategy_shows_thompsons_screens_in_its_own_order(fake_store, rng,
                                                                       strategy):
    """Whatever the strategy, each screen of 10 holds exactly the ads the Thompson variant
    puts there (after the distance filter): only their order within the screen changes."""
    settings = load_settings({}, feed_strategies=("thompson", strategy), feed_variants=1,
                             strategy_floor=0.0)
    ads = [replace(a, created_at=NOW - 60 * i) for i, a in enumerate(ads_around(*PARIS, 200, 3.0,
                                                                                 rng))]
    upsert_ads(fake_store, settings, ads)
    events = []
    for i, ad in enumerate(ads):                  # posterior means that differ
        events += events_of(ad.ad_id, NOW, impressions=20, views=i % 7, applies=i % 3)
    send(fake_store, settings, events, NOW)
    run_rollup(fake_store, settings, NOW)
    user = geo.destination_point(*PARIS, 45.0, 0.3)
    point = (float(user[0]), float(user[1]))
    log = ServingLog(fake_store, settings.served_maxlen, flush_s=None)
    shown = {}
    while len(shown) < 2:
        body = serve_feed(fake_store, settings, FeedRequest(*point, 30, 5.0), NOW, rng, None,
                          log).as_dict()
        shown.setdefault(body["strategy"], [a["ad_id"] for a in body["ads"]])
    for start in (0, 10, 20):
        assert set(shown[strategy][start:start + 10]) == set(shown["thompson"][start:start + 10])
    assert shown[strategy] != shown["thompson"]


def test_only_a_real_recent_feed_earns_its_strategy_one_credit(fake_store, paris, rng):
    """Credit needs a feed id the service signed, an apply within EVENT_MAX_AGE_S of the
    feed, and counts once per feed however many applies name it."""
    settings = paris
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


def test_a_cell_with_little_data_uses_the_global_posteriors_not_its_own(fake_store, paris, rng):
    """The busy cell's feeds credit popular; the quiet cell's few feeds (below
    STRATEGY_CELL_MIN_FEEDS) credit newest. The quiet cell follows the global answer."""
    settings = paris.model_copy(update={"strategy_cell_min_feeds": 100.0})
    busy = geo.encode(*PARIS, settings.geohash_precision)
    point = geo.destination_point(*PARIS, 90.0, 2.0)
    quiet_point = (float(point[0]), float(point[1]))
    quiet = geo.encode(*quiet_point, settings.geohash_precision)
    feeds = serve_many(fake_store, settings, 300, rng)
    few = serve_many(fake_store, settings, 90, rng, quiet_point)
    applies = [Event(f"a-{f['feed_id']}", f["ads"][0]["ad_id"], "apply", NOW,
                     feed_id=f["feed_id"]) for f in feeds if f["strategy"] == "popular"]
    applies += [Event(f"a-{f['feed_id']}", f["ads"][0]["ad_id"], "apply", NOW,
                      feed_id=f["feed_id"]) for f in few if f["strategy"] == "newest"]
    send(fake_store, settings, applies, NOW)
    run_rollup(fake_store, settings, NOW)
    probs = {c: CellFeed.unpack(build_one_cell(fake_store, c, settings, NOW, rng)).probabilities
             for c in (busy, quiet)}
    assert probs[busy][1] > 0.8 and probs[quiet][1] > 0.8      # popular, for both
    own = paris.model_copy(update={"strategy_cell_min_feeds": 10.0})
    alone = CellFeed.unpack(build_one_cell(fake_store, quiet, own, NOW, rng)).probabilities
    assert alone[2] > 0.8                                      # on its own data: newest


def test_demo_catalogues_of_two_seeds_share_no_ids():
    first = {line["ad_id"] for line in demo_ads(500, NOW, seed=7)}
    second = {line["ad_id"] for line in demo_ads(500, NOW, seed=8)}
    assert len(first) == len(second) == 500 and not first & second
