"""Cold cells that borrow from their region (REGION_PRECISION), measured in a simulated world
of two regions (issue 18, item 3).

The world (``TWO_REGIONS``): two towns a hundred kilometres apart, each its own region at
REGION_PRECISION 4. They differ in what sells (engineering ads apply twice as well in the
second town as in the first, hospitality half as well), and in how their users choose: in
the first town an ad d km away is viewed exp(-d / 1 km) as often, so sorting each screen
nearest first pays there, while in the second distance does not matter (there, as over both
towns together, sorting each screen by posterior mean, ``popular``, does best). Halfway
through the run each town opens a new district 2.5 km east of its centre: from then on a
quarter of each town's users ask from there, cells never asked from before,
and 15 % of each town's ads go live there, with no evidence of their own.

Each seed runs the world twice in fast mode with the same users: with REGION_PRECISION 4 (a
new cell takes its region's strategy probabilities, a new ad its category's rate in its
region) and with 0 (both from the whole world's evidence); each run beside per-request
Thompson sampling (the plain baseline, on the same world and users). The figures are each new
district's first 1,000 feeds: expected applies (the true rates at the shown positions, with
the distance effect), regions / no regions, per seed; and how the strategies were drawn in
those feeds. Two runs part after their first different feed, so that ratio carries every
difference of their histories; the strategy pooling alone is also priced feed by feed, in the
run with regions: each feed's expected applies under every strategy, weighed by the cell's
pooled probabilities and by those it would have had without regions (same state, same
variant: a paired comparison).

    python -m bench.regions              # 16 seeds; writes bench/results/regions.{md,json}
    python -m bench.regions --seeds 2 --out /tmp/regions
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

import geo
from bench.common import RESULTS, code_check, machine, say, table
from bench.sim import report
from bench.sim.fast import PER_REQUEST, THOMPSON_WITH_STRATEGIES, Traffic, run_fast, user_points
from bench.sim.world import (
    NEW_DISTRICT_KM,
    NEW_DISTRICT_RADIUS_KM,
    SECOND_TOWN,
    TOWN_CENTRE,
    World,
    WorldSpec,
    make_world,
)
from bench.worlds import cell, mean_interval
from config import load_settings

TWO_REGIONS = WorldSpec(ads=600, layout="two-towns", signal="both", impressions="shown",
                        position_bias=1.0, standout_share=0.05, near_km=1.0,
                        new_district_at=0.5, new_district_users=0.25, new_district_ads=0.15)
TRAFFIC = Traffic(feeds=36_000, limit=10, feeds_per_s=5.0)
FIRST = 1000          # each new district's first feeds
POLICIES = (THOMPSON_WITH_STRATEGIES, PER_REQUEST)
DISTRICTS = ("first town (distance matters)", "second town (it does not)")


def districts(world: World, feeds: int, seed: int) -> np.ndarray:
    """Each feed's new district (0 or 1; -1: none), from where its user stood."""
    lat, lon = user_points(world, feeds, seed)
    out = np.full(feeds, -1)
    for town, (clat, clon) in enumerate((TOWN_CENTRE, SECOND_TOWN)):
        dlat = clat
        dlon = clon + NEW_DISTRICT_KM / (111.2 * np.cos(np.radians(clat)))
        near = geo.haversine_km(dlat, dlon, lat, lon) <= NEW_DISTRICT_RADIUS_KM + 1e-6
        out[near] = town
    return out


def run_one(seed: int, scale: float) -> dict:
    """One seed: the world with and without regions; each new district's first feeds."""
    world = make_world(TWO_REGIONS, seed)
    traffic = Traffic(feeds=max(4000, round(TRAFFIC.feeds * scale)), limit=TRAFFIC.limit,
                      feeds_per_s=TRAFFIC.feeds_per_s)
    where = districts(world, traffic.feeds, seed)
    started = time.perf_counter()
    out: dict = {"seed": seed, "feeds": traffic.feeds,
                 "district_feeds": [int((where == d).sum()) for d in (0, 1)], "runs": {}}
    for precision in (4, 0):
        settings = load_settings({}, region_precision=precision)
        run = run_fast(world, settings, traffic, seed, POLICIES, counterfactual=precision > 0)
        strategies = list(run.strategies)
        figures: dict = {}
        for name in POLICIES:
            track = run.policies[name]
            value = np.concatenate(track.feed_value)
            chosen = np.concatenate(track.feed_strategy) if track.feed_strategy else None
            for d in (0, 1):
                first = np.flatnonzero(where == d)[:FIRST]
                row = {"applies": float(value[first].sum()), "feeds": len(first)}
                if track.feed_pooled:
                    row["pooled"] = float(np.concatenate(track.feed_pooled)[first].sum())
                    row["unpooled"] = float(np.concatenate(track.feed_unpooled)[first].sum())
                if chosen is not None and name == THOMPSON_WITH_STRATEGIES:
                    row["strategy_share"] = {
                        s: float(np.mean(chosen[first] == i)) for i, s in enumerate(strategies)}
                figures[f"{name}:{d}"] = row
        out["runs"][precision] = figures
    out["seconds"] = time.perf_counter() - started
    return out


