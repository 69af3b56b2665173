"""store.limit_store on fakeredis: a client's shared bucket takes each process's spending
whole, refills at its rate up to its burst on the server's clock, owes at most a burst, and
expires once it would be full again."""
from __future__ import annotations

import time

import pytest

from store import Store


def test_spending_is_taken_from_a_full_bucket_and_clients_are_apart(fake_store: Store):
    left = fake_store.settle_buckets("feeds", {"addr:10.0.0.1": 3, "key:backend": 1},
                                     rate=0.001, burst=10)
    assert left == pytest.approx({"addr:10.0.0.1": 7, "key:backend": 9}, abs=0.01)
    # a second process's spending comes off the same bucket
    left = fake_store.settle_buckets("feeds", {"addr:10.0.0.1": 5}, rate=0.001, burst=10)
    assert left["addr:10.0.0.1"] == pytest.approx(2, abs=0.01)
    # the other limit's bucket is another
    assert fake_store.settle_buckets("events", {"addr:10.0.0.1": 1}, rate=0.001,
                                     burst=10) == pytest.approx({"addr:10.0.0.1": 9}, abs=0.01)


def test_a_bucket_owes_at_most_a_burst_and_refills_at_its_rate(fake_store: Store):
    left = fake_store.settle_buckets("feeds", {"addr:a": 50}, rate=100, burst=10)
    assert left["addr:a"] == pytest.approx(-10, abs=1)
    time.sleep(0.1)                                # ~10 tokens at 100 a second
    left = fake_store.settle_buckets("feeds", {"addr:a": 0}, rate=100, burst=10)
    assert -5 < left["addr:a"] < 5
    time.sleep(0.3)
    left = fake_store.settle_buckets("feeds", {"addr:a": 0}, rate=100, burst=10)
    assert left["addr:a"] == pytest.approx(10)       # full: never over the burst


def test_a_bucket_expires_when_it_would_be_full_again(fake_store: Store):
    fake_store.settle_buckets("feeds", {"addr:a": 4}, rate=2, burst=10)
    key = fake_store.k.rate_bucket("feeds", "addr:a")
    # 4 tokens at 2 a second: full in 2 s, kept a second more
    assert 2_900 <= fake_store.r.pttl(key) <= 3_000
    assert fake_store.settle_buckets("feeds", {}, rate=2, burst=10) == {}
