"""What the service knows of one ad: its counters, its decayed evidence and its posterior,
computed with the same priors and model as the feeds."""
from __future__ import annotations

import numpy as np

from bandit import Evidence, ad_posterior
from config import Settings
from pipeline.regenerate import decayed_now, prior_spec, stored_priors
from store import EVIDENCE_FIELDS, STAT_FIELDS, Store

STAGE_NAMES = {"direct": ("apply",), "funnel": ("view", "apply_given_view")}


def ad_report(store: Store, settings: Settings, ad_id: str, now: float) -> dict | None:
    """The ad's counters and posterior, or None when the service has never heard of it."""
    counts = {k: v[0] for k, v in store.ad_stats([ad_id], STAT_FIELDS).items()}
    found = store.ad_summaries([ad_id])
    if not any(counts.values()) and not found.ids:
        return None
    sums = decayed_now(store.decayed_evidence([ad_id]), now, settings)
    evidence = Evidence(*(sums[:, i] for i in range(len(EVIDENCE_FIELDS))))
    codes = found.rows["cat"] if found.ids else np.zeros(0, dtype=np.uint64)
    rates = stored_priors(store, settings, codes)
    prior_means = rates.for_ads(np.array([0 if found.ids else -1]))
    post = ad_posterior(evidence, prior_means, settings.reward_model, settings.save_weight,
                        prior_spec(settings))
    stages = [{"stage": name, "alpha": float(post.alpha[i, 0]), "beta": float(post.beta[i, 0]),
               "prior_mean": float(prior_means[0, i])}
              for i, name in enumerate(STAGE_NAMES[settings.reward_model])]
    return {"ad_id": ad_id, "counters": counts,
            "evidence": {f: round(float(sums[0, i]), 4) for i, f in enumerate(EVIDENCE_FIELDS)},
            "posterior": {"model": settings.reward_model, "mean": float(post.mean()[0]),
                          "stages": stages}}
