"""Do the defaults hold in worlds they were not tuned on? The family of simulated worlds
(``bench/sim/family.py``), each run in fast mode over several seeds, with the baselines on
the same world and the same users in the same run.

Policies: ``thompson+strategies`` (the service with its defaults), ``thompson`` (its K
precomputed Thompson variants alone), ``thompson-per-request`` (fresh draws for every
request from the service's own posterior: the same priors), ``beta11-per-request`` (fresh
draws from Beta(1, 1) on applies per impression, updated at every rollup) and
``beta11-per-request-regen`` (the same, updated only at each regeneration), ``greedy`` (the
posterior mean, per request), ``random`` and the ``oracle`` (the best ads in reach by their
true rates). Figures are for the last quarter of each run's feeds: expected applies (the
true rates at the shown positions) as a share of the oracle's.

    python -m bench.worlds                          # the whole family, 5 seeds each
    python -m bench.worlds --worlds trap,churn --seeds 2 --scale 0.5
    python -m bench.worlds --set FEED_STRATEGIES=thompson --out /tmp/worlds
    python -m bench.worlds --sweep                  # each setting changed, over the family

Results go to ``--out`` (default bench/results): worlds.{md,json} and worlds.png, or
worlds_sweep.{md,json} with ``--sweep``.
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench.common import RESULTS, code_check, machine, say, table
from bench.sim import report
from bench.sim.family import FAMILY, TRAPS, Member
from bench.sim.fast import (
    BETA11,
    BETA11_AT_REGEN,
    GREEDY,
    ORACLE,
    PER_REQUEST,
    RANDOM,
    THOMPSON_WITH_STRATEGIES,
    run_fast,
)
from bench.sim.report import last_share
from bench.sim.world import make_world
from bench.simulate import parse_sets
from config import Settings, load_settings

DEFAULT = THOMPSON_WITH_STRATEGIES
POLICIES = (DEFAULT, "thompson", PER_REQUEST, BETA11, BETA11_AT_REGEN, GREEDY, RANDOM)
SWEEP_POLICIES = (DEFAULT, PER_REQUEST, BETA11)
CURVE_POSITIONS = 10
# the targets: the default against per-request Thompson with the same priors, in every
# world and on average; against per-request Beta(1, 1); against Thompson alone in the traps
MIN_VS_PER_REQUEST, MEAN_VS_PER_REQUEST, MIN_VS_BETA11, MIN_VS_THOMPSON = 0.95, 1.0, 1.0, 1.0
CURVE_TOLERANCE = 0.10
# two-sided 95 % quantiles of Student's t, by degrees of freedom
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228}
SWEEP = {"REWARD_MODEL": ["direct"], "POSITION_BIAS_EXPONENT": ["0", "0.5"],
         "PRIOR_STRENGTH": ["10", "200"], "FEED_VARIANTS": ["16", "32"],
         "STRATEGY_FLOOR": ["0.01", "0.05"], "STRATEGY_CELL_MIN_FEEDS": ["1000000000"],
         "FEED_STRATEGIES": ["thompson", "thompson,popular"]}


def curve_error(curve: np.ndarray | None, member: Member) -> float | None:
    """The learnt curve's largest relative error at positions 1 to 10 (or the feed's length),
    against what the world's impressions show."""
    if curve is None:
        return None
    positions = np.arange(1, min(CURVE_POSITIONS, member.limit) + 1)
    truth = member.spec.impression_curve(positions)
    return float(np.max(np.abs(curve[:len(positions)] / truth - 1.0)))


