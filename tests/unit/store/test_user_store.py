"""store.user_store: a user's exclusions (the newest, capped, for their TTL), the ads the
frequency cap holds for them, and their last location, read together in one call.
(All on fakeredis; tests/integration/test_store_on_redis.py runs them on a real server.)"""
from __future__ import annotations

from store import LOCATION_TTL_S, FrequencyCap, Showings, Store, UserMemory
from tests.conftest import NOW


def test_excluded_ads_are_read_per_user_with_their_location_in_one_call(fake_store: Store):
    fake_store.exclude_for_users({"u1": {"a1", "a2"}}, NOW, UserMemory(60, 10))
    assert fake_store.excluded_ads("u1") == {"a1", "a2"}
    assert fake_store.excluded_ads("u2") == set()
    assert 0 < fake_store.r.ttl(fake_store.k.user_excluded("u1")) <= 60
    assert fake_store.locate_user("u1", "52.5,13.4") == ({"a1", "a2"}, set())
    assert fake_store.user_context("u1") == ("52.5,13.4", {"a1", "a2"}, set())
    assert fake_store.user_context("u2") == (None, set(), set())
    assert not fake_store.r.exists(fake_store.k.user_location("u2"))


def test_a_location_is_kept_for_its_ttl_from_the_users_last_feed(fake_store: Store):
    """Written with the exclusions' read, and kept LOCATION_TTL_S longer each time the
    user is served there again (the recommendation from the last known location too)."""
    assert fake_store.locate_user("u1", "52.5,13.4") == (set(), set())
    assert fake_store.user_location("u1") == "52.5,13.4"
    assert 0 < fake_store.r.ttl(fake_store.k.user_location("u1")) <= LOCATION_TTL_S
    fake_store.r.expire(fake_store.k.user_location("u1"), 10)
    assert fake_store.user_context("u1")[0] == "52.5,13.4"
    assert fake_store.r.ttl(fake_store.k.user_location("u1")) > LOCATION_TTL_S - 5
    fake_store.locate_user("u1", "48.8,2.3")
    assert fake_store.user_location("u1") == "48.8,2.3"


def test_a_users_exclusions_keep_the_newest_ads_up_to_the_cap(fake_store: Store):
    memory = UserMemory(600, 10)
    for i in range(25):
        fake_store.exclude_for_users({"u1": {f"ad{i}"}}, NOW + i, memory)
    assert fake_store.excluded_ads("u1") == {f"ad{i}" for i in range(15, 25)}
    fake_store.exclude_for_users({"u1": {"ad15"}}, NOW + 99, memory)      # seen again: newest
    fake_store.exclude_for_users({"u1": {"ad99"}}, NOW + 100, memory)
    assert "ad15" in fake_store.excluded_ads("u1") and "ad16" not in fake_store.excluded_ads("u1")


RULE = FrequencyCap(cap=3, window_s=7 * 86_400, max_ads=10)


def capped(store: Store, user: str, now: float) -> set[str]:
    return store.user_context(user, now - RULE.window_s)[2]


def test_an_ad_shown_cap_times_without_engagement_is_capped_in_the_same_read(
        fake_store: Store):
    assert fake_store.record_showings({"u1": Showings({"a1": 2, "a2": 1}, ())}, NOW, RULE) == 0
    assert capped(fake_store, "u1", NOW) == set()
    assert fake_store.record_showings({"u1": Showings({"a1": 1}, ()),
                                       "u2": Showings({"a1": 5}, ())}, NOW + 60, RULE) == 2
    assert capped(fake_store, "u1", NOW + 60) == {"a1"}
    assert capped(fake_store, "u2", NOW + 60) == {"a1"}
    assert fake_store.locate_user("u1", "52.5,13.4", NOW + 60 - RULE.window_s) == (set(),
                                                                                   {"a1"})
    assert fake_store.locate_user("u1", "52.5,13.4") == (set(), set())   # no cap: not read
    for key in (fake_store.k.user_shown("u1"), fake_store.k.user_capped("u1")):
        assert 0 < fake_store.r.ttl(key) <= RULE.window_s


def test_a_view_save_or_apply_clears_the_count_and_lifts_the_cap(fake_store: Store):
    fake_store.record_showings({"u1": Showings({"a1": 3, "a2": 2}, ())}, NOW, RULE)
    fake_store.record_showings({"u1": Showings({}, ["a1", "a2"])}, NOW + 1, RULE)
    assert capped(fake_store, "u1", NOW + 1) == set()
    fake_store.record_showings({"u1": Showings({"a2": 1}, ())}, NOW + 2, RULE)
    assert capped(fake_store, "u1", NOW + 2) == set()      # counted from nothing again


def test_impressions_count_within_their_window_and_a_cap_lasts_a_window(fake_store: Store):
    day = 86_400
    fake_store.record_showings({"u1": Showings({"a1": 2}, ())}, NOW, RULE)
    fake_store.record_showings({"u1": Showings({"a1": 1}, ())}, NOW + 8 * day, RULE)
    assert capped(fake_store, "u1", NOW + 8 * day) == set()   # the first two's window is over
    fake_store.record_showings({"u1": Showings({"a1": 2}, ())}, NOW + 9 * day, RULE)
    assert capped(fake_store, "u1", NOW + 9 * day) == {"a1"}
    assert capped(fake_store, "u1", NOW + 15 * day) == {"a1"}
    assert capped(fake_store, "u1", NOW + 17 * day) == set()


def test_a_users_counts_keep_the_newest_ads_up_to_the_bound(fake_store: Store):
    for i in range(25):
        fake_store.record_showings({"u1": Showings({f"ad{i}": 3}, ())}, NOW + i, RULE)
    assert fake_store.r.zcard(fake_store.k.user_shown("u1")) == RULE.max_ads
    assert capped(fake_store, "u1", NOW + 25) == {f"ad{i}" for i in range(15, 25)}
