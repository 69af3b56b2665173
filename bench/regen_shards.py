"""A sharded regeneration on one Celery worker process, then on two: how much faster two are.

1. A fresh redis-server of our own (devtools.redis_server, a free loopback port); nothing is
   pinned, so the worker processes and Redis share every core of the machine.
2. 1,000,000 demo ads, their counters and the strategy bandit's counts, and 10,000 active
   cells, seeded exactly as ``bench.regen`` seeds them.
3. The category priors learnt once, up front (``maybe_learn_priors``), with PRIORS_MAX_AGE_S
   long enough that no measured run learns them again: the runs measure the shards only.
4. N rounds (default 3), each a Celery worker (``-c 1``) on the regen queue with
   REGEN_SHARDS=2 and then one with ``-c 2``, the order alternating from round to round so
   that a slow spell of this shared machine falls on both sizes. Each worker: one warm-up
   run, not counted (each pool process's first reads the whole catalogue into its copy),
   then R runs (default 2), each after 0.1 % of the ads were edited (``--edits``) and sent
   as the beat sends it
   (``regenerate.run``, forced) once the one before has finished. A run's time is the one
   its last shard records (from planning to the last shard's end,
   ``job_status("regenerate")``); the time from sending to seeing it done is kept too.
5. The ratio of the medians of every round's runs (1 process over 2), each round's own
   ratio, each shard's time and ads read, the CPU the worker and Redis used during each
   run, the cores other processes kept busy meanwhile (on a shared machine they take
   from the workers), and a pool process's peak memory.

Target: two worker processes at least 1.7 times as fast as one.

    python -m bench.regen_shards           # writes bench/results/regen_shards.{json,md}
    python -m bench.regen_shards --quick   # smoke run: 20,000 ads, 500 cells, once, no files
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    code_check,
    cpu_seconds,
    edit_ads,
    machine,
    machine_busy_seconds,
    median,
    peak_rss_mb,
    process_tree,
    say,
    table,
    write_results,
)
from bench.regen import seed_store
from config import Settings, load_settings
from devtools.procs import Proc, service_env, start_worker
from devtools.redis_server import RedisServer
from pipeline.learning.regenerate import maybe_learn_priors
from store import Store
from tasks.factory import make_celery
from tasks.names import QUEUE, REGENERATE

ADS, CELLS = 1_000_000, 10_000
QUICK_ADS, QUICK_CELLS = 20_000, 500
SHARDS = 2
CONCURRENCIES = (1, 2)
TARGET_RATIO = 1.7
RUN_TIMEOUT_S = 300.0
POLL_S = 0.02
# the worker's settings: two shards; time limits far above a run at a million ads; priors
# learnt up front stay fresh for the whole benchmark
WORKER_SETTINGS = {"REGEN_SHARDS": str(SHARDS), "TASK_TIME_LIMIT_S": "600",
                   "VISIBILITY_TIMEOUT_S": "1200", "PRIORS_MAX_AGE_S": "86400"}


def prepare(store: Store, settings: Settings, ads: int, cell_count: int,
            now: float) -> dict[str, Any]:
    """The catalogue, its counters, the active cells and the category priors, as
    ``bench.regen`` seeds them. Returns the time each took and the cells marked."""
    load_s, cells = seed_store(store, settings, ads, cell_count, now)
    started = time.perf_counter()
    if not maybe_learn_priors(store, settings, now):
        raise RuntimeError("the fresh store already had priors: is this our own Redis?")
    priors_s = time.perf_counter() - started
    return {"load_s": round(load_s, 1), "priors_s": round(priors_s, 2),
            "priors_ads": int(store.job_status("priors")["ads"]), "cells": len(cells)}


def finished_runs(store: Store) -> int:
    """Regeneration runs recorded as a whole (the shard that completes a run counts it)."""
    return int(store.job_status("regenerate").get("runs", 0))


def wait_for_run(store: Store, worker: Proc, before: str | None, runs_before: int,
                 timeout_s: float) -> dict[str, Any]:
    """The run planned after ``before`` once every shard has reported and the whole run
    has been recorded; raises if the worker exits or the run takes over ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = store.regen_run()
        if (run is not None and run["run_id"] != before and run["done"] >= run["shards"]
                and finished_runs(store) > runs_before):
            return run
        if not worker.alive():
            raise RuntimeError(f"the worker exited:\n{worker.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no run finished in {timeout_s:g} s; see {worker.log_path}")
        time.sleep(POLL_S)


