"""The store: the one layer that names Redis keys and runs Lua scripts.

Callers hand it validated values only; it turns them into keys. Keys that one atomic step
touches together share the ``{ev}`` hash tag, so a move to Redis Cluster changes only this file.
"""
from __future__ import annotations

import redis

from store import scripts
from store.catalogue_copy import CatalogueCopy
from store.catalogue_store import CatalogueStore
from store.event_store import EventStore
from store.feed_store import FeedStore
from store.job_store import JobStore
from store.keys import (  # noqa: F401
    ACCEPTED,
    CHANGE_IDS_MAX,
    DUPLICATE,
    EVENT_TYPES,
    EVIDENCE_FIELDS,
    FEEDS_CHANNEL,
    FIRST_LAYOUT_SIZE,
    FLUSH_MARKER_TTL_S,
    GEO_LAT_LIMIT,
    GLOBAL_CELL,
    LOCATION_TTL_S,
    NO_EXPIRY,
    ROLLUP_GROUP,
    SECOND_LAYOUT_SIZE,
    SECOND_LAYOUT_TAG,
    STAT_FIELDS,
    STRATEGY_HISTORY_LEN,
    SUMMARY,
    SUMMARY_CHUNK,
    SUMMARY_TAG,
    UNDELIVERED_COUNTED,
    UNKNOWN_AD,
    Keys,
    StaleCells,
)
from store.rows import (  # noqa: F401
    AdRow,
    Decayed,
    IngestRow,
    RollupBlock,
    RollupRow,
    StreamEntry,
    Summaries,
    Unrolled,
    UserMemory,
    _entry_ms,
    _s,
    card_value,
    consumer_name,
    float_rows,
    int_rows,
    searchable,
    split_card,
    stat_type_index,
    summary,
    summary_rows,
)
from store.user_store import UserStore


class Store(CatalogueStore, EventStore, FeedStore, UserStore, JobStore):
    """Redis access for the whole service, by area (catalogue, events and rollup, feeds,
    users, jobs: a module each). Takes its client; opens nothing itself."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._accept = client.register_script(scripts.ACCEPT)
        self._exclude = client.register_script(scripts.EXCLUDE)
        self._roll_in = client.register_script(scripts.ROLL_IN)
        self._rollup = client.register_script(scripts.ROLLUP)
        self._count_served = client.register_script(scripts.COUNT_SERVED)
        self._nearby = client.register_script(scripts.NEARBY)
        self._append_served = client.register_script(scripts.APPEND_SERVED)
        self._drop_expired = client.register_script(scripts.DROP_EXPIRED)
        self._finish_shard = client.register_script(scripts.FINISH_SHARD)
        self._put_records = client.register_script(scripts.PUT_RECORDS)
        self._begin_fold = client.register_script(scripts.BEGIN_FOLD)
        self._fold_positions = client.register_script(scripts.FOLD_POSITIONS)
        self._copy: CatalogueCopy | None = None

    def catalogue_copy(self) -> CatalogueCopy:
        """This process's copy of the catalogue's summaries (``CatalogueCopy``), made empty on
        first use; a regeneration brings it up to date before reading it."""
        if self._copy is None:
            self._copy = CatalogueCopy(self.r)
        return self._copy

    def drop_catalogue_copy(self) -> None:
        """Forget this process's copy: the next regeneration reads the catalogue whole, as a
        new worker process does (for benchmarks and tests)."""
        self._copy = None

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> Store:
        return cls(redis.Redis.from_url(url, **kwargs))

    def ping(self) -> bool:
        return bool(self.r.ping())

    def close(self) -> None:
        """Close the client's connections (a short-lived tool's store, when it is done)."""
        self.r.close()

    def memory_used(self) -> tuple[int, str]:
        """Redis's ``used_memory``: bytes, and as Redis writes it for people ("1.52M")."""
        info = self.r.info("memory")
        return int(info["used_memory"]), str(info["used_memory_human"])

    def command_time_us(self) -> dict[str, int]:
        """Microseconds the server has spent in each command since it started, by command
        name (INFO commandstats, INFO itself included): a benchmark's Redis cost."""
        stats = self.r.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(row["usec"]) for name, row in stats.items()}

    def flush_all(self) -> None:
        """Delete every key of every database on the server (FLUSHALL). For benchmarks and
        tests on a server of their own; the service never calls it."""
        self.r.flushall()


__all__ = [
    "Store",
    "CatalogueCopy",
    "Keys",
    "StreamEntry",
    "Unrolled",
    "AdRow",
    "IngestRow",
    "RollupBlock",
    "RollupRow",
    "Decayed",
    "ACCEPTED",
    "DUPLICATE",
    "UNKNOWN_AD",
    "UserMemory",
    "NO_EXPIRY",
    "LOCATION_TTL_S",
    "EVENT_TYPES",
    "STAT_FIELDS",
    "EVIDENCE_FIELDS",
    "GLOBAL_CELL",
    "consumer_name",
    "float_rows",
    "stat_type_index",
]
