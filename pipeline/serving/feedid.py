"""Feed ids: "<ms>-<cell>-<strategy>-<8 hex nonce><12 hex MAC>".

The id tells when a feed was served, for which cell and by which strategy, so an event
naming its feed credits the right strategy without a lookup. The MAC (HMAC-SHA256 of the
rest, under a secret the store keeps) makes the id unforgeable: a client cannot credit a
strategy with feeds the service never served.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import numpy as np

from bandit import STRATEGIES

_FEED_ID = re.compile(
    r"^((\d{1,15})-([0-9b-hjkmnp-z]{1,12})-([a-z]{1,16})-[0-9a-f]{8})([0-9a-f]{12})$")


@dataclass(frozen=True)
class FeedRef:
    served_ms: int
    cell: str
    strategy: str
    feed_id: str


def _mac(secret: bytes, head: str) -> str:
    return hmac.new(secret, head.encode(), hashlib.sha256).hexdigest()[:12]


def make_feed_id(now: float, cell: str, strategy: str, rng: np.random.Generator,
                 secret: bytes) -> str:
    """
    >>> make_feed_id(1800000000.0, "u33dc0", "thompson", np.random.default_rng(0), b"k")[:30]
    '1800000000000-u33dc0-thompson-'
    """
    head = f"{int(now * 1000)}-{cell}-{strategy}-{rng.bytes(4).hex()}"
    return head + _mac(secret, head)


def parse_feed_id(feed_id: str | None, secret: bytes) -> FeedRef | None:
    """What a feed id says, or None if this service (with this secret) did not make it.

    >>> fid = make_feed_id(1800000000.0, "u33dc0", "popular", np.random.default_rng(0), b"k")
    >>> parse_feed_id(fid, b"k").strategy, parse_feed_id(fid, b"k").cell
    ('popular', 'u33dc0')
    >>> parse_feed_id(fid, b"another secret") is None
    True
    >>> parse_feed_id(fid.replace("popular", "newest"), b"k") is None
    True
    """
    match = _FEED_ID.match(feed_id or "")
    if match is None or match.group(4) not in STRATEGIES:
        return None
    if not hmac.compare_digest(match.group(5), _mac(secret, match.group(1))):
        return None
    return FeedRef(int(match.group(2)), match.group(3), match.group(4), feed_id)
