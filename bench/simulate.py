"""Does the bandit find the ads people apply to? A simulated city answers, with its hidden
truth known.

The world (``bench/sim/world.py``): job ads scattered around twenty real Berlin
neighbourhoods, each with a hidden P(view | examined) and P(apply | view) (heterogeneous: a
tenth of the ads are clearly better, categories differ), and a position-bias curve b(p) =
p ** -0.6 for whether a user examines the ad at position p. Users appear near the
neighbourhoods, ask for 10 ads within 5 km, and view, save and apply by those rates.

Policies: ``thompson+strategies`` (the service's default FEED_STRATEGIES under the strategy
bandit), ``thompson`` (K precomputed Thompson variants only), ``thompson-per-request`` (fresh
posterior draws for every feed, the posterior updated at every rollup: the baseline that
precomputing is measured against), ``thompson-per-request-regen`` (fresh draws, the posterior
only as new as the last regeneration), ``popular``, ``egreedy`` (epsilon 0.1), ``random``,
and the ``oracle`` (the 10 ads of highest true apply probability within reach, best first).
Every policy serves the same users in the same order. Regret is measured in expected applies
(the shown ads' true rates at their positions) against the oracle.

    python -m bench.simulate --fast                 # 1,000 ads, 2,000,000 impressions
    python -m bench.simulate --fast --core 0 --seeds 8   # as published: one core, 8 worlds
    python -m bench.simulate --fast --impressions 200000 --ads 200 --out /tmp/sim
    python -m bench.simulate --fast --set REWARD_MODEL=direct --set POSITION_BIAS_EXPONENT=0.6
    python -m bench.simulate --fast --sweep         # the service's settings, one at a time
    python -m bench.simulate --real                 # the real processes, over HTTP

``--fast`` runs the service's bandit in process (``bench/sim/fast.py``): time moves in
ROLLUP_INTERVAL_S steps of ``--feeds-per-s`` x ROLLUP_INTERVAL_S feeds. ``--real`` starts a
redis-server of its own, a Celery worker, beat and gunicorn per policy (FEED_STRATEGIES set
for it, a fresh store each time) and drives them over HTTP (``bench/sim/real.py``); it also
checks that every event it sent was accepted and counted by the rollup. Results go to
``--out`` (default bench/results): simulation.{md,json} and simulation_*.png for ``--fast``,
real_simulation.* for ``--real``, simulation_settings.* for ``--sweep``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

import geo
from bandit import mean_estimate
from bench.common import RESULTS, code_check, machine, say, table
from bench.sim import report
from bench.sim.family import FAMILY
from bench.sim.fast import (
    BETA11,
    ORACLE,
    PER_REQUEST,
    PER_REQUEST_AT_REGEN,
    POLICIES,
    THOMPSON_WITH_STRATEGIES,
    FastRun,
    Traffic,
    run_fast,
    user_points,
)
from bench.sim.real import REAL_POLICIES, RealSpec, run_policy, strategy_shares, tracks_of
from bench.sim.world import NEIGHBOURHOODS, World, WorldSpec, make_world
from config import Settings, load_settings
from devtools.redis_server import RedisServer

REAL_DEFAULTS = {"ROLLUP_INTERVAL_S": "2", "REGEN_INTERVAL_S": "5"}
FAST_TRAFFIC = 20.0   # feeds/s: 1,200 feeds per regeneration at the default REGEN_INTERVAL_S
REAL_PACE = 240.0     # feeds/s: 1,200 feeds per regeneration at REGEN_INTERVAL_S=5
TARGET_OF_ORACLE, TARGET_X_RANDOM = 0.90, 2.0
# The service's settings the sweep tries, one at a time (the first value: the default).
SWEEP = {"REWARD_MODEL": ["funnel", "direct"], "POSITION_BIAS_EXPONENT": ["0.5", "0", "0.6"],
         "PRIOR_STRENGTH": ["50", "10", "200"], "FEED_VARIANTS": ["8", "1", "32"],
         "STRATEGY_FLOOR": ["0.02", "0.05", "0.01"],
         "FEED_STRATEGIES": ["thompson,popular,newest,nearest", "thompson,popular"]}
SWEEP_POLICIES = (THOMPSON_WITH_STRATEGIES, "thompson", PER_REQUEST)
SEED_POLICIES = (THOMPSON_WITH_STRATEGIES, "thompson", PER_REQUEST, PER_REQUEST_AT_REGEN)


def parse_sets(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--set wants NAME=VALUE, got {pair!r}")
        out[name.strip().upper()] = value.strip()
    return out


def service_settings(values: dict[str, str]) -> Settings:
    """The service's settings from these environment-style values over the defaults (never
    from this process's environment)."""
    return load_settings(values)


