"""Settings: read once from the environment, typed, frozen, each with a documented default.

This is the only module that reads ``os.environ``. A bad value stops the start with
the setting's name in the message (``SettingsError``).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bandit.posterior import REWARD_MODELS
from bandit.strategies import DEFAULT_STRATEGIES, STRATEGIES


def _names(value: object) -> object:
    """A comma-separated list from the environment, as a tuple of names."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return value


def _upper(value: object) -> object:
    """Log levels in any case: gunicorn and Celery spell them in lower case."""
    return value.strip().upper() if isinstance(value, str) else value


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                     BeforeValidator(_upper)]
Strategy = Literal[STRATEGIES]  # type: ignore[valid-type]
Strategies = Annotated[tuple[Strategy, ...], BeforeValidator(_names), Field(min_length=1)]


# the credentials' forms: (pattern, as said in an error)
CREDENTIALS = {
    "flower_basic_auth": (r"[^:,]+:[^,]+(,[^:,]+:[^,]+)*", "user:password[,user:password]"),
    "dashboard_basic_auth": (r"[^:]+:.+", "user:password"),
    "api_keys": (r"[A-Za-z0-9_.-]+:[^,\s]{16,}(,[A-Za-z0-9_.-]+:[^,\s]{16,})*",
                 "name:key[,name:key] (a key of at least 16 characters)"),
}


# RabbitMQ broker: a worker process takes 1 task ahead per queue it consumes (tasks.factory:
# worker_prefetch_multiplier), since with quorum queues the prefetch applies per consumer,
# and a worker of every queue (the Procfile's) consumes 3; so a delivered task may wait for
# 3 others before its own run (tests/unit/tasks/test_factory.py ties the 3 to the queues)
AMQP_PREFETCH = 1
AMQP_WAIT_ROUNDS = 3 * AMQP_PREFETCH + 1
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


class SettingsError(ValueError):
    """A setting has a value the service cannot run with."""


