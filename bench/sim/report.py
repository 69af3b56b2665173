"""Figures from a simulation's tracks, and the files it writes: a markdown table, the JSON
behind it and PNG plots (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import table
from bench.sim.fast import ORACLE, PER_REQUEST, PER_REQUEST_AT_REGEN, RANDOM, Track

LAST_SHARE = 0.10   # "the last 10 % of impressions"
LAST_QUARTER = 0.25
WINDOWS = 50        # points on the apply-rate plot
COLOURS = {"thompson+strategies": "tab:blue", "thompson": "tab:cyan",
           PER_REQUEST: "tab:purple", PER_REQUEST_AT_REGEN: "tab:pink", "popular": "tab:orange",
           "egreedy": "tab:green", RANDOM: "tab:gray", ORACLE: "black"}


@dataclass(frozen=True)
class Summary:
    policy: str
    impressions: int
    rate: float                 # expected applies per impression, overall
    rate_last: float            # ... in the last 10 % of impressions
    sampled_rate: float         # sampled applies per impression, overall
    sampled_rate_last: float
    view_rate: float            # sampled views per impression
    of_oracle_last: float
    x_random_last: float | None
    regret: float               # cumulative, in expected applies
    regret_per_1k_last: float   # expected applies lost per 1,000 impressions, last 10 %
    regret_slope: float | None  # log-log, over the second half of the impressions


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float | None:
    """The least-squares slope of log y against log x over the points with x in the second
    half of the range (y > 0 only): 1 for linear growth, about 0.5 for sqrt(t), near 0 for
    log t.

    >>> x = np.arange(1, 101, dtype=float)
    >>> round(loglog_slope(x, 3 * x ** 0.5), 3), round(loglog_slope(x, 2 * x), 3)
    (0.5, 1.0)
    """
    keep = (x >= x[-1] / 2) & (y > 0)
    if keep.sum() < 2:
        return None
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def _last(impressions: np.ndarray) -> np.ndarray:
    """Mask of the batches making up the last LAST_SHARE of the impressions."""
    cumulative = np.cumsum(impressions)
    return cumulative > cumulative[-1] * (1 - LAST_SHARE)


def summarise(tracks: Mapping[str, Track]) -> list[Summary]:
    """One row per policy (the oracle last); the regret is measured against the oracle's
    expected applies for the same users."""
    oracle = tracks[ORACLE]
    o_exp, o_imp = np.array(oracle.expected), np.array(oracle.impressions)
    x = np.cumsum(o_imp).astype(float)
    rates_last: dict[str, float] = {}
    rows = []
    for name, t in tracks.items():
        imp, exp = np.array(t.impressions), np.array(t.expected)
        last = _last(imp)
        rates_last[name] = exp[last].sum() / max(imp[last].sum(), 1)
        regret = np.cumsum(o_exp - exp)
        rows.append((name, t, imp, exp, last, regret, (o_exp[last].sum() - exp[last].sum())
                     / max(o_imp[last].sum(), 1) * 1000))
    oracle_last = rates_last[ORACLE]
    out = []
    for name, t, imp, exp, last, regret, per_1k in rows:
        applies, views = np.array(t.applies), np.array(t.views)
        out.append(Summary(
            policy=name, impressions=int(imp.sum()), rate=exp.sum() / max(imp.sum(), 1),
            rate_last=rates_last[name],
            sampled_rate=applies.sum() / max(imp.sum(), 1),
            sampled_rate_last=applies[last].sum() / max(imp[last].sum(), 1),
            view_rate=views.sum() / max(imp.sum(), 1),
            of_oracle_last=rates_last[name] / oracle_last,
            x_random_last=(rates_last[name] / rates_last[RANDOM] if RANDOM in rates_last
                           else None),
            regret=float(regret[-1]), regret_per_1k_last=float(per_1k),
            regret_slope=None if name == ORACLE else loglog_slope(x, regret)))
    return sorted(out, key=lambda s: s.policy == ORACLE)


def regret_ratios(summaries: Sequence[Summary]) -> dict[str, float]:
    """What precomputing K variants every REGEN_INTERVAL_S costs against fresh draws per
    request: the ratio of cumulative regrets, split into its two causes where both per-request
    baselines ran (draws from a posterior as old as the last regeneration isolate the cost of
    having only K orders; their ratio to the freshest posterior is the cost of its age)."""
    regret = {s.policy: s.regret for s in summaries}
    out = {}
    if "thompson" in regret and PER_REQUEST in regret:
        out["precomputed_vs_per_request"] = regret["thompson"] / regret[PER_REQUEST]
    if "thompson" in regret and PER_REQUEST_AT_REGEN in regret:
        out["k_variants_only"] = regret["thompson"] / regret[PER_REQUEST_AT_REGEN]
    if PER_REQUEST_AT_REGEN in regret and PER_REQUEST in regret:
        out["posterior_age_only"] = regret[PER_REQUEST_AT_REGEN] / regret[PER_REQUEST]
    return out


def last_share(track: Track, oracle: Track, share: float = LAST_QUARTER) -> float:
    """Expected applies over the last ``share`` of the run's batches (or windows), as a
    share of the oracle's for the same users."""
    start = int(len(oracle.expected) * (1 - share))
    return float(np.sum(track.expected[start:]) / np.sum(oracle.expected[start:]))


def pct(v: float | None, digits: int = 3) -> str:
    return "" if v is None else f"{100 * v:.{digits}f} %"


