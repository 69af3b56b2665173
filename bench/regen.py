"""A regeneration of 100,000 ads over 5,000 active cells, on one core.

1. A fresh redis-server of our own (devtools.redis_server, a free loopback port), pinned to
   core 1; this process pins itself to core 0 (``os.sched_setaffinity(0, {0})``), so the
   regeneration's Python and numpy work runs on one core and Redis on its own process.
2. 100,000 demo ads (``devtools.demo.demo_ads``) written through ``Store.put_ads`` in chunks
   of 5,000, counters and decayed evidence for every ad (impressions, views, saves, applies
   drawn at an apply rate near 2 %; ``--no-stats`` leaves them out), so the posteriors are
   not all the prior, and the strategy bandit's served feeds and applies for half the cells
   (enough for those cells to use their own posteriors).
3. 5,000 active cells: the geohash cells (precision 6) of the ads in a random order,
   deduplicated (busy cells come first, as users come where the ads are), topped up with
   neighbouring cells if the ads fill fewer.
4. ``run_regenerate(store, settings, now, rng)`` once with a fresh copy of the catalogue (a
   worker process's first run, which reads it whole: reported apart), then R times (default
   3), each after 0.1 % of the ads were edited in writes of 20 (``--edits``), which is what
   the process's copy reads again: wall time, median and min.
5. A breakdown on the same data, each part timed alone R times, wall and CPU of this
   process: ``load_snapshot`` (catalogue and evidence from Redis) with ``learn_priors`` (the
   category priors, stored), ``cell_probabilities`` (the strategy bandit for every cell),
   ``build_feeds`` (the maths and packing of every strategy's orders) and writing the packed
   feeds (``Store.write_feeds`` in the same chunks), plus the remainder of a whole run.
6. Candidates per cell (``geo.PointIndex`` queries at each cell's candidate radius), the
   packed feed size per cell (STRLEN of every feed key), distinct ads per feed (a sample),
   Redis ``used_memory`` after the runs, and a cProfile of one ``load_snapshot`` and one
   ``build_feeds`` (their top functions, inflated by the profiler: shares, not times).

The code under test is fingerprinted (a digest of its sources) at the start and the end; a
run during which it changed says so, in the results and on the console.

Target: a regeneration under 10 s on one core.

    python -m bench.regen              # full run, writes bench/results/regen.{json,md}
    python -m bench.regen --quick      # smoke run: 5,000 ads, 300 cells, once, no files
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

import geo
from bench.common import (
    RESULTS,
    code_check,
    cpu_seconds,
    edit_ads,
    load_catalogue,
    machine,
    machine_busy_seconds,
    median,
    pin,
    redis_memory,
    say,
    table,
    write_results,
)
from config import Settings, load_settings
from devtools.redis_server import RedisServer
from pipeline.learning.regenerate import (
    WRITE_CHUNK,
    build_feeds,
    candidate_radius_km,
    cell_probabilities,
    learn_priors,
    load_snapshot,
    run_regenerate,
)
from pipeline.serving.cellfeed import CellFeed
from store import GLOBAL_CELL, STAT_FIELDS, Store

ADS, CELLS = 100_000, 5_000
LARGE_ADS = 500_000
QUICK_ADS, QUICK_CELLS = 5_000, 300
# seconds of one core (this process's CPU plus Redis's) a regeneration may take, by size
TARGETS_S = {(100_000, 5_000): 1.0, (1_000_000, 10_000): 10.0}
DEFAULT_TARGET_S = 10.0


def target_s(ads: int, cells: int) -> float:
    return TARGETS_S.get((ads, cells), DEFAULT_TARGET_S)
BENCH_CORE, REDIS_CORE = 0, 1


def seed_stats(store: Store, ad_ids: list[str], now: float, rng: np.random.Generator) -> None:
    """Counters and decayed evidence for every ad, as the rollup would have left them after
    some traffic (the evidence as of ``now``)."""
    impressions = rng.poisson(200, len(ad_ids))
    views = rng.binomial(impressions, 0.1)
    saves = rng.binomial(views, 0.2)
    applies = rng.binomial(views, rng.beta(2, 8, len(ad_ids)))
    hides = rng.binomial(impressions, 0.01)
    store.seed_ad_counts(ad_ids, dict(zip(STAT_FIELDS, (impressions, views, saves, applies,
                                                       hides), strict=True)), now)


def seed_strategy_stats(store: Store, cells: list[str], now: float,
                        rng: np.random.Generator) -> None:
    """The strategy bandit's decayed counts for half the cells (each with enough served feeds
    to use its own posteriors) and for all cells together."""
    served = rng.poisson(400, (len(cells) // 2, 6)).astype(float)
    applies = rng.binomial(served.astype(int), [0.08, 0.07, 0.04, 0.05, 0.03, 0.06])
    rows = {c: [*s, *a]
            for c, s, a in zip(cells[:len(served)], served, applies, strict=True)}
    rows[GLOBAL_CELL] = [*served.sum(0), *applies.sum(0)]
    store.seed_strategy_stats(rows, now)


def choose_cells(lat: np.ndarray, lon: np.ndarray, count: int, precision: int,
                 rng: np.random.Generator) -> list[str]:
    """``count`` cells where the ads are: random ads' cells, then their neighbours."""
    order = rng.permutation(len(lat))
    cells = list(dict.fromkeys(geo.encode_many(lat[order], lon[order], precision).tolist()))
    chosen = dict.fromkeys(cells[:count])
    frontier = list(chosen)
    while len(chosen) < count and frontier:
        ring = [n for c in frontier for n in geo.neighbours(c) if n not in chosen]
        frontier = list(dict.fromkeys(ring))
        chosen.update(dict.fromkeys(frontier[:count - len(chosen)]))
    return list(chosen)


