"""Feed ids: "<ms>-<cell>-<strategy>-<12 hex>". The id tells when a feed was served, for
which cell and by which strategy, so an event naming its feed credits the right strategy
without a lookup, and the served log is searched around the right time."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from bandit import STRATEGIES

_FEED_ID = re.compile(r"^(\d{1,15})-([0-9b-hjkmnp-z]{1,12})-([a-z]{1,16})-([0-9a-f]{12})$")


@dataclass(frozen=True)
class FeedRef:
    served_ms: int
    cell: str
    strategy: str


def make_feed_id(now: float, cell: str, strategy: str, rng: np.random.Generator) -> str:
    """
    >>> make_feed_id(1800000000.0, "u33dc0", "thompson", np.random.default_rng(0))[:30]
    '1800000000000-u33dc0-thompson-'
    """
    return f"{int(now * 1000)}-{cell}-{strategy}-{rng.bytes(6).hex()}"


def parse_feed_id(feed_id: str | None) -> FeedRef | None:
    """What a feed id says, or None if it is not one this service made.

    >>> parse_feed_id("1800000000000-u33dc0-popular-0123456789ab")
    FeedRef(served_ms=1800000000000, cell='u33dc0', strategy='popular')
    >>> parse_feed_id("1800000000000-u33dc0-magic-0123456789ab") is None
    True
    """
    match = _FEED_ID.match(feed_id or "")
    if match is None or match.group(3) not in STRATEGIES:
        return None
    return FeedRef(int(match.group(1)), match.group(2), match.group(3))
