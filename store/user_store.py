"""Users: their exclusions (applied to or hidden) and their last location."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


class UserStore:
    """Users: their exclusions (applied to or hidden) and their last location."""

    r: redis.Redis
    k: type[Keys]
    cluster: bool
    # the Lua scripts this area runs (Store registers them on its client)
    _exclude: Script

    def excluded_ads(self, user_id: str) -> set[str]:
        """Ads the user applied to or hid: never shown to them again."""
        return {_s(a) for a in self.r.zrange(self.k.user_excluded(user_id), 0, -1)}

    def locate_user(self, user_id: str, location: str) -> set[str]:
        """Keep ``location`` ("lat,lon") as the user's last one and read their excluded ads,
        in one round trip: the user's next request, on any process, already sees it."""
        with self.r.pipeline(transaction=False) as p:
            p.set(self.k.user_location(user_id), location, ex=LOCATION_TTL_S)
            p.zrange(self.k.user_excluded(user_id), 0, -1)
            _, excluded = p.execute()
        return {_s(a) for a in excluded}

    def user_context(self, user_id: str) -> tuple[str | None, set[str]]:
        """The user's last location ("lat,lon"), kept LOCATION_TTL_S longer since they are
        served there again, and their excluded ads, in one round trip."""
        with self.r.pipeline(transaction=False) as p:
            p.getex(self.k.user_location(user_id), ex=LOCATION_TTL_S)
            p.zrange(self.k.user_excluded(user_id), 0, -1)
            location, excluded = p.execute()
        return _s(location), {_s(a) for a in excluded}

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

    def user_location(self, user_id: str) -> str | None:
        return _s(self.r.get(self.k.user_location(user_id)))