def world_table(world: World, traffic: Traffic) -> str:
    spec = world.spec
    examined = spec.examine(np.arange(1, traffic.limit + 1)).mean()
    where = (f"{len(world):,}; {len(NEIGHBOURHOODS)} (Mitte, Kreuzberg, Prenzlauer Berg, ... "
             f"Spandau, Zehlendorf), ads scattered with sd {spec.ad_spread_km} km, users "
             f"{spec.user_spread_km} km" if spec.layout == "berlin" else
             f"{len(world):,} within {spec.town_radius_km:g} km of a town's centre, users "
             f"within {spec.town_user_radius_km:g} km")
    rows = [
        ["ads; where", where],
        ["impressions", "one for every slot shown" if spec.impressions == "shown"
         else "one for each slot the user scrolled to"],
        ["position bias b(p)", f"p ** -{spec.position_bias}; mean over {traffic.limit} "
         f"positions {examined:.3f}"],
        ["where ads differ", {"both": "in both stages", "view": "in P(view \\| examined) only",
                              "apply": "in P(apply \\| view) only"}[spec.signal]],
        ["P(view \\| examined)", f"mean {world.view_rate.mean():.3f}, "
         f"sd {world.view_rate.std():.3f}"],
        ["P(apply \\| view)", f"mean {world.apply_rate.mean():.3f}, "
         f"sd {world.apply_rate.std():.3f}"],
        ["standout ads", f"{world.standout.mean():.0%}: P(apply \\| examined) "
         f"{world.value[world.standout].mean():.3f} against "
         f"{world.value[~world.standout].mean():.3f}"
         " for the rest; category lift 0.6 to 1.3 on the stage that differs"],
        ["P(save \\| view)", f"{spec.save_ratio} x P(apply \\| view)"],
        ["an average ad at an average position", f"{examined * world.view_rate.mean():.1%} views "
         f"and {examined * world.value.mean():.2%} applies per impression"],
        ["P(apply \\| examined), quantiles 10/50/90/99 %",
         " / ".join(f"{q:.3f}" for q in np.quantile(world.value, [0.1, 0.5, 0.9, 0.99]))],
    ]
    return table(["world", "value"], rows)


def settings_table(settings: Settings, overrides: dict[str, str]) -> str:
    names = ["reward_model", "position_bias_exponent", "prior_mean", "prior_view_rate",
             "prior_strength", "save_weight", "stats_half_life_s", "feed_variants",
             "feed_length", "feed_strategies", "strategy_floor", "strategy_cell_min_feeds",
             "strategy_prior_strength", "epsilon", "rollup_interval_s", "regen_interval_s",
             "geohash_precision", "feed_radius_km"]
    return table(["setting", "value"], [
        [f"`{n.upper()}`", _setting_text(getattr(settings, n))
         + (" (set)" if n.upper() in overrides else "")] for n in names])


