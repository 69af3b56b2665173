"""The picture in the README's bandit section: what the service believes about three ads,
and how Thompson sampling turns those beliefs into feeds. Drawn with the service's own
functions (bandit.empirical_rates, bandit.ad_posterior, AdPosterior.sample).

    python -m bench.explain        # writes bench/results/bandit-explained.png
"""
from __future__ import annotations

import argparse
from math import lgamma
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bandit import Evidence, PriorSpec, ad_posterior, empirical_rates  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# (name, impressions, applies): a proven ad, a new one, and one shown often that disappoints
ADS = [("shown 2,000 times, 80 applies", 2000.0, 80.0),
       ("new: no evidence yet", 0.0, 0.0),
       ("shown 3,000 times, 30 applies", 3000.0, 30.0)]
COLOURS = ["#1b9e77", "#d95f02", "#7570b3"]


def beta_density(x: np.ndarray, a: float, b: float) -> np.ndarray:
    log_norm = lgamma(a + b) - lgamma(a) - lgamma(b)
    return np.exp(log_norm + (a - 1) * np.log(x) + (b - 1) * np.log1p(-x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    prior = PriorSpec()
    # the category: these three and 200 ordinary ads at about 2 %, so the new ad's prior is ~2 %
    exposure = np.array([a[1] for a in ADS] + [1000.0] * 200)
    applies = np.array([a[2] for a in ADS] + [20.0] * 200)
    evidence = Evidence(exposure, np.zeros_like(exposure), np.zeros_like(exposure), applies)
    groups = np.zeros(len(exposure), dtype=int)
    rates = empirical_rates(evidence, groups, "direct", 0.0, prior)
    post = ad_posterior(evidence, rates.for_ads(groups), "direct", 0.0)
    draws = post.sample(8, np.random.default_rng(4))[:len(ADS)]

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.linspace(1e-4, 0.12, 600)
    for i, (name, *_rest) in enumerate(ADS):
        left.plot(x * 100, beta_density(x, post.alpha[0, i], post.beta[0, i]) / 100,
                  color=COLOURS[i], label=name, lw=2)
    left.set_xlabel("apply rate per impression (%)")
    left.set_ylabel("belief (probability density)")
    left.set_title("What the service believes about three ads")
    left.legend(frameon=False, fontsize=9)
    for k in range(draws.shape[1]):
        order = np.argsort(-draws[:, k])
        for i in range(len(ADS)):
            right.scatter(draws[i, k] * 100, k + 1, color=COLOURS[i], s=60,
                          marker="*" if i == order[0] else "o", zorder=3)
    right.set_yticks(range(1, draws.shape[1] + 1))
    right.set_ylabel("feed variant (one draw per ad)")
    right.set_xlabel("drawn apply rate (%)  -  star: first in that variant")
    right.set_title("Thompson sampling: each variant sorts by one draw")
    right.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bandit-explained.png"
    fig.savefig(path, dpi=110)
    print(path)


if __name__ == "__main__":
    main()