class Settings(BaseModel):
    """Every setting, its default and its bounds. The env name is the upper-cased field name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # redis+cluster:// (rediss+cluster:// with TLS): a Redis Cluster, named by any one node
    redis_url: str = Field("redis://localhost:6379/0",
                           pattern=r"^(redis|rediss|unix|redis\+cluster|rediss\+cluster)://")
    celery_broker_url: str | None = None  # None: the same server as REDIS_URL
    # secrets: SecretStr, so that no repr or log of the settings shows them
    admin_token: SecretStr | None = Field(None, min_length=16)
    flower_basic_auth: SecretStr | None = None   # user:password[,user:password]
    flower_port: int = Field(5555, ge=1, le=65535)
    # user:password for /dashboard; unset: the dashboard is closed, unless LOCAL_DEMO
    dashboard_basic_auth: SecretStr | None = None   # user:password
    local_demo: bool = False
    port: int = Field(8000, ge=1, le=65535)
    # the address the web and Flower listen on; unset: every interface for the web (a
    # platform routes to it), the loopback only for an unauthenticated local Flower.
    # ``make run`` sets 127.0.0.1 unless HOST is given.
    host: str | None = Field(None, pattern=r"^[0-9A-Za-z.:\-\[\]]+$")
    # name:key[,name:key]: a client sending a key in X-API-Key is rate limited by its
    # key's name; unset, or without the header: by its address
    api_keys: SecretStr | None = None
    # proxies in front of the web whose X-Forwarded-For to trust for the client's address
    # (0: the peer's address is the client's, as without a proxy)
    trusted_proxies: int = Field(0, ge=0, le=5)
    # token buckets per client (API key or address): requests a second, and a burst; 0: no
    # limit. Feeds: GET /v1/feed, /v1/recommend/{user_id}, /v1/ads/nearby. Events: posts
    # to POST /v1/events (a post of up to MAX_EVENTS_PER_POST events takes one token)
    rate_limit_feeds_per_s: float = Field(200.0, ge=0)
    rate_limit_feeds_burst: int = Field(400, ge=1)
    rate_limit_events_per_s: float = Field(50.0, ge=0)
    rate_limit_events_burst: int = Field(200, ge=1)
    # how often each web process settles its clients' buckets with the shared ones in Redis
    rate_limit_sync_s: float = Field(0.5, gt=0, le=10)
    log_level: LogLevel = "INFO"
    log_format: Literal["json", "text"] = "json"
    # where gunicorn's workers keep their metrics for /metrics to sum (gunicorn.conf.py
    # clears it at start; unset: a temporary directory)
    metrics_dir: str | None = None
    # set by gunicorn.conf.py for its workers only; unset: each process reports its own
    prometheus_multiproc_dir: str | None = None

    feed_radius_km: float = Field(5.0, gt=0, le=50)
    geohash_precision: int = Field(6, ge=4, le=7)
    region_precision: int = Field(4, ge=0, le=6)
    feed_variants: int = Field(8, ge=1, le=64)
    feed_length: int = Field(100, ge=10, le=2000)
    max_per_employer: int = Field(2, ge=0, le=10)
    freq_cap: int = Field(3, ge=0, le=10)
    freq_window_s: int = Field(7 * 86_400, ge=3600, le=90 * 86_400)
    freq_max_ads: int = Field(100, ge=10, le=10_000)
    feed_ttl_s: int = Field(3600, ge=60)
    active_cell_ttl_s: int = Field(3600, ge=60)
    served_maxlen: int = Field(1_000_000, ge=1000)
    feed_cache_ttl_s: float = Field(60.0, ge=0, le=3600)
    feed_cache_mb: int = Field(256, ge=1)
    card_cache_mb: int = Field(128, ge=1)
    served_flush_s: float = Field(0.1, gt=0, le=10)

    rollup_interval_s: float = Field(10.0, gt=0)
    regen_interval_s: float = Field(60.0, gt=0)
    regen_shards: int = Field(1, ge=1, le=1024)
    # partitions of the event pipeline: each its own inbox, dedupe sets, stream and consumer
    # group, rolled up by a task of its own; fixed for a deployment's life (the store refuses
    # another count once events were accepted)
    event_partitions: int = Field(1, ge=1, le=64)
    priors_max_age_s: float = Field(600.0, ge=0)
    # stream entries per atomic rollup step; an entry holds one post's events (in one
    # partition), so a step counts at most ROLLUP_BATCH x MAX_EVENTS_PER_POST events. (It
    # counted events before one entry a post: an old value such as 5000 is refused, not
    # taken as 5000 posts in one step that would hold Redis for seconds.)
    rollup_batch: int = Field(20, ge=1, le=200)
    rollup_claim_idle_s: int = Field(60, ge=1)
    inbox_redeliver_s: int = Field(30, ge=1)
    # an accepted event_id is a duplicate for at least this long (1 to 1.5 windows: see
    # store/dedupe.py); at least EVENT_MAX_AGE_S + 300, its default
    dedupe_window_s: int = Field(86_700, ge=60)
    # raw events and served feeds stay in Redis this long once counted and archived (the
    # archive holds them all): the evaluation and feed provenance read Redis for the last
    # minutes, the archive before
    events_retention_s: int = Field(900, ge=0, le=30 * 86_400)
    event_max_age_s: int = Field(86_400, ge=60)
    # the archive of counted events and served feeds: Parquet files at a local directory
    # or any fsspec URL (s3://..., gs://...: its fsspec package installed beside)
    archive_url: str = Field("archive", min_length=1)
    archive_interval_s: float = Field(60.0, gt=0, le=86_400)
    archive_row_group: int = Field(50_000, ge=100, le=1_000_000)
    archive_file_rows: int = Field(1_000_000, ge=1000, le=100_000_000)

    max_events_per_post: int = Field(1000, ge=1, le=10_000)
    max_content_length: int = Field(1 << 20, ge=1024)

    reward_model: Literal[REWARD_MODELS] = "funnel"  # type: ignore[valid-type]
    save_weight: float = Field(0.25, ge=0, le=1)
    # unset: the examination curve is learnt from the data (bandit.position); a number
    # overrides it with p ** -exponent
    position_bias_exponent: float | None = Field(None, ge=0, le=3)
    stats_half_life_s: float = Field(7 * 86_400, ge=60)
    prior_mean: float = Field(0.02, gt=0, lt=1)
    prior_view_rate: float = Field(0.10, gt=0, lt=1)
    prior_strength: float = Field(50.0, gt=0)
    feed_strategies: Strategies = DEFAULT_STRATEGIES
    strategy_floor: float = Field(0.02, ge=0, le=1)
    strategy_cell_min_feeds: float = Field(200.0, ge=0)
    strategy_prior_strength: float = Field(20.0, gt=0)
    epsilon: float = Field(0.1, ge=0, le=1)
    user_memory_ttl_s: int = Field(90 * 86_400, ge=3600)
    user_memory_max: int = Field(1000, ge=10, le=100_000)

    task_time_limit_s: int = Field(300, ge=10)
    # whether the ingest task (one a post) is announced to Flower: sent, received, started,
    # succeeded; at hundreds of posts a second they cost about a tenth of the pipeline's CPU
    ingest_task_events: bool = True
    visibility_timeout_s: int = Field(600, ge=30)
    # RabbitMQ's consumer_timeout, as the server has it (its default: 30 minutes): a task
    # delivered and not acknowledged within it makes RabbitMQ close the worker's channel
    broker_consumer_timeout_s: int = Field(1800, ge=60)

    @field_validator(*CREDENTIALS)
    @classmethod
    def _user_passwords(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """The credential's form, checked without echoing it."""
        assert info.field_name is not None      # a field validator is always given its field
        pattern, form = CREDENTIALS[info.field_name]
        if value is not None and not re.fullmatch(pattern, value.get_secret_value()):
            raise ValueError(f"must be {form}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.redis_is_cluster and (self.celery_broker_url is None
                                      or "+cluster://" in self.celery_broker_url):
            raise ValueError("REDIS_URL names a Redis Cluster, which cannot carry Celery's "
                             "queues (kombu has no cluster transport): set CELERY_BROKER_URL "
                             "to RabbitMQ (amqp://...) or to a plain Redis (redis://...)")
        if self.visibility_timeout_s <= self.task_time_limit_s:
            raise ValueError("VISIBILITY_TIMEOUT_S must exceed TASK_TIME_LIMIT_S")
        if (self.broker_is_amqp
                and AMQP_WAIT_ROUNDS * self.task_time_limit_s > self.broker_consumer_timeout_s):
            raise ValueError(f"with RabbitMQ, {AMQP_WAIT_ROUNDS} x TASK_TIME_LIMIT_S (a task and "
                             f"the {AMQP_WAIT_ROUNDS - 1} a worker process may take ahead of it, "
                             "one per queue) must not exceed BROKER_CONSUMER_TIMEOUT_S, or "
                             "RabbitMQ closes the channel of a worker still within its limit")
        if self.event_max_age_s + 300 > self.dedupe_window_s:
            raise ValueError("EVENT_MAX_AGE_S + 300 must not exceed DEDUPE_WINDOW_S, or a "
                             "retried event could be counted twice")
        if self.feed_ttl_s <= self.regen_interval_s:
            raise ValueError("FEED_TTL_S must exceed REGEN_INTERVAL_S")
        if self.prior_mean >= self.prior_view_rate:
            raise ValueError("PRIOR_MEAN (applies per impression) must be below "
                             "PRIOR_VIEW_RATE (views per impression)")
        if len(set(self.feed_strategies)) != len(self.feed_strategies):
            raise ValueError("FEED_STRATEGIES lists a strategy twice")
        if self.strategy_floor * len(self.feed_strategies) > 1:
            raise ValueError("STRATEGY_FLOOR times the number of FEED_STRATEGIES must not "
                             "exceed 1")
        if self.region_precision >= self.geohash_precision:
            if "region_precision" in self.model_fields_set:
                raise ValueError("REGION_PRECISION must be below GEOHASH_PRECISION (a region "
                                 "holds cells), or 0 to pool cells straight into the global "
                                 "evidence")
            # the default, under a GEOHASH_PRECISION as coarse as it: one step coarser
            object.__setattr__(self, "region_precision", self.geohash_precision - 1)
        if self.geohash_precision == 7 and self.feed_radius_km > 20:
            raise ValueError("GEOHASH_PRECISION 7 allows FEED_RADIUS_KM up to 20")
        return self

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def redis_is_cluster(self) -> bool:
        """Whether REDIS_URL names a Redis Cluster (``redis+cluster://``)."""
        return self.redis_url.startswith(("redis+cluster://", "rediss+cluster://"))

    @property
    def broker_is_amqp(self) -> bool:
        """Whether the broker is RabbitMQ (an AMQP URL)."""
        return self.broker_url.startswith(AMQP_SCHEMES)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build the settings from ``environ`` (default ``os.environ``), then ``overrides``."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {
        name: environ[name.upper()]
        for name in Settings.model_fields
        if environ.get(name.upper(), "") != ""
    }
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None


__all__ = ["AMQP_PREFETCH", "AMQP_WAIT_ROUNDS", "Settings", "SettingsError", "load_settings"]