def one_run(store: Store, app: Any, worker: Proc, redis_pid: int) -> dict[str, Any]:
    """Send a forced run, wait for it, and return its figures."""
    latest = store.regen_run()
    before, runs_before = (latest or {}).get("run_id"), finished_runs(store)
    pids = process_tree(worker.proc.pid)
    worker_cpu, redis_cpu = cpu_seconds(pids), cpu_seconds([redis_pid])
    busy, own_cpu = machine_busy_seconds(), time.process_time()
    started = time.perf_counter()
    app.send_task(REGENERATE, kwargs={"forced": True}, queue=QUEUE[REGENERATE])
    run = wait_for_run(store, worker, before, runs_before, RUN_TIMEOUT_S)
    wall_s = time.perf_counter() - started
    worker_cpu, redis_cpu = cpu_seconds(pids) - worker_cpu, cpu_seconds([redis_pid]) - redis_cpu
    # on a shared machine, what everyone else ran meanwhile (this process polls, lightly)
    others = (machine_busy_seconds() - busy - worker_cpu - redis_cpu
              - (time.process_time() - own_cpu))
    whole = store.job_status("regenerate")
    # the pool's processes (the worker's main process only hands out tasks)
    peaks = peak_rss_mb(p for p in pids if p != worker.proc.pid)
    shards = [{"shard": index, "cells": int(r["cells"]), "ads": int(r["ads"]),
               "written": int(r["written"]), "skipped": int(r["skipped"]),
               "duration_s": float(r["duration_s"]),
               # each shard's report dates it by when it started
               "started_after_s": round(float(r["finished_at"]) - run["started_at"], 3)}
              for index, r in sorted(run["reports"].items())]
    return {"run_id": run["run_id"], "duration_s": float(whole["duration_s"]),
            "send_to_done_s": round(wall_s, 4), "written": int(whole["written"]),
            "worker_cpu_s": round(worker_cpu, 2), "redis_cpu_s": round(redis_cpu, 2),
            "other_processes_cores": round(max(others, 0.0) / wall_s, 2),
            "pool_peak_rss_mib": round(max(peaks.values(), default=0.0)), "shards": shards}


def measure(store: Store, app: Any, env: dict[str, str], work: Path, concurrency: int,
            repeats: int, redis_pid: int, edits: int) -> dict[str, Any]:
    """A warm-up run (each process's first: it reads the catalogue whole), then ``repeats``
    runs, each after ``edits`` ads were edited, on one worker of ``concurrency`` processes."""
    say(f"worker with {concurrency} process(es)")
    worker = start_worker(env, work, concurrency=concurrency, name=f"worker-c{concurrency}",
                          queues=QUEUE[REGENERATE])
    try:
        warm = one_run(store, app, worker, redis_pid)
        say(f"  warm-up: {warm['duration_s']:.2f} s (not counted)")
        runs = []
        for r in range(repeats):
            edit_ads(store, edits, time.time())
            runs.append(one_run(store, app, worker, redis_pid))
            shards = ", ".join(f"{s['duration_s']:.2f} s" for s in runs[-1]["shards"])
            say(f"  run {r + 1}/{repeats}: {runs[-1]['duration_s']:.2f} s "
                f"(send to done {runs[-1]['send_to_done_s']:.2f} s; shards {shards})")
    finally:
        worker.stop()
    return {"concurrency": concurrency, "warm_up_s": warm["duration_s"], "runs": runs,
            "median_s": median([r["duration_s"] for r in runs]),
            "median_send_to_done_s": median([r["send_to_done_s"] for r in runs])}