def seed_store(store: Store, settings: Settings, ads: int, cell_count: int, now: float,
               stats: bool = True) -> tuple[float, list[str]]:
    """The demo catalogue of ``ads`` ads, ``cell_count`` active cells where the ads are and,
    with ``stats``, the ad counters and the strategy bandit's counts (a fixed seed: every
    bench sees the same store). Returns (seconds the ads took to load, the cells)."""
    rng = np.random.default_rng(11)
    load_s = load_catalogue(store, ads, now)
    snapshot = load_snapshot(store, settings, now)
    cells = choose_cells(snapshot.lat, snapshot.lon, cell_count, settings.geohash_precision, rng)
    del snapshot          # a million ads' arrays: what runs next needs the memory more
    if stats:
        seed_stats(store, store.live_ad_ids(), now, rng)
        seed_strategy_stats(store, cells, now, rng)
    store.mark_active({c: now for c in cells})
    return load_s, cells


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def timed_cpu(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall seconds, this process's CPU seconds, result): on a shared machine the CPU
    figure is the steadier one for pure computation."""
    cpu, started = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - started, time.process_time() - cpu, out


def write_all(store: Store, feeds: dict[str, bytes], cells: list[str], ttl_s: int) -> None:
    """The writing step of a run: the same chunks through the same store call."""
    epoch = store.catalog_epoch()
    for i in range(0, len(cells), WRITE_CHUNK):
        if not store.write_feeds(epoch, {c: feeds[c] for c in cells[i:i + WRITE_CHUNK]}, ttl_s):
            raise RuntimeError("the catalogue changed during the benchmark")


def whole_runs(store: Store, settings: Settings, now: float, repeats: int,
               redis_pid: int, edits: int) -> tuple[dict, list[dict]]:
    """A cold run (a fresh copy of the catalogue: a worker process's first), then ``repeats``
    runs each after ``edits`` ads were edited, as between two runs of a live marketplace.
    Returns (the cold run, the others)."""
    runs = []
    for r in range(repeats + 1):
        if r == 0:
            store.drop_catalogue_copy()
        else:
            edit_ads(store, edits, now)
        rng = np.random.default_rng(100 + r)
        cpu0, redis0, busy0 = time.process_time(), cpu_seconds([redis_pid]), machine_busy_seconds()
        wall, report = timed(partial(run_regenerate, store, settings, now, rng))
        bench_cpu, redis_cpu = time.process_time() - cpu0, cpu_seconds([redis_pid]) - redis0
        others = machine_busy_seconds() - busy0 - bench_cpu - redis_cpu
        runs.append({"wall_s": wall, "report": report, "bench_cpu_s": bench_cpu,
                     "redis_cpu_s": redis_cpu, "other_processes_cores": others / wall})
        what = "cold (the catalogue read whole)" if r == 0 else f"run {r}/{repeats}"
        say(f"  {what}: {wall:.2f} s wall, {runs[-1]['bench_cpu_s']:.2f} s CPU "
            f"here, {runs[-1]['redis_cpu_s']:.2f} s CPU in Redis; {report['written']} cells")
    return runs[0], runs[1:]


def breakdown(store: Store, settings: Settings, now: float, cells: list[str],
              repeats: int) -> dict:
    """Each step of a run timed alone, R times, on the same data (wall and CPU here)."""
    names = ("load_snapshot", "cell_probabilities", "build_feeds", "write_feeds")
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}

    def step(name: str, fn: Callable[[], object]) -> object:
        w, c, out = timed_cpu(fn)
        wall[name].append(w)
        cpu[name].append(c)
        return out

    for r in range(repeats):
        snapshot, rates = step("load_snapshot", partial(loaded, store, settings, now))
        rng = np.random.default_rng(200 + r)
        probs = step("cell_probabilities",
                     partial(cell_probabilities, store, settings, cells, now, rng))
        feeds = step("build_feeds", partial(build_feeds, snapshot, cells, probs, rates, settings,
                                            rng, now))
        step("write_feeds", partial(write_all, store, feeds, cells, settings.feed_ttl_s))
        say(f"  breakdown {r + 1}/{repeats}: load_snapshot {wall['load_snapshot'][-1]:.2f} s, "
            f"cell_probabilities {wall['cell_probabilities'][-1]:.2f} s, "
            f"build_feeds {wall['build_feeds'][-1]:.2f} s "
            f"({cpu['build_feeds'][-1]:.2f} s CPU), write {wall['write_feeds'][-1]:.2f} s")
    return {"median_s": {k: median(v) for k, v in wall.items()},
            "median_cpu_s": {k: median(v) for k, v in cpu.items()},
            "runs_s": wall, "runs_cpu_s": cpu, "snapshot_ads": len(snapshot)}


def loaded(store: Store, settings: Settings, now: float):
    """What a run reads before it builds: the snapshot, and the category priors it learns."""
    snapshot = load_snapshot(store, settings, now)
    return snapshot, learn_priors(store, settings, snapshot)


def candidates(store: Store, settings: Settings, now: float, cells: list[str]) -> dict:
    snapshot = load_snapshot(store, settings, now)
    radii = [candidate_radius_km(c, settings) for c in cells]
    index = geo.PointIndex(snapshot.lat, snapshot.lon, query_radius_km=max(radii))
    counts = np.array([len(index.query(*geo.decode(c), r))
                       for c, r in zip(cells, radii, strict=True)])
    return {"mean": float(counts.mean()), "median": float(np.median(counts)),
            "max": int(counts.max()), "min": int(counts.min()),
            "cells_with_none": int((counts == 0).sum())}


def feed_sizes(store: Store, cells: list[str], sample: int, rng: np.random.Generator) -> dict:
    sizes = np.array(store.packed_feed_sizes(cells))
    picked = rng.choice(len(cells), size=min(sample, len(cells)), replace=False)
    ads = np.array([len(CellFeed.unpack(raw))
                    for raw in store.feed_values([cells[i] for i in picked]) if raw])
    return {"bytes_median": float(np.median(sizes)), "bytes_max": int(sizes.max()),
            "bytes_mean": float(sizes.mean()), "bytes_total": int(sizes.sum()),
            "missing": int((sizes == 0).sum()),
            "ads_per_feed_sample": len(ads), "ads_per_feed_median": float(np.median(ads)),
            "ads_per_feed_max": int(ads.max())}


def profiled(fn: Callable[[], object], top: int = 12) -> tuple[object, list[dict]]:
    """``fn()`` under cProfile: its result and the top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    out = fn()
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # own time over every function
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return out, [{"function": f"{Path(f).name}:{line}({name})" if f != "~" else name,
                  "calls": nc, "tottime_s": round(tt, 3), "cumtime_s": round(ct, 3),
                  "share_of_total": round(tt / total, 3)}
                 for (f, line, name), (_cc, nc, tt, ct, _callers) in rows]


def profiles(store: Store, settings: Settings, now: float, cells: list[str]) -> dict:
    (snapshot, rates), load = profiled(lambda: loaded(store, settings, now))
    rng = np.random.default_rng(300)
    probs = cell_probabilities(store, settings, cells, now, rng)
    _, build = profiled(lambda: build_feeds(snapshot, cells, probs, rates, settings, rng, now))
    return {"load_snapshot": load, "build_feeds": build}


def size_row(result: dict) -> dict[str, dict]:
    """The run's line in the table of every size measured, keyed "ads/cells"."""
    p, s, f = result["params"], result["summary"], result["feeds"]
    return {f"{p['ads']}/{p['cells']}": {
        "date": result["machine"]["date"], "ads": p["ads"], "cells": p["cells"],
        "repeats": p["repeats"], "median_s": s["median_s"],
        "cpu_s": s["bench_cpu_s"] + s["redis_cpu_s"], "target_s": s["target_s"],
        "candidates_mean": result["candidates_per_cell"]["mean"],
        "feed_bytes_median": f["bytes_median"], "feeds_mib": f["bytes_total"] / 2**20,
        "used_memory": result["redis_memory"]["used_memory_human"], "load_s": result["load_s"],
        "cold_s": result["cold_run"]["wall_s"], "edits": p["edits"]}}


def previous_sizes() -> dict[str, dict]:
    """The other sizes' lines, from the results file a run of another size wrote."""
    try:
        return dict(json.loads((RESULTS / "regen.json").read_text()).get("sizes", {}))
    except (OSError, ValueError):
        return {}


def sizes_table(sizes: dict[str, dict]) -> str:
    rows = [[f"{r['ads']:,}", f"{r['cells']:,}", f"{r['median_s']:.2f} s", f"{r['cpu_s']:.2f} s",
             f"{r['cold_s']:.2f} s" if "cold_s" in r else "(not measured)",
             f"{r['target_s']:g} s: {'met' if r['cpu_s'] <= r['target_s'] else 'not met'}",
             f"{r['candidates_mean']:,.0f}", f"{r['feed_bytes_median'] / 1000:,.1f} KB",
             f"{r['feeds_mib']:,.0f} MiB", r["used_memory"], f"{r['load_s']:.0f} s",
             f"{r['date'][:10]}, {r['repeats']} run(s)"]
            for r in sorted(sizes.values(), key=lambda r: (r["ads"], r["cells"]))]
    return ("# Regeneration, one core\n\nEvery size measured (`python -m bench.regen "
            "[--ads N --cells C]`; each run replaces its own size's line). A run follows "
            "0.1 % of the ads edited since the one before and reads only those of the "
            "catalogue (the worker's copy, `store.CatalogueCopy`); a worker's first run reads "
            "it whole (cold):\n\n"
            + table(["ads", "cells", "run_regenerate (median wall)", "CPU here + Redis",
                     "a worker's first run (cold)", "target", "candidates a cell (mean)",
                     "packed feed (median)", "all feeds", "Redis used_memory",
                     "loading the ads", "measured"], rows)
            + "\n")


def sharded_section(path: Path = RESULTS / "regen_shards.json") -> str:
    """The sharded speed-up ``bench.regen_shards`` last measured, if it has run."""
    if not path.exists():
        return ("Sharded over workers: not measured yet (`python -m bench.regen_shards`).\n\n")
    found = json.loads(path.read_text())
    p, s = found["params"], found["summary"]
    medians = {w["concurrency"]: w["median_s"] for w in found["workers"]}
    return (f"Sharded over workers (`python -m bench.regen_shards`, "
            f"{found['machine']['date'][:10]}; {p['ads']:,} ads, {p['cells']:,} cells, "
            f"REGEN_SHARDS=2): {medians.get(1, 0):.2f} s on one worker process, "
            f"{medians.get(2, 0):.2f} s on two, "
            f"**{s['ratio']:.2f}x** (target {s['target_ratio']:g}x: "
            f"{'met' if s['target_met'] else 'not met'}); see regen_shards.md.\n\n")


def markdown(result: dict) -> str:
    p, m, s = result["params"], result["machine"], result["summary"]
    b, bc = result["breakdown"]["median_s"], result["breakdown"]["median_cpu_s"]
    c, f = result["candidates_per_cell"], result["feeds"]
    rest_s = s["median_s"] - b["load_snapshot"] - b["cell_probabilities"] - b["build_feeds"]
    target = s["target_s"]
    out = [sizes_table(result.get("sizes", {})), sharded_section(),
        f"## The latest run: {p['ads']:,} ads, {p['cells']:,} active cells, one core\n\n",
        f"{m['date']}, os.cpu_count() = {m['os_cpu_count']}; this process pinned to core "
        f"{p['bench_cores']}, redis-server in its own process pinned to core "
        f"{p['redis_cores']}; other processes on this shared machine used "
        f"{s['other_processes_cores']:.2f} cores (median) during the runs. "
        f"Ad counters {'seeded' if p['stats'] else 'empty'}. {p['repeats']} runs, each after "
        f"{p['edits']:,} ads were edited (in writes of 20 ads, as through the API), with the "
        f"copy of the catalogue this process kept from the run before.\n\n",
        table(["figure", "wall", "CPU in this process"], [
            ["run_regenerate, median", f"{s['median_s']:.2f} s", f"{s['bench_cpu_s']:.2f} s"],
            ["run_regenerate, min", f"{s['min_s']:.2f} s", ""],
            ["a cold run (a worker's first: the catalogue read whole), not in the median",
             f"{result['cold_run']['wall_s']:.2f} s", f"{result['cold_run']['bench_cpu_s']:.2f} s"],
            [f"target <= {target:g} s on one core (CPU: here + Redis)",
             "met" if s["median_s"] <= target else "NOT met",
             "met" if s["bench_cpu_s"] + s["redis_cpu_s"] <= target else "NOT met"],
            ["CPU in Redis during a run, median", "", f"{s['redis_cpu_s']:.2f} s"],
            ["load_snapshot + learn_priors (catalogue, evidence; category priors)",
             f"{b['load_snapshot']:.2f} s", f"{bc['load_snapshot']:.2f} s"],
            ["cell_probabilities (the strategy bandit, every cell)",
             f"{b['cell_probabilities']:.2f} s", f"{bc['cell_probabilities']:.2f} s"],
            ["build_feeds (maths, packing)", f"{b['build_feeds']:.2f} s",
             f"{bc['build_feeds']:.2f} s"],
            ["writing, timed alone (write_feeds)", f"{b['write_feeds']:.2f} s",
             f"{bc['write_feeds']:.2f} s"],
            ["writing and the rest: run median - load - probabilities - build",
             f"{rest_s:.2f} s", ""],
            ["candidates per cell, mean / median / max",
             f"{c['mean']:,.0f} / {c['median']:,.0f} / {c['max']:,}", ""],
            ["packed feed per cell, median / max", f"{f['bytes_median']:,.0f} / "
                                                   f"{f['bytes_max']:,} B", ""],
            ["all packed feeds together", f"{f['bytes_total'] / 2**20:,.1f} MiB", ""],
            ["distinct ads per feed, median / max (sample)",
             f"{f['ads_per_feed_median']:,.0f} / {f['ads_per_feed_max']:,}", ""],
            ["Redis used_memory after the runs", result["redis_memory"]["used_memory_human"],
             ""],
        ]),
    ]
    for name, rows in result["profiles"].items():
        out += [f"\n{name} under cProfile, top functions by own time (shares of the profiled "
                "total; the profiler inflates small calls):\n\n",
                table(["function", "calls", "own s", "share"],
                      [[r["function"].replace("|", "\\|"), f"{r['calls']:,}", r["tottime_s"],
                        f"{r['share_of_total']:.0%}"] for r in rows[:8]])]
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 5,000 ads, 300 cells, once, no result files")
    parser.add_argument("--ads", type=int, help="catalogue size (default 100,000)")
    parser.add_argument("--cells", type=int, help="active cells (default 5,000)")
    parser.add_argument("--repeats", type=int, help="runs of each measurement (default 3)")
    parser.add_argument("--no-stats", action="store_true", help="leave the ad counters empty")
    parser.add_argument("--edits", type=int,
                        help="ads edited before each run (default: 0.1 %% of them, at least 20)")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    ads = args.ads or (QUICK_ADS if args.quick else ADS)
    cell_count = args.cells or (QUICK_CELLS if args.quick else CELLS)
    repeats = args.repeats or (1 if args.quick else 3)

    work = Path(tempfile.mkdtemp(prefix="bench-regen-"))
    redis = RedisServer(work / "redis")
    ok = False
    try:
        redis.start()
        redis_cores = pin(redis.proc.pid, {REDIS_CORE})
        bench_cores = pin(0, {BENCH_CORE})
        info = machine(redis)
        say(f"redis-server on port {redis.port} (cores {redis_cores}); this process on cores "
            f"{bench_cores}; loading {ads:,} ads")
        store = Store.from_url(redis.url)
        settings = load_settings({}, redis_url=redis.url)
        now = time.time()
        load_s, _ = seed_store(store, settings, ads, cell_count, now, stats=not args.no_stats)
        todo = store.active_cells(since=now - settings.active_cell_ttl_s)
        say(f"loaded in {load_s:.1f} s; {len(todo):,} active cells; regenerating")

        edits = args.edits if args.edits is not None else max(20, ads // 1000)
        cold, runs = whole_runs(store, settings, now, repeats, redis.proc.pid, edits)
        walls = [r["wall_s"] for r in runs]
        say("breakdown")
        # one pass over a large catalogue's steps (they vary by a few per cent from run to
        # run) keeps a run of a million ads within five minutes, its load included
        parts = breakdown(store, settings, now, todo, 1 if ads > LARGE_ADS else repeats)
        say("candidates, feed sizes, profile")
        result = {
            "benchmark": "regen", "machine": info,
            "params": {"ads": ads, "cells": len(todo), "repeats": repeats, "edits": edits,
                       "stats": not args.no_stats, "bench_cores": bench_cores,
                       "redis_cores": redis_cores, "redis": "own process (redis-server)",
                       "write_chunk": WRITE_CHUNK, "feed_variants": settings.feed_variants,
                       "feed_length": settings.feed_length,
                       "feed_radius_km": settings.feed_radius_km,
                       "geohash_precision": settings.geohash_precision, "quick": args.quick},
            "load_s": round(load_s, 1),
            "summary": {"median_s": median(walls), "min_s": min(walls),
                        "bench_cpu_s": median([r["bench_cpu_s"] for r in runs]),
                        "redis_cpu_s": median([r["redis_cpu_s"] for r in runs]),
                        "other_processes_cores": median([r["other_processes_cores"]
                                                         for r in runs]),
                        "target_s": target_s(ads, len(todo)),
                        "target_met": median(walls) <= target_s(ads, len(todo))},
            "runs": runs, "cold_run": cold, "breakdown": parts,
            "candidates_per_cell": candidates(store, settings, now, todo),
            "feeds": feed_sizes(store, todo, 200, np.random.default_rng(400)),
            "redis_memory": redis_memory(store),
        }
        result["profiles"] = profiles(store, settings, now, todo)
        result["code"] = code_check(info["code_digest"])
        writing = not (args.no_write or args.quick)
        result["sizes"] = {**(previous_sizes() if writing else {}), **size_row(result)}
        md = markdown(result)
        print("\n" + md)
        if writing:
            paths = write_results("regen", result, md)
            say(f"wrote {paths[0]} and {paths[1]}")
        ok = True
        return 0
    finally:
        redis.stop()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"redis log kept in {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
