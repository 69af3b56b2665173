"""The simulation's fast mode: its world, its in-process twin of the service (the same
feeds as the pipeline builds and serves), and a small run that must learn."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import geo
from bandit import Evidence, choose, empirical_rates
from bandit.diversity import breaks_rule
from bench import simulate
from bench.sim import fast, world
from bench.sim.fast import Cells, Policy, Traffic, Twin, choose_many, run_fast
from bench.sim.world import WorldSpec, make_world
from config import load_settings
from pipeline.catalogue import AdRecord, upsert_ads
from pipeline.learning.regenerate import Snapshot, build_feeds, prior_spec
from pipeline.serving.cellfeed import CellFeed
from pipeline.serving.feed import FeedRequest, ServingLog, serve_feed
from store import Store, split_card

SMALL = WorldSpec(ads=200)
CROWDED = WorldSpec(ads=200, big_employer_share=0.3)   # one employer posts 30 % of the ads


def test_the_world_follows_from_its_seed_and_has_the_rates_it_claims():
    a, b, c = make_world(SMALL, 3), make_world(SMALL, 3), make_world(SMALL, 4)
    assert np.array_equal(a.value, b.value) and np.array_equal(a.lat, b.lat)
    assert a.ad_ids == b.ad_ids and a.titles == b.titles
    assert not np.array_equal(a.value, c.value)
    big = make_world(WorldSpec(ads=5000), 1)
    examined = big.spec.examine(np.arange(1, 11)).mean()
    assert 0.08 < examined * big.view_rate.mean() < 0.12         # views per impression
    assert 0.015 < examined * big.value.mean() < 0.025            # applies per impression
    assert 0.05 < big.standout.mean() < 0.15
    assert big.value[big.standout].mean() > 2 * big.value[~big.standout].mean()
    lat, lon = big.users(1000, np.random.default_rng(0))
    assert lat.min() > 52.3 and lat.max() < 52.7 and lon.min() > 13.0 and lon.max() < 13.8


def test_a_world_has_the_employers_its_spec_gives():
    w = make_world(WorldSpec(ads=3000, big_employer_share=0.3), 1)
    names, counts = np.unique(w.companies, return_counts=True)
    assert names[counts.argmax()] == "Big Works Group"
    assert 0.27 < counts.max() / len(w) < 0.33
    assert len(np.unique(w.employer)) == len(names)                # one code per company
    plain = make_world(WorldSpec(ads=3000), 1)
    shares = np.sort(np.unique(plain.companies, return_counts=True)[1])[::-1] / 3000
    assert 0.05 < shares[0] < 0.15 and len(shares) > 400            # a few large, many small
    assert np.array_equal(plain.value, make_world(WorldSpec(ads=3000, big_employer_share=0.3),
                                                  1).value)       # employers change no rate


def test_a_tiring_employer_lowers_the_views_of_its_later_ads():
    w = make_world(replace(SMALL, employer_fatigue=0.5), 1)
    one = np.flatnonzero(w.employer == w.employer[0])[:3]
    others = np.flatnonzero(w.employer != w.employer[0])[:3]
    assert np.allclose(w.fatigue(np.array([[*one, *others, -1]])),
                       [[1, 0.5, 0.25, 1, 1, 1, 1]])
    shown = np.broadcast_to(np.array([one[0], one[1], others[0]]), (200_000, 3)).copy()
    acted = w.act(shown, np.random.default_rng(0))
    expected = w.slot_value(shown)
    assert acted.applied.sum() == pytest.approx(expected.sum(), rel=0.03)
    first = w.view_rate[one[1]] * w.spec.examine(np.array([2]))[0]
    assert acted.viewed[:, 1].mean() == pytest.approx(0.5 * first, rel=0.05)


def test_users_act_at_their_rates():
    w = make_world(SMALL, 1)
    shown = np.broadcast_to(np.arange(10), (200_000, 10)).copy()
    shown[:, 9] = -1
    acted = w.act(shown, np.random.default_rng(0))
    expected = w.slot_value(shown)
    assert not acted.viewed[:, 9].any() and expected[:, 9].sum() == 0
    assert acted.applied.sum() == pytest.approx(expected.sum(), rel=0.03)
    assert (acted.applied & ~acted.viewed).sum() == 0


def test_choose_many_is_bandit_choose_row_by_row():
    rng = np.random.default_rng(2)
    probabilities = rng.dirichlet(np.ones(4), size=500)
    u = rng.random(500)
    assert choose_many(probabilities, u).tolist() == [choose(p, x) for p, x
                                                      in zip(probabilities, u, strict=True)]


def snapshot_of(w: world.World, evidence: Evidence, start: float) -> Snapshot:
    """The world's ads as a snapshot: ad i has serial i + 1."""
    return Snapshot(serials=np.arange(1, len(w) + 1, dtype=np.uint64), lat=w.lat,
                    lon=w.lon, expires_at=np.full(len(w), np.inf),
                    created_at=w.created_at(start), categories=np.arange(len(world.CATEGORIES)),
                    groups=w.category, evidence=evidence, employers=w.employer)


