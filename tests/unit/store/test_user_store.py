"""store.user_store: a user's exclusions (the newest, capped, for their TTL) and last
location, read together in one call.
(All on fakeredis; tests/integration/test_store_on_redis.py runs them on a real server.)"""
from __future__ import annotations

from store import LOCATION_TTL_S, Store, UserMemory
from tests.conftest import NOW


def test_excluded_ads_are_read_per_user_with_their_location_in_one_call(fake_store: Store):
    fake_store.exclude_for_users({"u1": {"a1", "a2"}}, NOW, UserMemory(60, 10))
    assert fake_store.excluded_ads("u1") == {"a1", "a2"}
    assert fake_store.excluded_ads("u2") == set()
    assert 0 < fake_store.r.ttl(fake_store.k.user_excluded("u1")) <= 60
    assert fake_store.locate_user("u1", "52.5,13.4") == {"a1", "a2"}
    assert fake_store.user_context("u1") == ("52.5,13.4", {"a1", "a2"})
    assert fake_store.user_context("u2") == (None, set())
    assert not fake_store.r.exists(fake_store.k.user_location("u2"))


def test_a_location_is_kept_for_its_ttl_from_the_users_last_feed(fake_store: Store):
    """Written with the exclusions' read, and kept LOCATION_TTL_S longer each time the
    user is served there again (the recommendation from the last known location too)."""
    assert fake_store.locate_user("u1", "52.5,13.4") == set()
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
