"""GET /v1/feed against a trivial JSON endpoint (GET /healthz) on the same gunicorn server.

For each catalogue size N (10,000, 100,000 and 1,000,000 demo ads by default):

1. a fresh redis-server of our own (devtools.redis_server, a free loopback port);
2. N ads from ``devtools.demo.demo_ads`` written straight through ``Store.put_ads`` in chunks
   of 5,000 (new ads, so no stale feeds), not over HTTP;
3. ~500 request points drawn like the ads (same cities and spread, a fixed seed of their own,
   the same points for every N); their geohash cells are marked active and
   ``run_regenerate`` runs once, so every measured request is a cache hit;
4. gunicorn with 2 sync workers (``devtools.procs.start_web``, LOG_LEVEL=WARNING), and a
   second, idle while the first is measured, with FEED_CACHE_TTL_S=0: every feed request
   there reads its cell from Redis, the worst case of the per-process feed cache (a hot
   set of 500 cells is its best case);
5. a check that feeds are real (200, non-empty ads, all within the radius, cache hits);
6. a warm-up, then R rounds (default 3) of wrk: /healthz, /v1/feed, and /v1/feed on the
   uncached server. One Lua script drives every run: it cycles through a list of paths (one
   path for /healthz, one per request point for the feed), so the load generator costs the
   same on each side, and its done() hook prints requests, errors and latency percentiles;
7. the ``served`` stream entries logged by the measured feed requests are read back (after
   the servers' buffered log is flushed) and their ``cache`` field counted: the hit share;
8. in this process, against the same Redis: a PING, the GET of a cell's packed feed, its
   unpacking, and whole requests through the app's Flask test client (no HTTP).

Figures are medians over the R rounds; the ratio feed/trivial is taken within one run, so
the noise of this shared machine hits both sides alike. CPU seconds used by gunicorn (master
and workers), redis-server, wrk, and the rest of the machine during each wrk run are read
from /proc, which says how many cores each side really used; Redis's own time inside
commands comes from INFO commandstats. Targets: feed throughput >= 0.8 x trivial, and feed
cost flat from 10,000 to 1,000,000 ads.

The code under test is fingerprinted at the start and the end; a run during which it
changed says so.

    python -m bench.serve                 # full run, writes bench/results/serve.{json,md}
    python -m bench.serve --quick         # smoke run: 2,000 ads, one short round, no files
    python -m bench.serve --sizes 10000,100000 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import requests

import geo
from bench.common import (
    code_check,
    cpu_seconds,
    load_catalogue,
    machine,
    machine_busy_seconds,
    median,
    process_tree,
    redis_memory,
    request_points,
    say,
    table,
    write_results,
)
from config import Settings, load_settings
from devtools.procs import Proc, service_env, start_web
from devtools.redis_server import RedisServer
from pipeline.learning.regenerate import run_regenerate
from pipeline.serving.cellfeed import CellFeed
from store import Store

SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (2_000,)
POINTS = 500
LIMIT = 20
WEB_WORKERS = 2
TARGET_RATIO = 0.8
TRIVIAL_PATH = "/healthz"
UNCACHED = {"FEED_CACHE_TTL_S": "0"}  # the second server: no per-process feed cache
PACED_CONNECTIONS = 8                # the half-capacity run: each paces itself (wrk delay())
P99_TARGET_MS, P999_TARGET_MS = 5.0, 20.0   # at half capacity
LOG_FLUSH_WAIT_S = 1.0                # the servers write their served log in the background

LUA = """
local paths = {%(paths)s}
local threads = 0
local counter = 0

function setup(thread)
  thread:set("offset", threads * 131)
  threads = threads + 1
end

function init(args)
  counter = offset or 0
end

function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1])
end
%(pace)s

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect_errors": %%d, ' ..
    '"read_errors": %%d, "write_errors": %%d, "status_errors": %%d, "timeouts": %%d, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "p999_us": %%d, "mean_us": %%.1f, ' ..
    '"max_us": %%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
