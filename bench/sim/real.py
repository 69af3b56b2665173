"""The simulated city's users driving the real service: a redis-server of our own, a Celery
worker, beat and gunicorn (``devtools``), ads loaded with PUT /v1/ads/{id}, feeds asked for
with GET /v1/feed and what users did sent back with POST /v1/events, from several client
threads. One policy at a time, each on a fresh store (FLUSHALL on our own server) and fresh
processes started with that policy's FEED_STRATEGIES."""
from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from bandit import STRATEGIES
from bench.common import process_tree
from bench.sim.fast import ORACLE, Track
from bench.sim.world import World, top_valid
from devtools.procs import Proc, service_env, start_beat, start_web, start_worker
from devtools.redis_server import RedisServer
from pipeline.reports.evaluate import Report, evaluate
from store import GLOBAL_CELL, Store

ADMIN_TOKEN = "simulation-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# policy: FEED_STRATEGIES
REAL_POLICIES = {"thompson+strategies": "thompson,popular,newest,nearest",
                 "thompson": "thompson", "popular": "popular", "egreedy": "egreedy",
                 "random": "random"}
COUNTED = ("impressions", "views", "saves", "applies")
API_SAMPLE = 10  # ads whose counters are also read through GET /v1/stats/ads/{id}
EVALUATION_WINDOW_S = 600.0  # the evaluation's attribution window (users act at once here)
# event type: counter
COUNTER_OF = dict(zip(("impression", "view", "save", "apply"), COUNTED, strict=True))


@dataclass(frozen=True)
class RealSpec:
    feeds: int                          # per policy
    limit: int = 10
    radius_km: float = 5.0
    threads: int = 4
    feeds_per_s: float = 240.0          # the pace the clients keep (at most)
    event_batch: int = 500              # events per POST
    window_feeds: int = 100             # feeds per point of the time series
    settings: Mapping[str, str] = field(default_factory=dict)   # the service's environment

    def env(self, redis_url: str, strategies: str) -> dict[str, str]:
        return service_env(redis_url, ADMIN_TOKEN=ADMIN_TOKEN, LOG_LEVEL="INFO",
                           FEED_STRATEGIES=strategies, **self.settings)


@dataclass
class FeedLog:
    """What each feed showed and what its user did, by feed index."""

    shown: np.ndarray
    strategy: list[str]
    propensity: np.ndarray
    cache: list[str]
    age_s: np.ndarray                   # how old the cell's feed was when served
    applies: np.ndarray
    views: np.ndarray

    @classmethod
    def empty(cls, feeds: int, limit: int) -> FeedLog:
        return cls(np.full((feeds, limit), -1), [""] * feeds, np.zeros(feeds), [""] * feeds,
                   np.zeros(feeds), np.zeros(feeds, dtype=int), np.zeros(feeds, dtype=int))


@dataclass
class Sent:
    """Events sent, as the service answered them, and per ad and type."""

    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    posts: int = 0
    by_type: dict[str, np.ndarray] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, answer: dict, events: Sequence[dict], index: Mapping[str, int]) -> None:
        with self.lock:
            self.posts += 1
            self.events += len(events)
            self.accepted += answer.get("accepted", 0)
            self.duplicates += answer.get("duplicates", 0)
            self.rejected += len(answer.get("rejected", []))
            for e in events:
                self.by_type[COUNTER_OF[e["type"]]][index[e["ad_id"]]] += 1


