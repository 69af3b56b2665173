"""The service's health: what the store says about the pipeline, what the broker says about
the queues and workers, and a pure verdict on both (``flask --app webapp status``).

``pipeline_state`` is cheap (eight Redis round trips at most, nothing scanned), so a metrics
exporter can call it on every scrape; it returns numbers only.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from config import Settings
from store import UNDELIVERED_COUNTED, Store

if TYPE_CHECKING:
    from celery import Celery

JOBS = ("rollup", "regenerate", "archive")
# each job's main count
PROCESSED = {"rollup": "counted", "regenerate": "written", "archive": "events_rows"}
LATE_FACTOR = 3.0   # a job or the lag over this many intervals fails the check
QUEUE_WARN_DEPTH = {"ingest": 1000, "rollup": 5, "regen": 5}   # messages waiting


@dataclass(frozen=True)
class JobState:
    """A periodic job's last report (``Store.record_job``)."""

    runs: int                   # 0: never run
    finished_at: float | None   # the time the last run worked at (epoch s)
    age_s: float | None         # now - finished_at
    duration_s: float | None
    processed: int              # rollup: events counted; regenerate: feeds written
    report: Mapping[str, float] = field(default_factory=dict)   # every number it recorded


@dataclass(frozen=True)
class ShardedRun:
    """The latest regeneration run sharded over workers (REGEN_SHARDS above 1)."""

    run_id: str
    started_at: float
    shards: int                      # the shards it was split into
    done: int                        # the shards that have reported
    cells: int
    durations_s: Mapping[str, float] = field(default_factory=dict)   # by shard, when done
    written: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, run: Mapping[str, Any] | None) -> ShardedRun | None:
        """From ``Store.regen_run``."""
        if not run:
            return None
        reports = run.get("reports", {})
        return cls(str(run["run_id"]), float(run.get("started_at", 0.0)),
                   int(run.get("shards", 0)), int(run.get("done", 0)), int(run.get("cells", 0)),
                   {str(i): float(r["duration_s"]) for i, r in reports.items()},
                   {str(i): int(r["written"]) for i, r in reports.items()})


@dataclass(frozen=True)
class PipelineState:
    """The pipeline as the store shows it at ``at``."""

    at: float
    lag_s: float                # age of the oldest accepted event not rolled up; 0: none
    inbox_batches: int          # accepted batches not yet in the events stream
    # stream entries, each an accepted post's events (in one partition):
    pending_batches: int        # delivered to a rollup consumer, not acknowledged
    undelivered_batches: int    # in the stream, not yet read by the rollup (at most counted:
                                # UNDELIVERED_COUNTED means at least that many)
    rollup: JobState
    regenerate: JobState
    active_cells: int           # cells requested within ACTIVE_CELL_TTL_S
    live_ads: int               # ads in the geo index not past their expiry
    sharded_run: ShardedRun | None = None   # the latest sharded regeneration, if any
    archive: JobState | None = None         # the last archive run (None: not read)

    @property
    def empty(self) -> bool:
        """Nothing to work on yet: no live ad, no active cell, no event waiting."""
        return not (self.live_ads or self.active_cells or self.inbox_batches
                    or self.pending_batches or self.undelivered_batches > 0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def job_state(status: Mapping[str, str], now: float, job: str) -> JobState:
    """A job's status hash (all strings) as numbers; a field that is not a number is left
    out of ``report``."""
    report: dict[str, float] = {}
    for name, value in status.items():
        try:
            report[name] = float(value)
        except ValueError:
            continue
    finished_at = report.get("finished_at")
    return JobState(runs=int(report.get("runs", 0)), finished_at=finished_at,
                    age_s=None if finished_at is None else max(0.0, now - finished_at),
                    duration_s=report.get("duration_s"),
                    processed=int(report.get(PROCESSED[job], 0)), report=report)


def pipeline_state(store: Store, settings: Settings, now: float) -> PipelineState:
    """Read the pipeline's state: backlog and lag, the periodic jobs, active cells, live ads."""
    unrolled = store.unrolled()
    jobs = {job: job_state(store.job_status(job), now, job) for job in JOBS}
    return PipelineState(
        at=now,
        lag_s=unrolled.lag_s(now),
        inbox_batches=unrolled.inbox_batches,
        pending_batches=unrolled.pending,
        undelivered_batches=unrolled.undelivered,
        rollup=jobs["rollup"],
        regenerate=jobs["regenerate"],
        active_cells=store.active_cell_count(since=now - settings.active_cell_ttl_s),
        live_ads=store.live_ad_count(now),
        sharded_run=ShardedRun.of(store.regen_run()),
        archive=jobs["archive"],
    )


@dataclass(frozen=True)
class BrokerState:
    queues: Mapping[str, int]   # messages waiting per queue (a queue never used: 0)
    workers: tuple[str, ...]    # the workers that answered a ping


def broker_state(celery: Celery, queues: Sequence[str], timeout_s: float = 1.0) -> BrokerState:
    """Queue depths and the workers that answer a ping within ``timeout_s``; raises when
    the broker cannot be reached. Works for Redis and AMQP brokers alike."""
    from kombu.exceptions import ChannelError

    options = {"socket_connect_timeout": 2 * timeout_s, "socket_timeout": 2 * timeout_s}
    with celery.connection_for_write(connect_timeout=2 * timeout_s,
                                     transport_options=options) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0.2, interval_step=0.2,
                               timeout=2 * timeout_s)
        depths: dict[str, int] = {}
        for name in queues:
            channel = conn.channel()
            try:
                depths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except ChannelError:   # never declared: nothing waits in it
                depths[name] = 0
            finally:
                # an AMQP channel closed by the failed declare raises here
                with contextlib.suppress(Exception):
                    channel.close()
        replies = celery.control.ping(timeout=timeout_s, connection=conn) or []
    return BrokerState(depths, tuple(sorted(name for reply in replies for name in reply)))