def run_one(name: str, seed: int, overrides: dict[str, str], scale: float,
            policies: Sequence[str]) -> dict:
    """One world, one seed: every policy's share of the oracle and regret slope."""
    member = FAMILY[name]
    settings = load_settings(overrides)
    started = time.perf_counter()
    run = run_fast(make_world(member.spec, seed), settings, member.traffic(scale), seed, policies)
    oracle = run.policies[ORACLE]
    summaries = {s.policy: s for s in report.summarise(run.policies)}
    return {"world": name, "seed": seed,
            "share": {p: last_share(t, oracle) for p, t in run.policies.items()},
            "slope": {p: summaries[p].regret_slope for p in policies},
            "curve": None if run.curve is None else run.curve.tolist(),
            "curve_error": curve_error(run.curve, member),
            "feeds": len(oracle.expected) * run.batch_feeds,
            "seconds": time.perf_counter() - started}


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the half-width of its 95 % interval (Student's t over the seeds)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), math.nan
    return float(v.mean()), T95.get(len(v) - 1, 1.96) * float(v.std(ddof=1)) / math.sqrt(len(v))


def ratios(runs: Sequence[dict], of: str, to: str) -> list[float]:
    return [r["share"][of] / r["share"][to] for r in runs]


def summarise_world(name: str, runs: Sequence[dict], policies: Sequence[str]) -> dict:
    out = {"world": name, "line": FAMILY[name].line, "seeds": len(runs),
           "share": {p: mean_interval([r["share"][p] for r in runs]) for p in policies},
           "slope": {p: float(np.mean([r["slope"][p] for r in runs
                                       if r["slope"][p] is not None] or [math.nan]))
                     for p in policies},
           "seconds": float(sum(r["seconds"] for r in runs)),
           "per_seed": [{"seed": r["seed"], "share": r["share"]} for r in runs]}
    for key, to in (("vs_per_request", PER_REQUEST), ("vs_beta11", BETA11),
                    ("vs_thompson", "thompson")):
        if DEFAULT in policies and to in policies:
            out[key] = mean_interval(ratios(runs, DEFAULT, to))
    errors = [r["curve_error"] for r in runs if r["curve_error"] is not None]
    out["curve_error"] = float(np.mean(errors)) if errors else None
    curves = [r["curve"] for r in runs if r["curve"] is not None]
    out["curve"] = np.mean(curves, axis=0).round(4).tolist() if curves else None
    return out


def checks(worlds: Sequence[dict]) -> list[tuple[str, bool, str]]:
    """Each target, whether it holds, and the figure that says so."""
    out = []
    with_pr = [w for w in worlds if "vs_per_request" in w]
    if with_pr:
        worst = min(with_pr, key=lambda w: w["vs_per_request"][0])
        out.append((f"every world: default >= {MIN_VS_PER_REQUEST} x per-request Thompson "
                    "(same priors)", worst["vs_per_request"][0] >= MIN_VS_PER_REQUEST,
                    f"lowest {worst['vs_per_request'][0]:.3f} ({worst['world']})"))
        mean = float(np.mean([w["vs_per_request"][0] for w in with_pr]))
        out.append((f"mean over the worlds: default >= {MEAN_VS_PER_REQUEST} x per-request "
                    "Thompson", mean >= MEAN_VS_PER_REQUEST, f"{mean:.3f}"))
    with_b = [w for w in worlds if "vs_beta11" in w]
    if with_b:
        worst = min(with_b, key=lambda w: w["vs_beta11"][0])
        out.append((f"every world: default >= {MIN_VS_BETA11} x per-request Beta(1, 1)",
                    worst["vs_beta11"][0] >= MIN_VS_BETA11,
                    f"lowest {worst['vs_beta11'][0]:.3f} ({worst['world']})"))
    traps = [w for w in worlds if w["world"] in TRAPS and "vs_thompson" in w]
    if traps:
        worst = min(traps, key=lambda w: w["vs_thompson"][0])
        out.append((f"trap worlds: default >= {MIN_VS_THOMPSON} x Thompson alone",
                    worst["vs_thompson"][0] >= MIN_VS_THOMPSON,
                    f"lowest {worst['vs_thompson'][0]:.3f} ({worst['world']})"))
    curves = [w for w in worlds if w["curve_error"] is not None]
    if curves:
        worst = max(curves, key=lambda w: w["curve_error"])
        out.append((f"every world: the learnt examination curve within "
                    f"{CURVE_TOLERANCE:.0%} at positions 1-{CURVE_POSITIONS}",
                    worst["curve_error"] <= CURVE_TOLERANCE,
                    f"largest error {worst['curve_error']:.1%} ({worst['world']})"))
    return out


def cell(value: tuple[float, float], digits: int = 3) -> str:
    mean, half = value
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def markdown(worlds: Sequence[dict], policies: Sequence[str], result: dict) -> str:
    info = result["machine"]
    shares = table(["world", *[f"`{p}`" for p in policies]],
                   [[f"`{w['world']}`", *[cell(w["share"][p]) for p in policies]]
                    for w in worlds])
    compare = table(
        ["world", "default / per-request Thompson", "default / per-request Beta(1, 1)",
         "default / Thompson alone", "regret slope: default, per-request Thompson",
         "curve error, positions 1-10"],
        [[f"`{w['world']}`", cell(w.get("vs_per_request", (math.nan, math.nan))),
          cell(w.get("vs_beta11", (math.nan, math.nan))),
          cell(w.get("vs_thompson", (math.nan, math.nan))),
          f"{w['slope'].get(DEFAULT, math.nan):.2f}, {w['slope'].get(PER_REQUEST, math.nan):.2f}",
          "" if w["curve_error"] is None else f"{w['curve_error']:.1%}"] for w in worlds])
    verdicts = table(["target", "holds", "figure"],
                     [[t, "yes" if ok else "**no**", f] for t, ok, f in result["checks"]])
    lines = table(["world", "what it is"], [[f"`{w['world']}`", w["line"]] for w in worlds])
    return "".join([
        "# The defaults across a family of worlds\n\n",
        f"{info['date']}; `{result['command']}`; {result['wall_s']:.0f} s wall on "
        f"{result['jobs']} process(es) (machine: {info['os_cpu_count']} cores), "
        f"{result['seeds']} seeds per world, fast mode. Settings set: "
        f"{result['settings_set'] or 'none (the defaults)'}.\n\n",
        " ".join(__doc__.split("\n\n")[1].split()), "\n\n",
        "## Targets\n\n", verdicts,
        "\n## Share of the oracle's applies, last quarter (mean ± 95 % interval over seeds)\n\n",
        shares,
        "\n## The default against the baselines (ratios per seed, mean ± 95 % interval)\n\n",
        "Regret slope: log-log slope of the cumulative regret over the second half (1: "
        "linear, no learning; lower is better). Curve error: the learnt examination curve "
        "against what the world's impressions show (flat where only scrolled-to slots post "
        "one).\n\n", compare,
        "\n![worlds](worlds.png)\n",
        "\n## The worlds\n\n", lines,
    ])


def plot(worlds: Sequence[dict], policies: Sequence[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(10, 1.1 * len(worlds) + 3), 5.5))
    width = 0.8 / len(policies)
    x = np.arange(len(worlds))
    for i, p in enumerate(policies):
        means = [w["share"][p][0] for w in worlds]
        errs = [0 if math.isnan(w["share"][p][1]) else w["share"][p][1] for w in worlds]
        ax.bar(x + (i - (len(policies) - 1) / 2) * width, means, width, yerr=errs, label=p,
               color=report.COLOURS.get(p), capsize=2)
    ax.set_xticks(x, [w["world"] for w in worlds], rotation=30, ha="right")
    ax.set_ylabel("share of the oracle's applies, last quarter")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=4, loc="lower right")
    ax.set_title("The defaults and the baselines across the family of worlds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_family(names: Sequence[str], seeds: int, overrides: dict[str, str], scale: float,
               policies: Sequence[str], jobs: int,
               progress: Callable[[str], None] = say) -> list[dict]:
    """Every (world, seed) run, on ``jobs`` processes; per world summaries, in order."""
    work = [(name, seed) for name in names for seed in range(1, seeds + 1)]
    done: dict[str, list[dict]] = {name: [] for name in names}
    with ProcessPoolExecutor(jobs) as pool:
        futures = [pool.submit(run_one, name, seed, overrides, scale, policies)
                   for name, seed in work]
        for future in futures:
            r = future.result()
            done[r["world"]].append(r)
            progress(f"  {r['world']} seed {r['seed']}: default {r['share'].get(DEFAULT, 0):.3f} "
                     f"of the oracle ({r['seconds']:.0f} s)")
    return [summarise_world(name, done[name], policies) for name in names]