@dataclass
class PolicyRun:
    policy: str
    strategies: str
    log: FeedLog
    sent: Sent
    counted: dict[str, list[int]]
    served_counted: float
    served_logged: int
    api_sample: dict[str, dict]
    drive_s: float
    feeds_per_s: float
    startup_s: float
    load_s: float
    settle_s: float
    evaluation: Report | None = None   # the service's off-policy evaluation of this run's log

    def strategy_counts(self) -> dict[str, int]:
        names, counts = np.unique(self.log.strategy, return_counts=True)
        return dict(zip(names.tolist(), counts.tolist(), strict=True))

    def as_json(self) -> dict:
        return {"strategies_setting": self.strategies, "events_sent": self.sent.events,
                "accepted": self.sent.accepted, "duplicates": self.sent.duplicates,
                "rejected": self.sent.rejected, "posts": self.sent.posts,
                "sent": {t: int(v.sum()) for t, v in self.sent.by_type.items()},
                "counted": {t: sum(v) for t, v in self.counted.items()},
                "all_counted": self.all_counted, "served_logged": self.served_logged,
                "served_counted_decayed": self.served_counted,
                "api_counters_sample": self.api_sample, "feeds_per_s": self.feeds_per_s,
                "startup_s": self.startup_s, "load_s": self.load_s, "drive_s": self.drive_s,
                "settle_s": self.settle_s, "strategies": self.strategy_counts(),
                "propensity_min": float(self.log.propensity.min()),
                "propensity_max": float(self.log.propensity.max()),
                "feed_age_median_s": float(np.median(self.log.age_s)),
                "cache_misses": self.log.cache.count("miss"),
                "feeds_with_apply": int((self.log.applies > 0).sum()),
                "evaluation": self.evaluation.as_dict() if self.evaluation else None}

    @property
    def all_counted(self) -> bool:
        return (self.sent.accepted == self.sent.events and self.sent.rejected == 0
                and self.sent.duplicates == 0
                and all(self.counted[t] == self.sent.by_type[t].tolist() for t in COUNTED)
                and all(a["api"] == a["sent"] for a in self.api_sample.values()))


