"""What the employer rule (MAX_PER_EMPLOYER) costs and what it does, over the family of worlds.

Each world of ``bench/sim/family.py`` is run in fast mode, over several seeds, with three
policies on the same world and the same users in the same run: the service with its
defaults (``thompson+strategies``, which keeps the rule), the same service without the rule
(``thompson+strategies-any-employer``), and per-request Thompson sampling (the plain
baseline, which knows nothing of employers). Figures are over the whole run: expected applies
(the true rates at the shown positions, with the world's employer fatigue), the share of feeds
whose first 10 ads hold more than 2 of one employer, and the share of shown slots held by the
world's largest employer.

The rule's cost is measured two ways. Served feed by served feed: each feed the service
served against the feed it would have served without the rule, from the same state and the
same draws (a paired comparison, so its interval is narrow). And over the whole run, against
the twin without the rule, which also learns from what it showed instead (two runs that part
after their first different feed, so their interval is wide).

    python -m bench.employers                      # the whole family, 6 seeds each
    python -m bench.employers --worlds one-employer,trap --seeds 2 --scale 0.5

Results go to ``--out`` (default bench/results): employers.{md,json}.
"""
from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import code_check, machine, say, table
from bench.sim import report
from bench.sim.family import EMPLOYER_EFFECTS, FAMILY
from bench.sim.fast import ANY_EMPLOYER, PER_REQUEST, THOMPSON_WITH_STRATEGIES, Track, run_fast
from bench.sim.world import make_world
from bench.worlds import cell, family_parser, mean_interval, settings_set
from config import load_settings

POLICIES = (THOMPSON_WITH_STRATEGIES, ANY_EMPLOYER, PER_REQUEST)
MAX_COST = 0.02    # the rule may cost at most 2 % of applies where users do not mind employers


def figures(track: Track, feeds: int) -> dict[str, float]:
    shown = max(1, sum(track.impressions))
    out = {"applies": float(sum(track.expected)), "crowded": sum(track.crowded) / feeds,
           "largest": sum(track.largest) / shown}
    if track.unruled:
        out["unruled"] = float(sum(track.unruled))
    return out


def run_one(name: str, seed: int, overrides: dict[str, str], scale: float) -> dict:
    """One world, one seed, the three policies."""
    member = FAMILY[name]
    traffic = member.traffic(scale)
    started = time.perf_counter()
    run = run_fast(make_world(member.spec, seed), load_settings(overrides), traffic, seed,
                   POLICIES)
    return {"world": name, "seed": seed, "feeds": traffic.feeds,
            "figures": {p: figures(run.policies[p], traffic.feeds) for p in POLICIES},
            "seconds": time.perf_counter() - started}


def summarise(name: str, runs: Sequence[dict]) -> dict:
    def of(policy: str, key: str) -> list[float]:
        return [r["figures"][policy][key] for r in runs]

    def ratio(a: str, b: str) -> tuple[float, float]:
        return mean_interval([x / y for x, y in zip(of(a, "applies"), of(b, "applies"),
                                                    strict=True)])

    return {"world": name, "line": FAMILY[name].line, "seeds": len(runs),
            "employer_effects": name in EMPLOYER_EFFECTS,
            "per_feed": mean_interval([f / u for f, u in zip(
                of(THOMPSON_WITH_STRATEGIES, "applies"), of(THOMPSON_WITH_STRATEGIES, "unruled"),
                strict=True)]),
            "rule_vs_any": ratio(THOMPSON_WITH_STRATEGIES, ANY_EMPLOYER),
            "rule_vs_per_request": ratio(THOMPSON_WITH_STRATEGIES, PER_REQUEST),
            "any_vs_per_request": ratio(ANY_EMPLOYER, PER_REQUEST),
            "crowded": {p: float(np.mean(of(p, "crowded"))) for p in POLICIES},
            "largest": {p: float(np.mean(of(p, "largest"))) for p in POLICIES},
            "seconds": float(sum(r["seconds"] for r in runs)), "runs": list(runs)}


