"""Users: their exclusions (applied to or hidden), the ads the frequency cap holds for them,
and their last location."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import redis
from redis.commands.core import Script

from store.keys import (
    LOCATION_TTL_S,
    Keys,
)
from store.rows import (
    UserMemory,
    _s,
)
from store.spread import run_each


class Showings(NamedTuple):
    """What one user did with ads, for the frequency cap: impressions by ad, and the ads
    they viewed, saved or applied to."""

    shown: Mapping[str, int]
    engaged: Iterable[str]


class FrequencyCap(NamedTuple):
    """FREQ_CAP, FREQ_WINDOW_S and FREQ_MAX_ADS."""

    cap: int
    window_s: int
    max_ads: int


class UserStore:
    """Users: their exclusions (applied to or hidden), the ads the frequency cap holds for
    them, and their last location."""

    r: redis.Redis
    k: type[Keys]
    cluster: bool
    # the Lua scripts this area runs (Store registers them on its client)
    _exclude: Script
    _showings: Script

    def excluded_ads(self, user_id: str) -> set[str]:
        """Ads the user applied to or hid: never shown to them again."""
        return {_s(a) for a in self.r.zrange(self.k.user_excluded(user_id), 0, -1)}

    def locate_user(self, user_id: str, location: str,
                    capped_since: float | None = None) -> tuple[set[str], set[str]]:
        """Keep ``location`` ("lat,lon") as the user's last one and read their excluded ads
        and the ads the frequency cap has held for them since ``capped_since`` (None: none
        read), in one round trip: the user's next request, on any process, already sees
        the location."""
        _, excluded, capped = self._user_ads(
            user_id, capped_since,
            lambda p: p.set(self.k.user_location(user_id), location, ex=LOCATION_TTL_S))
        return excluded, capped

    def user_context(self, user_id: str, capped_since: float | None = None
                     ) -> tuple[str | None, set[str], set[str]]:
        """The user's last location ("lat,lon"), kept LOCATION_TTL_S longer since they are
        served there again, their excluded ads, and the ads the frequency cap has held for
        them since ``capped_since`` (None: none read), in one round trip."""
        location, excluded, capped = self._user_ads(
            user_id, capped_since,
            lambda p: p.getex(self.k.user_location(user_id), ex=LOCATION_TTL_S))
        return _s(location), excluded, capped

    def _user_ads(self, user_id: str, capped_since: float | None,
                  first: Callable[[Any], object]) -> tuple[Any, set[str], set[str]]:
        """``first``'s command's reply, the user's excluded ads and their capped ones (none
        when ``capped_since`` is None), in one pipeline."""
        with self.r.pipeline(transaction=False) as p:
            first(p)
            p.zrange(self.k.user_excluded(user_id), 0, -1)
            if capped_since is not None:
                p.zrangebyscore(self.k.user_capped(user_id), capped_since, "+inf")
            reply, excluded, *capped = p.execute()
        return reply, {_s(a) for a in excluded}, {_s(a) for a in (capped[0] if capped else ())}

    def record_showings(self, by_user: Mapping[str, Showings], now: float,
                        rule: FrequencyCap) -> int:
        """Count users' impressions of ads, and clear the ads they engaged with, for the
        frequency cap (``showings.lua``): in one step on a single Redis; on Redis Cluster,
        where users' keys lie in many slots, one a user. Returns the ads newly capped."""
        fixed: list[object] = [repr(now), rule.window_s, rule.cap, rule.max_ads]
        calls = []
        for user_id, did in by_user.items():
            engaged = list(did.engaged)
            args: list[object] = [len(did.shown), len(engaged)]
            for ad, times in did.shown.items():
                args += [ad, times]
            calls.append(([self.k.user_shown(user_id), self.k.user_capped(user_id)],
                          [*args, *engaged]))
        if not calls:
            return 0
        if self.cluster:
            return sum(int(n) for n in run_each(self.r, self._showings,
                                                [(keys, [*fixed, *args]) for keys, args in calls]))
        return int(self._showings(keys=[k for keys, _ in calls for k in keys],
                                  args=[*fixed, *(v for _, args in calls for v in args)]))

    def exclude_for_users(self, by_user: Mapping[str, Iterable[str]], now: float,
                          memory: UserMemory) -> None:
        """Add ads to users' exclusions, as an accepted apply or hide does: in one step on a
        single Redis; on Redis Cluster, where users' keys lie in many slots, one a user."""
        fixed: list[object] = [memory.max_ads, memory.ttl_s, repr(now)]
        listed = {user_id: list(ads) for user_id, ads in by_user.items()}
        calls = [([self.k.user_excluded(user_id)], [len(ads), *ads])
                 for user_id, ads in listed.items()]
        if self.cluster:
            run_each(self.r, self._exclude, [(keys, [*fixed, *args]) for keys, args in calls])
        elif calls:
            self._exclude(keys=[key for (key,), _ in calls],
                          args=[*fixed, *(v for _, args in calls for v in args)])

    def frequency_memory(self, user_ids: Iterable[str]) -> tuple[int, set[str]]:
        """Bytes the frequency cap's keys of these users take (MEMORY USAGE, every element
        counted) and their encodings: for benchmarks."""
        total, encodings = 0, set()
        for user_id in user_ids:
            for key in (self.k.user_shown(user_id), self.k.user_capped(user_id)):
                total += int(self.r.memory_usage(key, samples=0) or 0)
                encoding = self.r.object("encoding", key)
                if encoding is not None:
                    encodings.add(_s(encoding) or "")
        return total, encodings

    def user_location(self, user_id: str) -> str | None:
        return _s(self.r.get(self.k.user_location(user_id)))
