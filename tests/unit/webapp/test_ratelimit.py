"""webapp.ratelimit: a token bucket per client (API key, else address) on the feed endpoints
and POST /v1/events. Over the limit a request is answered 429 rate_limited with Retry-After,
counted in the metrics, and nothing it carried is kept; clients are apart; the processes of
a deployment share each client's bucket through Redis, settled in batches; a process whose
Redis is down still holds every client to the limit."""
from __future__ import annotations

import logging

import pytest
import redis
from pydantic import SecretStr

from config import Settings
from pipeline.serving.feed import ServingLog
from store import Store
from tests.support.api import error_of, put_ad
from tests.unit.webapp.conftest import RecordingCelery
from webapp import create_app
from webapp.ratelimit import RateLimiter, TokenBuckets
from webapp.validation import ApiError

FEED = "/v1/feed?lat=52.52&lon=13.405"
KEY = "a-key-of-sixteen-chars"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def limited_app(settings: Settings, fake_store: Store, clock: Clock | None = None, **update):
    s = settings.model_copy(update=update)
    app = create_app(s)
    rt = app.extensions["runtime"]
    rt.__dict__.update(store=fake_store, celery=RecordingCelery(),
                       serving_log=ServingLog(fake_store, s.served_maxlen, flush_s=None))
    if clock is not None:
        rt.__dict__["limiter"] = RateLimiter(s, lambda: fake_store, clock)
    app.config["TESTING"] = True
    return app


def rate_limited_total(client, limit: str) -> float:
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(f'recommender_rate_limited_total{{limit="{limit}"}}'):
            return float(line.split()[-1])
    raise AssertionError("no recommender_rate_limited_total series")


# ---- the buckets ------------------------------------------------------------------------