def test_the_twin_builds_the_orders_build_feeds_builds():
    """Same evidence, priors, candidates and generator: the same orders, strategy by strategy,
    the employer rule's repairs included (one employer posts 30 % of the ads)."""
    w = make_world(CROWDED, 5)
    settings = load_settings({}, feed_strategies="thompson,popular,newest,nearest,random,egreedy",
                             strategy_floor=0.01)
    lat, lon = w.users(30, np.random.default_rng(1))
    names = sorted(set(geo.encode_many(lat, lon, settings.geohash_precision).tolist()))
    cells = Cells.around(w, names, settings)
    twin = Twin(w, settings, cells, Policy(tuple(settings.feed_strategies)),
                np.random.default_rng(9))
    rng = np.random.default_rng(3)
    exposure = rng.uniform(0, 500, len(w))
    views = rng.binomial(exposure.astype(int), w.view_rate).astype(float)
    applies = rng.binomial(views.astype(int), w.apply_rate).astype(float)
    twin.evidence.values = np.stack([exposure, views, np.zeros(len(w)), applies])
    now = fast.START
    rates = twin.learn_priors(now)
    evidence = twin.current_evidence(now)
    snapshot = snapshot_of(w, evidence, fast.START)
    assert np.allclose(empirical_rates(evidence, snapshot.groups, settings.reward_model,
                                       settings.save_weight, prior_spec(settings)).groups,
                       rates.groups)
    probabilities = np.full((len(names), 6), 1 / 6)
    packed = build_feeds(snapshot, names, probabilities, rates, settings,
                         np.random.default_rng(7), now)
    twin.rng = np.random.default_rng(7)
    twin.build_orders(np.arange(len(names)), now)
    for c, name in enumerate(names):
        feed = CellFeed.unpack(packed[name])
        ids = feed.serials.astype(np.int64) - 1
        assert list(feed.orders) == twin.sources == ["thompson", "random", "egreedy"]
        for s, source in enumerate(twin.sources):
            theirs = ids[feed.orders[source]]
            ours = twin.orders[c, s, :theirs.shape[0], :theirs.shape[1]]
            assert np.array_equal(ours, theirs), (name, source)
            assert (twin.orders[c, s, :, theirs.shape[1]:] == -1).all()
        thompson = feed.orders["thompson"]
        for strategy, key in feed.keys.items():          # what popular and newest sort by
            ours = twin.keys[strategy][c, :thompson.shape[0], :thompson.shape[1]]
            assert np.allclose(ours, key[thompson]), (name, strategy)