"""


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("bench.serve: wrk is not on PATH. Install it (apt-get install -y wrk, or "
                 "`make bench`, which installs it when missing) and run again.")
    return wrk


def feed_path(lat: float, lon: float) -> str:
    return f"/v1/feed?lat={lat:.6f}&lon={lon:.6f}&limit={LIMIT}"


def wrk_script(paths: list[str], directory: Path, name: str, pause_ms: int | None = None
               ) -> Path:
    """The Lua script of a run over ``paths``; with ``pause_ms``, each connection waits that
    long after an answer before its next request (wrk's ``delay()``): a paced run."""
    script = directory / f"{name}.lua"
    pace = "" if pause_ms is None else f"\nfunction delay()\n  return {int(pause_ms)}\nend\n"
    script.write_text(LUA % {"paths": ", ".join(json.dumps(p) for p in paths), "pace": pace})
    return script


@dataclass(frozen=True)
class Series:
    """One kind of wrk run: a script against a server."""

    name: str
    label: str
    base: str
    web: Proc
    script: Path


class Load:
    """wrk runs, with the CPU each process used while they ran and Redis's command time."""

    def __init__(self, wrk: str, redis: RedisServer, store: Store,
                 args: argparse.Namespace) -> None:
        self.wrk, self.redis, self.store, self.args = wrk, redis, store, args

    def run(self, series: Series, duration_s: float, connections: int | None = None) -> dict:
        web_pids = process_tree(series.web.proc.pid)
        commands0 = self._command_usec()
        web0, redis0 = cpu_seconds(web_pids), cpu_seconds([self.redis.proc.pid])
        busy0, wall0 = machine_busy_seconds(), time.perf_counter()
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([self.wrk, "-t", str(self.args.threads), "-c",
                               str(connections or self.args.connections), "--timeout", "5s",
                               "-d", f"{duration_s:g}s", "-s", str(series.script), series.base],
                              capture_output=True, text=True, timeout=duration_s + 60)
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter() - wall0
        busy = machine_busy_seconds() - busy0
        web_cpu = cpu_seconds(web_pids) - web0
        redis_cpu = cpu_seconds([self.redis.proc.pid]) - redis0
        commands = {k: v - commands0.get(k, 0) for k, v in self._command_usec().items()}
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        out = json.loads(line[len("WRKJSON "):])
        wrk_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
        n = max(out["requests"], 1)
        out.update({
            "rps": out["requests"] / (out["duration_us"] / 1e6),
            "p50_ms": out["p50_us"] / 1e3, "p99_ms": out["p99_us"] / 1e3,
            "p999_ms": out["p999_us"] / 1e3, "max_ms": out["max_us"] / 1e3,
            "errors": sum(out[k] for k in ("connect_errors", "read_errors", "write_errors",
                                            "status_errors", "timeouts")),
            "cores_used": {"gunicorn": web_cpu / wall, "redis": redis_cpu / wall,
                           "wrk": wrk_cpu / wall,
                           "others": (busy - web_cpu - redis_cpu - wrk_cpu) / wall,
                           "whole_machine": busy / wall},
            "cpu_us_per_request": {"gunicorn": web_cpu / n * 1e6, "redis": redis_cpu / n * 1e6,
                                   "redis_in_commands": sum(commands.values()) / n},
            "redis_command_us_per_request": {k: v / n for k, v in commands.items() if v},
        })
        return out

    def _command_usec(self) -> dict[str, int]:
        return {k: v for k, v in self.store.command_time_us().items() if k != "info"}


def paced_run(load: Load, series: Series, capacity_rps: float, work: Path, paths: list[str],
              args: argparse.Namespace) -> dict:
    """Latency at half of ``capacity_rps`` (the series' median in the rounds): PACED_CONNECTIONS
    connections, each pausing between an answer and its next request so that together they
    ask for about half the capacity (wrk with a rate-limiting script). A connection is idle
    most of the time, so a slow answer delays little else: the tail is the server's."""
    target = capacity_rps / 2
    pause_ms = max(1, round(PACED_CONNECTIONS * 1000 / target) - 1)   # ~1 ms an answer
    script = wrk_script(paths, work, f"{series.name}-paced", pause_ms)
    out = load.run(replace(series, script=script), args.paced_duration, PACED_CONNECTIONS)
    return {**out, "capacity_rps": capacity_rps, "target_rps": target, "pause_ms": pause_ms,
            "connections": PACED_CONNECTIONS, "share_of_capacity": out["rps"] / capacity_rps}


def summarise(runs: list[dict]) -> dict:
    def med(key: str) -> dict[str, float]:
        names = {k for r in runs for k in r[key]}
        return {k: median([r[key].get(k, 0.0) for r in runs]) for k in sorted(names)}

    return {"rps": median([r["rps"] for r in runs]),
            "p50_ms": median([r["p50_ms"] for r in runs]),
            "p99_ms": median([r["p99_ms"] for r in runs]),
            "errors": sum(r["errors"] for r in runs),
            "cores_used": med("cores_used"), "cpu_us_per_request": med("cpu_us_per_request"),
            "redis_command_us_per_request": med("redis_command_us_per_request"),
            "runs": runs}


def feed_sizes(store: Store, cells: list[str]) -> dict:
    """Packed size and number of distinct ads of each requested cell's feed."""
    raws = store.feed_values(cells)
    sizes = [len(r) for r in raws if r is not None]
    ads = [len(CellFeed.unpack(r)) for r in raws if r is not None]
    return {"cells": len(cells), "missing": sum(r is None for r in raws),
            "bytes_median": median(sizes) if sizes else 0, "bytes_max": max(sizes, default=0),
            "ads_median": median(ads) if ads else 0, "ads_max": max(ads, default=0)}


def check_feeds(base: str, points: list[tuple[float, float]], radius_km: float) -> dict:
    """Every point's feed over HTTP: 200, a cache hit, ads within the radius. At least one
    must hold ads, or the benchmark would measure empty feeds."""
    non_empty = hits = 0
    example: dict | None = None
    with requests.Session() as http:
        for lat, lon in points:
            resp = http.get(base + feed_path(lat, lon), timeout=30)
            if resp.status_code != 200:
                raise RuntimeError(f"feed answered {resp.status_code}: {resp.text[:500]}")
            body = resp.json()
            hits += body.get("cache") == "hit"
            if body["ads"]:
                non_empty += 1
                example = example or body
                far = [a for a in body["ads"] if a["distance_km"] > radius_km]
                if far:
                    raise RuntimeError(f"feed holds ads beyond {radius_km} km: {far[:3]}")
    if example is None:
        raise RuntimeError("every feed is empty: the benchmark would measure nothing")
    return {"points": len(points), "non_empty": non_empty, "hits": hits,
            "example_ads": len(example["ads"]), "example_first": example["ads"][0]}


def last_served_id(store: Store) -> str:
    last = store.latest_served(1)
    return last[0][0] if last else "0-0"


def cache_outcomes(store: Store, after_id: str, chunk: int = 10_000) -> dict:
    """Counts of the ``cache`` field over the served entries logged after ``after_id``."""
    counts: dict[str, int] = {}
    while True:
        rows = store.served_after(after_id, chunk)
        for _entry_id, fields in rows:
            outcome = fields.get("cache", "?")
            counts[outcome] = counts.get(outcome, 0) + 1
        if len(rows) < chunk:
            break
        after_id = rows[-1][0]
    total = sum(counts.values())
    latest = [{k: v for k, v in f.items() if k != "ads"} for _, f in store.latest_served(3)]
    return {"entries": total, "counts": counts,
            "hit_share": counts.get("hit", 0) / total if total else 0.0, "latest": latest}


STEPS = ("redis_ping", "get_feed", "unpack", "flask_healthz", "flask_feed",
         "flask_feed_uncached")


def in_process_breakdown(store: Store, settings: Settings, points: list[tuple[float, float]],
                         rounds: int) -> dict:
    """Median µs (wall, and CPU of this process) of a feed request's pieces here, against the
    same Redis: a PING, the GET of the cell's packed feed, its unpacking, and whole requests
    through the Flask test client (default settings, and without the feed cache)."""
    from webapp import create_app

    def client(**update: object):
        return create_app(settings.model_copy(update={"log_level": "WARNING", **update})
                          ).test_client()

    cached, uncached = client(), client(feed_cache_ttl_s=0)
    wall: dict[str, list[float]] = {k: [] for k in STEPS}
    cpu: dict[str, list[float]] = {k: [] for k in STEPS}

    def clock(step: str, fn: Callable[[], object]) -> object:
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        wall[step].append((time.perf_counter() - w0) * 1e6)
        cpu[step].append((time.process_time() - c0) * 1e6)
        return out

    cells = [geo.encode(lat, lon, settings.geohash_precision) for lat, lon in points]
    paths = [feed_path(lat, lon) for lat, lon in points]
    for path in paths:
        cached.get(path)
    for _ in range(rounds):
        for cell, path in zip(cells, paths, strict=True):
            clock("redis_ping", store.ping)
            raw = clock("get_feed", partial(store.feed_value, cell))
            clock("unpack", partial(CellFeed.unpack, raw))
            clock("flask_healthz", partial(cached.get, TRIVIAL_PATH))
            clock("flask_feed", partial(cached.get, path))
            clock("flask_feed_uncached", partial(uncached.get, path))
    time.sleep(LOG_FLUSH_WAIT_S)  # let the apps' served-log threads flush before Redis stops
    return {"wall_us": {k: median(v) for k, v in wall.items()},
            "cpu_us": {k: median(v) for k, v in cpu.items()}}


def cpu_budget(redis_url: str, points: int, rounds: int, work: Path) -> dict:
    """``bench.budget`` in a process of its own, whose prometheus-client writes its metrics
    to files as a gunicorn worker's does."""
    metrics_dir = work / "budget-metrics"
    metrics_dir.mkdir(exist_ok=True)
    env = service_env(redis_url, LOG_LEVEL="WARNING", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    done = subprocess.run([sys.executable, "-m", "bench.budget", "--redis-url", redis_url,
                           "--points", str(points), "--rounds", str(rounds)],
                          env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"bench.budget failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_size(n: int, points: list[tuple[float, float]], wrk: str,
                 args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-serve-{n}-"))
    redis = RedisServer(work / "redis")
    webs: list[Proc] = []
    ok = False
    try:
        redis.start()
        say(f"N={n:,}: redis-server on port {redis.port}; loading ads")
        store = Store.from_url(redis.url)
        settings = load_settings({}, redis_url=redis.url)
        now = time.time()
        load_s = load_catalogue(store, n, now)
        say(f"N={n:,}: loaded in {load_s:.1f} s; regenerating the requested cells")
        cells = sorted({geo.encode(lat, lon, settings.geohash_precision) for lat, lon in points})
        store.mark_active({c: now for c in cells})
        regen = run_regenerate(store, settings, now, np.random.default_rng(1))
        sizes = feed_sizes(store, cells)
        say(f"N={n:,}: regenerated {regen['written']} cells in {regen['duration_s']:.1f} s; "
            f"feeds median {sizes['bytes_median']:,.0f} B, {sizes['ads_median']:.0f} ads")

        env = service_env(redis.url, LOG_LEVEL="WARNING")
        web, base = start_web(env, work, workers=WEB_WORKERS)
        webs.append(web)
        paths = {"trivial": [TRIVIAL_PATH], "feed": [feed_path(*p) for p in points]}
        series = [Series("trivial", f"GET {TRIVIAL_PATH}", base, web,
                         wrk_script(paths["trivial"], work, "trivial")),
                  Series("feed", "GET /v1/feed", base, web,
                         wrk_script(paths["feed"], work, "feed"))]
        if not args.no_uncached:
            web2, base2 = start_web({**env, **UNCACHED}, work, workers=WEB_WORKERS,
                                    name="web-uncached")
            webs.append(web2)
            series.append(Series("feed_uncached", "GET /v1/feed, FEED_CACHE_TTL_S=0", base2,
                                 web2, series[1].script))
        checked = check_feeds(base, points, settings.feed_radius_km)
        say(f"N={n:,}: {checked['non_empty']}/{checked['points']} feeds hold ads, "
            f"{checked['hits']} were cache hits")
        if not args.no_uncached:
            check_feeds(series[2].base, points[:50], settings.feed_radius_km)

        load = Load(wrk, redis, store, args)
        for s in series:
            load.run(s, args.warmup)
        time.sleep(LOG_FLUSH_WAIT_S)
        after = last_served_id(store)
        runs: dict[str, list[dict]] = {s.name: [] for s in series}
        for r in range(args.repeats):
            for s in series:
                runs[s.name].append(load.run(s, args.duration))
            say(f"N={n:,} round {r + 1}/{args.repeats}: " + ", ".join(
                f"{name} {rs[-1]['rps']:,.0f} req/s" for name, rs in runs.items()))
        half = {s.name: paced_run(load, s, median([r["rps"] for r in runs[s.name]]), work,
                                  paths[s.name], args)
                for s in series[:2]}
        say(f"N={n:,}: at half capacity, " + ", ".join(
            f"{name} {h['rps']:,.0f} req/s, p99 {h['p99_ms']:.2f} ms, p99.9 {h['p999_ms']:.2f} ms"
            for name, h in half.items()))
        time.sleep(LOG_FLUSH_WAIT_S)
        outcomes = cache_outcomes(store, after)
        breakdown = in_process_breakdown(store, settings, points, args.breakdown_rounds)
        budget = cpu_budget(redis.url, len(points), args.breakdown_rounds, work)
        summary = {s.name: {"label": s.label, **summarise(runs[s.name])} for s in series}
        trivial_rounds = [r["rps"] for r in runs["trivial"]]
        ratios = {name: {"median_rps_ratio": summary[name]["rps"] / summary["trivial"]["rps"],
                         "per_round": [r["rps"] / t for r, t
                                       in zip(runs[name], trivial_rounds, strict=True)]}
                  for name in summary if name != "trivial"}
        ok = True
        return {"ads": n, "load_s": round(load_s, 1), "regenerate": regen, "feeds": sizes,
                "check": checked, "series": summary, "ratio_to_trivial": ratios,
                "half_capacity": half,
                "cache": outcomes, "in_process_us": breakdown, "budget": budget,
                "redis_memory": redis_memory(store)}
    finally:
        for web in webs:
            web.stop()
        redis.stop()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}", file=sys.stderr)


def markdown(result: dict) -> str:
    p, m = result["params"], result["machine"]
    names = [k for k in ("trivial", "feed", "feed_uncached") if k in result["sizes"][0]["series"]]
    header = ["ads", "trivial req/s", "feed req/s (x trivial)"]
    if "feed_uncached" in names:
        header.append("feed, no process cache, req/s (x trivial)")
    header += [f"{n} p50 / p99 ms" for n in names]
    header += ["cache hits", "packed feed B (ads)"]
    rows = []
    for s in result["sizes"]:
        ser, ratio = s["series"], s["ratio_to_trivial"]
        row = [f"{s['ads']:,}", f"{ser['trivial']['rps']:,.0f}"]
        row += [f"{ser[n]['rps']:,.0f} ({ratio[n]['median_rps_ratio']:.2f})"
                for n in names if n != "trivial"]
        row += [f"{ser[n]['p50_ms']:.2f} / {ser[n]['p99_ms']:.2f}" for n in names]
        row += [f"{s['cache']['hit_share']:.1%} of {s['cache']['entries']:,}",
                f"{s['feeds']['bytes_median']:,.0f} ({s['feeds']['ads_median']:.0f})"]
        rows.append(row)
    out = [
        "# GET /v1/feed against GET /healthz on the same gunicorn server\n\n",
        f"{m['date']}, os.cpu_count() = {m['os_cpu_count']}, code {m['code_digest']}"
        f"{' (CHANGED during the run)' if result['code']['code_changed_during_run'] else ''}; "
        f"gunicorn {WEB_WORKERS} sync workers per server, redis-server in its own process, "
        f"wrk -t{p['threads']} -c{p['connections']} -d{p['duration_s']:g}s, all sharing the "
        f"same {m['os_cpu_count']} cores, unpinned. Medians over {p['repeats']} rounds "
        f"(trivial, feed{', feed without process cache' if 'feed_uncached' in names else ''}); "
        f"{p['points']} request points (limit={LIMIT}). Targets: feed >= {TARGET_RATIO} x "
        "trivial; flat in N.\n\n",
        table(header, rows),
    ]
    paced = [[f"{s['ads']:,}", name, f"{h['capacity_rps']:,.0f}",
               f"{h['rps']:,.0f} ({h['share_of_capacity']:.2f})",
               f"{h['p50_ms']:.2f}", f"{h['p99_ms']:.2f}", f"{h['p999_ms']:.2f}",
               f"{h['max_ms']:.1f}", f"{h['requests']:,}", f"{h['errors']}"]
              for s in result["sizes"] for name, h in s.get("half_capacity", {}).items()]
    if paced:
        h0 = next(iter(result["sizes"][0]["half_capacity"].values()))
        out += [f"\nLatency at half capacity (targets for the feed: p99 <= {P99_TARGET_MS:g} ms, "
                f"p99.9 <= {P999_TARGET_MS:g} ms): wrk with a rate-limiting script, "
                f"{h0['connections']} connections, each waiting {h0['pause_ms']} ms or so "
                f"after an answer ({p['paced_duration_s']:g} s a run, after the rounds):\n\n",
                table(["ads", "series", "capacity req/s (rounds' median)",
                       "paced req/s (x capacity)", "p50 ms", "p99 ms", "p99.9 ms", "max ms",
                       "requests", "errors"], paced)]
    cost = []
    for s in result["sizes"]:
        for n in names:
            x = s["series"][n]
            top = sorted(x["redis_command_us_per_request"].items(), key=lambda kv: -kv[1])[:3]
            cost.append([f"{s['ads']:,}", n, *(f"{x['cpu_us_per_request'][k]:,.0f}" for k in
                                               ("gunicorn", "redis", "redis_in_commands")),
                         ", ".join(f"{k} {v:,.0f}" for k, v in top) or "-",
                         *(f"{x['cores_used'][k]:.2f}" for k in
                           ("gunicorn", "redis", "wrk", "others", "whole_machine"))])
    out += ["\nCost per request and cores used (CPU seconds / wall seconds), medians:\n\n",
            table(["ads", "series", "gunicorn CPU µs/req", "redis CPU µs/req",
                   "of which in commands", "top commands µs/req", "cores: gunicorn", "redis",
                   "wrk", "other processes", "whole machine"], cost)]
    parts = [[f"{s['ads']:,}", kind.split("_")[0],
              *(f"{s['in_process_us'][kind][k]:,.0f}" for k in STEPS)]
             for s in result["sizes"] for kind in ("wall_us", "cpu_us")]
    out += ["\nIn this process against the same Redis (median µs, wall and CPU of the bench "
            "process): a PING, the GET of a cell's packed feed, its unpacking, whole requests "
            "through the Flask test client (no HTTP):\n\n",
            table(["ads", "clock", "PING", "GET feed", "unpack", "flask /healthz",
                   "flask /v1/feed", "flask /v1/feed, no process cache"], parts)]
    out += budget_markdown(result)
    flat = result["flatness"]
    out.append("\nFeed req/s by N: " + "; ".join(
        f"{n}: {', '.join(f'{v:,.0f}' for v in vals)} (largest / smallest N = "
        f"{vals[-1] / vals[0]:.2f})" for n, vals in flat["rps"].items()) + ".\n")
    return "".join(out)


def budget_markdown(result: dict) -> list[str]:
    """The CPU budget of a feed request, step by step, next to /healthz's, for each size:
    ``bench.budget``'s steps, the framework's rest, and gunicorn's (the server's CPU a
    request, from the wrk runs, less the test client's whole request)."""
    from bench.budget import FEED_STEPS, HEALTHZ_STEPS
    sizes = [s for s in result["sizes"] if "budget" in s]
    if not sizes:
        return []
    healthz_names = dict(HEALTHZ_STEPS)

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:,.1f}"

    rows = []
    for key, label in FEED_STEPS:
        row = [label]
        for s in sizes:
            b = s["budget"]
            row += [cell(b["feed_steps_us"][key]), cell(b["healthz_steps_us"].get(key))]
        rows.append(row)
    rows.append([healthz_names["handler"] + ", /healthz's"] + [
        v for s in sizes for v in ("", cell(s["budget"]["healthz_steps_us"]["handler"]))])
    rows.append(["Flask, werkzeug and the hooks' own code (the rest of a test-client request)"]
                + [cell(s["budget"]["framework_us"][k]) for s in sizes
                   for k in ("feed", "healthz")])
    rows.append(["a whole request through the Flask test client"]
                + [cell(s["budget"]["whole_us"][k]) for s in sizes for k in ("feed", "healthz")])
    server = {s["ads"]: {"feed": s["series"]["feed"]["cpu_us_per_request"]["gunicorn"],
                         "healthz": s["series"]["trivial"]["cpu_us_per_request"]["gunicorn"]}
              for s in sizes}
    rows.append(["gunicorn, HTTP and the socket (the server's CPU a request less the test "
                 "client's)"] + [cell(server[s["ads"]][k] - s["budget"]["whole_us"][k])
                                 for s in sizes for k in ("feed", "healthz")])
    rows.append(["**on the server: gunicorn's CPU a request (wrk runs, median)**"]
                + [f"**{server[s['ads']][k]:,.0f}**" for s in sizes for k in ("feed", "healthz")])
    rows.append(["feed / healthz, CPU a request on the server (target 1.25)"]
                + [v for s in sizes for v in (
                    f"{server[s['ads']]['feed'] / server[s['ads']]['healthz']:.2f}", "")])
    header = ["step (µs of CPU, median)"] + [f"{s['ads']:,} ads: {k}" for s in sizes
                                             for k in ("feed", "healthz")]
    b0 = sizes[0]["budget"]
    return ["\nCPU budget of a request, step by step (`bench.budget`: each step of "
            "`serve_feed` timed alone with the functions it calls, over the request points, "
            f"{b0['requests']:,} times, in a process whose metrics are written to files as "
            f"gunicorn's workers' are, LOG_LEVEL={b0['log_level']}; blank: a step /healthz "
            "does not take):\n\n", table(header, rows)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2,000 ads, 1 short round, no result files")
    parser.add_argument("--sizes", help="comma-separated catalogue sizes (default 10k,100k,1M)")
    parser.add_argument("--repeats", type=int, help="rounds of runs; default 3")
    parser.add_argument("--duration", type=float, help="seconds per wrk run; default 10")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--points", type=int, default=POINTS, help="request points (default 500)")
    parser.add_argument("--no-uncached", action="store_true",
                        help="skip the second server without the per-process feed cache")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    sizes = (tuple(int(s.replace("_", "")) for s in args.sizes.split(",")) if args.sizes
             else QUICK_SIZES if args.quick else SIZES)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = 1.0 if args.quick else 3.0
    args.breakdown_rounds = 1 if args.quick else 3
    args.paced_duration = 3.0 if args.quick else 20.0
    wrk = require_wrk()

    points = request_points(args.points, time.time())
    result: dict = {
        "benchmark": "serve", "machine": machine(),
        "params": {"sizes": list(sizes), "repeats": args.repeats, "duration_s": args.duration,
                   "warmup_s": args.warmup, "threads": args.threads,
                   "connections": args.connections, "points": len(points), "limit": LIMIT,
                   "web_workers": WEB_WORKERS, "wrk": subprocess.run(
                       [wrk, "--version"], capture_output=True, text=True).stdout.split("\n")[0],
                   "trivial_path": TRIVIAL_PATH, "uncached_server_env": UNCACHED,
                   "target_ratio": TARGET_RATIO, "quick": args.quick,
                   "paced_duration_s": args.paced_duration,
                   "paced_connections": PACED_CONNECTIONS},
        "sizes": [],
    }
    started = time.perf_counter()
    for n in sizes:
        result["sizes"].append(measure_size(n, points, wrk, args))
    feed_names = [k for k in result["sizes"][0]["series"] if k != "trivial"]
    result["flatness"] = {"ads": list(sizes), "rps": {
        name: [s["series"][name]["rps"] for s in result["sizes"]] for name in feed_names}}
    result["targets"] = {"feed_ratio_met": {
        str(s["ads"]): s["ratio_to_trivial"]["feed"]["median_rps_ratio"] >= TARGET_RATIO
        for s in result["sizes"]},
        "half_capacity_feed_p99_met": {
            str(s["ads"]): s["half_capacity"]["feed"]["p99_ms"] <= P99_TARGET_MS
            for s in result["sizes"]},
        "half_capacity_feed_p999_met": {
            str(s["ads"]): s["half_capacity"]["feed"]["p999_ms"] <= P999_TARGET_MS
            for s in result["sizes"]}}
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["code"] = code_check(result["machine"]["code_digest"])
    md = markdown(result)
    print("\n" + md)
    if not (args.no_write or args.quick):
        paths = write_results("serve", result, md)
        say(f"wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
