"""How the accept step remembers event ids: the dedupe sets' layout, in as little memory as
an exact answer allows.

An accepted event's id is remembered as a 64-bit fingerprint (BLAKE2b), an integer, for at
least DEDUPE_WINDOW_S. Time is cut into buckets of half a window; an id goes into the bucket
it was accepted in, and each accept asks the current bucket and the two before, so an id is
found for two to three half windows after it was accepted (1.25 windows held on average).
A bucket's ids are spread over ``shards`` sets by fingerprint, so that each set holds a few
hundred: Redis then keeps it as an intset, a sorted array of 8-byte integers (a set past
set-max-intset-entries, 512 by default, becomes a hash table at about 50 bytes a member).
How many shards a bucket gets is decided once, when it begins, from how many ids the bucket
before held (``store/lua/size_dedupe.lua``), with room for the rate to grow by about a third
from one half window to the next (faster growth turns the fullest sets into hash tables for
that bucket: more memory, the same answers).

Two ids with the same fingerprint would make the second a duplicate: with n ids remembered
the chance for a new one is n / 2**64, about one event in 20 billion at a billion a day.
"""
from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

SPLIT = 2                   # buckets in a dedupe window
LEAST_SHARDS = 256          # a bucket's sets at least (a new deployment's first bucket)
IDS_PER_SHARD = 300         # ids a set is sized for: the fullest of them stays under 512
#                             while the rate grows by up to about a third a bucket
LEGACY_WINDOW_S = 172_800   # the sets before these: raw ids, a set a window of two days
NEGATIVE_RECHECK_S = 60.0   # a bucket found empty is asked about again after this
MASK = (1 << 64) - 1


def fingerprint(event_id: str) -> int:
    """The id's 64-bit fingerprint, as a signed integer (Redis's intsets hold int64).

    >>> fingerprint("e-1") == fingerprint("e-1") != fingerprint("e-2")
    True
    >>> -2 ** 63 <= fingerprint("e-1") < 2 ** 63
    True
    """
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def bucket_of(now: float, window_s: float) -> int:
    """The bucket (a half window) ``now`` falls in."""
    return int(now // (window_s / SPLIT))


def consulted(bucket: int) -> list[int]:
    """The buckets an accept in ``bucket`` asks, the current one first.

    >>> consulted(10)
    [10, 9, 8]
    """
    return [bucket - back for back in range(SPLIT + 1)]


def ttl_s(bucket: int, now: float, window_s: float) -> int:
    """Seconds a bucket's sets are kept from ``now``: until no accept asks them any more,
    once the bucket after the last that consults it begins."""
    return max(1, math.ceil((bucket + SPLIT + 1) * (window_s / SPLIT) - now))


def shard_of(print_: int, shards: int) -> int:
    """The set of a bucket of ``shards`` that holds the fingerprint ``print_``."""
    return (print_ & MASK) % shards


def shards_for(ids_before: int) -> int:
    """The sets for a bucket whose predecessor held ``ids_before`` ids.

    >>> shards_for(0), shards_for(100_000), shards_for(1_000_000)
    (256, 334, 3334)
    """
    return max(LEAST_SHARDS, math.ceil(ids_before / IDS_PER_SHARD))


class ShardCounts:
    """What this process knows of buckets' shard counts. A count, once decided, never
    changes, so it is kept; a bucket found without one (no id accepted in it) is asked about
    again after NEGATIVE_RECHECK_S, in case a process whose clock is behind adds to it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._known: dict[tuple[str, int], int] = {}
        self._absent: dict[tuple[str, int], float] = {}
        self._clock = clock

    def missing(self, tag: str, buckets: list[int]) -> list[int]:
        """The buckets of ``buckets`` to ask the store about."""
        now = self._clock()
        return [b for b in buckets if (tag, b) not in self._known
                and self._absent.get((tag, b), -math.inf) <= now]

    def learn(self, tag: str, bucket: int, shards: int | None) -> None:
        if shards:
            self._known[(tag, bucket)] = shards
            self._absent.pop((tag, bucket), None)
        else:
            self._absent[(tag, bucket)] = self._clock() + NEGATIVE_RECHECK_S

    def of(self, tag: str, buckets: list[int]) -> dict[int, int]:
        """The shard counts known of ``buckets`` (a bucket without any is left out), and
        forget buckets older than the oldest of them."""
        oldest = min(buckets)
        for table in (self._known, self._absent):
            for key in [k for k in table if k[0] == tag and k[1] < oldest]:
                del table[key]
        return {b: self._known[(tag, b)] for b in buckets if (tag, b) in self._known}