def checks(worlds: Sequence[dict]) -> list[tuple[str, bool, str]]:
    out = []
    plain = [w for w in worlds if not w["employer_effects"]]
    if plain:
        worst = min(plain, key=lambda w: w["per_feed"][0])
        out.append((f"worlds without employer effects: the rule costs at most {MAX_COST:.0%} "
                    "of applies, feed by feed", worst["per_feed"][0] >= 1 - MAX_COST,
                    f"lowest rule / no rule {cell(worst['per_feed'])} ({worst['world']})"))
        worst = min(plain, key=lambda w: sum(w["rule_vs_any"]))
        out.append((f"worlds without employer effects, over the run: no world where the rule "
                    f"costs more than {MAX_COST:.0%} beyond the 95 % interval",
                    sum(worst["rule_vs_any"]) >= 1 - MAX_COST,
                    f"lowest upper end {sum(worst['rule_vs_any']):.3f} "
                    f"({cell(worst['rule_vs_any'])}, {worst['world']})"))
    for w in worlds:
        if w["employer_effects"]:
            out.append((f"`{w['world']}`: the rule gains applies, feed by feed",
                        w["per_feed"][0] > 1, f"{w['per_feed'][0] - 1:+.1%}"))
    served = max(w["crowded"][THOMPSON_WITH_STRATEGIES] for w in worlds)
    out.append(("no served feed has more than 2 of one employer in its first 10 ads",
                served == 0, f"largest share of such feeds {served:.2%}"))
    return out


def markdown(worlds: Sequence[dict], result: dict) -> str:
    info = result["machine"]
    rows = [[f"`{w['world']}`" + (" (employer effects)" if w["employer_effects"] else ""),
             cell(w["per_feed"]), cell(w["rule_vs_any"]), cell(w["rule_vs_per_request"]),
             cell(w["any_vs_per_request"]),
             f"{w['crowded'][ANY_EMPLOYER]:.1%} -> {w['crowded'][THOMPSON_WITH_STRATEGIES]:.1%}",
             f"{w['largest'][ANY_EMPLOYER]:.1%} -> {w['largest'][THOMPSON_WITH_STRATEGIES]:.1%}"]
            for w in worlds]
    verdicts = table(["target", "holds", "figure"],
                     [[t, "yes" if ok else "**no**", f] for t, ok, f in result["checks"]])
    return "".join([
        "# The employer rule across the family of worlds\n\n",
        f"{info['date']}; `{result['command']}`; {result['wall_s']:.0f} s wall on "
        f"{result['jobs']} process(es) (machine: {info['os_cpu_count']} cores), "
        f"{result['seeds']} seeds per world, fast mode, MAX_PER_EMPLOYER="
        f"{result['max_per_employer']}.\n\n",
        " ".join(__doc__.split("\n\n")[1].split()), "\n\n",
        " ".join(__doc__.split("\n\n")[2].split()), "\n\n",
        "## Targets\n\n", verdicts,
        "\n## Per world (ratios of expected applies per seed, mean ± 95 % interval)\n\n",
        "Crowded feeds: the share whose first 10 ads hold more than 2 of one employer, "
        "without the rule -> with it. Largest employer: its share of the shown slots, "
        "likewise.\n\n",
        table(["world", "rule / no rule, feed by feed", "rule / no rule, over the run",
               "rule / per-request Thompson",
               "no rule / per-request Thompson", "crowded feeds", "largest employer"], rows),
        "\n## The worlds\n\n",
        table(["world", "what it is"], [[f"`{w['world']}`", w["line"]] for w in worlds]),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = family_parser(__doc__, seeds=6)
    args = parser.parse_args(argv)
    command = "python -m bench.employers " + shlex.join(argv if argv is not None
                                                        else sys.argv[1:])
    names = args.worlds.split(",") if args.worlds else list(FAMILY)
    unknown = set(names) - set(FAMILY)
    if unknown:
        raise SystemExit(f"unknown worlds {sorted(unknown)}; expected some of {list(FAMILY)}")
    overrides = settings_set(args.set)
    settings = load_settings(overrides)
    if not settings.max_per_employer:
        raise SystemExit("MAX_PER_EMPLOYER is 0: there is no rule to measure")
    info = machine()
    started = time.perf_counter()
    done: dict[str, list[dict]] = {name: [] for name in names}
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, name, seed, overrides, args.scale)
                   for name in names for seed in range(1, args.seeds + 1)]
        for future in futures:
            r = future.result()
            done[r["world"]].append(r)
            f = r["figures"]
            say(f"  {r['world']} seed {r['seed']}: rule / no rule "
                f"{f[THOMPSON_WITH_STRATEGIES]['applies'] / f[ANY_EMPLOYER]['applies']:.3f} "
                f"({r['seconds']:.0f} s)")
    worlds = [summarise(name, done[name]) for name in names]
    result = {"command": command, "machine": info, "jobs": args.jobs, "seeds": args.seeds,
              "scale": args.scale, "settings_set": overrides,
              "max_per_employer": settings.max_per_employer, "worlds": worlds,
              "wall_s": time.perf_counter() - started}
    result["checks"] = checks(worlds)
    result["code"] = code_check(info["code_digest"])
    md = markdown(worlds, result)
    paths = report.write(Path(args.out), "employers", result, md)
    print("\n" + md)
    say(f"wrote {paths[1]} and {paths[0]}")
    return 0 if all(ok for _, ok, _ in result["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
