"""pipeline.learning.regenerate on a fakeredis store: what a cell feed holds, which cells
are rebuilt and when a build is thrown away, the category prior a new ad starts from, and the
strategy probabilities learnt from the feeds people apply from."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import geo
from bandit import STRATEGIES
from config import Settings, load_settings
from devtools.demo import demo_ads
from pipeline.catalogue import AdRecord, delete_ad, upsert_ads
from pipeline.learning import regenerate as regenerate_module
from pipeline.learning.ingest import Event
from pipeline.learning.regenerate import (
    ad_priors,
    area_snapshot,
    build_feeds,
    build_one_cell,
    cell_probabilities,
    load_snapshot,
    maybe_learn_priors,
    plan_shards,
    priors_of,
    regions_around,
    run_regenerate,
    run_shard,
    shard_areas,
    snapshot_regions,
    split_cells,
    stored_priors,
)
from pipeline.learning.rollup import run_rollup
from pipeline.reports.adstats import ad_report
from pipeline.serving.cellfeed import CellFeed
from store import GLOBAL_CELL, Keys
from tests.conftest import NOW
from tests.support.builders import PARIS, ads_around, events_of, send, serve_many
from tests.support.stored_ads import feed_ad_ids


@pytest.fixture
def settings() -> Settings:
    """Feeds long enough to hold every candidate of these small catalogues."""
    return load_settings({}, feed_length=400)


def test_a_cell_feed_holds_every_ad_within_reach_of_any_point_in_the_cell(
        fake_store, settings, paris, rng):
    cell = geo.encode(*PARIS, settings.geohash_precision)
    feed = CellFeed.unpack(build_one_cell(fake_store, cell, settings, NOW, rng))
    reach = settings.feed_radius_km + geo.cell_half_diagonal_km(cell)
    c_lat, c_lon = geo.decode(cell)
    expected = {a for a, r in paris.items()
                if geo.haversine_km(c_lat, c_lon, r.lat, r.lon) <= reach}
    assert set(feed_ad_ids(fake_store, feed)) == expected   # fewer than FEED_LENGTH: all of them
    assert feed.strategies == settings.feed_strategies
    assert list(feed.orders) == ["thompson"]        # the screened strategies serve from it
    assert feed.orders["thompson"].shape == (settings.feed_variants, len(expected))
    assert set(feed.keys) == {"popular", "newest"}
    assert all(key.shape == (len(expected),) for key in feed.keys.values())


def test_regeneration_rebuilds_active_cells_and_forgets_idle_ones(fake_store, settings, paris, rng):
    active = geo.encode(*PARIS, settings.geohash_precision)
    idle = geo.encode(48.80, 2.30, settings.geohash_precision)
    fake_store.mark_active({active: NOW, idle: NOW - settings.active_cell_ttl_s - 1})
    report = run_regenerate(fake_store, settings, NOW, rng)
    assert report["cells"] == 1 and report["written"] == 1 and report["ads"] == 300
    assert fake_store.r.exists(Keys.feed(active)) and not fake_store.r.exists(Keys.feed(idle))
    assert fake_store.job_status("regenerate")["written"] == "1"


def test_a_catalogue_change_during_regeneration_is_never_written_over(
        fake_store, settings, paris, rng, monkeypatch):
    cell = geo.encode(*PARIS, settings.geohash_precision)
    fake_store.mark_active({cell: NOW})
    victim = next(iter(paris))
    import pipeline.learning.regenerate as regen
    real_build = regen.build_feeds
    calls = []

    def build_then_delete(*args, **kwargs):
        feeds = real_build(*args, **kwargs)
        if not calls:                       # the ad goes while the first build is under way
            delete_ad(fake_store, settings, victim)
        calls.append(1)
        return feeds

    monkeypatch.setattr(regen, "build_feeds", build_then_delete)
    report = run_regenerate(fake_store, settings, NOW, rng)
    assert len(calls) == 2 and report["written"] == 1
    feed = CellFeed.unpack(fake_store.r.get(Keys.feed(cell)))
    assert victim not in feed_ad_ids(fake_store, feed)


def test_thompson_variants_differ_but_share_the_cells_ads(fake_store, settings, paris, rng):
    cell = geo.encode(*PARIS, settings.geohash_precision)
    feed = CellFeed.unpack(build_one_cell(fake_store, cell, settings, NOW, rng))
    orders = {tuple(v[:10]) for v in feed.orders["thompson"]}
    assert len(orders) > 1
    assert feed.orders["thompson"].max() < len(feed)


@pytest.mark.parametrize("strategies, kept, bound", [
    (("thompson",), {"thompson"}, 3 * 10),
    (("thompson", "popular", "newest", "nearest"), {"thompson"}, 3 * 10),
    (("random", "egreedy"), {"random", "egreedy"}, 3 * 10 + 3 * 10),
])
def test_a_cell_feed_is_bounded_by_its_orders(fake_store, rng, strategies, kept, bound):
    settings = load_settings({}, feed_length=10, feed_variants=3, feed_strategies=strategies)
    upsert_ads(fake_store, settings, ads_around(*PARIS, 400, 3.0, rng))
    cell = geo.encode(*PARIS, settings.geohash_precision)
    feed = CellFeed.unpack(build_one_cell(fake_store, cell, settings, NOW, rng))
    assert set(feed.orders) == kept
    for order in feed.orders.values():
        assert order.shape == (3, 10)
        assert all(len(set(row)) == 10 for row in order)       # no ad twice in one order
    assert len(feed) <= bound
    listed = np.unique(np.concatenate([o.ravel() for o in feed.orders.values()]))
    assert len(listed) == len(feed)                             # every packed ad is listed


def test_a_feeds_propensity_carries_no_last_bit_noise(fake_store, settings, paris, rng):
    """The strategy probabilities are stored to 12 decimals, so a feed's propensity reads
    0.24632, not 0.24631999999999998, and is exactly the value serving drew with."""
    from pipeline.learning.regenerate import cell_probabilities
    cells = [geo.encode(*PARIS, settings.geohash_precision)]
    for seed in range(20):
        probabilities = cell_probabilities(fake_store, settings, cells, NOW,
                                           np.random.default_rng(seed))
        assert (np.round(probabilities, 12) == probabilities).all()
        assert all(len(repr(float(p))) <= 16 for p in probabilities.ravel())


def strategy_row(served: dict[str, float], applies: dict[str, float]) -> list[float]:
    """A strategies-hash row: served feeds then applies, per strategy of STRATEGIES."""
    return ([served.get(s, 0.0) for s in STRATEGIES]
            + [applies.get(s, 0.0) for s in STRATEGIES])


@pytest.mark.parametrize("precision", [4, 0])
def test_a_new_cell_starts_from_its_regions_strategy_probabilities(fake_store, precision):
    """Region u09t learnt that newest sorts best, region u0c0 that Thompson does; the world
    as a whole cannot tell them apart. A cell of each with no feeds of its own starts from
    its region's probabilities, and one of a region with no feeds from the global ones;
    without regions (REGION_PRECISION 0) every new cell takes the global ones."""
    settings = load_settings({}, feed_strategies="thompson,newest", strategy_floor=0.02,
                             region_precision=precision)
    even = {"thompson": 1000.0, "newest": 1000.0}
    likes_newest = strategy_row(even, {"thompson": 50.0, "newest": 150.0})
    likes_thompson = strategy_row(even, {"thompson": 150.0, "newest": 50.0})
    fake_store.seed_strategy_stats({
        "u09tvw": likes_newest, "~u09t": likes_newest,
        "u0c000": likes_thompson, "~u0c0": likes_thompson,
        GLOBAL_CELL: strategy_row({"thompson": 2000.0, "newest": 2000.0},
                                  {"thompson": 200.0, "newest": 200.0})}, NOW)
    new = ["u09tvx", "u0c001", "u1aaaa"]
    p = cell_probabilities(fake_store, settings, new, NOW, np.random.default_rng(1))
    newest = settings.feed_strategies.index("newest")
    if precision:
        assert p[0, newest] > 0.95 and p[1, newest] < 0.05
    else:
        assert p[0, newest] == pytest.approx(p[1, newest])
    assert 0.3 < p[2, newest] < 0.7                       # no region evidence: the world's
    own = cell_probabilities(fake_store, settings, ["u09tvw"], NOW, np.random.default_rng(1))
    assert own[0, newest] > 0.95                            # a cell with feeds: its own
    upsert_ads(fake_store, settings, ads_around(*geo.decode("u09tvx"), 20, 1.0,
                                                np.random.default_rng(2)))
    built = CellFeed.unpack(build_one_cell(fake_store, "u09tvx", settings, NOW,
                                           np.random.default_rng(3)))   # a miss, built alone
    assert (built.probabilities_list[newest] > 0.95) is bool(precision)


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


LYON = (45.764, 4.836)   # another region (geohash u05k... against Paris's u09t...)


@pytest.mark.parametrize("precision", [4, 0])
def test_a_new_ad_starts_from_its_categorys_rate_in_its_region(fake_store, rng, precision):
    """Care ads apply at 8 % in Paris and 1 % in Lyon, logistics ads the other way round
    (100 ads each, 400 impressions each). A new care ad in Paris starts near 8 %, one in Lyon
    near 1 %: each region's means, since the regions clearly differ. Without regions
    (REGION_PRECISION 0) both start from the category's rate over both regions, and so does
    a new ad whose region has no ads of its category yet."""
    settings = load_settings({}, reward_model="direct", prior_strength=5.0,
                             region_precision=precision)
    ads, evidence = [], {}
    for city, point, care, logistics in (("par", PARIS, 32, 4), ("lyo", LYON, 4, 32)):
        for category, applies in (("care", care), ("logistics", logistics)):
            made = in_category(ads_around(*point, 100, 1.0, rng, prefix=f"{city}-{category}-"),
                               category)
            ads += made
            evidence |= {a.ad_id: f"{NOW!r} 400 0 0 {applies}" for a in made}
    upsert_ads(fake_store, settings, ads)
    fake_store.r.hset(Keys.decayed, mapping=evidence)
    fake_store.mark_active({geo.encode(*p, settings.geohash_precision): NOW
                            for p in (PARIS, LYON)})
    run_regenerate(fake_store, settings, NOW, rng)             # learns the priors
    new = [replace(ads_around(*point, 1, 1.0, rng)[0], ad_id=f"new-{city}", category="care")
           for city, point in (("par", PARIS), ("lyo", LYON), ("far", (48.0, 2.0)))]
    upsert_ads(fake_store, settings, new)
    par, lyo, far = (ad_report(fake_store, settings, f"new-{c}", NOW)["posterior"]["mean"]
                     for c in ("par", "lyo", "far"))
    if precision:
        assert par == pytest.approx(0.08, abs=0.01) and lyo == pytest.approx(0.01, abs=0.005)
    else:
        assert par == lyo == pytest.approx(0.045, abs=0.01)
    assert far == pytest.approx(0.045, abs=0.01)
    # a cell built on a miss reads its region's priors (and its neighbours') with its ads
    cell = geo.encode(*PARIS, settings.geohash_precision)
    inputs = fake_store.cell_inputs(cell, *PARIS, 3.0, "direct", 12,
                                    regions=regions_around(cell, settings))
    snapshot = area_snapshot(inputs, NOW, settings)
    rates = priors_of(inputs, settings, snapshot.categories,
                      [r for r in snapshot_regions(snapshot, settings)
                       if r in inputs.regional_priors])
    care = [i for i, a in enumerate(inputs.ads.ids) if a.startswith(b"par-care")]
    means = ad_priors(snapshot, rates, settings).means[:, 0]
    assert len(care) > 50 and means[care].mean() == pytest.approx(0.08 if precision else 0.045,
                                                                  abs=0.01)


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
    ids = feed_ad_ids(fake_store, feed)
    for row in feed.orders["thompson"]:     # popular's first screen is the same ads, reordered
        assert sum(category[ids[i]] == "office" for i in row[:10]) <= 5


def test_the_strategy_bandit_learns_which_strategy_people_apply_from(fake_store, paris_settings,
                                                                    rng):
    settings = paris_settings.model_copy(update={"strategy_cell_min_feeds": 50.0})
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


def test_a_cell_with_little_data_uses_the_global_posteriors_not_its_own(fake_store,
                                                                        paris_settings, rng):
    """The busy cell's feeds credit popular; the quiet cell's few feeds (below
    STRATEGY_CELL_MIN_FEEDS) credit newest. The quiet cell follows the global answer."""
    settings = paris_settings.model_copy(update={"strategy_cell_min_feeds": 100.0})
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
    own = paris_settings.model_copy(update={"strategy_cell_min_feeds": 10.0})
    alone = CellFeed.unpack(build_one_cell(fake_store, quiet, own, NOW, rng)).probabilities
    assert alone[2] > 0.8                                      # on its own data: newest


@pytest.mark.parametrize("strategies", [("thompson", "popular", "newest", "nearest"),
                                        ("thompson",)])
def test_feeds_built_together_are_the_ones_built_cell_by_cell(fake_store, rng, strategies):
    """The fast builder (every cell's best at once, ``geo.PointIndex.best_within``) packs
    byte for byte the feeds the cell-by-cell builder packs from the same draws: in a city,
    over the antimeridian and near both poles (ads go as far as Redis's geo index, 85.05
    degrees; cells beyond), with cells that hold more candidates than a feed and cells that
    hold fewer or none."""
    settings = load_settings({}, feed_length=25, feed_variants=4, feed_strategies=strategies)
    places = [PARIS, (0.0, 179.99), (-12.0, -179.995), (84.9, 10.0), (-84.93, -60.0)]
    for i, place in enumerate(places):
        upsert_ads(fake_store, settings,
                   ads_around(*place, int(rng.integers(20, 600)), 12.0, rng, prefix=f"p{i}-"))
    snapshot = load_snapshot(fake_store, settings, NOW)
    spots = [geo.destination_point(lat, lon, rng.uniform(0, 360, 12), rng.uniform(0, 20, 12))
             for lat, lon in places]
    cells = list(dict.fromkeys(geo.encode(float(a), float(o), settings.geohash_precision)
                               for lats, lons in spots for a, o in zip(lats, lons, strict=True)))
    cells += [geo.encode(89.9, 10.0, settings.geohash_precision),
              geo.encode(-89.99, 179.99, settings.geohash_precision)]
    probabilities = np.full((len(cells), len(strategies)), 1 / len(strategies))
    rates = stored_priors(fake_store, settings, snapshot.categories)

    def built(per_cell: bool) -> dict[str, bytes]:
        return build_feeds(snapshot, cells, probabilities, rates, settings,
                           np.random.default_rng(5), NOW, per_cell=per_cell)

    together, one_by_one = built(per_cell=False), built(per_cell=True)
    assert together == one_by_one
    lengths = {CellFeed.unpack(v).orders["thompson"].shape[1] for v in together.values()}
    assert 25 in lengths and min(lengths) < 25       # full feeds and short ones were compared


# ---- a run sharded over workers -------------------------------------------------------------

TOKYO = (35.68, 139.76)


@pytest.fixture
def two_cities(fake_store, rng) -> tuple[Settings, list[str], list[str]]:
    """Ads around Paris and Tokyo, and active cells in both; feeds long enough for every
    candidate. Returns (settings, Paris's cells, Tokyo's cells)."""
    settings = load_settings({}, feed_length=400, regen_shards=2)
    upsert_ads(fake_store, settings, ads_around(*PARIS, 150, 4.0, rng, prefix="paris"))
    upsert_ads(fake_store, settings, ads_around(*TOKYO, 90, 4.0, rng, prefix="tokyo"))
    cells = {}
    for name, place in (("paris", PARIS), ("tokyo", TOKYO)):
        lats, lons = geo.destination_point(np.full(6, place[0]), np.full(6, place[1]),
                                           rng.uniform(0, 360, 6), rng.uniform(0, 3, 6))
        cells[name] = sorted({geo.encode(float(a), float(o), settings.geohash_precision)
                              for a, o in zip(lats, lons, strict=True)})
    fake_store.mark_active({c: NOW for c in cells["paris"] + cells["tokyo"]})
    return settings, cells["paris"], cells["tokyo"]


def test_shards_split_the_cells_by_area_and_each_reads_only_its_own(fake_store, rng,
                                                                      two_cities):
    settings, paris, tokyo = two_cities
    run_id, shards = plan_shards(fake_store, settings, NOW, rng)
    assert shards == [paris, tokyo]             # geohash order keeps neighbours together
    reports = [run_shard(fake_store, settings, run_id, i, cells, NOW, rng)
               for i, cells in enumerate(shards)]
    assert [r["ads"] for r in reports] == [150, 90]
    assert [r["written"] for r in reports] == [len(paris), len(tokyo)]
    assert [r["shards_done"] for r in reports] == [1, 2]


def test_a_shard_reads_and_builds_its_areas_one_after_another(fake_store, rng, two_cities,
                                                              monkeypatch):
    """One shard over both cities, its areas read in batches of at least one cell: Paris
    is read (only Paris's ads) and built, then Tokyo; the feeds are a whole run's and the
    report counts both."""
    settings, paris, tokyo = two_cities
    run_regenerate(fake_store, settings, NOW, rng)
    whole = {c: set(feed_ad_ids(fake_store, CellFeed.unpack(fake_store.feed_value(c))))
             for c in paris + tokyo}
    monkeypatch.setattr(regenerate_module, "AREA_MIN_CELLS", 1)
    reads = []
    ads_within = fake_store.ads_within
    monkeypatch.setattr(fake_store, "ads_within",
                        lambda circles: reads.append(ads_within(circles)) or reads[-1])
    one = settings.model_copy(update={"regen_shards": 1})
    run_id, shards = plan_shards(fake_store, one, NOW + 1, rng)
    report = run_shard(fake_store, one, run_id, 0, shards[0], NOW + 1, rng)
    assert [sorted({i.decode()[:5] for i in r.ads.ids}) for r in reads] == [["paris"],
                                                                           ["tokyo"]]
    assert (report["ads"], report["written"]) == (240, len(paris) + len(tokyo))
    assert {c: set(feed_ad_ids(fake_store, CellFeed.unpack(fake_store.feed_value(c))))
            for c in paris + tokyo} == whole


def test_a_shards_areas_hold_every_ad_within_reach_of_their_cells():
    """Each batch's circles hold every point within FEED_RADIUS_KM of any point of its
    cells (tried at each cell's corners and centre, a touch inside the reach); every cell
    is in one batch; batches are at least the minimum but the last."""
    settings = load_settings({})
    rng = np.random.default_rng(4)
    cells = sorted({geo.encode(float(a), float(o), settings.geohash_precision)
                    for a, o in zip(rng.uniform(40, 60, 300), rng.uniform(-10, 30, 300),
                                    strict=True)}
                   | {geo.encode(48.85 + d, 2.35 + d, 6) for d in rng.uniform(0, 0.1, 200)})
    batches = shard_areas(cells, settings, min_cells=40)
    assert sorted(c for members, _ in batches for c in members) == cells
    assert all(len(members) >= 40 for members, _ in batches[:-1])
    for members, circles in batches:
        for cell in members:
            box = geo.decode_box(cell)
            for lat, lon in [box.centre, (box.lat_min, box.lon_min), (box.lat_max, box.lon_max),
                             (box.lat_min, box.lon_max), (box.lat_max, box.lon_min)]:
                far = geo.destination_point(np.full(16, lat), np.full(16, lon),
                                            np.linspace(0, 360, 16, endpoint=False),
                                            np.full(16, settings.feed_radius_km * 0.999))
                for p_lat, p_lon in zip(*far, strict=True):
                    assert any(geo.haversine_km(c_lat, c_lon, p_lat, p_lon) <= radius
                               for c_lat, c_lon, radius in circles)


def test_a_shards_feeds_hold_what_a_whole_run_would(fake_store, rng, two_cities):
    settings, paris, tokyo = two_cities
    run_regenerate(fake_store, settings, NOW, rng)
    whole = {c: set(feed_ad_ids(fake_store, CellFeed.unpack(fake_store.feed_value(c))))
             for c in paris + tokyo}
    run_id, shards = plan_shards(fake_store, settings, NOW + 1, rng)
    for i, cells in enumerate(shards):
        run_shard(fake_store, settings, run_id, i, cells, NOW + 1, rng)
    for cell, ads in whole.items():
        feed = CellFeed.unpack(fake_store.feed_value(cell))
        assert feed.generated_at == NOW + 1
        assert set(feed_ad_ids(fake_store, feed)) == ads, cell


def test_the_shard_that_completes_a_run_records_it_once(fake_store, rng, two_cities):
    settings, paris, tokyo = two_cities
    run_id, shards = plan_shards(fake_store, settings, NOW, rng)
    run_shard(fake_store, settings, run_id, 0, shards[0], NOW, rng)
    assert fake_store.job_status("regenerate") == {}           # not complete yet
    run_shard(fake_store, settings, run_id, 0, shards[0], NOW, rng)   # redelivered: again
    run = fake_store.regen_run()
    assert (run["run_id"], run["done"], run["shards"]) == (run_id, 1, 2)
    last = run_shard(fake_store, settings, run_id, 1, shards[1], NOW, rng)
    assert (last["shards_done"], last["shards"]) == (2, 2)
    status = fake_store.job_status("regenerate")
    assert status["runs"] == "1" and status["shards"] == "2"
    assert status["written"] == str(len(paris) + len(tokyo)) and status["ads"] == "240"
    assert set(fake_store.regen_run(run_id)["reports"]) == {0, 1}


def test_a_sharded_deployment_relearns_the_priors_only_when_they_are_old(fake_store,
                                                                         two_cities):
    settings, _, _ = two_cities
    assert maybe_learn_priors(fake_store, settings, NOW) is True
    assert fake_store.job_status("priors")["ads"] == "240"
    assert maybe_learn_priors(fake_store, settings, NOW + settings.priors_max_age_s - 1) is False
    assert maybe_learn_priors(fake_store, settings, NOW + settings.priors_max_age_s) is True


def test_shards_are_cut_between_areas_and_stay_near_even():
    """Three towns of 40, 25 and 35 cells in two shards: the cut falls between towns (no
    area read twice), the one nearest an even split; every cell is in exactly one shard."""
    towns = [(48.85, 2.35, 40), (50.85, 4.35, 25), (52.37, 4.90, 35)]
    cells: list[str] = []
    for lat, lon, n in towns:
        rows = int(np.ceil(np.sqrt(n)))
        cells += [geo.encode(lat + 0.012 * (i // rows), lon + 0.012 * (i % rows), 6)
                  for i in range(n)]
    cells = sorted(set(cells))
    assert len(cells) == 100                                    # one cell each
    shards = split_cells(cells, 2)
    assert sorted(c for s in shards for c in s) == cells
    towns_of = [{min(range(3), key=lambda t: geo.haversine_km(*geo.decode(c), *towns[t][:2]))
                 for c in shard} for shard in shards]
    assert not towns_of[0] & towns_of[1]                        # no town split
    assert abs(len(shards[0]) - len(shards[1])) <= 0.4 * len(cells)
    assert [len(s) for s in split_cells(cells, 1)] == [len(cells)]
    assert sum(map(len, split_cells(cells, 7))) == len(cells)


def test_a_shard_run_again_after_its_run_completed_records_nothing_more(fake_store, rng,
                                                                        two_cities):
    settings, _, _ = two_cities
    run_id, shards = plan_shards(fake_store, settings, NOW, rng)
    for i, cells in enumerate(shards):
        run_shard(fake_store, settings, run_id, i, cells, NOW, rng)
    generations = fake_store.generations(since=0.0).tolist()
    late = run_shard(fake_store, settings, run_id, 1, shards[1], NOW + 50, rng)
    assert (late["shards_done"], late["shards"]) == (2, 2)
    status = fake_store.job_status("regenerate")
    assert status["runs"] == "1" and float(status["finished_at"]) == NOW
    assert fake_store.generations(since=0.0).tolist() == generations == [NOW]


def test_a_sharded_run_of_no_cells_is_recorded_at_once(fake_store, rng):
    settings = load_settings({}, regen_shards=4)
    run_id, shards = plan_shards(fake_store, settings, NOW, rng)
    assert shards == []
    status = fake_store.job_status("regenerate")
    assert status["runs"] == "1" and status["cells"] == "0" and status["written"] == "0"
    assert fake_store.regen_run(run_id)["shards"] == 0


def test_a_report_for_a_run_whose_keys_expired_is_dropped(fake_store):
    assert fake_store.finish_shard("gone", 0, {"written": 1}) == (0, 0, False)
    assert fake_store.regen_run("gone") is None
