"""pipeline.learning.frequency: the rollup counts each user's impressions of each ad, caps an
ad ignored FREQ_CAP times, and lifts the cap when the user engages with it; a user's feeds then
show it below the first screen."""
from __future__ import annotations

import numpy as np

from bandit import SCREEN
from config import load_settings
from pipeline.catalogue import upsert_ads
from pipeline.learning.rollup import run_rollup
from pipeline.serving.feed import FeedRequest, ServingLog, serve_feed
from store import Store
from tests.conftest import NOW
from tests.support.builders import PARIS, ads_around, events_of, send


def capped(store: Store, user: str, now: float, window_s: int = 7 * 86_400) -> set[str]:
    return store.user_context(user, now - window_s)[2]


def test_the_rollup_caps_an_ad_a_user_was_shown_three_times_without_engaging(
        fake_store: Store, settings):
    send(fake_store, settings, events_of("a1", NOW, impressions=2, user_id="u1")
         + events_of("a2", NOW, impressions=3, user_id="u1")
         + events_of("a3", NOW, impressions=3, views=1, user_id="u1")
         + events_of("a4", NOW, impressions=5), NOW)          # nobody's: no user counts it
    run_rollup(fake_store, settings, NOW + 1)
    assert capped(fake_store, "u1", NOW + 1) == {"a2"}
    send(fake_store, settings, events_of("a1", NOW + 2, impressions=1, user_id="u1"), NOW + 2)
    run_rollup(fake_store, settings, NOW + 3)
    assert capped(fake_store, "u1", NOW + 3) == {"a1", "a2"}
    send(fake_store, settings, events_of("a2", NOW + 4, views=1, user_id="u1"), NOW + 4)
    run_rollup(fake_store, settings, NOW + 5)
    assert capped(fake_store, "u1", NOW + 5) == {"a1"}
    assert capped(fake_store, "u2", NOW + 5) == set()


def test_a_cap_set_lower_caps_sooner_and_a_cap_of_zero_counts_nothing(fake_store: Store):
    two = load_settings({}, freq_cap=2)
    send(fake_store, two, events_of("a1", NOW, impressions=2, user_id="u1"), NOW)
    run_rollup(fake_store, two, NOW + 1)
    assert capped(fake_store, "u1", NOW + 1) == {"a1"}
    off = load_settings({}, freq_cap=0)
    send(fake_store, off, events_of("b1", NOW + 2, impressions=5, user_id="u2"), NOW + 2)
    run_rollup(fake_store, off, NOW + 3)
    assert not fake_store.r.exists(fake_store.k.user_shown("u2"),
                                   fake_store.k.user_capped("u2"))


def test_an_ad_ignored_three_times_leaves_the_first_screen_of_that_users_feed(
        fake_store: Store, rng):
    settings = load_settings({}, max_per_employer=0)
    upsert_ads(fake_store, settings, ads_around(*PARIS, 30, 2.0, rng))
    log = ServingLog(fake_store, settings.served_maxlen, flush_s=None)
    req = FeedRequest(*PARIS, 30, 5.0, "u1")
    first = [a["ad_id"] for a in serve_feed(fake_store, settings, req, NOW, rng, None,
                                            log).as_dict()["ads"][:3]]
    send(fake_store, settings, [e for ad in first
                                for e in events_of(ad, NOW, impressions=3, user_id="u1")], NOW)
    run_rollup(fake_store, settings, NOW + 1)
    for _ in range(5):
        mine = [a["ad_id"] for a in serve_feed(fake_store, settings, req, NOW + 2, rng, None,
                                               log).as_dict()["ads"]]
        assert not set(first) & set(mine[:SCREEN]) and set(first) <= set(mine)
    other = [serve_feed(fake_store, settings, FeedRequest(*PARIS, 30, 5.0, "u2"), NOW + 2,
                        np.random.default_rng(i), None, log).as_dict()["ads"]
             for i in range(10)]
    assert any(set(first) & {a["ad_id"] for a in ads[:SCREEN]} for ads in other)


def test_a_block_counted_elsewhere_in_part_counts_only_its_own_showings(fake_store, settings,
                                                                        monkeypatch):
    """When the rollup's step leaves out entries another consumer counted, their
    impressions do not go to the frequency cap a second time."""
    send(fake_store, settings, events_of("a1", NOW, impressions=3, user_id="u1"), NOW)
    send(fake_store, settings, events_of("a2", NOW, impressions=3, user_id="u1"), NOW)
    apply = fake_store.apply_rollup

    def counted_elsewhere(block, *args, left_out=None, **kwargs):
        first = block.entry_id[0]
        if left_out is not None:
            left_out.add(first)           # as the step reports an entry no longer pending
        return apply(block.without({first}), *args, **kwargs)

    monkeypatch.setattr(fake_store, "apply_rollup", counted_elsewhere)
    run_rollup(fake_store, settings, NOW + 1)
    assert capped(fake_store, "u1", NOW + 1) == {"a2"}
