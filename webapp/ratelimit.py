"""Rate limits per client (an API key, else the client's address): a token bucket per
client and limit, on the feed endpoints and on POST /v1/events.

A request never waits for Redis. Each web process keeps its clients' buckets in memory and
takes a token there; every RATE_LIMIT_SYNC_S the first request due settles what each client
spent with the client's shared bucket in Redis (``Store.settle_buckets``: one script call a
client, one round trip a node) and takes back what is left, which already counts the other
processes' spending. So a client gets its limit across all processes, give or take what
the other processes let through within one settling interval; and when Redis cannot be
reached, each process still holds every client to the limit on its own.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import redis
from flask import Request, current_app, request

from config import Settings
from obs.prometheus import observe_rate_limited
from store import Store
from webapp.validation import ApiError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
LIMITS = ("feeds", "events")
API_KEY_HEADER = "X-API-Key"
WARN_EVERY_S = 60.0


class TokenBuckets:
    """One limit's buckets in this process, a client each: ``rate`` tokens a second up to
    ``burst``. A bucket is [tokens, when last refilled, tokens spent since the last
    settling]; a client whose bucket is full and who spent nothing is forgotten."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a rate above 0 and a burst of at least 1")
        self.rate, self.burst = rate, float(burst)
        self._buckets: dict[str, list[float]] = {}

    def take(self, client: str, now: float) -> float:
        """Take a token for ``client``: 0 when it had one, else the seconds until it has.

        >>> b = TokenBuckets(rate=2, burst=2)
        >>> b.take("a", 0.0), b.take("a", 0.0), b.take("a", 0.0), b.take("a", 0.5)
        (0.0, 0.0, 0.5, 0.0)
        """
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = [self.burst, now, 0.0]
        tokens = min(self.burst, bucket[0] + self.rate * max(0.0, now - bucket[1]))
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            bucket[2] += 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def spending(self) -> dict[str, int]:
        """What each client known here spent since the last call (0 for some: they learn
        what the other processes spent), and start counting again."""
        spent = {}
        for client, bucket in self._buckets.items():
            spent[client] = int(bucket[2])
            bucket[2] = 0.0
        return spent

    def settle(self, left: Mapping[str, float], now: float) -> None:
        """Take the shared buckets' word (``left``: tokens each client has across all
        processes, as of the spending taken) less what the client spent here since; then
        forget clients with a full bucket and nothing spent."""
        for client, tokens in left.items():
            bucket = self._buckets.get(client)
            if bucket is not None:
                bucket[0], bucket[1] = min(self.burst, tokens) - bucket[2], now
        full = [c for c, (tokens, at, spent) in self._buckets.items()
                if not spent and tokens + self.rate * (now - at) >= self.burst]
        for client in full:
            del self._buckets[client]

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimiter:
    """The rate limits of one web process (``check``), settled with Redis in batches."""

    def __init__(self, settings: Settings, store: Callable[[], Store],
                 clock: Callable[[], float] = time.monotonic) -> None:
        rates = {"feeds": (settings.rate_limit_feeds_per_s, settings.rate_limit_feeds_burst),
                 "events": (settings.rate_limit_events_per_s, settings.rate_limit_events_burst)}
        self.buckets = {name: TokenBuckets(rate, burst)
                        for name, (rate, burst) in rates.items() if rate > 0}
        self.sync_s = settings.rate_limit_sync_s
        self.keys = api_keys(settings)
        self._store, self._clock = store, clock
        self._lock = threading.Lock()
        # the first settling one interval after start: a process's first requests never
        # wait for Redis either
        self._next_sync, self._syncing = clock() + self.sync_s, False
        self._warned_at = -math.inf

    def check(self, limit: str, client: str) -> None:
        """Let the request through, or raise 429 ``rate_limited`` with Retry-After."""
        buckets = self.buckets.get(limit)
        if buckets is None:
            return
        now = self._clock()
        with self._lock:
            wait = buckets.take(client, now)
            due = now >= self._next_sync and not self._syncing
            if due:
                self._syncing, self._next_sync = True, now + self.sync_s
        if due:
            self.sync()
        if wait:
            observe_rate_limited(limit)
            retry_after = max(1, math.ceil(wait))
            raise ApiError(429, "rate_limited",
                           f"over this client's limit of {buckets.rate:g} requests a second "
                           f"(bursts of {buckets.burst:g}) for the {limit} endpoints; retry in "
                           f"{retry_after} s", headers={"Retry-After": str(retry_after)})

    def sync(self) -> None:
        """Settle every client's spending with its shared bucket. When Redis cannot be
        reached, the spending is dropped (the buckets here go on limiting) and a warning is
        logged at most once a minute."""
        try:
            for name, buckets in self.buckets.items():
                with self._lock:
                    spent = buckets.spending()
                if not spent:
                    continue
                left = self._store().settle_buckets(name, spent, buckets.rate,
                                                    int(buckets.burst))
                with self._lock:
                    buckets.settle(left, self._clock())
        except redis.RedisError as exc:
            now = self._clock()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning("rate limits: settling with Redis failed (%s); each process "
                            "limits its clients on its own meanwhile", type(exc).__name__)
        finally:
            with self._lock:
                self._syncing = False


def api_keys(settings: Settings) -> dict[bytes, str]:
    """API_KEYS as the SHA-256 of each key -> its name (a lookup by digest, so that how
    long it takes says nothing of the keys)."""
    if settings.api_keys is None:
        return {}
    out = {}
    for pair in settings.api_keys.get_secret_value().split(","):
        name, _, key = pair.partition(":")
        out[hashlib.sha256(key.encode()).digest()] = name
    return out


def client_of(req: Request, keys: Mapping[bytes, str]) -> str:
    """Who the request is from: ``key:<name>`` for a known API key, else ``addr:<address>``
    (the peer, or with TRUSTED_PROXIES the address the proxies forwarded)."""
    given = req.headers.get(API_KEY_HEADER) if keys else None
    if given is not None:
        name = keys.get(hashlib.sha256(given.encode()).digest())
        if name is None:
            raise ApiError(401, "invalid_api_key", f"{API_KEY_HEADER}: not a key of this "
                           "service (leave the header out to be limited by address)",
                           API_KEY_HEADER)
        return f"key:{name}"
    return f"addr:{req.remote_addr or 'unknown'}"


def limited(limit: str) -> Callable[[F], F]:
    """Marks a view as taking a token of ``limit`` (``feeds`` or ``events``) per request."""
    if limit not in LIMITS:
        raise ValueError(f"no rate limit {limit!r}")

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            limiter: RateLimiter = current_app.extensions["runtime"].limiter
            limiter.check(limit, client_of(request, limiter.keys))
            return view(*args, **kwargs)
        checked.rate_limit = limit  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]
    return wrap