def summarise(runs: list[dict]) -> dict:
    out: dict = {}
    for d in (0, 1):
        def applies(precision: int, name: str, d: int = d) -> list[float]:
            return [r["runs"][precision][f"{name}:{d}"]["applies"] for r in runs]
        lift = mean_interval([a / b for a, b in zip(applies(4, THOMPSON_WITH_STRATEGIES),
                                                    applies(0, THOMPSON_WITH_STRATEGIES),
                                                    strict=True)])
        baseline = mean_interval([a / b for a, b in zip(applies(4, PER_REQUEST),
                                                        applies(0, PER_REQUEST), strict=True)])
        vs_pr = {p: mean_interval([a / b for a, b in zip(
            applies(p, THOMPSON_WITH_STRATEGIES), applies(p, PER_REQUEST), strict=True)])
            for p in (4, 0)}
        shares = {p: {s: float(np.mean([r["runs"][p][f"{THOMPSON_WITH_STRATEGIES}:{d}"]
                                        ["strategy_share"][s] for r in runs]))
                      for s in runs[0]["runs"][p][f"{THOMPSON_WITH_STRATEGIES}:{d}"]
                      ["strategy_share"]} for p in (4, 0)}
        by_feed = mean_interval([r["runs"][4][f"{THOMPSON_WITH_STRATEGIES}:{d}"]["pooled"]
                                 / r["runs"][4][f"{THOMPSON_WITH_STRATEGIES}:{d}"]["unpooled"]
                                 for r in runs])
        out[str(d)] = {"district": DISTRICTS[d], "lift": lift, "baseline_lift": baseline,
                       "pooling_by_feed": by_feed,
                       "vs_per_request": vs_pr, "strategy_share": shares,
                       "applies": {p: float(np.mean(applies(p, THOMPSON_WITH_STRATEGIES)))
                                   for p in (4, 0)}}
    return out


def drawn(share: dict[str, float]) -> str:
    """How often each strategy was drawn, most first.

    >>> drawn({"thompson": 0.2, "nearest": 0.5, "popular": 0.3})
    'nearest 50%, popular 30%, thompson 20%'
    """
    return ", ".join(f"{name} {p:.0%}" for name, p in sorted(share.items(),
                                                              key=lambda kv: -kv[1]))


def markdown(summary: dict, result: dict) -> str:
    info = result["machine"]
    rows = []
    for d in ("0", "1"):
        s = summary[d]
        share = s["strategy_share"]
        rows.append([s["district"], f"{s['applies'][4]:.1f}", f"{s['applies'][0]:.1f}",
                     f"**{cell(s['lift'])}**", f"**{cell(s['pooling_by_feed'])}**",
                     cell(s["vs_per_request"][4]),
                     cell(s["vs_per_request"][0]), cell(s["baseline_lift"]),
                     drawn(share[4]), drawn(share[0])])
    return "".join([
        "# Cold cells that borrow from their region\n\n",
        f"{info['date']}; `{result['command']}`; {result['wall_s']:.0f} s wall on "
        f"{result['jobs']} process(es) (machine: {info['os_cpu_count']} cores), "
        f"{result['seeds']} seeds, fast mode, {result['feeds']:,} feeds a run.\n\n",
        " ".join(__doc__.split("\n\n")[1].split()), "\n\n",
        " ".join(__doc__.split("\n\n")[2].split()), "\n\n",
        "## Each new district's first 1,000 feeds (mean ± 95 % interval over seeds)\n\n",
        table(["new district of the", "expected applies, regions", "no regions",
               "lift: regions / no regions", "strategy pooling, feed by feed: region's / "
               "world's", "service / per-request Thompson, regions",
               "same, no regions", "per-request Thompson: regions / no regions",
               "strategies drawn, regions", "strategies drawn, no regions"], rows),
        "\nPer-request Thompson ranks every request afresh from the service's posterior, so "
        "regions change only its priors (a new ad's starting rate); the service also draws "
        "its strategy from the new cell's region.\n",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--scale", type=float, default=1.0, help="traffic as a share")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    command = "python -m bench.regions " + shlex.join(argv if argv is not None
                                                      else sys.argv[1:])
    info = machine()
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(run_one, range(1, args.seeds + 1), [args.scale] * args.seeds))
    for r in runs:
        say(f"  seed {r['seed']}: district feeds {r['district_feeds']} ({r['seconds']:.0f} s)")
    summary = summarise(runs)
    result = {"command": command, "machine": info, "jobs": args.jobs, "seeds": args.seeds,
              "feeds": runs[0]["feeds"], "spec": asdict(TWO_REGIONS), "summary": summary,
              "runs": runs, "wall_s": time.perf_counter() - started,
              "code": code_check(info["code_digest"])}
    md = markdown(summary, result)
    paths = report.write(Path(args.out), "regions", result, md)
    print("\n" + md)
    say(f"wrote {paths[1]} and {paths[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