def results_table(summaries: Sequence[Summary]) -> str:
    return table(
        ["policy", "impressions", "apply rate", "apply rate, last 10 %", "% of oracle, last 10 %",
         "x random, last 10 %", "sampled apply rate (last 10 %)", "views / impression",
         "cumulative regret (expected applies)", "regret per 1,000 impressions, last 10 %",
         "regret log-log slope, 2nd half"],
        [[f"`{s.policy}`", f"{s.impressions:,}", pct(s.rate), pct(s.rate_last),
          f"{100 * s.of_oracle_last:.1f} %",
          "" if s.x_random_last is None else f"{s.x_random_last:.2f}",
          f"{pct(s.sampled_rate)} ({pct(s.sampled_rate_last)})", pct(s.view_rate, 2),
          f"{s.regret:,.0f}", f"{s.regret_per_1k_last:.2f}",
          "" if s.regret_slope is None else f"{s.regret_slope:.3f}"]
         for s in summaries])


def windows(track: Track, count: int = WINDOWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(impressions at each window's end, expected and sampled applies per impression in the
    window), over ``count`` windows of about equal numbers of batches."""
    imp, exp = np.array(track.impressions, float), np.array(track.expected)
    applies = np.array(track.applies, float)
    edges = np.unique(np.linspace(0, len(imp), min(count, len(imp)) + 1).round().astype(int))
    sums = [np.add.reduceat(v, edges[:-1]) for v in (imp, exp, applies)]
    return (np.cumsum(imp)[edges[1:] - 1], sums[1] / np.maximum(sums[0], 1),
            sums[2] / np.maximum(sums[0], 1))


def series(tracks: Mapping[str, Track]) -> dict:
    """What the plots show, for the JSON file."""
    oracle = tracks[ORACLE]
    o_exp = np.array(oracle.expected)
    x = np.cumsum(oracle.impressions)
    step = max(1, len(x) // 200)
    out: dict = {"impressions": x[step - 1::step].tolist(), "windows": {}, "regret": {}}
    for name, t in tracks.items():
        end, rate, sampled = windows(t)
        out["windows"][name] = {"impressions_end": end.tolist(), "apply_rate": rate.tolist(),
                                "sampled_apply_rate": sampled.tolist()}
        if name != ORACLE:
            out["regret"][name] = np.cumsum(o_exp - np.array(t.expected))[step - 1::step].tolist()
    return out


def plot(tracks: Mapping[str, Track], out: Path, prefix: str, title: str,
         strategies: Sequence[str] = (), probabilities: Sequence[Sequence[float]] = (),
         unit: float = 1e6, unit_name: str = "millions",
         strategy_label: str = "probability of serving (mean over feeds served)") -> list[Path]:
    """apply rate over time, cumulative regret (linear and log-log), and the strategy
    probabilities of thompson+strategies over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, t in tracks.items():
        end, rate, _ = windows(t)
        ax.plot(end / unit, 100 * rate, label=name, color=COLOURS.get(name),
                lw=2.2 if name.startswith("thompson") else 1.4,
                ls="--" if name == ORACLE else "-")
    ax.set_xlabel(f"impressions ({unit_name})")
    ax.set_ylabel("expected applies per impression (%), per window")
    ax.set_title(f"{title}: apply rate over time")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    paths.append(_save(fig, out / f"{prefix}_apply_rate.png"))

    oracle = np.array(tracks[ORACLE].expected)
    x = np.cumsum(tracks[ORACLE].impressions).astype(float)
    fig, (lin, log) = plt.subplots(1, 2, figsize=(13, 5.5))
    for name, t in tracks.items():
        if name == ORACLE:
            continue
        regret = np.cumsum(oracle - np.array(t.expected))
        for ax in (lin, log):
            ax.plot(x / unit if ax is lin else x, regret, label=name, color=COLOURS.get(name))
    log.plot(x, regret[-1] * x / x[-1], color="black", lw=0.8, ls=":", label="slope 1")
    log.set_xscale("log")
    log.set_yscale("log")
    lin.set_xlabel(f"impressions ({unit_name})")
    log.set_xlabel("impressions")
    for ax, what in ((lin, "linear"), (log, "log-log")):
        ax.set_ylabel("cumulative regret (expected applies)")
        ax.set_title(f"{title}: cumulative regret vs the oracle ({what})")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    paths.append(_save(fig, out / f"{prefix}_regret.png"))

    if strategies and len(probabilities):
        probs = np.array(probabilities)
        edges = np.unique(np.linspace(0, len(probs), min(WINDOWS * 2, len(probs)) + 1)
                          .round().astype(int))
        mean = np.add.reduceat(probs, edges[:-1], axis=0) / np.diff(edges)[:, None]
        t = tracks.get("thompson+strategies")
        xs = (np.cumsum(t.impressions)[edges[1:] - 1] if t else edges[1:]) / unit
        fig, ax = plt.subplots(figsize=(9, 5))
        ax.stackplot(xs, mean.T, labels=strategies, alpha=0.85)
        ax.set_xlabel(f"impressions ({unit_name})")
        ax.set_ylabel(strategy_label)
        ax.set_title(f"{title}: thompson+strategies, the strategy bandit")
        ax.set_ylim(0, 1)
        ax.legend(loc="lower left", fontsize=8)
        paths.append(_save(fig, out / f"{prefix}_strategies.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(out: Path, prefix: str, data: dict, markdown: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{prefix}.json", out / f"{prefix}.md"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path