def test_a_bucket_lets_a_burst_through_then_one_request_per_token_refilled():
    b = TokenBuckets(rate=4, burst=3)
    assert [b.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a", 0.0) == pytest.approx(0.25)         # a token in 1/4 s
    assert b.take("a", 0.1) == pytest.approx(0.15)
    assert b.take("a", 0.25) == 0.0
    assert b.take("b", 0.25) == 0.0                         # another client: its own
    assert b.take("a", 100.0) == 0.0                        # refilled, never past the burst
    assert [b.take("a", 100.0) for _ in range(3)][-1] > 0


def test_settling_takes_the_shared_word_less_what_was_spent_here_since():
    b = TokenBuckets(rate=1, burst=10)
    for _ in range(4):
        b.take("a", 0.0)
    assert b.spending() == {"a": 4}
    assert b.spending() == {"a": 0}                         # counted once
    b.take("a", 0.0)                                        # spent while the reply was on its way
    b.settle({"a": 1.0}, 0.0)                               # others spent the rest
    assert b.take("a", 0.0) > 0                             # 1 - 1 left: none
    assert b.take("a", 1.0) == 0.0


def test_settling_forgets_clients_with_a_full_bucket_and_nothing_spent():
    b = TokenBuckets(rate=1, burst=2)
    b.take("idle", 0.0)
    b.take("busy", 0.0)
    b.spending()
    b.take("busy", 0.5)
    b.settle({}, 5.0)
    assert len(b) == 1                                      # idle is full again: gone
    with pytest.raises(ValueError):
        TokenBuckets(rate=0, burst=1)


def test_processes_share_a_client_bucket_through_the_store(settings, fake_store):
    """Two web processes, one client: each lets the burst through on its own until they
    settle; then the client has spent both and is held back in both."""
    clock = Clock()
    s = settings.model_copy(update={"rate_limit_feeds_per_s": 1.0,
                                    "rate_limit_feeds_burst": 10, "rate_limit_sync_s": 0.5})
    a, b = (RateLimiter(s, lambda: fake_store, clock) for _ in range(2))
    for limiter in (a, b):
        for _ in range(6):
            limiter.check("feeds", "addr:x")
    clock.t += 0.5
    a.check("feeds", "addr:x")          # its own bucket had 4 left; due: it settles 7
    b.sync()                            # 3 left in the shared bucket, less b's 6
    a.sync()                            # a spent nothing since, and learns of b's
    for limiter in (a, b):
        with pytest.raises(ApiError) as refused:
            limiter.check("feeds", "addr:x")
        assert refused.value.status == 429
        assert int(refused.value.headers["Retry-After"]) >= 2    # 12 spent of 10: owed


def test_a_process_whose_redis_is_down_still_limits_on_its_own(settings, fake_store, caplog):
    clock = Clock()
    s = settings.model_copy(update={"rate_limit_feeds_per_s": 1.0,
                                    "rate_limit_feeds_burst": 2})

    def down() -> Store:
        raise redis.ConnectionError("down")
    limiter = RateLimiter(s, down, clock)
    limiter.check("feeds", "addr:x")
    clock.t += 20
    with caplog.at_level(logging.WARNING, logger="webapp.ratelimit"):
        limiter.check("feeds", "addr:x")                    # settles, fails, goes on
        limiter.check("feeds", "addr:x")
        with pytest.raises(ApiError):
            limiter.check("feeds", "addr:x")
    assert "settling with Redis failed" in caplog.text


# ---- over HTTP ---------------------------------------------------------------------------

def test_over_the_limit_a_feed_is_429_with_retry_after_and_counted(settings, fake_store):
    clock = Clock()
    app = limited_app(settings, fake_store, clock, rate_limit_feeds_per_s=0.5,
                      rate_limit_feeds_burst=3)
    client = app.test_client()
    put_ad(client, {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"},
           "ad-1", 52.52, 13.405)
    before = rate_limited_total(client, "feeds")
    assert [client.get(FEED).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get(FEED)
    error = error_of(refused, 429, field=None)
    assert error["code"] == "rate_limited" and "0.5 requests a second" in error["message"]
    assert refused.headers["Retry-After"] == "2"            # one token at 0.5 a second
    assert client.get("/v1/ads/nearby?lat=52.52&lon=13.405").status_code == 429   # same limit
    assert client.get("/v1/recommend/u1?lat=52.52&lon=13.405").status_code == 429
    assert rate_limited_total(client, "feeds") == before + 3
    clock.t += 2
    assert client.get(FEED).status_code == 200
    # another address has a bucket of its own
    other = client.get(FEED, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other.status_code == 200


def test_a_post_over_the_limit_keeps_nothing(settings, fake_store, keyspace):
    app = limited_app(settings, fake_store, Clock(), rate_limit_events_per_s=0.01,
                      rate_limit_events_burst=1)
    client = app.test_client()
    before = rate_limited_total(client, "events")
    first = client.post("/v1/events", json={"events": [
        {"event_id": "e1", "ad_id": "no-such-ad", "type": "view"}]})
    assert first.status_code == 400                        # a token taken all the same
    snapshot = keyspace()
    sent = app.extensions["runtime"].celery.sent[:]
    refused = client.post("/v1/events", json={"events": [
        {"event_id": "e2", "ad_id": "no-such-ad", "type": "view"}]})
    assert error_of(refused, 429, field=None)["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) == 100
    assert keyspace() == snapshot and app.extensions["runtime"].celery.sent == sent
    assert rate_limited_total(client, "events") == before + 1
    # the feed limit is another
    assert client.get(FEED).status_code != 429


def test_an_api_key_is_a_client_of_its_own_and_an_unknown_one_is_refused(settings, fake_store):
    app = limited_app(settings, fake_store, Clock(), rate_limit_feeds_per_s=0.01,
                      rate_limit_feeds_burst=1, api_keys=SecretStr(f"backend:{KEY}"))
    client = app.test_client()
    assert client.get(FEED).status_code != 429
    assert client.get(FEED).status_code == 429             # this address: spent
    assert client.get(FEED, headers={"X-API-Key": KEY}).status_code != 429
    assert client.get(FEED, headers={"X-API-Key": KEY}).status_code == 429
    wrong = client.get(FEED, headers={"X-API-Key": KEY + "x"})
    assert error_of(wrong, 401, field="X-API-Key")["code"] == "invalid_api_key"
    assert KEY not in wrong.get_data(as_text=True)


def test_forwarded_addresses_count_only_behind_trusted_proxies(settings, fake_store):
    def hits(**update) -> list[int]:
        app = limited_app(settings, fake_store, Clock(), rate_limit_feeds_per_s=0.01,
                          rate_limit_feeds_burst=1, **update)
        client = app.test_client()
        return [client.get(FEED, headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code
                for i in range(3)]
    # no proxy trusted: a client cannot dodge its limit by naming other addresses
    assert hits()[1:] == [429, 429]
    # behind one proxy: the address it forwarded is the client
    assert 429 not in hits(trusted_proxies=1)


def test_a_limit_of_zero_is_no_limit(settings, fake_store):
    app = limited_app(settings, fake_store, Clock(), rate_limit_feeds_per_s=0,
                      rate_limit_feeds_burst=1)
    client = app.test_client()
    assert 429 not in [client.get(FEED).status_code for _ in range(5)]
    assert "feeds" not in app.extensions["runtime"].limiter.buckets