@pytest.mark.parametrize("strategy", ["nearest", "newest", "popular", "thompson"])
def test_the_twin_serves_what_serve_feed_serves(fake_store: Store, strategy: str):
    """One strategy and one variant: the pipeline (ads in a store, each cell built on a
    miss, served) and the twin, given the cells' feeds as the pipeline built them, show
    the same ads in the same order: the exact distance filter, a screened strategy's order
    within the screen, and the employer rule (one employer posts 30 % of the ads)."""
    w = make_world(CROWDED, 6)
    settings = load_settings({}, feed_strategies=strategy, feed_variants=1)
    upsert_ads(fake_store, settings, [
        AdRecord(line["ad_id"], line["lat"], line["lon"], line["title"], line["company"],
                 line["category"], "", line["created_at"], None)
        for line in w.ad_lines(fast.START)])
    lat, lon = w.users(40, np.random.default_rng(2))
    names, cell = np.unique(geo.encode_many(lat, lon, settings.geohash_precision),
                            return_inverse=True)
    log = ServingLog(fake_store, settings.served_maxlen, flush_s=None)
    index = {a: i for i, a in enumerate(w.ad_ids)}
    theirs = []
    for i, point in enumerate(zip(lat, lon, strict=True)):
        body = serve_feed(fake_store, settings, FeedRequest(*point, 10, 5.0), fast.START,
                          np.random.default_rng(i), None, log).as_dict()
        theirs.append([index[a["ad_id"]] for a in body["ads"]])
    twin = Twin(w, settings, Cells.around(w, names.tolist(), settings), Policy((strategy,)),
                np.random.default_rng(0))
    for c, name in enumerate(names):                # the feeds the pipeline built
        feed = CellFeed.unpack(fake_store.feed_value(name))
        ids = np.array([index[split_card(v)[0]]
                        for v in fake_store.ad_cards(feed.serials.tolist())])
        order = feed.orders["thompson"][0]
        twin.orders[c, 0, 0, :len(order)] = ids[order]
        for key, values in feed.keys.items():
            twin.keys[key][c, 0, :len(order)] = values[order]
        twin.probabilities[c], twin.generated_at[c] = 1.0, fast.START
    xyz = geo.unit_vectors(lat, lon)
    ours = twin.serve(cell, xyz, w.within(xyz, 5.0), 10, 5.0, fast.START).shown
    for i, row in enumerate(theirs):
        assert ours[i].tolist() == row + [-1] * (10 - len(row)), i
    assert not breaks_rule(np.where(ours >= 0, w.employer[np.maximum(ours, 0)], 0), 2).any()
    big = w.employer[np.array(w.companies) == "Big Works Group"][0]
    assert (w.employer[np.maximum(ours, 0)] == big).sum(axis=1).max() == 2


def test_every_shown_ad_is_within_reach_and_no_policy_beats_the_oracle():
    w = make_world(SMALL, 2)
    settings = load_settings({})
    run = run_fast(w, settings, Traffic(feeds=3000), seed=2)
    oracle = np.array(run.policies["oracle"].expected)
    for name, track in run.policies.items():
        assert (np.array(track.expected) <= oracle + 1e-9).all(), name
    lat, lon = fast.user_points(w, 3000, 2)
    names, cell = np.unique(geo.encode_many(lat, lon, 6), return_inverse=True)
    twin = Twin(w, settings, Cells.around(w, names.tolist(), settings),
                Policy(tuple(settings.feed_strategies)), np.random.default_rng(0))
    xyz = geo.unit_vectors(lat, lon)
    within = w.within(xyz, 5.0)
    shown = twin.serve(cell, xyz, within, 10, 5.0, fast.START).shown
    rows = np.broadcast_to(np.arange(len(shown))[:, None], shown.shape)
    assert within[rows[shown >= 0], shown[shown >= 0]].all()
    for row in shown:
        kept = row[row >= 0]
        assert len(set(kept.tolist())) == len(kept)


