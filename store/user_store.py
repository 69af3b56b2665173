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


class UserStore:
    """Users: their exclusions (applied to or hidden) and their last location."""

    r: redis.Redis
    # the Lua scripts this area runs (Store registers them on its client)
    _exclude: Script

    def excluded_ads(self, user_id: str) -> set[str]:
        """Ads the user applied to or hid: never shown to them again."""
        return {_s(a) for a in self.r.zrange(Keys.user_excluded(user_id), 0, -1)}

    def locate_user(self, user_id: str, location: str) -> set[str]:
        """Keep ``location`` ("lat,lon") as the user's last one and read their excluded ads,
        in one round trip: the user's next request, on any process, already sees it."""
        with self.r.pipeline(transaction=False) as p:
            p.set(Keys.user_location(user_id), location, ex=LOCATION_TTL_S)
            p.zrange(Keys.user_excluded(user_id), 0, -1)
            _, excluded = p.execute()
        return {_s(a) for a in excluded}

    def user_context(self, user_id: str) -> tuple[str | None, set[str]]:
        """The user's last location ("lat,lon"), kept LOCATION_TTL_S longer since they are
        served there again, and their excluded ads, in one round trip."""
        with self.r.pipeline(transaction=False) as p:
            p.getex(Keys.user_location(user_id), ex=LOCATION_TTL_S)
            p.zrange(Keys.user_excluded(user_id), 0, -1)
            location, excluded = p.execute()
        return _s(location), {_s(a) for a in excluded}

    def exclude_for_users(self, by_user: Mapping[str, Iterable[str]], now: float,
                          memory: UserMemory) -> None:
        """Add ads to users' exclusions, as an accepted apply or hide does."""
        keys, args = [], [memory.max_ads, memory.ttl_s, repr(now)]
        for user_id, ads in by_user.items():
            listed = list(ads)
            keys.append(Keys.user_excluded(user_id))
            args += [len(listed), *listed]
        if keys:
            self._exclude(keys=keys, args=args)

    def user_location(self, user_id: str) -> str | None:
        return _s(self.r.get(Keys.user_location(user_id)))
