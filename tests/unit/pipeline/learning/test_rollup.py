"""pipeline.learning.rollup on a fakeredis store: decayed evidence, so that the ranking
follows a change of the true rates; exposure weighed by the position an ad was shown at;
strategy credit only for a recent feed the service signed, once; the event pipeline split
over partitions counting exactly what one partition counts."""
from __future__ import annotations

import fakeredis
import numpy as np
import pytest

import geo
from bandit import STRATEGIES
from config import load_settings
from pipeline.learning.ingest import Event, accept_batch, roll_in
from pipeline.learning.rollup import count_partition, run_rollup
from pipeline.reports.adstats import ad_report
from pipeline.serving.feed import ServingLog, make_feed_id, parse_feed_id
from store import (
    GLOBAL_CELL,
    STAT_FIELDS,
    Keys,
    PartitionsChanged,
    Store,
    region_field,
    strategy_fields,
)
from tests.conftest import NOW
from tests.support.builders import PARIS, catalogue, events_of, send
from tests.support.streams import streamed_events


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
    region = region_field(cell, settings.region_precision)
    credit = fake_store.strategy_stats([cell, region, GLOBAL_CELL], 12).values[:, 6 + 2]
    assert credit.tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)   # cell, region, all


def test_served_feeds_and_credits_pool_into_the_region_of_their_cell(fake_store, rng):
    """Two cells of one region and one of another: each region's row holds the sums of its
    cells; without regions (REGION_PRECISION 0) there is no region row."""
    settings = load_settings({}, region_precision=4)
    secret = fake_store.feed_id_secret()
    cells = ["u09tvw", "u09tvy", "u0c000"]
    feeds = [make_feed_id(NOW - 60, c, s, rng, secret)
             for c, s, n in ((cells[0], "newest", 3), (cells[1], "newest", 2),
                             (cells[2], "popular", 4)) for _ in range(n)]
    log = ServingLog(fake_store, settings.served_maxlen, flush_s=None)
    for f in feeds:
        ref = parse_feed_id(f, secret)
        log.add({"feed_id": f, "ts": NOW - 60, "cell": ref.cell, "strategy": ref.strategy},
                ref.cell, NOW - 60)
    log.flush()
    send(fake_store, settings, [Event(f"y{i}", f"ad{i}", "apply", NOW, feed_id=f)
                                for i, f in enumerate(feeds[:4])], NOW)
    run_rollup(fake_store, settings, NOW)
    rows = fake_store.strategy_stats([*cells, "~u09t", "~u0c0", GLOBAL_CELL], 12).values
    newest, popular = STRATEGIES.index("newest"), STRATEGIES.index("popular")
    served = rows[:, newest] + rows[:, popular]
    assert served.tolist() == pytest.approx([3, 2, 4, 5, 4, 9], abs=1e-2)
    assert rows[:, 6 + newest].tolist() == pytest.approx([3, 1, 0, 4, 0, 4], abs=1e-2)
    off = load_settings({}, region_precision=0)
    assert strategy_fields(cells[0], off.region_precision) == cells[0]


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


# EVENT_PARTITIONS: the event pipeline split over partitions counts exactly what one
# partition counts, whatever partition each ad hashes to (counters, evidence, per-day
# counters, position counts, and strategy credits once per feed, even for a feed whose
# applies lie in several partitions). tests/integration/test_worker_killed.py and
# test_learning_loop.py run partitions on a Redis Cluster with real workers.

ADS = [f"ad-{i}" for i in range(24)]
SECRET = "0" * 64


def partitioned(count: int) -> Store:
    store = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()), partitions=count)
    store.r.set(Keys.feed_id_secret, SECRET)        # both stores sign feed ids alike
    catalogue(store, ADS)
    return store


def traffic(store: Store, settings, rng: np.random.Generator) -> list[Event]:
    """Impressions and views of every ad at positions of two feeds, and applies: three from
    one feed on ads of different partitions (one credit), two from another."""
    cell = geo.encode(*PARIS, settings.geohash_precision)
    secret = store.feed_id_secret()
    feeds = [make_feed_id(NOW - 30, cell, "thompson", rng, secret),
             make_feed_id(NOW - 20, cell, "newest", rng, secret)]
    events = []
    for i, ad in enumerate(ADS):
        feed = feeds[i % 2]
        events.append(Event(f"i{i}", ad, "impression", NOW - 10, "u1", feed, i % 12 + 1))
        if i % 3 == 0:
            events.append(Event(f"v{i}", ad, "view", NOW - 9, "u1", feed, i % 12 + 1))
    events += [Event(f"a{i}", ADS[i], "apply", NOW - 5, "u1", feeds[0]) for i in (0, 1, 2)]
    events += [Event(f"a{i}", ADS[i], "apply", NOW - 5, "u2", feeds[1]) for i in (3, 5)]
    return events


def positions(store: Store) -> dict[bytes, int]:
    """Every position count of every epoch, over the partitions."""
    out: dict[bytes, int] = {}
    for part in store.parts:
        for epoch in store.position_epochs(part.index):
            for field, n in store.r.hgetall(part.position_epoch(epoch)).items():
                out[field] = out.get(field, 0) + int(n)
    return out