class Level(IntEnum):
    OK = 0
    WARN = 1
    FAIL = 2


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    value: str          # what was found, for people
    detail: str = ""    # the limit it was held to, or why it could not be read


@dataclass(frozen=True)
class Thresholds:
    """The limits the checks hold the service to."""

    lag_s: float                      # oldest unrolled event older: FAIL
    rollup_age_s: float               # last rollup older: FAIL
    regenerate_age_s: float           # last regeneration older: FAIL
    queue_depth: Mapping[str, int]    # more messages waiting: WARN
    archive_age_s: float = math.inf   # last archive run older: FAIL

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(lag_s=LATE_FACTOR * settings.rollup_interval_s,
                   rollup_age_s=LATE_FACTOR * settings.rollup_interval_s,
                   regenerate_age_s=LATE_FACTOR * settings.regen_interval_s,
                   # a rollup slot sends a task per event partition beyond the first
                   queue_depth={**QUEUE_WARN_DEPTH, "rollup": QUEUE_WARN_DEPTH["rollup"]
                                + settings.event_partitions - 1},
                   archive_age_s=LATE_FACTOR * settings.archive_interval_s)


@dataclass(frozen=True)
class Observation:
    """Everything a status check found. A part that could not be read is None, with the
    error that stopped it."""

    state: PipelineState | None
    broker: BrokerState | None
    redis_error: str | None = None
    broker_error: str | None = None


def observe(store: Store, celery: Celery, settings: Settings, now: float,
            queues: Sequence[str], timeout_s: float = 1.0) -> Observation:
    """Read the store and the broker; a failure becomes part of the observation."""
    state = broker = None
    redis_error = broker_error = None
    try:
        state = pipeline_state(store, settings, now)
    except Exception as exc:  # any failure to read is reported, never raised
        redis_error = _error(exc)
    try:
        broker = broker_state(celery, queues, timeout_s)
    except Exception as exc:  # as above
        broker_error = _error(exc)
    return Observation(state, broker, redis_error, broker_error)


def _error(exc: Exception) -> str:
    """The error's type and the first line of its message, short enough for one screen."""
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0]}"[:200] if lines else type(exc).__name__