def test_a_policys_figures_do_not_depend_on_the_baselines_run_beside_it():
    w = make_world(SMALL, 2)
    settings = load_settings({})
    alone = run_fast(w, settings, Traffic(feeds=600), seed=5, policies=["thompson"])
    beside = run_fast(w, settings, Traffic(feeds=600), seed=5,
                      policies=["random", "greedy", "thompson"])
    assert alone.policies["thompson"].expected == beside.policies["thompson"].expected
    assert alone.policies["oracle"].expected == beside.policies["oracle"].expected


def test_a_small_fast_run_learns_and_writes_its_report(tmp_path: Path):
    """200 ads, 150,000 impressions: Thompson must beat random clearly, approach the oracle,
    and its regret must grow sub-linearly."""
    code = simulate.main(["--fast", "--ads", "200", "--impressions", "150000", "--seed", "3",
                          "--policies", "thompson+strategies,thompson,thompson-per-request,random",
                          "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "simulation.json").read_text())
    rows = {r["policy"]: r for r in result["summary"]}
    for name in ("thompson+strategies", "thompson"):
        assert rows[name]["rate_last"] > 2 * rows["random"]["rate_last"]
        assert rows[name]["rate_last"] <= rows["oracle"]["rate_last"]
        assert rows[name]["of_oracle_last"] > 0.8
        assert rows[name]["regret_slope"] < 1
    assert rows["random"]["regret_slope"] > 0.95
    assert result["regret_ratios"]["precomputed_vs_per_request"] > 0
    markdown = (tmp_path / "simulation.md").read_text()
    assert "| `thompson` |" in markdown and "regret ratio" in markdown
    for plot in ("apply_rate", "regret", "strategies"):
        png = tmp_path / f"simulation_{plot}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert f"({png.name})" in markdown


def test_a_new_ad_voids_the_feeds_of_the_cells_that_may_list_it_as_the_catalogue_does():
    w = make_world(WorldSpec(ads=200, lifetime=1 / 3), 3)
    settings = load_settings({})
    lat, lon = fast.user_points(w, 400, 3)
    names, cell = np.unique(geo.encode_many(lat, lon, 6), return_inverse=True)
    cells = Cells.around(w, names.tolist(), settings)
    run_s = 3600.0
    twin = Twin(w, settings, cells, Policy(tuple(settings.feed_strategies)),
                np.random.default_rng(0), run_s)
    xyz = geo.unit_vectors(lat, lon)
    within = w.within(xyz, 5.0)
    twin.serve(cell, xyz, within, 10, 5.0, fast.START)
    assert (twin.generated_at[np.unique(cell)] == fast.START).all()
    later = fast.START + 30.0                       # well within FEED_TTL_S
    arrived = np.flatnonzero((twin.live_from > fast.START) & (twin.live_from <= later))
    assert len(arrived) > 0
    listing = {c for c, found in enumerate(cells.candidates) if np.isin(found, arrived).any()}
    assert listing and len(listing) < len(cells)
    twin.serve(cell, xyz, within, 10, 5.0, later)
    for c in np.unique(cell).tolist():
        assert twin.generated_at[c] == (later if c in listing else fast.START), c


def test_a_policy_without_the_employer_rule_differs_only_by_the_rule():
    """The service without its employer rule draws the service's random numbers: with the
    rule off for both, the two runs are the same, feed for feed; with it on, they differ."""
    w = make_world(CROWDED, 3)
    pair = [fast.THOMPSON_WITH_STRATEGIES, fast.ANY_EMPLOYER]
    off = run_fast(w, load_settings({}, max_per_employer=0), Traffic(feeds=600), 4, pair)
    assert off.policies[pair[0]].expected == off.policies[pair[1]].expected
    on = run_fast(w, load_settings({}), Traffic(feeds=600), 4, pair)
    assert sum(on.policies[pair[0]].crowded) == 0 < sum(on.policies[pair[1]].crowded)
    assert on.policies[pair[1]].expected == off.policies[pair[1]].expected


def test_two_towns_differ_in_what_sells_and_open_a_new_district_halfway():
    spec = WorldSpec(ads=4000, layout="two-towns", near_km=2.0, new_district_at=0.5)
    w = make_world(spec, 1)
    assert set(np.unique(w.town).tolist()) == {0, 1}
    regions = {t: set(geo.encode_many(w.lat[w.town == t], w.lon[w.town == t], 4).tolist())
               for t in (0, 1)}
    assert not regions[0] & regions[1]                       # each town a region of its own
    engineering = world.CATEGORIES.index("engineering")
    by_town = [w.value[(w.town == t) & (w.category == engineering)].mean() for t in (0, 1)]
    assert by_town[1] > 1.5 * by_town[0]                     # what sells differs
    district = w.arrive == 0.5
    assert 0.1 < district.mean() < 0.2 and np.isinf(w.arrive[~district]).all()
    lat, lon = w.users(2000, np.random.default_rng(0))
    east = [lon[:1000], lon[1000:]]
    far = [np.mean(e > np.where(lat[:len(e)] > 51.2, 12.3731, 13.7373) + 0.025)
           for e in east]
    assert far[0] < 0.01 < 0.15 < far[1]                     # the district from halfway on


def test_distance_matters_in_the_first_town_only():
    w = make_world(WorldSpec(ads=400, layout="two-towns", near_km=2.0), 1)
    first, second = np.flatnonzero(w.town == 0)[:1], np.flatnonzero(w.town == 1)[:1]
    shown = np.array([[first[0], second[0]]])
    near = geo.unit_vectors(*[np.array([v]) for v in (w.lat[first[0]], w.lon[first[0]])])
    far_lat, far_lon = w.lat[first[0]] + 4 / 111.2, w.lon[first[0]]
    far = geo.unit_vectors(np.array([far_lat]), np.array([far_lon]))
    assert w.nearness(shown, near)[0, 0] == pytest.approx(1.0, abs=1e-3)
    assert w.nearness(shown, far)[0, 0] == pytest.approx(np.exp(-2.0), rel=0.01)
    assert w.nearness(shown, far)[0, 1] == 1.0


def test_the_twin_pools_its_strategy_sums_into_regions_as_the_service_does():
    w = make_world(WorldSpec(ads=300, layout="two-towns"), 2)
    settings = load_settings({})
    run = run_fast(w, settings, Traffic(feeds=1200), 3, [fast.THOMPSON_WITH_STRATEGIES])
    assert run.cells > 2
    lat, lon = fast.user_points(w, 1200, 3)
    names = np.unique(geo.encode_many(lat, lon, settings.geohash_precision)).tolist()
    twin = Twin(w, settings, Cells.around(w, names, settings), Policy(()),
                np.random.default_rng(0))
    assert twin.regions == 2 and set(twin.region_of.tolist()) == {0, 1}
    assert twin.ad_region_names.tolist() == sorted(set(geo.encode_many(w.lat, w.lon, 4)))


def test_the_counterfactual_prices_each_feed_without_changing_the_run():
    """A counterfactual run serves the very feeds a plain one does; it prices each feed
    under every strategy, weighed by the pooled and by the unpooled probabilities (the same
    without regions), and the pooled price matches what was served on average."""
    w = make_world(WorldSpec(ads=300, layout="two-towns"), 2)
    name = fast.THOMPSON_WITH_STRATEGIES
    for precision in (4, 0):
        settings = load_settings({}, region_precision=precision)
        plain = run_fast(w, settings, Traffic(feeds=2000), 3, [name])
        priced = run_fast(w, settings, Traffic(feeds=2000), 3, [name], counterfactual=True)
        assert plain.policies[name].expected == priced.policies[name].expected
        pooled = np.concatenate(priced.policies[name].feed_pooled)
        unpooled = np.concatenate(priced.policies[name].feed_unpooled)
        served = np.concatenate(priced.policies[name].feed_value)
        assert len(pooled) == len(served) == 2000
        assert pooled.sum() == pytest.approx(served.sum(), rel=0.05)
        if not precision:
            assert np.allclose(pooled, unpooled)