@pytest.mark.parametrize("count", [2, 3, 5])
def test_partitions_count_exactly_what_one_partition_counts(count: int):
    settings = load_settings({}, geohash_precision=6)
    rng = np.random.default_rng(5)
    one, many = partitioned(1), partitioned(count)
    assert len({many.partition_of(ad).index for ad in ADS}) == count   # every one used
    events = traffic(one, settings, rng)
    for store in (one, many):
        half = len(events) // 2
        for batch in (events[:half], events[half:], events[:3]):       # the last: a retry
            accepted = accept_batch(store, settings, batch, NOW)
            if accepted.batch_id:
                roll_in(store, accepted.batch_id)
        assert streamed_events(store) == len(events)
        report = run_rollup(store, settings, NOW)
        assert report["counted"] == len(events)
        assert store.unrolled().undelivered == store.unrolled().pending == 0
        assert store.backlog() == {"pending": 0, "lag": 0, "inbox": 0}
    assert many.ad_stats(ADS, STAT_FIELDS) == one.ad_stats(ADS, STAT_FIELDS)
    assert many.ad_stats(ADS)["applies"][:6] == [1, 1, 1, 1, 0, 1]
    a, b = one.decayed_evidence(ADS), many.decayed_evidence(ADS)
    assert b.values == pytest.approx(a.values) and b.updated_at == pytest.approx(a.updated_at)
    day = "2027-01-15"
    assert many.ctr_days([day]) == one.ctr_days([day]) and one.ctr_days([day])[day]
    assert many.ctr_all_time() == one.ctr_all_time()
    assert positions(many) == positions(one) and positions(one)
    cell = geo.encode(*PARIS, settings.geohash_precision)
    fields = [cell, region_field(cell, settings.region_precision), GLOBAL_CELL]
    credit = {s: s_.strategy_stats(fields, 12).values for s, s_ in
              (("one", one), ("many", many))}
    assert credit["many"] == pytest.approx(credit["one"])
    # a credit a feed with applies on three ads earns once, wherever the ads lie
    assert credit["one"][:, 6:] .sum(axis=1) == pytest.approx([2.0, 2.0, 2.0], abs=1e-3)


def test_a_settle_cut_short_and_done_again_credits_nothing_twice(monkeypatch):
    settings = load_settings({}, geohash_precision=6)
    store = partitioned(3)
    events = traffic(store, settings, np.random.default_rng(5))
    roll_in(store, accept_batch(store, settings, events, NOW).batch_id)
    store.ensure_group()
    settle = store.settle_credits
    with monkeypatch.context() as m:
        m.setattr(store, "settle_credits", lambda *a, **k: 0)      # counted, not settled
        for p in range(3):
            count_partition(store, settings, NOW, p)
    listed = {part.index: store.r.lrange(part.credits, 0, -1) for part in store.parts[1:]}
    assert sum(map(len, listed.values())) >= 1
    for p in range(3):
        settle(p, NOW, settings.stats_half_life_s, 6)
    cell = geo.encode(*PARIS, settings.geohash_precision)
    once = store.strategy_stats([cell, GLOBAL_CELL], 12).values.copy()
    assert once[:, 6:].sum(axis=1) == pytest.approx([2.0, 2.0], abs=1e-3)
    for index, texts in listed.items():        # as if a settle had died before its LTRIM
        if texts:
            store.r.rpush(store.parts[index].credits, *texts)
    for p in range(3):
        settle(p, NOW, settings.stats_half_life_s, 6)
    assert store.strategy_stats([cell, GLOBAL_CELL], 12).values == pytest.approx(once)
    assert all(store.r.llen(part.credits) == 0 for part in store.parts)


def test_a_rollup_refuses_another_partition_count_than_the_first():
    store = partitioned(3)
    store.ensure_group()
    again = Store(store.r, partitions=2)
    with pytest.raises(PartitionsChanged, match="set it back to 3"):
        again.ensure_group()
    Store(store.r, partitions=3).ensure_group()
    with pytest.raises(ValueError):
        Store(store.r, partitions=0)


def test_a_store_an_earlier_version_counted_is_one_partition():
    """Counts without a recorded partition count were left by an earlier version (one
    partition): a rollup with more refuses, one with one records it; a fresh store records
    the count its first rollup has."""
    old = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    old.r.hset(Keys.counts, "ad-1", "3 1 0 0 0")
    with pytest.raises(PartitionsChanged, match="set it back to 1"):
        Store(old.r, partitions=3).check_partitions(record=False)     # a web process
    web = Store(old.r, partitions=3)
    catalogue(web, ["ad-1"])
    for _ in range(2):                   # the failure is kept, not asked again each post
        with pytest.raises(PartitionsChanged):
            web.accept_events("b1", [], NOW, 86_400)
    assert old.r.get(Keys.partitions) is None                 # a web process records nothing
    with pytest.raises(PartitionsChanged, match="set it back to 1"):
        Store(old.r, partitions=3).ensure_group()
    fresh = partitioned(3)
    assert fresh.check_partitions(record=False) is False          # an accept only looks
    fresh.ensure_group()
    assert fresh.r.get(Keys.partitions) == b"3"


def test_a_settle_drops_only_what_is_still_the_head_of_its_list():
    store = partitioned(3)
    credits = store.parts[1].credits
    store.r.rpush(credits, "A", "B", "C")
    assert store._drop_settled(keys=[credits], args=["A", "B"]) == 1
    assert store._drop_settled(keys=[credits], args=["A", "B"]) == 0    # a second settle
    assert store.r.lrange(credits, 0, -1) == [b"C"]