def pooled(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every phase's runs pooled by worker size: one entry per concurrency, as ``measure``
    gives, with the median over all its runs and the median warm-up.

    >>> def phase(size, *times):
    ...     return {"concurrency": size, "warm_up_s": 9.0,
    ...             "runs": [{"duration_s": t, "send_to_done_s": t} for t in times]}
    >>> [(w["concurrency"], w["median_s"])
    ...  for w in pooled([phase(1, 8.0), phase(1, 10.0), phase(2, 5.0)])]
    [(1, 9.0), (2, 5.0)]
    """
    out = []
    for concurrency in sorted({p["concurrency"] for p in phases}):
        mine = [p for p in phases if p["concurrency"] == concurrency]
        runs = [r for p in mine for r in p["runs"]]
        out.append({"concurrency": concurrency, "phases": len(mine),
                    "warm_up_s": median([p["warm_up_s"] for p in mine]), "runs": runs,
                    "median_s": median([r["duration_s"] for r in runs]),
                    "median_send_to_done_s": median([r["send_to_done_s"] for r in runs])})
    return out


def summary(workers: list[dict[str, Any]], target: float = TARGET_RATIO) -> dict[str, Any]:
    """The speed-up of the most processes over one: the ratio of their median run times.

    >>> s = summary([{"concurrency": 1, "median_s": 9.0}, {"concurrency": 2, "median_s": 5.0}])
    >>> s["ratio"], s["target_met"]
    (1.8, True)
    """
    one = next(w for w in workers if w["concurrency"] == 1)
    most = max(workers, key=lambda w: w["concurrency"])
    ratio = round(one["median_s"] / most["median_s"], 3)
    return {"ratio": ratio, "target_ratio": target, "target_met": ratio >= target,
            "processes": most["concurrency"]}


def round_ratios(phases: list[dict[str, Any]]) -> list[float]:
    """Each round's own ratio (its one-process median over its most-processes median): how
    far the machine's noise moves the answer.

    >>> round_ratios([{"concurrency": 1, "median_s": 9.0}, {"concurrency": 2, "median_s": 5.0},
    ...               {"concurrency": 2, "median_s": 4.0}, {"concurrency": 1, "median_s": 8.0}])
    [1.8, 2.0]
    """
    per_round = len(CONCURRENCIES)
    out = []
    for i in range(0, len(phases) - per_round + 1, per_round):
        out.append(summary(phases[i:i + per_round])["ratio"])
    return out


def markdown(result: dict[str, Any]) -> str:
    """The results page: the medians and the ratio, then every run's shards."""
    p, m, s = result["params"], result["machine"], result["summary"]
    prep = result["prepared"]
    medians = [[w["concurrency"], f"{w['median_s']:.2f} s", f"{w['median_send_to_done_s']:.2f} s",
                f"{median([r['worker_cpu_s'] for r in w['runs']]):.2f} s",
                f"{median([r['redis_cpu_s'] for r in w['runs']]):.2f} s",
                f"{median([r['other_processes_cores'] for r in w['runs']]):.2f}",
                f"{w['warm_up_s']:.2f} s",
                f"{max(r.get('pool_peak_rss_mib', 0) for r in w['runs']):,} MiB",
                len(w["runs"])] for w in result["workers"]]
    shards = [[w["concurrency"], i + 1, sh["shard"], f"{sh['cells']:,}", f"{sh['ads']:,}",
               f"{sh['written']:,}", f"{sh['started_after_s']:.2f} s", f"{sh['duration_s']:.2f} s"]
              for w in result["workers"] for i, r in enumerate(w["runs"]) for sh in r["shards"]]
    verdict = "met" if s["target_met"] else "NOT met"
    return "".join([
        f"# Sharded regeneration: 1 worker process against {s['processes']}\n\n",
        f"{m['date']}, os.cpu_count() = {m['os_cpu_count']}; {p['ads']:,} ads, "
        f"{prep['cells']:,} active cells, REGEN_SHARDS={p['shards']}; one Celery worker on the "
        f"regen queue with -c 1 or -c {s['processes']}; redis-server in its own process; "
        "nothing pinned (other processes: the cores the rest of this shared machine kept "
        "busy during a run). The category priors were learnt once before the runs "
        f"({prep['priors_s']:.2f} s over {prep['priors_ads']:,} ads) and not during them"
        f"{'' if result['priors_stayed'] else ' (NOT so: a run learnt them again)'}. "
        f"{p.get('rounds', 1)} round(s), each a worker of every size in turn (the order "
        "alternating from round to round, so that a slow spell of this shared machine falls "
        f"on both); each worker one warm-up run, not counted (each process's first reads "
        f"the catalogue whole into its copy), then {p['repeats']} run(s), each after "
        f"{p.get('edits', 0):,} ads were edited (in writes of 20, as through the API). "
        f"Loading the ads took {prep['load_s']:.0f} s.\n\n",
        f"**{s['ratio']:.2f}x** as fast with {s['processes']} processes as with 1 "
        f"(median over median of every round's runs); target >= {s['target_ratio']:g}x: "
        f"**{verdict}**. Each round alone: "
        f"{', '.join(f'{r:.2f}x' for r in s.get('round_ratios', []))}.\n\n",
        table(["worker processes", "run (median, planning to last shard)",
               "send to done (median)", "worker CPU (median)", "Redis CPU (median)",
               "other processes' cores (median)",
               "warm-up run (median)", "a pool process's peak memory (VmHWM)", "runs"],
              medians),
        "\nEvery shard (started: after the run was planned; ads: those within reach of its "
        "cells, from the worker's copy of the catalogue, with their evidence from Redis):\n\n",
        table(["processes", "run", "shard", "cells", "ads", "written", "started", "took"],
              shards),
    ])


def stop_strays() -> None:
    """Kill any process group this process started and still has: a worker whose start
    timed out (``start_worker`` raises without returning it, so nothing else stops it)."""
    for pid in process_tree(os.getpid())[1:]:
        with contextlib.suppress(ProcessLookupError, PermissionError, ChildProcessError):
            if os.getpgid(pid) == pid:          # Proc starts each child in a session of its own
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 20,000 ads, 500 cells, once, no result files")
    parser.add_argument("--ads", type=int, help="catalogue size (default 1,000,000)")
    parser.add_argument("--cells", type=int, help="active cells (default 10,000)")
    parser.add_argument("--repeats", type=int, help="runs on each worker (default 2)")
    parser.add_argument("--rounds", type=int,
                        help="rounds of one worker of each size, in alternating order "
                             "(default 3)")
    parser.add_argument("--edits", type=int,
                        help="ads edited before each counted run (default: 0.1 %% of them)")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    ads = args.ads or (QUICK_ADS if args.quick else ADS)
    edits = args.edits if args.edits is not None else max(20, ads // 1000)
    cell_count = args.cells or (QUICK_CELLS if args.quick else CELLS)
    repeats = args.repeats or (1 if args.quick else 2)
    rounds = args.rounds or (1 if args.quick else 3)

    work = Path(tempfile.mkdtemp(prefix="bench-regen-shards-"))
    redis = RedisServer(work / "redis")
    app = None
    ok = False
    try:
        redis.start()
        info = machine(redis)
        say(f"redis-server on port {redis.port}; loading {ads:,} ads")
        store = Store.from_url(redis.url)
        env = service_env(redis.url, **WORKER_SETTINGS)
        settings = load_settings(env)       # the workers' settings
        prepared = prepare(store, settings, ads, cell_count, time.time())
        say(f"loaded in {prepared['load_s']:.1f} s; {prepared['cells']:,} active cells; "
            f"priors learnt up front in {prepared['priors_s']:.2f} s (not in the runs)")
        app = make_celery(settings, main="bench")
        priors_runs = store.job_status("priors")["runs"]
        phases = []
        for r in range(rounds):       # alternate the order: a slow spell hits both sizes
            order = CONCURRENCIES if r % 2 == 0 else CONCURRENCIES[::-1]
            say(f"round {r + 1}/{rounds}")
            phases += [measure(store, app, env, work, c, repeats, redis.proc.pid, edits)
                       for c in order]
        workers = pooled(phases)
        result = {
            "benchmark": "regen_shards", "machine": info,
            "params": {"ads": ads, "cells": cell_count, "shards": SHARDS, "repeats": repeats,
                       "edits": edits,
                       "rounds": rounds,
                       "concurrencies": list(CONCURRENCIES), "worker_settings": WORKER_SETTINGS,
                       "quick": args.quick},
            "prepared": prepared, "workers": workers, "phases": phases,
            "summary": {**summary(workers), "round_ratios": round_ratios(phases)},
            "priors_stayed": store.job_status("priors")["runs"] == priors_runs,
            "code": code_check(info["code_digest"]),
        }
        md = markdown(result)
        print("\n" + md)
        if not (args.no_write or args.quick):
            paths = write_results("regen_shards", result, md)
            say(f"wrote {paths[0]} and {paths[1]}")
        ok = True
        return 0
    finally:
        if app is not None:
            app.close()
        redis.stop()
        stop_strays()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"redis and worker logs kept in {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