def settings_set(pairs: Sequence[str]) -> dict[str, str]:
    """``--set`` values, checked: a bad one stops here, with the setting's name."""
    out = parse_sets(pairs)
    load_settings(out)
    return out


def family_run(args: argparse.Namespace, command: str) -> int:
    names = args.worlds.split(",") if args.worlds else list(FAMILY)
    unknown = set(names) - set(FAMILY)
    if unknown:
        raise SystemExit(f"unknown worlds {sorted(unknown)}; expected some of {list(FAMILY)}")
    policies = args.policies.split(",") if args.policies else list(POLICIES)
    overrides = settings_set(args.set)
    info = machine()
    say(f"{len(names)} worlds x {args.seeds} seeds, policies {policies}, {args.jobs} process(es)")
    started = time.perf_counter()
    worlds = run_family(names, args.seeds, overrides, args.scale, policies, args.jobs)
    settings: Settings = load_settings(overrides)
    result = {"command": command, "machine": info, "jobs": args.jobs, "seeds": args.seeds,
              "scale": args.scale, "settings_set": overrides,
              "settings": settings.model_dump(mode="json",
                                              exclude={"admin_token", "flower_basic_auth"}),
              "policies": policies, "worlds": worlds, "wall_s": time.perf_counter() - started,
              "family": {n: {"line": FAMILY[n].line, "spec": asdict(FAMILY[n].spec),
                             "traffic": asdict(FAMILY[n].traffic(args.scale))} for n in names}}
    result["checks"] = checks(worlds)
    result["code"] = code_check(info["code_digest"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(worlds, policies, out / "worlds.png")
    md = markdown(worlds, policies, result)
    paths = report.write(out, "worlds", result, md)
    print("\n" + md)
    say(f"wrote {paths[1]}, {paths[0]} and {out / 'worlds.png'}")
    return 0


def sweep(args: argparse.Namespace, command: str) -> int:
    """Each of SWEEP's settings changed alone from the defaults, over the whole family:
    the default policy's ratio to per-request Thompson (same settings) and to Beta(1, 1)."""
    names = args.worlds.split(",") if args.worlds else list(FAMILY)
    base = settings_set(args.set)
    info = machine()
    started = time.perf_counter()
    variants = [("(defaults)", None)] + [(n, v) for n, values in SWEEP.items() for v in values]
    rows, runs = [], []
    for name, value in variants:
        overrides = {**base, **({name: value} if value is not None else {})}
        say(f"sweep: {name}{'' if value is None else '=' + value}")
        worlds = run_family(names, args.seeds, overrides, args.scale, SWEEP_POLICIES,
                            args.jobs, progress=lambda _m: None)
        vs_pr = [w["vs_per_request"][0] for w in worlds]
        vs_b = [w["vs_beta11"][0] for w in worlds]
        default = [w["share"][DEFAULT][0] for w in worlds]
        worst = int(np.argmin(vs_b))
        runs.append({"setting": name, "value": value, "worlds": worlds})
        rows.append([f"`{name}`" + ("" if value is None else f" = `{value}`"),
                     f"{np.mean(default):.3f}", f"{min(default):.3f}",
                     f"{np.mean(vs_pr):.3f}", f"{min(vs_pr):.3f}",
                     f"{np.mean(vs_b):.3f}", f"{vs_b[worst]:.3f} ({worlds[worst]['world']})"])
    md = (f"# The service's settings, one at a time, over the family of worlds\n\n"
          f"{info['date']}; `{command}`; {time.perf_counter() - started:.0f} s on {args.jobs} "
          f"process(es), {args.seeds} seeds per world, {len(names)} worlds. Each row changes "
          "one setting from the defaults; the default policy (`thompson+strategies`) is run "
          "with it, beside per-request Thompson with the same settings and per-request "
          "Beta(1, 1); figures are the last quarter's share of the oracle's applies, and the "
          "ratios, averaged over seeds, then taken over the worlds (mean, and the worst "
          "world).\n\n"
          + table(["setting changed", "share of oracle: mean", "worst world",
                   "/ per-request Thompson: mean", "worst", "/ Beta(1, 1): mean",
                   "worst (world)"], rows))
    out = Path(args.out)
    paths = report.write(out, "worlds_sweep", {"command": command, "machine": info,
                                               "seeds": args.seeds, "runs": runs}, md)
    print("\n" + md)
    say(f"wrote {paths[1]} and {paths[0]}")
    return 0


def family_parser(doc: str, seeds: int) -> argparse.ArgumentParser:
    """The options of a run over the family: --worlds, --seeds, --scale, --set, --jobs and
    --out."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", help=f"comma-separated (default: all of {list(FAMILY)})")
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="traffic as a share of each world's own (for quick runs)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a service setting (as its environment variable), repeatable")
    parser.add_argument("--jobs", type=int, default=1, help="processes to run worlds on")
    parser.add_argument("--out", default=str(RESULTS), help="where results go")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = family_parser(__doc__, seeds=5)
    parser.add_argument("--policies", help=f"comma-separated (default: {','.join(POLICIES)})")
    parser.add_argument("--sweep", action="store_true",
                        help="each of the sweep's settings changed, over the family")
    args = parser.parse_args(argv)
    command = "python -m bench.worlds " + shlex.join(argv if argv is not None else sys.argv[1:])
    return sweep(args, command) if args.sweep else family_run(args, command)


if __name__ == "__main__":
    sys.exit(main())
