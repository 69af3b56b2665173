"""What the views share within one process: settings, the store, the task publisher, a
random generator. Built lazily so that nothing connects at import or app creation."""
from __future__ import annotations

import os
import random
import time
from functools import cached_property

import numpy as np
from celery import Celery
from flask import current_app

from config import Settings
from pipeline.serving.cellfeed import CardCache, FeedCache
from pipeline.serving.feed import ServingLog
from store import Store
from tasks.factory import make_celery
from webapp.ratelimit import RateLimiter


class Runtime:
    _rng: np.random.Generator
    _random: random.Random

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._rng_pid = -1      # no generator yet: each process makes its own on first use
        self._random_pid = -1

    @cached_property
    def store(self) -> Store:
        return Store.from_url(self.settings.redis_url, self.settings.event_partitions,
                              socket_timeout=5,
                              socket_connect_timeout=2, health_check_interval=30)

    @cached_property
    def feed_id_secret(self) -> bytes:
        """The secret that signs feed ids (read from the store on first use)."""
        return self.store.feed_id_secret()

    @cached_property
    def feed_cache(self) -> FeedCache:
        return FeedCache(self.store, self.settings.feed_cache_ttl_s,
                         self.settings.feed_cache_mb << 20, on_reset=self.card_cache.clear)

    @cached_property
    def card_cache(self) -> CardCache:
        return CardCache(self.store, self.settings.card_cache_mb << 20)

    @cached_property
    def serving_log(self) -> ServingLog:
        return ServingLog(self.store, self.settings.served_maxlen, self.settings.served_flush_s)

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.settings, lambda: self.store)

    @cached_property
    def celery(self) -> Celery:
        # the web sends an ingest task a post (INGEST_TASK_EVENTS: whether Flower hears of
        # each); beat's periodic tasks announce themselves all the same
        return make_celery(self.settings, main="webapp",
                           sent_events=self.settings.ingest_task_events)

    @property
    def rng(self) -> np.random.Generator:
        """A generator of this process's own (forked workers must not share a stream)."""
        if self._rng_pid != os.getpid():
            self._rng, self._rng_pid = np.random.default_rng(), os.getpid()
        return self._rng

    @property
    def random(self) -> random.Random:
        """The draws of a feed request (strategy, variant, feed id nonce): this process's
        own stream, seeded from the OS; a plain float costs nanoseconds, an array call
        microseconds."""
        if self._random_pid != os.getpid():
            self._random, self._random_pid = random.Random(), os.getpid()
        return self._random

    @staticmethod
    def now() -> float:
        return time.time()


def runtime() -> Runtime:
    return current_app.extensions["runtime"]
