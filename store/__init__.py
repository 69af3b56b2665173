"""The store: the one layer that names Redis keys and runs Lua scripts.

Callers hand it validated values only; it turns them into keys. On Redis Cluster
(``REDIS_URL=redis+cluster://host:port``) the keys that one atomic step touches together
share a hash tag (``ClusterKeys``), and a step whose keys lie in several slots is split into
single-slot ones (``store.spread``).
"""
from __future__ import annotations

import redis
from redis.cluster import RedisCluster

from store import scripts
from store.archive_store import ArchiveStore
from store.catalogue_copy import CatalogueCopy
from store.catalogue_store import CatalogueStore
from store.dedupe import ShardCounts
from store.event_store import EventStore, PartitionsChanged, factorize
from store.feed_store import FeedChanges, FeedStore
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
    THIRD_LAYOUT_SIZE,
    THIRD_LAYOUT_TAG,
    UNDELIVERED_COUNTED,
    UNKNOWN_AD,
    ClusterKeys,
    Keys,
    StaleCells,
    region_field,
    strategy_fields,
)
from store.limit_store import LimitStore
from store.rows import (  # noqa: F401
    AdRow,
    Decayed,
    IngestBatch,
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
from store.spread import is_cluster
from store.user_store import FrequencyCap, Showings, UserStore

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


class Store(CatalogueStore, EventStore, FeedStore, UserStore, JobStore, ArchiveStore,
            LimitStore):
    """Redis access for the whole service, by area (catalogue, events and rollup, feeds,
    users, jobs, the archive's cursors, rate limits: a module each). Takes its client;
    opens nothing itself."""

    def __init__(self, client: redis.Redis | RedisCluster, partitions: int = 1) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.r = client
        self.cluster = is_cluster(client)
        self.k: type[Keys] = ClusterKeys if self.cluster else Keys
        self.parts = [self.k.partition(p) for p in range(partitions)]
        self._partitions_checked, self._partitions_next_check = False, 0.0
        self._partitions_failure = None
        self._accept = client.register_script(scripts.ACCEPT)
        self._exclude = client.register_script(scripts.EXCLUDE)
        self._showings = client.register_script(scripts.SHOWINGS)
        self._roll_in = client.register_script(scripts.ROLL_IN)
        self._rollup = client.register_script(scripts.ROLLUP)
        self._count_served = client.register_script(scripts.COUNT_SERVED)
        self._nearby = client.register_script(scripts.NEARBY)
        self._append_served = client.register_script(scripts.APPEND_SERVED)
        self._drop_expired = client.register_script(scripts.DROP_EXPIRED)
        self._finish_shard = client.register_script(scripts.FINISH_SHARD)
        self._put_records = client.register_script(scripts.PUT_RECORDS)
        self._set_feed = client.register_script(scripts.SET_FEED)
        self._void_feed = client.register_script(scripts.VOID_FEED)
        self._settle_credits = client.register_script(scripts.SETTLE_CREDITS)
        self._drop_settled = client.register_script(scripts.DROP_SETTLED)
        self._begin_fold = client.register_script(scripts.BEGIN_FOLD)
        self._fold_positions = client.register_script(scripts.FOLD_POSITIONS)
        self._move_cursor = client.register_script(scripts.MOVE_CURSOR)
        self._settle_bucket = client.register_script(scripts.SETTLE_BUCKET)
        self._size_dedupe = client.register_script(scripts.SIZE_DEDUPE)
        self._dedupe_shards = ShardCounts()
        self._copy: CatalogueCopy | None = None

    def catalogue_copy(self) -> CatalogueCopy:
        """This process's copy of the catalogue's summaries (``CatalogueCopy``), made empty on
        first use; a regeneration brings it up to date before reading it."""
        if self._copy is None:
            self._copy = CatalogueCopy(self.r, self.k)
        return self._copy

    def drop_catalogue_copy(self) -> None:
        """Forget this process's copy: the next regeneration reads the catalogue whole, as a
        new worker process does (for benchmarks and tests)."""
        self._copy = None

    @classmethod
    def from_url(cls, url: str, partitions: int = 1, **kwargs: object) -> Store:
        """A store on the server ``url`` names, its event pipeline in ``partitions``
        (EVENT_PARTITIONS); ``redis+cluster://host:port`` (or ``rediss+cluster://``, with
        TLS) names a Redis Cluster by any one of its nodes."""
        scheme, sep, rest = url.partition("://")
        if scheme in CLUSTER_SCHEMES and sep:
            return cls(RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}://{rest}", **kwargs),
                       partitions)
        return cls(redis.Redis.from_url(url, **kwargs), partitions)

    def ping(self) -> bool:
        return bool(self.r.ping())

    def close(self) -> None:
        """Close the client's connections (a short-lived tool's store, when it is done); a
        later call opens new ones."""
        if not self.cluster:
            self.r.close()
            return
        for node in self.r.get_nodes():     # (RedisCluster.close() would forget the nodes)
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()

    def _info(self, section: str) -> list[dict]:
        """INFO ``section`` of every server holding data: the one, or each cluster master."""
        if not self.cluster:
            return [self.r.info(section)]
        return [node.redis_connection.info(section) for node in self.r.get_primaries()]

    def memory_used(self) -> tuple[int, str]:
        """Redis's ``used_memory`` (on a cluster, summed over its masters): bytes, and for
        people ("1.52M"; on a cluster, in MiB)."""
        infos = self._info("memory")
        if len(infos) == 1:
            return int(infos[0]["used_memory"]), str(infos[0]["used_memory_human"])
        used = sum(int(i["used_memory"]) for i in infos)
        return used, f"{used / 2 ** 20:.2f}M"

    def command_time_us(self) -> dict[str, int]:
        """Microseconds the servers have spent in each command since they started, by
        command name (INFO commandstats, INFO itself included): a benchmark's Redis cost."""
        out: dict[str, int] = {}
        for stats in self._info("commandstats"):
            for name, row in stats.items():
                key = name.removeprefix("cmdstat_")
                out[key] = out.get(key, 0) + int(row["usec"])
        return out

    def flush_all(self) -> None:
        """Delete every key of every database on the server (FLUSHALL). For benchmarks and
        tests on a server of their own; the service never calls it."""
        self.r.flushall()


__all__ = [
    "Store",
    "FeedChanges",
    "PartitionsChanged",
    "CatalogueCopy",
    "Keys",
    "StreamEntry",
    "factorize",
    "Unrolled",
    "AdRow",
    "IngestBatch",
    "RollupBlock",
    "RollupRow",
    "Decayed",
    "ACCEPTED",
    "DUPLICATE",
    "UNKNOWN_AD",
    "UserMemory",
    "FrequencyCap",
    "Showings",
    "NO_EXPIRY",
    "LOCATION_TTL_S",
    "EVENT_TYPES",
    "STAT_FIELDS",
    "EVIDENCE_FIELDS",
    "GLOBAL_CELL",
    "region_field",
    "strategy_fields",
    "consumer_name",
    "float_rows",
    "stat_type_index",
]