def load_ads(base: str, world: World, start: float, threads: int) -> float:
    """PUT every ad of the city through the API. Returns the seconds it took."""
    started = time.perf_counter()
    lines = world.ad_lines(start)

    def put(chunk: Sequence[dict]) -> None:
        with requests.Session() as s:
            for line in chunk:
                body = {k: v for k, v in line.items() if k != "ad_id"}
                r = s.put(f"{base}/v1/ads/{line['ad_id']}", json=body, headers=ADMIN, timeout=30)
                if r.status_code not in (200, 201):
                    raise RuntimeError(f"PUT {line['ad_id']}: {r.status_code} {r.text}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, [lines[i::threads] for i in range(threads)]))
    return time.perf_counter() - started


def drive(base: str, world: World, spec: RealSpec, lat: np.ndarray, lon: np.ndarray,
          seed: int, tag: str) -> tuple[FeedLog, Sent, float]:
    """Send ``spec.feeds`` users through the service, at most ``spec.feeds_per_s``."""
    feeds = len(lat)
    log = FeedLog.empty(feeds, spec.limit)
    index = {a: i for i, a in enumerate(world.ad_ids)}
    sent = Sent(by_type={t: np.zeros(len(world), dtype=int) for t in COUNTED})
    counter = itertools.count()
    take = threading.Lock()
    errors: list[BaseException] = []
    started = time.perf_counter()

    def post(session: requests.Session, events: list[dict]) -> None:
        r = session.post(f"{base}/v1/events", json={"events": events}, timeout=60)
        if r.status_code != 202:
            raise RuntimeError(f"POST /v1/events: {r.status_code} {r.text[:500]}")
        sent.add(r.json(), events, index)

    def client() -> None:
        events: list[dict] = []
        with requests.Session() as s:
            while not errors:
                with take:
                    i = next(counter)
                if i >= feeds:
                    break
                wait = started + i / spec.feeds_per_s - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                r = s.get(f"{base}/v1/feed", timeout=30, params={
                    "lat": f"{lat[i]:.6f}", "lon": f"{lon[i]:.6f}", "limit": spec.limit,
                    "radius_km": spec.radius_km, "user_id": f"{tag}-u{i}"})
                if r.status_code != 200:
                    raise RuntimeError(f"GET /v1/feed: {r.status_code} {r.text[:500]}")
                body = r.json()
                shown = np.array([index[a["ad_id"]] for a in body["ads"]], dtype=int)
                log.shown[i, :len(shown)] = shown
                log.strategy[i], log.propensity[i] = body["strategy"], body["propensity"]
                log.cache[i] = body.get("cache", "")
                log.age_s[i] = time.time() - body["generated_at"]
                row = log.shown[i:i + 1]
                acted = world.act(row, np.random.default_rng([seed, 4, i]))
                log.applies[i], log.views[i] = acted.applied.sum(), acted.viewed.sum()
                events += feed_events(body["feed_id"], f"{tag}-u{i}", row[0], world, acted)
                if len(events) >= spec.event_batch:
                    post(s, events)
                    events = []
            if events:
                post(s, events)

    def guarded() -> None:
        try:
            client()
        except BaseException as exc:  # noqa: BLE001 (stop the other clients, raise it below)
            errors.append(exc)

    workers = [threading.Thread(target=guarded, daemon=True) for _ in range(spec.threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return log, sent, time.perf_counter() - started


def feed_events(feed_id: str, user_id: str, shown: np.ndarray, world: World, acted) -> list[dict]:
    """The events a device would send for one feed: an impression per ad shown (or, in a
    world whose devices report only what was scrolled to, per ad scrolled to), with its
    position and the feed, then views, saves and applies."""
    out = []
    for p, ad in enumerate(shown.tolist(), start=1):
        if ad < 0:
            continue
        ad_id = world.ad_ids[ad]
        for kind, happened in (("impression", acted.impressed[0, p - 1]),
                               ("view", acted.viewed[0, p - 1]),
                               ("save", acted.saved[0, p - 1]),
                               ("apply", acted.applied[0, p - 1])):
            if happened:
                out.append({"event_id": f"{feed_id}.{p}.{kind}", "ad_id": ad_id, "type": kind,
                            "feed_id": feed_id, "position": p, "user_id": user_id})
    return out


def settle(store: Store, sent: Sent, ad_ids: Sequence[str], timeout_s: float = 120.0,
           quiet_s: float = 10.0) -> dict[str, list[int]]:
    """The counters once the rollup has counted what was sent, or once they have not moved
    for ``quiet_s`` with nothing left to count (or after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    last, moved = None, time.monotonic()
    while True:
        counted = store.ad_stats(ad_ids, COUNTED)
        if all(counted[t] == sent.by_type[t].tolist() for t in COUNTED):
            return counted
        if counted != last:
            last, moved = counted, time.monotonic()
        backlog = store.backlog()
        idle = backlog["inbox"] == 0 and backlog["pending"] == 0 and backlog["lag"] <= 0
        if time.monotonic() > deadline or (idle and time.monotonic() - moved > quiet_s):
            return counted
        time.sleep(0.5)


def own_sessions() -> set[int]:
    """This process's descendants that lead a session of their own: each process that
    ``devtools.procs`` starts (and its children, in its group)."""
    out = set()
    for pid in process_tree(os.getpid())[1:]:
        try:
            if os.getsid(pid) == pid:
                out.add(pid)
        except ProcessLookupError:
            pass
    return out


def stop_session(pid: int, timeout_s: float = 10.0) -> None:
    """End a process group we started (one whose start was interrupted, so no ``Proc``
    came back to stop it): SIGTERM, then SIGKILL."""
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, ChildProcessError):
        pass


def run_policy(redis_server: RedisServer, world: World, spec: RealSpec, policy: str,
               lat: np.ndarray, lon: np.ndarray, seed: int, log_dir: Path,
               say: Callable[[str], None]) -> PolicyRun:
    """One policy on a fresh store and fresh processes, all stopped before it returns."""
    store = Store.from_url(redis_server.url)
    store.flush_all()
    env = spec.env(redis_server.url, REAL_POLICIES[policy])
    procs: list[Proc] = []
    before = own_sessions()
    try:
        tick = time.perf_counter()
        procs.append(start_worker(env, log_dir / policy))
        procs.append(start_beat(env, log_dir / policy))
        web, base = start_web(env, log_dir / policy)
        procs.append(web)
        startup_s = time.perf_counter() - tick
        load_s = load_ads(base, world, time.time(), spec.threads)
        say(f"  {policy}: processes up in {startup_s:.1f} s, {len(world):,} ads loaded in "
            f"{load_s:.1f} s; serving {len(lat):,} feeds")
        since = time.time() - 1
        log, sent, drive_s = drive(base, world, spec, lat, lon, seed, policy.replace("+", "-"))
        tick = time.perf_counter()
        counted = settle(store, sent, world.ad_ids)
        settle_s = time.perf_counter() - tick
        # what `flask --app webapp evaluate` says of this run's log (served log x events)
        evaluation = evaluate(store, since, time.time(), EVALUATION_WINDOW_S)
        stats = store.strategy_stats([GLOBAL_CELL], 2 * len(STRATEGIES)).values[0]
        api = {}
        for i in np.argsort(-sent.by_type["applies"], kind="stable")[:API_SAMPLE].tolist():
            counters = requests.get(f"{base}/v1/stats/ads/{world.ad_ids[i]}", timeout=10).json()
            api[world.ad_ids[i]] = {"api": {t: counters["counters"][t] for t in COUNTED},
                                    "sent": {t: int(sent.by_type[t][i]) for t in COUNTED}}
        run = PolicyRun(policy, REAL_POLICIES[policy], log, sent, counted,
                        served_counted=float(stats[:len(STRATEGIES)].sum()),
                        served_logged=store.served_count(), api_sample=api,
                        drive_s=drive_s, feeds_per_s=len(lat) / drive_s, startup_s=startup_s,
                        load_s=load_s, settle_s=settle_s, evaluation=evaluation)
        say(f"  {policy}: {run.feeds_per_s:.0f} feeds/s; {sent.events:,} events sent, "
            f"{sent.accepted:,} accepted; counted by the rollup: "
            f"{'all' if run.all_counted else 'NOT ALL'} (settled in {settle_s:.1f} s)")
        return run
    finally:
        for p in reversed(procs):
            p.stop()
        for pid in own_sessions() - before:      # a start interrupted (Ctrl-C, a timeout)
            stop_session(pid)
        store.close()


def tracks_of(runs: Mapping[str, PolicyRun], world: World, user_xyz: np.ndarray,
              spec: RealSpec, seed: int) -> dict[str, Track]:
    """Each policy's time series in windows of ``spec.window_feeds`` feeds (in the order the
    users came), and the oracle's for the same users."""
    oracle_shown = top_valid(np.where(world.within(user_xyz, spec.radius_km),
                                      world.value[None, :], -1.0), spec.limit)
    oracle = world.act(oracle_shown, np.random.default_rng([seed, 5]))
    out: dict[str, Track] = {}
    feeds = len(user_xyz)
    for name, shown, applies, views in (
            [(n, r.log.shown, r.log.applies, r.log.views) for n, r in runs.items()]
            + [(ORACLE, oracle_shown, oracle.applied.sum(axis=1), oracle.viewed.sum(axis=1))]):
        t = Track()
        value = world.slot_value(shown)
        for lo in range(0, feeds, spec.window_feeds):
            hi = min(feeds, lo + spec.window_feeds)
            t.impressions.append(int((shown[lo:hi] >= 0).sum()))
            t.expected.append(float(value[lo:hi].sum()))
            t.applies.append(int(applies[lo:hi].sum()))
            t.views.append(int(views[lo:hi].sum()))
        out[name] = t
    return out


def strategy_shares(run: PolicyRun, names: Sequence[str], window: int) -> list[list[float]]:
    """The share of feeds each strategy served, per window of feeds."""
    strategy = np.array([names.index(s) if s in names else -1 for s in run.log.strategy])
    return [(np.bincount(strategy[lo:lo + window][strategy[lo:lo + window] >= 0],
                         minlength=len(names)) / max(1, len(strategy[lo:lo + window]))).tolist()
            for lo in range(0, len(strategy), window)]

