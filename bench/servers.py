"""The web server, chosen by measurement: gunicorn's sync workers (the Procfile's), gunicorn's
gthread workers and granian's WSGI mode, side by side in one run, on /healthz and /v1/feed.

One redis-server of our own with N demo ads (100,000 by default) and the request points'
cells regenerated, as ``bench.serve`` prepares them. Then for each server in turn, 2 worker
processes on the loopback (gthread: 4 threads each, granian: 4 blocking threads each) with
their metrics written to files as in production: a warm-up, R rounds (default 3) of wrk
-c8 on each endpoint (the capacity), then a paced run at half the feed's capacity (wrk with
a rate-limiting script, as ``bench.serve``). Servers take turns within each round, so the
machine's noise hits them alike. Figures are medians over the rounds; CPU per request is
the server's process tree's (from /proc).

    python -m bench.servers                   # writes bench/results/servers.{json,md}
    python -m bench.servers --ads 10000 --repeats 1 --no-write
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import geo
from bench.common import (
    code_check,
    load_catalogue,
    machine,
    median,
    request_points,
    say,
    table,
    write_results,
)
from bench.serve import (
    POINTS,
    TRIVIAL_PATH,
    Load,
    Series,
    feed_path,
    paced_run,
    require_wrk,
    wrk_script,
)
from config import load_settings
from devtools.procs import WEB_SERVERS, Proc, service_env, start_web
from devtools.redis_server import RedisServer
from pipeline.learning.regenerate import run_regenerate
from store import Store

WORKERS, THREADS = 2, 4


def measure(args: argparse.Namespace, wrk: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-servers-"))
    redis = RedisServer(work / "redis")
    webs: dict[str, tuple[Proc, str]] = {}
    try:
        redis.start()
        store = Store.from_url(redis.url)
        settings = load_settings({}, redis_url=redis.url)
        now = time.time()
        say(f"{args.ads:,} ads into redis-server on port {redis.port}")
        load_catalogue(store, args.ads, now)
        points = request_points(POINTS, now)
        store.mark_active({geo.encode(la, lo, settings.geohash_precision): now
                           for la, lo in points})
        run_regenerate(store, settings, now, np.random.default_rng(1))
        paths = {"trivial": [TRIVIAL_PATH], "feed": [feed_path(*p) for p in points]}
        scripts = {name: wrk_script(p, work, name) for name, p in paths.items()}
        for server in args.servers:
            metrics = work / f"metrics-{server}"
            metrics.mkdir()
            env = service_env(redis.url, LOG_LEVEL="WARNING",
                              PROMETHEUS_MULTIPROC_DIR=str(metrics))
            webs[server] = start_web(env, work, workers=WORKERS, server=server,
                                     threads=THREADS, name=f"web-{server}")
        load = Load(wrk, redis, store, args)
        series = {(server, name): Series(name, f"{server} {name}", base, web, scripts[name])
                  for server, (web, base) in webs.items() for name in scripts}
        for s in series.values():
            load.run(s, args.warmup)
        runs: dict[tuple[str, str], list[dict]] = {key: [] for key in series}
        for r in range(args.repeats):
            for key, s in series.items():
                runs[key].append(load.run(s, args.duration))
            say(f"round {r + 1}/{args.repeats}: " + ", ".join(
                f"{server} {name} {rs[-1]['rps']:,.0f} req/s"
                for (server, name), rs in runs.items()))
        out: dict[str, dict] = {}
        for server in webs:
            capacity = {name: median([r["rps"] for r in runs[(server, name)]])
                        for name in scripts}
            half = paced_run(load, series[(server, "feed")], capacity["feed"], work,
                             paths["feed"], args)
            out[server] = {
                name: {"rps": capacity[name],
                       "cpu_us_per_request": median([r["cpu_us_per_request"]["gunicorn"]
                                                     for r in runs[(server, name)]]),
                       "p99_ms": median([r["p99_ms"] for r in runs[(server, name)]]),
                       "errors": sum(r["errors"] for r in runs[(server, name)]),
                       "rounds": [r["rps"] for r in runs[(server, name)]]}
                for name in scripts}
            out[server]["ratio"] = [f["rps"] / t["rps"] for f, t in
                                    zip(runs[(server, "feed")], runs[(server, "trivial")],
                                        strict=True)]
            out[server]["feed_half_capacity"] = half
            say(f"{server}: feed at half capacity {half['rps']:,.0f} req/s, "
                f"p99 {half['p99_ms']:.2f} ms, p99.9 {half['p999_ms']:.2f} ms")
        return out
    finally:
        for web, _ in webs.values():
            web.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


def markdown(result: dict) -> str:
    m, p = result["machine"], result["params"]
    rows = []
    for server, r in result["servers"].items():
        half = r["feed_half_capacity"]
        rows.append([server, f"{r['trivial']['rps']:,.0f}", f"{r['feed']['rps']:,.0f}",
                     f"{median(r['ratio']):.2f}", f"{r['trivial']['cpu_us_per_request']:,.0f}",
                     f"{r['feed']['cpu_us_per_request']:,.0f}",
                     f"{r['trivial']['p99_ms']:.2f} / {r['feed']['p99_ms']:.2f}",
                     f"{half['rps']:,.0f} ({half['share_of_capacity']:.2f})",
                     f"{half['p50_ms']:.2f} / {half['p99_ms']:.2f} / {half['p999_ms']:.2f}",
                     str(r["trivial"]["errors"] + r["feed"]["errors"] + half["errors"])])
    fastest = max(result["servers"], key=lambda s: result["servers"][s]["feed"]["rps"])
    return "".join([
        "# The web server: gunicorn sync, gunicorn gthread and granian (WSGI), side by side\n\n",
        f"{m['date']}, os.cpu_count() = {m['os_cpu_count']}, code {m['code_digest']}"
        f"{' (CHANGED during the run)' if result['code']['code_changed_during_run'] else ''}; "
        f"{p['ads']:,} ads; {WORKERS} worker processes a server (gthread {THREADS} threads "
        f"each, granian {THREADS} blocking threads each), redis-server, wrk -t1 -c8 "
        f"-d{p['duration_s']:g}s, all on the same cores; the servers take turns in each of "
        f"{p['repeats']} rounds; medians. Command: `python -m bench.servers`.\n\n",
        table(["server", "/healthz req/s", "/v1/feed req/s", "feed / healthz",
               "healthz CPU µs/req", "feed CPU µs/req", "p99 ms at capacity (healthz / feed)",
               "feed paced at half capacity, req/s (x capacity)",
               "paced feed p50 / p99 / p99.9 ms", "errors"], rows),
        f"\nThe most feeds a second: **{fastest}**.\n"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ads", type=int, default=100_000)
    parser.add_argument("--servers", default=",".join(WEB_SERVERS),
                        help=f"comma-separated, of {', '.join(WEB_SERVERS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.threads, args.connections, args.warmup, args.paced_duration = 1, 8, 3.0, 20.0
    wrk = require_wrk()
    result = {"benchmark": "servers", "machine": machine(),
              "params": {"ads": args.ads, "servers": args.servers, "repeats": args.repeats,
                         "duration_s": args.duration, "workers": WORKERS, "threads": THREADS}}
    result["servers"] = measure(args, wrk)
    result["code"] = code_check(result["machine"]["code_digest"])
    md = markdown(result)
    print("\n" + md)
    if not args.no_write:
        paths = write_results("servers", result, md)
        say(f"wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
