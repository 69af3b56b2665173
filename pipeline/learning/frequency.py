"""The frequency cap's side of the rollup: what each user was shown and what they engaged
with, counted per user and ad as each block of events is counted.

An ad shown to a user FREQ_CAP times within FREQ_WINDOW_S with no view, save or apply from
them is capped for that user (``store/lua/showings.lua``), and serving moves it below the
first screen of their feeds (``pipeline.serving.feed.frequency_rule``). Only events that
name their user count. The counts are written after the block is acknowledged, outside its
atomic step: a worker that dies in between loses that block's counts (an ad is capped an
impression late), and never counts one twice.
"""
from __future__ import annotations

from collections import Counter

from config import Settings
from pipeline.learning.ingest import Columns
from store import FrequencyCap, Showings, Store, stat_type_index

IMPRESSION = stat_type_index("impression")
ENGAGING = {stat_type_index(kind) for kind in ("view", "save", "apply")}


def rule_of(settings: Settings) -> FrequencyCap | None:
    """The frequency cap's settings, or None when it is off (FREQ_CAP 0)."""
    if not settings.freq_cap:
        return None
    return FrequencyCap(settings.freq_cap, settings.freq_window_s, settings.freq_max_ads)


def showings_of(events: Columns) -> dict[str, Showings]:
    """Per user: their impressions by ad, and the ads they viewed, saved or applied to.

    >>> from pipeline.learning.ingest import Columns
    >>> import numpy as np
    >>> kinds = np.array([IMPRESSION, IMPRESSION, stat_type_index("view"), IMPRESSION])
    >>> got = showings_of(Columns(["1-0"] * 4, ["a", "a", "b", "c"], kinds, np.zeros(4),
    ...                           np.zeros(4), [None] * 4, ["u", "u", "u", None]))
    >>> dict(got["u"].shown), sorted(got["u"].engaged), list(got)
    ({'a': 2}, ['b'], ['u'])
    """
    shown: dict[str, Counter[str]] = {}
    engaged: dict[str, set[str]] = {}
    for user, ad, kind in zip(events.user_id, events.ad_id, events.type_index.tolist(),
                              strict=True):
        if not user:
            continue
        if kind == IMPRESSION:
            shown.setdefault(user, Counter())[ad] += 1
        elif kind in ENGAGING:
            engaged.setdefault(user, set()).add(ad)
    return {user: Showings(shown.get(user, Counter()), sorted(engaged.get(user, ())))
            for user in shown.keys() | engaged.keys()}


def record_showings(store: Store, settings: Settings, events: Columns, now: float) -> int:
    """Count a block's impressions and engagements for the frequency cap, in one round trip
    (one a user on Redis Cluster); the ads newly capped. Nothing when the cap is off."""
    rule = rule_of(settings)
    if rule is None or not events.user_id:
        return 0
    by_user = showings_of(events)
    return store.record_showings(by_user, now, rule) if by_user else 0
