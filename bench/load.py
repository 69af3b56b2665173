"""A mixed load at capacity on the real processes, then an account of every event.

A redis-server of our own, gunicorn (2 workers), a Celery worker (2 processes) and beat
(rollup every second, regeneration every 10 s), 5,000 demo ads; wrk with 8 connections for
``--seconds`` (default 60) sends GET /v1/feed at 500 points spread like the ads and, every
fifth request, POST /v1/events with 50 new events (unique ids). wrk's Lua counts, per thread,
the feeds answered 200 and the events each 202 accepted. Afterwards the rollup must have
counted exactly the accepted events: no more, no fewer. Everything, wrk included, shares the
machine's cores, so the rate is this machine's capacity for the mix.

    python -m bench.load                   # writes bench/results/load.{json,md}
    python -m bench.load --seconds 10 --out /tmp/load
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import (
    RESULTS,
    cpu_seconds,
    load_catalogue,
    machine,
    process_tree,
    request_points,
    say,
    table,
)
from config import load_settings
from devtools.procs import service_env, start_beat, start_web, start_worker
from devtools.redis_server import RedisServer
from store import STAT_FIELDS, Store

ADS, POINTS, CONNECTIONS, THREADS = 5_000, 500, 8, 2
POST_EVERY, PER_POST = 5, 50
LAG_EVERY_S = 10.0
ADMIN_TOKEN = "load-admin-token-0123456789"
SETTINGS = {"ROLLUP_INTERVAL_S": "1", "REGEN_INTERVAL_S": "10"}

LUA = """
local paths = {%(paths)s}
local ads = {%(ads)s}
local kinds = {"impression", "impression", "impression", "view", "save", "apply", "hide"}
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  n, feeds, posts, accepted, bad = 0, 0, 0, 0, 0
end