def assess(seen: Observation, limits: Thresholds) -> list[Check]:
    """The verdict on each part of the service, in a fixed order. A part that could not
    be read fails."""
    checks = [
        Check("redis", Level.FAIL, "unreachable", seen.redis_error or "")
        if seen.state is None else Check("redis", Level.OK, "reachable"),
        Check("broker", Level.FAIL, "unreachable", seen.broker_error or "")
        if seen.broker is None else Check("broker", Level.OK, "reachable"),
    ]
    if seen.broker is None:
        checks += [Check(name, Level.FAIL, "unknown", "broker unreachable")
                   for name in ("workers", "queues")]
    else:
        checks += [workers_check(seen.broker.workers),
                   queues_check(seen.broker.queues, limits.queue_depth)]
    state = seen.state
    if state is None:
        return checks + [Check(name, Level.FAIL, "unknown", "Redis unreachable")
                         for name in ("pipeline lag", "rollup", "regenerate", "active cells",
                                      "live ads")]
    return checks + [
        lag_check(state, limits.lag_s),
        job_check("rollup", state.rollup, limits.rollup_age_s, state.empty),
        job_check("regenerate", state.regenerate, limits.regenerate_age_s, state.empty),
        Check("active cells", Level.OK, str(state.active_cells)),
        Check("live ads", Level.OK if state.live_ads else Level.WARN, str(state.live_ads),
              "" if state.live_ads else "no live ads: every feed is empty"),
    ] + ([shards_check(state.sharded_run, state.at, limits.regenerate_age_s)]
         if state.sharded_run else []) + (
        [job_check("archive", state.archive, limits.archive_age_s, state.empty, True)]
        if state.archive is not None else [])


def workers_check(workers: Sequence[str]) -> Check:
    if not workers:
        return Check("workers", Level.FAIL, "none", "no worker answered a ping")
    return Check("workers", Level.OK, f"{len(workers)}: {', '.join(workers)}")


def queues_check(depths: Mapping[str, int], limits: Mapping[str, int]) -> Check:
    value = ", ".join(f"{name} {depth}" for name, depth in depths.items())
    over = [f"{name} > {limits[name]}" for name, depth in depths.items()
            if name in limits and depth > limits[name]]
    limit = ", ".join(f"{name} {depth}" for name, depth in limits.items())
    return Check("queues", Level.WARN if over else Level.OK, value,
                 f"over: {', '.join(over)}" if over else f"limit {limit}")


def lag_check(state: PipelineState, limit_s: float) -> Check:
    undelivered = (f"{UNDELIVERED_COUNTED}+" if state.undelivered_batches >= UNDELIVERED_COUNTED
                   else str(state.undelivered_batches))
    value = (f"{state.lag_s:.1f} s (batches: inbox {state.inbox_batches}, pending "
             f"{state.pending_batches}, undelivered {undelivered})")
    return Check("pipeline lag", Level.FAIL if state.lag_s > limit_s else Level.OK, value,
                 f"limit {limit_s:g} s")


def shards_check(run: ShardedRun, now: float, limit_s: float) -> Check:
    """The latest sharded regeneration: how many shards reported, and the slowest. One
    still waiting for shards after ``limit_s`` warns (a lost shard's cells are rebuilt by
    the next run)."""
    slowest = (f", slowest shard {max(run.durations_s, key=run.durations_s.__getitem__)} "
               f"{max(run.durations_s.values()):.2f} s" if run.durations_s else "")
    value = f"run {run.run_id}: {run.done} of {run.shards} shards{slowest}"
    late = run.done < run.shards and now - run.started_at > limit_s
    return Check("regenerate shards", Level.WARN if late else Level.OK, value,
                 f"incomplete after {now - run.started_at:.0f} s" if late
                 else f"limit {limit_s:g} s")


def job_check(name: str, job: JobState, limit_s: float, empty: bool,
              never_run_warns: bool = False) -> Check:
    """Late (older than ``limit_s``) fails. Never run warns on an empty store (a fresh
    install), or with ``never_run_warns`` (a job added to a running service), and fails
    otherwise."""
    if job.age_s is None:
        if empty:
            return Check(name, Level.WARN, "never run", "store empty")
        if never_run_warns:
            return Check(name, Level.WARN, "never run", f"the first is due within {limit_s:g} s")
        return Check(name, Level.FAIL, "never run", f"limit {limit_s:g} s")
    value = (f"{job.age_s:.1f} s ago, took {job.duration_s or 0:.2f} s, "
             f"{PROCESSED[name]} {job.processed}, runs {job.runs}")
    return Check(name, Level.FAIL if job.age_s > limit_s else Level.OK, value,
                 f"limit {limit_s:g} s")


def overall(checks: Sequence[Check]) -> Level:
    return max((c.level for c in checks), default=Level.OK)
