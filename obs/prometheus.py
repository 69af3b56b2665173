"""Prometheus metrics of the web processes.

Two kinds:
- what a web process sees (requests, feeds served, events posted, Redis errors): counters and
  histograms kept by prometheus-client; under gunicorn each worker writes them to files in
  PROMETHEUS_MULTIPROC_DIR and a scrape sums them over every worker, live or dead
  (gunicorn.conf.py cleans the directory at start and marks dead workers);
- what the store knows (pipeline lag and backlog, the last rollup and regeneration, active
  cells, live ads, the strategy bandit's probabilities, the per-strategy funnel totals): read
  from Redis at scrape time by ``StoreCollector``, so they hold whichever worker or machine did
  the work. Every web process reports the same values: aggregate them with max(), not sum().

Labels have bounded values only: route templates, methods, statuses, strategies, cache
outcomes, event types, jobs. Never an ad, user, feed, cell or request id.
"""
from __future__ import annotations

import collections
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

log = logging.getLogger(__name__)
STORE_DOWN = (ConnectionError, TimeoutError, BusyLoadingError)

disable_created_metrics()   # no *_created series: they double the series for no use here

PREFIX = "recommender"
EVENT_TYPES = ("impression", "view", "save", "apply", "hide")   # in STAT_FIELDS' order
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FEED_AGE_BUCKETS_S = (1, 5, 15, 30, 60, 90, 120, 180, 300, 600, 1800, 3600)