function request()
  n = n + 1
  if n %% %(every)d == 0 then
    local events = {}
    for i = 1, %(per_post)d do
      local k = (n * 7 + i) %% #kinds + 1
      events[i] = string.format(
        '{"event_id":"w%%d-%%d-%%d","ad_id":"%%s","type":"%%s","position":%%d}',
        tid, n, i, ads[(n + i) %% #ads + 1], kinds[k], i %% 10 + 1)
    end
    return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json"},
                      '{"events":[' .. table.concat(events, ",") .. ']}')
  end
  return wrk.format("GET", paths[(n + tid * 131) %% #paths + 1])
end

function response(status, headers, body)
  if status == 202 then
    posts = posts + 1
    accepted = accepted + tonumber(string.match(body, '"accepted":(%%d+)'))
  elseif status == 200 then
    feeds = feeds + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local f, p, a, b = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    f, p, a, b = f + t:get("feeds"), p + t:get("posts"), a + t:get("accepted"), b + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "socket_errors": %%d, "status_errors": %%d, ' ..
    '"timeouts": %%d, "feeds": %%d, "posts": %%d, "accepted": %%d, "bad": %%d, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write, e.status, e.timeout,
    f, p, a, b, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
"""


def run(seconds: float, work: Path, post_every: int = POST_EVERY,
        per_post: int = PER_POST, settings: dict[str, str] | None = None) -> dict:
    """The whole run; returns its figures (``accounted``: the rollup counted exactly what
    was accepted). ``settings``: the service's, over the bench's own."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not on PATH (Debian package wrk; `make test` installs it)")
    server = RedisServer(work / "redis").start()
    procs = []
    try:
        store = Store.from_url(server.url)
        now = time.time()
        load_catalogue(store, ADS, now)
        env = service_env(server.url, ADMIN_TOKEN=ADMIN_TOKEN, **{**SETTINGS, **(settings or {})})
        procs += [start_worker(env, work), start_beat(env, work)]
        web, base = start_web({**env, "LOG_LEVEL": "WARNING"}, work)   # no line per request
        procs.append(web)
        ad_ids = [a.decode() for a in store.ad_summaries().ids]
        paths = [f"/v1/feed?lat={lat:.6f}&lon={lon:.6f}&limit=20"
                 for lat, lon in request_points(POINTS, now)]
        script = work / "load.lua"
        script.write_text(LUA % {"paths": ", ".join(json.dumps(p) for p in paths),
                                 "ads": ", ".join(json.dumps(a) for a in ad_ids[:500]),
                                 "every": post_every, "per_post": per_post})
        healthz = None
        if post_every == 1:       # events only: the server's capacity for a trivial request
            healthz = healthz_rate(wrk, base, min(10.0, seconds))
            say(f"/healthz: {healthz:,.0f} requests a second")
        say(f"wrk: {CONNECTIONS} connections for {seconds:g} s against {base}")
        groups = {"gunicorn": web, "celery worker": procs[0], "beat": procs[1]}
        cpu_before = {name: cpu_seconds(process_tree(p.proc.pid)) for name, p in groups.items()}
        cpu_before["redis"] = cpu_seconds([server.proc.pid])
        lag = LagSampler(Store.from_url(server.url), LAG_EVERY_S).start()
        try:
            done = subprocess.run([wrk, "-t", str(THREADS), "-c", str(CONNECTIONS), "--timeout",
                                   "10s", "-d", f"{seconds:g}s", "-s", str(script), base],
                                  capture_output=True, text=True, timeout=seconds + 120)
        finally:
            lag.stop()
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        out = json.loads(line[len("WRKJSON "):])
        settle_started = time.perf_counter()
        window_s = load_settings(env).dedupe_window_s    # as the web has it
        time.sleep(1.0)                  # the last posts wrk left in flight finish meanwhile
        counted = settle(store, ad_ids, store.accepted_count(time.time(), window_s))
        cpu = {name: cpu_seconds(process_tree(p.proc.pid)) - cpu_before[name]
               for name, p in groups.items()}
        cpu["redis"] = cpu_seconds([server.proc.pid]) - cpu_before["redis"]
        # nothing posts any more: what the server accepted is what wrk saw answered plus
        # what was in flight when it stopped
        accepted = store.accepted_count(time.time(), window_s)
        in_flight = accepted - out["accepted"]
        out.update({
            "seconds": seconds, "rps": out["requests"] / (out["duration_us"] / 1e6),
            "p50_ms": out["p50_us"] / 1e3, "p90_ms": out["p90_us"] / 1e3,
            "p99_ms": out["p99_us"] / 1e3, "max_ms": out["max_us"] / 1e3,
            "errors": out["socket_errors"] + out["status_errors"] + out["timeouts"] + out["bad"],
            "accepted_by_server": accepted, "in_flight_at_stop": in_flight, "counted": counted,
            "accounted": counted == accepted and 0 <= in_flight <= CONNECTIONS * per_post,
            "settle_s": time.perf_counter() - settle_started, "machine": machine(server),
            "post_every": post_every, "per_post": per_post, "healthz_rps": healthz,
            "lag_s": lag.samples,
            "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        })
        return out
    finally:
        for p in reversed(procs):
            p.stop()
        server.stop()


class LagSampler:
    """The rollup's lag (how long the oldest event not yet counted has waited, inbox
    included) every ``every_s`` while the load runs: flat if the rollup keeps up, growing
    if it falls behind."""

    def __init__(self, store: Store, every_s: float) -> None:
        self.store, self.every_s = store, every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)

    def start(self) -> LagSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(round(self.store.unrolled().lag_s(time.time()), 2))


def healthz_rate(wrk: str, base: str, seconds: float) -> float:
    """Requests a second GET /healthz answers on the same server, with the same wrk."""
    done = subprocess.run([wrk, "-t", str(THREADS), "-c", str(CONNECTIONS), "-d",
                           f"{seconds:g}s", f"{base}/healthz"],
                          capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("Requests/sec:")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk /healthz failed ({done.returncode}):\n{done.stdout}")
    return float(line.split()[1])


def settle(store: Store, ad_ids: list[str], accepted: int, timeout_s: float = 120.0) -> int:
    """Every event the rollup counted, once nothing is left to count (or after a timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        counted = sum(sum(v) for v in store.ad_stats(ad_ids, STAT_FIELDS).values())
        backlog = store.backlog()
        idle = backlog == {"pending": 0, "lag": 0, "inbox": 0}
        if (counted >= accepted and idle) or time.monotonic() > deadline:
            time.sleep(2.0)                 # anything counted twice would show by now
            return sum(sum(v) for v in store.ad_stats(ad_ids, STAT_FIELDS).values())
        time.sleep(0.5)


def cpu_rows(r: dict) -> list[list[str]]:
    """CPU each process group used from the load's start until every event was counted,
    and, when every request posted events, per event."""
    cpu = r["cpu_s"]
    rows = [["CPU seconds: " + ", ".join(cpu), ", ".join(f"{v:.1f}" for v in cpu.values())]]
    if r["feeds"] == 0 and r["counted"]:
        per = {k: v / r["counted"] * 1e6 for k, v in cpu.items()}
        rows.append(["CPU per event: " + ", ".join(per),
                     ", ".join(f"{v:.0f} µs" for v in per.values())
                     + f"; {sum(per.values()):.0f} µs in all"])
    return rows


def runs_line(r: dict) -> str:
    """With several runs: each one's events a second, its lag's last sample and its CPU
    per event; the table is the median run's."""
    if len(r.get("runs", [])) < 2:
        return ""
    each = [f"{x['events_per_s']:,.0f} events/s (last lag {x['lag_s'][-1] if x['lag_s'] else 0:.1f}"
            f" s, {sum(x['cpu_s'].values()) / x['counted'] * 1e6:.0f} "
            f"µs an event{'' if x['accounted'] and not x['errors'] else ', NOT accounted'})"
            for x in r["runs"]]
    return f" {len(each)} runs: " + "; ".join(each) + ". The table is the median run's."


def markdown(r: dict, command: str) -> str:
    m = r["machine"]
    every, per_post = r["post_every"], r.get("per_post", PER_POST)
    mix = (f"every request POST /v1/events with {per_post} new events" if every == 1 else
           f"GET /v1/feed at {POINTS} points, and every {every}th request POST /v1/events "
           f"with {per_post} new events")
    return "".join([
        f"# {'Events' if every == 1 else 'Mixed load'} at capacity: {r['seconds']:g} s\n\n",
        f"{m['date']}, os.cpu_count() = {m['os_cpu_count']}; `{command}`. gunicorn (2 workers), "
        "a Celery worker (2 processes), beat, redis-server and wrk "
        f"(-t{THREADS} -c{CONNECTIONS}) all share the machine. {ADS:,} ads; {mix}.",
        "".join(f" {k}={v}." for k, v in r.get("settings", {}).items()),
        runs_line(r), "\n\n",
        table(["figure", "value"], [
            ["requests (rate)", f"{r['requests']:,} ({r['rps']:,.0f}/s)"],
            *([["events accepted a second (posts a second); GET /healthz on the same "
                "server, just before", f"{r['accepted'] / r['seconds']:,.0f} "
                f"({r['posts'] / r['seconds']:,.0f}); {r['healthz_rps']:,.0f} requests a second"]]
              if every == 1 and r.get("healthz_rps") else []),
            ["feeds answered 200 / posts answered 202", f"{r['feeds']:,} / {r['posts']:,}"],
            ["errors (socket, non-2xx, timeouts)", f"{r['errors']}"],
            ["latency p50 / p90 / p99 / max", f"{r['p50_ms']:.1f} / {r['p90_ms']:.1f} / "
             f"{r['p99_ms']:.1f} / {r['max_ms']:.1f} ms"],
            ["events accepted (202s wrk read + in flight when it stopped) / counted",
             f"{r['accepted_by_server']:,} ({r['accepted']:,} + {r['in_flight_at_stop']:,}) / "
             f"{r['counted']:,}: {'every one' if r['accounted'] else 'NOT'} accounted for "
             f"(settled {r['settle_s']:.1f} s after the load)"],
            *([[f"the rollup's lag every {LAG_EVERY_S:g} s of the load (the oldest event not "
                "yet counted)", ", ".join(f"{v:.1f}" for v in r["lag_s"]) + " s"]]
              if r.get("lag_s") else []),
            *cpu_rows(r),
        ]), "\n"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--post-every", type=int, default=POST_EVERY,
                        help=f"every Nth request posts events (default {POST_EVERY}; 1: events "
                             "only, written as load_events.*)")
    parser.add_argument("--per-post", type=int, default=PER_POST,
                        help=f"events in each post (default {PER_POST})")
    parser.add_argument("--runs", type=int, default=1,
                        help="runs one after the other; the median run (by events accepted "
                             "a second) is the one written out, the others listed")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the service's, for example INGEST_TASK_EVENTS=false")
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    # events only: in posts of the default size the capacity model's input (load_events), in
    # larger ones the ingest measure (issue 15: posts of 500)
    name = ("load" if args.post_every != 1 else
            "load_events" if args.per_post == PER_POST else "ingest")
    command = "python -m bench.load " + " ".join(argv if argv is not None else sys.argv[1:])
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="load-") as work:
            runs.append(run(args.seconds, Path(work), args.post_every, args.per_post, settings))
    ordered = sorted(runs, key=lambda r: r["accepted"])
    result = {**ordered[len(ordered) // 2], "settings": settings,
              "runs": [{"events_per_s": r["accepted"] / r["seconds"],
                        "lag_s": r["lag_s"], "accounted": r["accounted"],
                        "errors": r["errors"], "cpu_s": r["cpu_s"],
                        "counted": r["counted"]} for r in runs]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    md = markdown(result, command.strip())
    (args.out / f"{name}.md").write_text(md)
    print(md)
    return 0 if all(r["accounted"] and r["errors"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
