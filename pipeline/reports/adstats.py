"""What the service knows of one ad: its counters, its decayed evidence and its posterior,
computed with the same priors and model as the feeds."""
from __future__ import annotations

import numpy as np

from bandit import AdPriors, Evidence, ad_posterior
from config import Settings
from pipeline.learning.regenerate import ad_regions, decayed_now, stored_priors
from store import EVIDENCE_FIELDS, STAT_FIELDS, Store, Summaries

STAGE_NAMES = {"direct": ("apply",), "funnel": ("view", "apply_given_view")}


def tidy(x: float) -> float:
    """``x`` to 12 significant digits: what the arithmetic knows, without its last-bit noise
    (0.9999999999999999 is 1.0 in a JSON answer).

    >>> tidy(0.9999999999999999), tidy(0.19999999999999998), tidy(0.0333329913207543)
    (1.0, 0.2, 0.0333329913208)
    """
    return float(f"{float(x):.12g}")


def summary_priors(store: Store, settings: Settings, found: Summaries) -> AdPriors:
    """The prior of each ad of ``found`` as the regeneration gives it: its category's, in
    its region (REGION_PRECISION) where the region has means of its own."""
    codes, group = np.unique(found.rows["cat"], return_inverse=True)   # each category once
    if not settings.region_precision:
        return stored_priors(store, settings, codes).for_ads(group)
    regions = ad_regions(found.rows["lat"], found.rows["lon"],
                         settings.region_precision).tolist()
    rates = stored_priors(store, settings, codes, sorted(set(regions)))
    return rates.for_ads(group, rates.region_index(regions))


def top_ads(store: Store, settings: Settings, now: float, n: int = 20) -> list[dict]:
    """The ``n`` catalogue ads shown at least once with the highest posterior mean of
    P(apply | impression), with their counters, best first."""
    found = store.ad_summaries(store.ads_with_impressions())
    if not found.ids:
        return []
    ids = [a.decode() for a in found.ids]
    sums = decayed_now(store.decayed_evidence(ids), now, settings)
    evidence = Evidence(*(sums[:, i] for i in range(len(EVIDENCE_FIELDS))))
    priors = summary_priors(store, settings, found)
    mean = ad_posterior(evidence, priors, settings.reward_model, settings.save_weight).mean()
    best = np.argsort(-mean, kind="stable")[:n]
    counts = store.ad_stats([ids[i] for i in best], STAT_FIELDS)
    return [{"ad_id": ids[i], "posterior_mean": round(float(mean[i]), 6),
             **{f: counts[f][k] for f in STAT_FIELDS}} for k, i in enumerate(best)]


def ad_report(store: Store, settings: Settings, ad_id: str, now: float) -> dict | None:
    """The ad's counters and posterior, or None when the service has never heard of it."""
    counts = {k: v[0] for k, v in store.ad_stats([ad_id], STAT_FIELDS).items()}
    found = store.ad_summaries([ad_id])
    if not any(counts.values()) and not found.ids:
        return None
    sums = decayed_now(store.decayed_evidence([ad_id]), now, settings)
    evidence = Evidence(*(sums[:, i] for i in range(len(EVIDENCE_FIELDS))))
    priors = (summary_priors(store, settings, found) if found.ids
              else stored_priors(store, settings, np.zeros(0, dtype=np.uint64))
              .for_ads(np.array([-1])))
    post = ad_posterior(evidence, priors, settings.reward_model, settings.save_weight)
    stages = [{"stage": name, "alpha": tidy(post.alpha[i, 0]), "beta": tidy(post.beta[i, 0]),
               "prior_mean": tidy(priors.means[0, i]),
               "prior_strength": tidy(priors.strengths[0, i])}
              for i, name in enumerate(STAGE_NAMES[settings.reward_model])]
    return {"ad_id": ad_id, "counters": counts,
            "evidence": {f: round(float(sums[0, i]), 4) for i, f in enumerate(EVIDENCE_FIELDS)},
            "posterior": {"model": settings.reward_model, "mean": tidy(post.mean()[0]),
                          "stages": stages}}
