"""Rate limits: each client's token bucket shared by every web process."""

from __future__ import annotations

from collections.abc import Mapping

import redis
from redis.commands.core import Script

from store.keys import Keys
from store.spread import run_each


class LimitStore:
    """The shared token buckets of the rate limits, one key per limit and client. A web
    process counts its clients' requests itself and settles them here in one batch every
    RATE_LIMIT_SYNC_S, so that no request waits for Redis."""

    r: redis.Redis
    k: type[Keys]
    _settle_bucket: Script

    def settle_buckets(self, limit: str, spent: Mapping[str, int], rate: float,
                       burst: int) -> dict[str, float]:
        """Take what each client spent (tokens since the last settling) from its bucket of
        ``limit``; the tokens each has left (negative: owed), in one round trip a node."""
        clients = list(spent)
        calls = [([self.k.rate_bucket(limit, c)], [spent[c], rate, burst]) for c in clients]
        replies = run_each(self.r, self._settle_bucket, calls)
        return {c: float(reply) for c, reply in zip(clients, replies, strict=True)}