HTTP_REQUESTS = Counter(f"{PREFIX}_http_requests_total", "HTTP requests answered",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram(f"{PREFIX}_http_request_duration_seconds",
                         "Time to answer an HTTP request", ["route"], buckets=LATENCY_BUCKETS_S)
FEEDS_SERVED = Counter(f"{PREFIX}_feeds_served_total",
                       "Feeds served, by strategy and cache outcome (hit: precomputed; miss: "
                       "built on the request)", ["strategy", "cache"])
FEED_AGE = Histogram(f"{PREFIX}_feed_age_seconds",
                     "Age of a feed when served: now minus its generated_at",
                     buckets=FEED_AGE_BUCKETS_S)
EVENTS = Counter(f"{PREFIX}_events_total",
                 "Events posted, by type and outcome (accepted, duplicate, rejected); the type "
                 "of a rejected event that has none of the known ones is 'invalid'",
                 ["type", "outcome"])
RATE_LIMITED = Counter(f"{PREFIX}_rate_limited_total",
                       "Requests answered 429 by a rate limit (feeds, events)", ["limit"])
for _limit in ("feeds", "events"):     # at 0 from the start: an alert sees the first one
    RATE_LIMITED.labels(_limit)
REDIS_ERRORS = Counter(f"{PREFIX}_redis_errors_total",
                       "Requests that failed because Redis could not be reached", ["error"])

_UNBOUND = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def route_label(rule: str | None) -> str:
    """A Flask rule as an OpenAPI path template, also the route label ("/v1/ads/{ad_id}");
    "unmatched" for a 404 of no route."""
    return _UNBOUND.sub(r"{\1}", rule) if rule else "unmatched"


# each label set's children, looked up once: ``labels()`` checks and locks on every call, a
# few µs a request (the keys are bounded: routes, methods folded to METHODS, statuses,
# strategies and cache outcomes)
_REQUEST_CHILDREN: dict[tuple[str | None, str, int], tuple[Any, Any]] = {}
_FEED_CHILDREN: dict[tuple[str, str], Any] = {}


def observe_request(rule: str | None, method: str, status: int, seconds: float) -> None:
    method = method if method in METHODS else "other"
    children = _REQUEST_CHILDREN.get((rule, method, status))
    if children is None:
        route = route_label(rule)
        children = _REQUEST_CHILDREN[(rule, method, status)] = (
            HTTP_REQUESTS.labels(route, method, str(status)), HTTP_LATENCY.labels(route))
    children[0].inc()
    children[1].observe(seconds)


def observe_feed(strategy: str, cache: str, age_s: float) -> None:
    served = _FEED_CHILDREN.get((strategy, cache))
    if served is None:
        served = _FEED_CHILDREN[(strategy, cache)] = FEEDS_SERVED.labels(strategy, cache)
    served.inc()
    FEED_AGE.observe(max(0.0, age_s))


def observe_events(outcomes: Iterable[tuple[str, str]]) -> None:
    """(type, outcome) of each posted event, counted."""
    for (event_type, outcome), n in collections.Counter(outcomes).items():
        EVENTS.labels(event_type if event_type in EVENT_TYPES else "invalid", outcome).inc(n)


def observe_rate_limited(limit: str) -> None:
    RATE_LIMITED.labels(limit).inc()


def observe_redis_error(exc: BaseException) -> None:
    REDIS_ERRORS.labels(type(exc).__name__).inc()


class StoreCollector(Collector):
    """Gauges read from the store at scrape time. ``read`` returns the figures as a dict
    (see ``store_metrics``). When Redis cannot be reached, only ``recommender_store_up 0``
    is reported; any other failure is a bug, logged, and fails the scrape (so it shows as
    the target down, not as Redis down)."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        try:
            figures = self._read()
        except STORE_DOWN as exc:       # a scrape answers with the store down
            log.warning("metrics: store unreachable: %s", type(exc).__name__)
            figures = None
        up = GaugeMetricFamily(f"{PREFIX}_store_up", "1 when the scrape could read Redis")
        up.add_metric([], 0.0 if figures is None else 1.0)
        yield up
        if figures is not None:
            yield from store_metrics(figures)


def _gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
    g = GaugeMetricFamily(f"{PREFIX}_{name}", doc)
    if value is not None:
        g.add_metric([], float(value))
    return g


def store_metrics(f: dict[str, Any]) -> Iterator[Metric]:
    """The store's figures as metric families."""
    yield _gauge("pipeline_lag_seconds",
                 "Age of the oldest accepted event not yet rolled up (0 when none waits)",
                 f["lag_s"])
    backlog = GaugeMetricFamily(f"{PREFIX}_pipeline_backlog",
                                "Accepted work not yet rolled up, in batches (a post's "
                                "events each): in the inbox, pending with a rollup, not yet "
                                "read",
                                labels=["stage"])
    for stage, n in f["backlog"].items():
        backlog.add_metric([stage], float(n))
    yield backlog
    last = GaugeMetricFamily(f"{PREFIX}_job_last_success_timestamp_seconds",
                             "When the job last finished (epoch seconds)", labels=["job"])
    duration = GaugeMetricFamily(f"{PREFIX}_job_last_duration_seconds",
                                 "How long the job's last run took", labels=["job"])
    runs = CounterMetricFamily(f"{PREFIX}_job_runs", "Runs of the job (all workers)",
                               labels=["job"])
    size = GaugeMetricFamily(f"{PREFIX}_job_last_size",
                             "What the job's last run handled: events counted by the rollup, "
                             "cells written and ads read by the regeneration",
                             labels=["job", "what"])
    for job, status in f["jobs"].items():
        if status.get("finished_at") is not None:
            last.add_metric([job], status["finished_at"])
        if status.get("duration_s") is not None:
            duration.add_metric([job], status["duration_s"])
        runs.add_metric([job], status.get("runs", 0))
        for what, n in status.get("size", {}).items():
            size.add_metric([job, what], n)
    yield from (last, duration, runs, size)
    run = f.get("sharded_run")
    if run is not None:
        shards = GaugeMetricFamily(f"{PREFIX}_regen_run_shards",
                                   "The latest sharded regeneration run's shards: planned, "
                                   "and done (reported)", labels=["state"])
        shards.add_metric(["planned"], run["planned"])
        shards.add_metric(["done"], run["done"])
        took = GaugeMetricFamily(f"{PREFIX}_regen_shard_duration_seconds",
                                 "How long each shard of the latest sharded regeneration took",
                                 labels=["shard"])
        for index, seconds in sorted(run["durations_s"].items()):
            took.add_metric([str(index)], seconds)
        yield from (shards, took)
    yield _gauge("active_cells", "Cells requested within ACTIVE_CELL_TTL_S", f["active_cells"])
    yield _gauge("live_ads", "Ads in the catalogue that have not expired", f["live_ads"])
    probability = GaugeMetricFamily(f"{PREFIX}_strategy_probability",
                                    "Each strategy's probability of being chosen for a feed "
                                    "(the global strategy bandit, floor included)",
                                    labels=["strategy"])
    for strategy, p in f["strategy_probability"].items():
        probability.add_metric([strategy], p)
    yield probability
    funnel = CounterMetricFamily(f"{PREFIX}_strategy_events",
                                 "Events of feeds served by each strategy, as rolled up "
                                 "(the apply rate by strategy is rate(applies)/rate(impressions))",
                                 labels=["strategy", "type"])
    for (strategy, event_type), n in f["strategy_events"].items():
        funnel.add_metric([strategy, event_type], n)
    yield funnel


def exposition(multiproc_dir: str | None, store_collector: Collector | None) -> tuple[bytes, str]:
    """The text a scrape gets: every gunicorn worker's metrics summed (multiprocess mode,
    ``multiproc_dir`` set) or this process's own, and the store's gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if multiproc_dir:
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
    else:
        registry.register(_ThisProcess())
    if store_collector is not None:
        registry.register(store_collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _ThisProcess(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