def _setting_text(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    return "unset (learnt)" if value is None else f"{value}"


def _met(met: bool) -> str:
    return "met" if met else "missed"


def targets_table(summaries: Sequence[report.Summary]) -> str:
    by = {s.policy: s for s in summaries}
    rows = []
    for name in (THOMPSON_WITH_STRATEGIES, "thompson"):
        s = by.get(name)
        if s is None:
            continue
        slope = s.regret_slope
        rows.append([f"`{name}`",
                     f"{100 * s.of_oracle_last:.1f} % "
                     f"({_met(s.of_oracle_last >= TARGET_OF_ORACLE)})",
                     "" if s.x_random_last is None else
                     f"{s.x_random_last:.2f} ({_met(s.x_random_last >= TARGET_X_RANDOM)})",
                     "" if slope is None else f"{slope:.3f} ({_met(slope < 1)})"])
    return table(["policy", "of the oracle, last 10 % (target >= 90 %)",
                  "x random, last 10 % (target >= 2)", "regret log-log slope (target < 1)"], rows)


def strategy_table(run: FastRun) -> str:
    t = run.policies.get(THOMPSON_WITH_STRATEGIES)
    if t is None or not t.strategy_feeds:
        return ""
    feeds, imp = np.array(t.strategy_feeds), np.array(t.strategy_impressions)
    exp = np.array(t.strategy_expected)
    last = np.cumsum(t.impressions) > sum(t.impressions) * (1 - report.LAST_SHARE)
    rows = [[f"`{name}`", f"{feeds[:, i].sum() / feeds.sum():.1%}",
             f"{feeds[last, i].sum() / feeds[last].sum():.1%}",
             f"{100 * exp[last, i].sum() / max(imp[last, i].sum(), 1):.3f} %"]
            for i, name in enumerate(run.strategies)]
    return ("\nInside `thompson+strategies`: the share of feeds each strategy served, and the "
            "expected apply rate of the feeds it served in the last 10 %:\n\n"
            + table(["strategy", "feeds, overall", "feeds, last 10 %", "apply rate, last 10 %"],
                    rows))


def ratio_text(ratios: dict[str, float], settings: Settings, traffic: Traffic) -> str:
    if "precomputed_vs_per_request" not in ratios:
        return ""
    text = (f"\n**Precomputing K = {settings.feed_variants} variants every REGEN_INTERVAL_S = "
            f"{settings.regen_interval_s:g} s "
            f"({traffic.batch(settings) * traffic.regen_every(settings):,} feeds) against "
            f"fresh Thompson draws for every request:** cumulative regret ratio "
            f"**{ratios['precomputed_vs_per_request']:.3f}** (`thompson` / `{PER_REQUEST}`).")
    if "k_variants_only" in ratios:
        text += (f" Split: only K orders per cell, with the posterior of the same age, "
                 f"{ratios['k_variants_only']:.3f} (`thompson` / `thompson-per-request-regen`); "
                 f"the posterior's age alone (last regeneration vs last rollup), "
                 f"{ratios['posterior_age_only']:.3f}.")
    return text + "\n"


def fast_markdown(result: dict, run: FastRun, summaries: Sequence[report.Summary],
                  world: World, settings: Settings, traffic: Traffic,
                  overrides: dict[str, str]) -> str:
    hours = traffic.feeds / traffic.feeds_per_s / 3600
    out = [
        f"# Simulation, fast mode: {len(world):,} ads in Berlin, "
        f"{summaries[0].impressions:,} impressions per policy\n\n",
        f"{result['machine']['date']}, seed {result['seed']}; `{result['command']}`. "
        f"Run time {result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} s CPU in one process "
        f"(cores it may use: {result['machine']['bench_process_affinity']}; about "
        f"{result['cpu_s'] / result['wall_s']:.2f} cores busy), "
        f"{result['machine']['platform']}.\n\n",
        "The service's own bandit code runs in process (`bandit.*`; the cell candidates of "
        "`pipeline/learning/regenerate.py`; the strategy draw, variant, nearest re-sort, exact "
        "distance filter and top `limit` of `pipeline/serving/feed.py`), with Redis replaced "
        "by arrays. Assumed "
        f"traffic: {traffic.feeds_per_s:g} feeds/s for the city, so "
        f"{run.batch_feeds:,} feeds per rollup (ROLLUP_INTERVAL_S = "
        f"{settings.rollup_interval_s:g}) and {run.batch_feeds * run.regen_every:,} per "
        f"regeneration (REGEN_INTERVAL_S = {settings.regen_interval_s:g}); the run covers "
        f"{hours:.1f} h of traffic, {run.cells:,} geohash cells asked from. Feeds of "
        f"{traffic.limit} ads within {traffic.radius_km:g} km. Apply rates are expected applies "
        "(true rates at the shown positions) per impression; sampled rates beside them.\n\n",
        " ".join(__doc__.split("\n\n")[2].split()), "\n\n",
        "## Results\n\n", report.results_table(summaries), "\n", targets_table(summaries),
        ratio_text(result["regret_ratios"], settings, traffic), strategy_table(run),
        "\n## Plots\n\n",
        *[f"![{p.stem}]({p.name})\n" for p in result["plot_paths"]],
        "\n## The world\n\n", world_table(world, traffic),
        "\n## The service's settings\n\n", settings_table(settings, overrides),
        "\n## Time per policy (serving, outcomes, rollups, regenerations)\n\n",
        table(["policy", "seconds"], [[f"`{n}`", f"{t.seconds:.1f}"]
                                      for n, t in run.policies.items() if n != ORACLE]),
    ]
    if result["code"]["code_changed_during_run"]:
        out.append("\n**The service's code changed during this run; its figures mix versions.**\n")
    return "".join(out)


def seed_row(seed: int, summaries: Sequence[report.Summary]) -> dict:
    """What the targets and the regret ratio came to on one seed."""
    by = {s.policy: s for s in summaries}
    return {"seed": seed, **{f"{p}_of_oracle_last": by[p].of_oracle_last
                             for p in (THOMPSON_WITH_STRATEGIES, "thompson") if p in by},
            **{f"{p}_slope": by[p].regret_slope
               for p in (THOMPSON_WITH_STRATEGIES, "thompson") if p in by},
            **report.regret_ratios(summaries)}


def other_seeds(args: argparse.Namespace, settings: Settings, traffic: Traffic) -> list[dict]:
    """The Thompson policies again on ``args.seeds - 1`` more seeds (other ads, rates and
    users): how much the targets and the regret ratio move from world to world."""
    rows = []
    for seed in range(args.seed + 1, args.seed + args.seeds):
        say(f"seed {seed}: {', '.join(SEED_POLICIES)}")
        world = make_world(WorldSpec(ads=args.ads, position_bias=args.position_bias), seed)
        run = run_fast(world, settings, traffic, seed, SEED_POLICIES)
        rows.append(seed_row(seed, report.summarise(run.policies)))
    return rows


def seeds_markdown(rows: Sequence[dict], seconds: float) -> str:
    if len(rows) < 2:
        return ""
    keys = [f"{THOMPSON_WITH_STRATEGIES}_of_oracle_last", "thompson_of_oracle_last",
            "thompson_slope", "precomputed_vs_per_request", "k_variants_only",
            "posterior_age_only"]
    header = ["seed", "`thompson+strategies` % of oracle, last 10 %",
              "`thompson` % of oracle, last 10 %", "`thompson` regret slope",
              "regret ratio precomputed / per request", "K variants only", "posterior age only"]

    def cells(values: Sequence[float], key: str) -> str:
        scale, unit = (100, " %") if key.endswith("oracle_last") else (1, "")
        if len(values) == 1:
            return f"{scale * values[0]:.{1 if unit else 3}f}{unit}"
        return (f"{scale * np.mean(values):.{1 if unit else 3}f}{unit} "
                f"± {scale * np.std(values, ddof=1):.{1 if unit else 3}f}")

    body = [[str(r["seed"]), *(cells([r[k]], k) for k in keys)] for r in rows]
    body.append([f"mean ± sd over {len(rows)}",
                 *(cells([r[k] for r in rows], k) for k in keys)])
    return (f"\n## Across seeds\n\nThe Thompson policies on {len(rows)} worlds "
            f"(seed {rows[0]['seed']} above, then other seeds: other ads, rates and users), "
            f"{seconds:.0f} s more:\n\n"
            + table(header, body))


def fast(args: argparse.Namespace, command: str) -> int:
    overrides = parse_sets(args.set)
    settings = service_settings(overrides)
    world = make_world(WorldSpec(ads=args.ads, position_bias=args.position_bias), args.seed)
    traffic = Traffic(feeds=args.impressions // args.limit, limit=args.limit,
                      radius_km=args.radius_km, feeds_per_s=args.feeds_per_s)
    policies = args.policies.split(",") if args.policies else list(POLICIES)
    info = machine()
    say(f"fast mode: {len(world):,} ads, {traffic.feeds:,} feeds of {traffic.limit} per "
        f"policy, {len(policies)} policies and the oracle")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    run = run_fast(world, settings, traffic, args.seed, policies, say)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    summaries = report.summarise(run.policies)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prefix = "simulation"
    plot_paths = report.plot(run.policies, out, prefix, "fast mode", run.strategies,
                             run.probabilities)
    result = {
        "mode": "fast", "command": command, "seed": args.seed, "machine": info,
        "wall_s": wall, "cpu_s": cpu, "settings_set": overrides,
        "settings": settings.model_dump(mode="json", exclude={"admin_token", "flower_basic_auth"}),
        "world": {**asdict(world.spec), "neighbourhoods": NEIGHBOURHOODS},
        "traffic": {**asdict(traffic), "feeds_per_rollup": run.batch_feeds,
                    "rollups_per_regeneration": run.regen_every, "cells": run.cells},
        "summary": [asdict(s) for s in summaries],
        "regret_ratios": report.regret_ratios(summaries),
        "strategies": list(run.strategies),
        "seconds_per_policy": {n: t.seconds for n, t in run.policies.items()},
        "series": report.series(run.policies),
        "plot_paths": plot_paths,
        "code": code_check(info["code_digest"]),
    }
    tick = time.perf_counter()
    seeds = [seed_row(args.seed, summaries), *other_seeds(args, settings, traffic)]
    result["seeds"] = seeds
    md = (fast_markdown(result, run, summaries, world, settings, traffic, overrides)
          + seeds_markdown(seeds, time.perf_counter() - tick))
    paths = report.write(out, prefix, result, md)
    print("\n" + md)
    say(f"wrote {paths[1]}, {paths[0]} and {len(plot_paths)} plots")
    return 0


def sweep(args: argparse.Namespace, command: str) -> int:
    """Each of SWEEP's settings changed alone from the defaults (plus any --set)."""
    base = parse_sets(args.set)
    world = make_world(WorldSpec(ads=args.ads, position_bias=args.position_bias), args.seed)
    traffic = Traffic(feeds=args.impressions // args.limit, limit=args.limit,
                      radius_km=args.radius_km, feeds_per_s=args.feeds_per_s)
    info = machine()
    started = time.perf_counter()
    rows, runs = [], []
    variants = [("(defaults)", None)] + [(n, v) for n, values in SWEEP.items()
                                         for v in values[1:]]
    for name, value in variants:
        overrides = {**base, **({name: value} if name != "(defaults)" else {})}
        settings = service_settings(overrides)
        say(f"sweep: {name}{'' if value is None else '=' + value}")
        run = run_fast(world, settings, traffic, args.seed, SWEEP_POLICIES)
        summaries = {s.policy: s for s in report.summarise(run.policies)}
        ratio = report.regret_ratios(list(summaries.values())).get("precomputed_vs_per_request")
        runs.append({"setting": name, "value": value,
                     "summary": [asdict(s) for s in summaries.values()],
                     "regret_ratio": ratio, "seconds": run.seconds})
        row = [f"`{name}`" + ("" if value is None else f" = `{value}`")]
        for p in SWEEP_POLICIES:
            s = summaries[p]
            row += [f"{100 * s.of_oracle_last:.1f} %", f"{s.regret:,.0f}",
                    "" if s.regret_slope is None else f"{s.regret_slope:.2f}"]
        rows.append(row + ["" if ratio is None else f"{ratio:.3f}"])
    header = ["setting changed"]
    for p in SWEEP_POLICIES:
        header += [f"`{p}` % of oracle, last 10 %", "regret", "slope"]
    md = (f"# Simulation, fast mode: the service's settings, one at a time\n\n"
          f"{info['date']}, seed {args.seed}, {len(world):,} ads, "
          f"{traffic.feeds * traffic.limit:,} impressions per policy, {traffic.feeds_per_s:g} "
          f"feeds/s; `{command}`; {time.perf_counter() - started:.0f} s. Each row changes one "
          "setting from the defaults; regret in expected applies against the oracle; the last "
          "column is the regret ratio `thompson` / `thompson-per-request`. One seed: from "
          "world to world a policy's regret moves by several per cent (see `simulation.md`, "
          "\"Across seeds\"), so smaller differences are noise.\n\n"
          + table(header + ["precomputed / per request"], rows))
    out = Path(args.out)
    paths = report.write(out, "simulation_settings", {"mode": "sweep", "command": command,
                                                      "seed": args.seed, "machine": info,
                                                      "runs": runs}, md)
    print("\n" + md)
    say(f"wrote {paths[1]} and {paths[0]}")
    return 0


def real_checks(runs: dict) -> str:
    return table(
        ["policy", "events sent", "accepted", "duplicates / rejected",
         "counted impressions / views / saves / applies", "every ad's counters = sent",
         "served feeds logged / counted (decayed sum)", "feeds/s", "feed age at serve, median",
         "cache misses", "strategies served", "propensities"],
        [[f"`{p}`", f"{r.sent.events:,}", f"{r.sent.accepted:,}",
          f"{r.sent.duplicates} / {r.sent.rejected}",
          " / ".join(f"{sum(v):,}" for v in r.counted.values()),
          "yes" if r.all_counted else "**NO**", f"{r.served_logged:,} / {r.served_counted:,.1f}",
          f"{r.feeds_per_s:.0f}", f"{np.median(r.log.age_s):.1f} s", r.log.cache.count("miss"),
          ", ".join(f"{k} {n:,}" for k, n in r.strategy_counts().items()),
          f"{r.log.propensity.min():.3f} to {r.log.propensity.max():.3f}"]
         for p, r in runs.items()])


def interval(value: float, low: float, high: float) -> str:
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def evaluation_section(runs: dict) -> str:
    """The service's off-policy evaluation of the thompson+strategies log, against what the
    clients saw of the same feeds and against each strategy's own run."""
    mixed = runs.get(THOMPSON_WITH_STRATEGIES)
    if mixed is None or mixed.evaluation is None:
        return ""
    got = {s.strategy: s for s in mixed.evaluation.strategies}
    led = mixed.log.applies > 0
    rows = []
    for name, s in got.items():
        mine = led[np.array(mixed.log.strategy) == name]
        alone = runs.get(name)
        alone_value = (mean_estimate((alone.log.applies > 0).astype(float))
                       if alone is not None else None)
        rows.append([f"`{name}`", f"{s.feeds:,}",
                     interval(s.logged.value, s.logged.low, s.logged.high),
                     f"{mine.mean():.4f}",
                     interval(s.ips.value, s.ips.low, s.ips.high),
                     interval(s.snips.value, s.snips.low, s.snips.high),
                     interval(alone_value.value, alone_value.low, alone_value.high)
                     if alone_value else "(not run alone)"])
    return "".join([
        "\n## Off-policy evaluation of the `thompson+strategies` log\n\n",
        "`pipeline.reports.evaluate.evaluate` (what `flask --app webapp evaluate` runs) on this"
        " run's own store: the `served` log joined with the events, a feed's reward being 1 if "
        "it led to an apply. Beside it, the same share as the clients saw it, and, for the "
        "strategies that also ran alone, the share of that run's feeds that led to an apply: "
        "what IPS and SNIPS estimate from the mixed log (a strategy alone learnt from all its "
        "run's feeds, in the mixed run they shared them, so agreement is approximate). Values "
        "with 95 % intervals.\n\n",
        table(["strategy", "feeds in the mixed log", "logged value", "clients' count",
               "IPS: always this strategy", "SNIPS", "measured when run alone"], rows),
        f"\nFeeds used: {mixed.evaluation.feeds:,}; logging policy "
        f"{mixed.evaluation.policy.value:.4f} (clients: {led.mean():.4f}).\n"])


def real_markdown(result: dict, runs: dict, summaries: Sequence[report.Summary],
                  twin: Sequence[report.Summary], world: World, settings: Settings,
                  spec: RealSpec, overrides: dict[str, str]) -> str:
    twin_rows = {s.policy: s for s in twin}
    info = result["machine"]
    place = f"the `{result['world_name']}` world" if result["world_name"] else "Berlin"
    return "".join([
        f"# Simulation, real mode: {len(world):,} ads in {place}, {spec.feeds:,} feeds per "
        "policy over HTTP\n\n",
        f"{info['date']}, seed {result['seed']}; `{result['command']}`. {result['wall_s']:.0f} s "
        "in all. For each policy a fresh store (FLUSHALL on a redis-server of our own) and "
        "fresh processes: a Celery worker (2 processes), beat and gunicorn (2 workers), with "
        "FEED_STRATEGIES set to the policy and "
        f"{', '.join(f'{k}={v}' for k, v in overrides.items())}. "
        f"The {len(world):,} ads were loaded with PUT /v1/ads/{{id}}; {spec.threads} client "
        f"threads asked GET /v1/feed (limit {spec.limit}, a new user_id per feed) at up to "
        f"{spec.feeds_per_s:g} feeds/s and sent each feed's impressions (with position and "
        "feed_id), views, saves and applies with POST /v1/events in batches of "
        f"{spec.event_batch}. Everything, clients included, shares the machine's "
        f"{info['os_cpu_count']} cores. The oracle and the regret come from the true rates for "
        "the same users; the time series are in windows of "
        f"{spec.window_feeds:,} feeds, in the order the users came.\n\n",
        "## Results\n\n", report.results_table(summaries), "\n",
        "The fast mode on the same users, intervals and pace (the mean feeds/s measured here; "
        f"it regenerates every {result['fast_twin']['regen_every']} rollups, "
        f"{result['fast_twin']['regen_every'] * settings.rollup_interval_s:g} s), as a check of "
        "how well it predicts the real system:\n\n",
        table(["policy", "real: apply rate, last 10 %", "fast twin: apply rate, last 10 %",
               "real: regret", "fast twin: regret"],
              [[f"`{s.policy}`", report.pct(s.rate_last),
                report.pct(twin_rows[s.policy].rate_last), f"{s.regret:,.0f}",
                f"{twin_rows[s.policy].regret:,.0f}"]
               for s in summaries if s.policy in twin_rows]),
        baselines_section(result.get("last_quarter")),
        "\n## Every event sent was accepted and counted\n\n",
        "Counted: the store's per-ad counters after the rollup (`{ev}:stats:*`), compared ad by "
        "ad and type by type with what the clients sent (and, for the 10 ads with the most "
        "applies, GET /v1/stats/ads/{id} showing the same); served: entries in the `served` "
        "stream / feeds counted into the strategy bandit's (decayed) served sums by the "
        "rollup.\n\n", real_checks(runs), evaluation_section(runs),
        "\n## Plots\n\n", *[f"![{p.stem}]({p.name})\n" for p in result["plot_paths"]],
        "\n## The world\n\n",
        world_table(world, Traffic(spec.feeds, spec.limit, spec.radius_km)),
        "\n## The service's settings\n\n", settings_table(settings, overrides),
    ])


def real_world(args: argparse.Namespace, settings: Settings) -> tuple[World, int, float]:
    """The world, the feeds per policy and the clients' pace: a member of the family (its
    traffic, at the same feeds per regeneration as in fast mode) or the Berlin world of
    ``--ads``."""
    if not args.world:
        spec = WorldSpec(ads=args.ads, position_bias=args.position_bias)
        return make_world(spec, args.seed), args.feeds, args.feeds_per_s
    member = FAMILY.get(args.world)
    if member is None:
        raise SystemExit(f"unknown world {args.world!r}; expected one of {list(FAMILY)}")
    if member.spec.changes:
        raise SystemExit(f"real mode runs worlds whose ads and rates stay put; {args.world} "
                         "changes while it runs (fast mode only)")
    traffic = member.traffic(args.scale)
    fast_regen_s = Settings.model_fields["regen_interval_s"].default
    pace = member.feeds_per_s * fast_regen_s / settings.regen_interval_s
    return make_world(member.spec, args.seed), traffic.feeds, pace


def last_quarter(tracks: dict, twin: FastRun) -> dict[str, float]:
    """The last quarter's share of the oracle: each real policy's, and the fast twin's
    policies' on the same users and pace (``fast:`` names)."""
    out = {p: report.last_share(t, tracks[ORACLE]) for p, t in tracks.items() if p != ORACLE}
    oracle = twin.policies[ORACLE]
    out.update({f"fast:{p}": report.last_share(t, oracle)
                for p, t in twin.policies.items() if p != ORACLE})
    return out


def baselines_section(shares: dict[str, float] | None) -> str:
    """The real default against the baselines the fast mode ran on the same users: does the
    pipeline lose any of the signal?"""
    if not shares or f"fast:{PER_REQUEST}" not in shares or THOMPSON_WITH_STRATEGIES not in shares:
        return ""
    real = shares[THOMPSON_WITH_STRATEGIES]
    rows = [[f"`{name}`", f"{shares[key]:.3f}", f"{real / shares[key]:.3f}"]
            for name, key in ((f"{THOMPSON_WITH_STRATEGIES} (fast twin)",
                               f"fast:{THOMPSON_WITH_STRATEGIES}"),
                              (f"{PER_REQUEST} (fast)", f"fast:{PER_REQUEST}"),
                              (f"{BETA11} (fast)", f"fast:{BETA11}")) if key in shares]
    return ("\n## The real system against the baselines, last quarter\n\n"
            f"The real `{THOMPSON_WITH_STRATEGIES}` reached **{real:.3f}** of the oracle's "
            "applies in the last quarter of its feeds. Beside it, fast mode on the same world, "
            "users and pace:\n\n"
            + table(["policy", "share of the oracle, last quarter", "real / this"], rows))


def real(args: argparse.Namespace, command: str) -> int:
    overrides = {**REAL_DEFAULTS, **parse_sets(args.set)}
    settings = service_settings(overrides)
    world, feeds, pace = real_world(args, settings)
    spec = RealSpec(feeds=feeds, limit=args.limit, radius_km=args.radius_km,
                    threads=args.threads, feeds_per_s=pace,
                    window_feeds=max(1, feeds // 50), settings=overrides)
    policies = (args.policies.split(",") if args.policies
                else [THOMPSON_WITH_STRATEGIES] if args.world else list(REAL_POLICIES))
    unknown = set(policies) - set(REAL_POLICIES)
    if unknown:
        raise SystemExit(f"unknown real-mode policies {sorted(unknown)}; "
                         f"expected some of {list(REAL_POLICIES)}")
    lat, lon = user_points(world, spec.feeds, args.seed)
    work = Path(tempfile.mkdtemp(prefix="simulate-real-"))
    server = RedisServer(work / "redis")
    ok = False
    started = time.perf_counter()
    runs = {}
    try:
        server.start()
        info = machine(server)
        say(f"real mode: redis-server on port {server.port}; {len(world):,} ads, "
            f"{spec.feeds:,} feeds per policy at up to {spec.feeds_per_s:g}/s from "
            f"{spec.threads} client threads; policies {policies}")
        for policy in policies:
            runs[policy] = run_policy(server, world, spec, policy, lat, lon, args.seed,
                                      work / "logs", say)
        ok = True
    finally:
        server.stop()
        if ok and not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"process logs kept in {work}", file=sys.stderr)
    wall = time.perf_counter() - started
    tracks = tracks_of(runs, world, geo.unit_vectors(lat, lon), spec, args.seed)
    summaries = report.summarise(tracks)
    pace = float(np.mean([r.feeds_per_s for r in runs.values()]))
    baselines = [PER_REQUEST, BETA11] if args.world else []
    twin = run_fast(world, settings, Traffic(spec.feeds, spec.limit, spec.radius_km, pace),
                    args.seed, [p for p in policies if p in POLICIES] + baselines)
    twin_summaries = report.summarise(twin.policies)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = REAL_POLICIES[THOMPSON_WITH_STRATEGIES].split(",")
    shares = (strategy_shares(runs[THOMPSON_WITH_STRATEGIES], names, spec.window_feeds)
              if THOMPSON_WITH_STRATEGIES in runs else [])
    prefix = f"real_{args.world}" if args.world else "real_simulation"
    result = {
        "mode": "real", "command": command, "seed": args.seed, "machine": info, "wall_s": wall,
        "world_name": args.world, "last_quarter": last_quarter(tracks, twin),
        "settings_set": overrides, "world": asdict(world.spec), "spec": asdict(spec),
        "summary": [asdict(s) for s in summaries],
        "fast_twin": {"feeds_per_s": pace, "regen_every": twin.regen_every,
                      "summary": [asdict(s) for s in twin_summaries]},
        "policies": {p: r.as_json() for p, r in runs.items()},
        "series": report.series(tracks),
        "plot_paths": report.plot(tracks, out, prefix, "real mode", names if shares else (),
                                  shares, unit=1e3, unit_name="thousands",
                                  strategy_label="share of feeds served"),
        "code": code_check(info["code_digest"]),
    }
    md = real_markdown(result, runs, summaries, twin_summaries, world, settings, spec, overrides)
    paths = report.write(out, prefix, result, md)
    print("\n" + md)
    say(f"wrote {paths[1]}, {paths[0]} and {len(result['plot_paths'])} plots")
    return 0 if all(r.all_counted for r in runs.values()) else 1


def pin_threads(core: int) -> None:
    """Pin every thread of this process (numpy's BLAS threads included) to one core."""
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), {core})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--fast", action="store_true", help="the bandit in process")
    mode.add_argument("--real", action="store_true", help="the real processes over HTTP")
    parser.add_argument("--sweep", action="store_true",
                        help="with --fast: the service's settings changed one at a time")
    parser.add_argument("--world", help=f"--real: a world of the family {list(FAMILY)} "
                                        "(its ads, rates and traffic) instead of Berlin")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="--real --world: the world's traffic, as a share of its own")
    parser.add_argument("--ads", type=int, default=1000)
    parser.add_argument("--impressions", type=int, default=2_000_000,
                        help="--fast: impressions per policy (feeds x limit)")
    parser.add_argument("--feeds", type=int, default=10_000, help="--real: feeds per policy")
    parser.add_argument("--feeds-per-s", type=float,
                        help=f"--fast: assumed city-wide traffic (default {FAST_TRAFFIC:g}); "
                             f"--real: the pace the clients keep at most (default {REAL_PACE:g})")
    parser.add_argument("--threads", type=int, default=4, help="--real: client threads")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--radius-km", type=float, default=5.0)
    parser.add_argument("--position-bias", type=float, default=WorldSpec.position_bias,
                        help="the world's b(p) = p ** -x")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1,
                        help="--fast: also run the Thompson policies on this many seeds in all "
                             "(--seed, --seed + 1, ...), for the spread of the targets and the "
                             "regret ratio")
    parser.add_argument("--policies", help="comma-separated (default: all of the mode)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a service setting (as its environment variable), repeatable")
    parser.add_argument("--core", type=int, help="pin this process (every thread) to one core")
    parser.add_argument("--keep-logs", action="store_true", help="--real: keep process logs")
    parser.add_argument("--out", default=str(RESULTS), help="where results go")
    args = parser.parse_args(argv)
    if args.feeds_per_s is None:
        args.feeds_per_s = REAL_PACE if args.real else FAST_TRAFFIC
    if args.core is not None:
        pin_threads(args.core)
    command = "python -m bench.simulate " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.real:
        return real(args, command)
    return sweep(args, command) if args.sweep else fast(args, command)


if __name__ == "__main__":
    sys.exit(main())
