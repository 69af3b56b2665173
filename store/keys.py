"""Every key name and the constants the store's keys and values are built from. Nothing
outside store/ spells a key."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

# ads:summary values: a layout tag, then lat, lon, expires_at, created_at, a 64-bit code of
# the category, one of the employer (0: unknown) and the ad's serial (its key in ads:cards),
# always last. Older values read too: with the third layout's tag, the same without the
# employer (read as 0: unknown); with the second's, the fixed part has no serial and a card
# follows; without a tag (the first layout) only lat, lon, expires_at, then the card. The
# first two read with serial 0 (creation time and category 0 for the first) until
# rewritten: regeneration rewrites them from the ads' records, as `flask ads reindex` does
# (which gives the third layout's their employer).
SUMMARY = np.dtype([("lat", "<f8"), ("lon", "<f8"), ("exp", "<f8"), ("created", "<f8"),
                    ("cat", "<u8"), ("emp", "<u8"), ("sn", "<u8")])
SUMMARY_TAG = b"AS4\x00"
THIRD_LAYOUT_TAG = b"AS3\x00"
THIRD_LAYOUT_SIZE = 48
SECOND_LAYOUT_TAG = b"AS2\x00"
SECOND_LAYOUT_SIZE = 40
FIRST_LAYOUT_SIZE = 24
FEEDS_CHANNEL = "feeds:changed"
UNDELIVERED_COUNTED = 10_000  # counted one by one when Redis cannot tell; this many: at least
GEO_LAT_LIMIT = 85.05112878  # Redis geo sets hold latitudes within +-this
NO_EXPIRY = 253402300799.0  # 9999-12-31: the expiry score of an ad that never expires
EVENT_TYPES = ("impression", "view", "save", "apply", "hide")
STAT_FIELDS = ("impressions", "views", "saves", "applies", "hides")
EVIDENCE_FIELDS = ("exposure", "views", "saves", "applies")  # the decayed sums, per ad
ROLLUP_GROUP = "rollup"
SUMMARY_CHUNK = 20_000          # ads read by one HMGET of ads:summary
CHANGES_KEPT = 2_000            # catalog:changes entries kept (a copy further behind reloads)
CHANGE_IDS_MAX = 500            # ids one catalog:changes entry lists; a larger write says "*"
STRATEGY_HISTORY_LEN = 20_000   # regenerations kept: two weeks at one a minute
GLOBAL_CELL = "*"   # the strategies hash's field for every cell together
REGION_MARK = "~"   # a region's field there: the mark, then the region's geohash


def region_field(cell: str, precision: int) -> str:
    """The strategies hash's field of the region (geohash of ``precision``) ``cell`` lies in.

    >>> region_field("u33dbc", 4)
    '~u33d'
    """
    return REGION_MARK + cell[:precision]


def strategy_fields(cell: str, precision: int) -> str:
    """The fields of the strategies hash a feed served in ``cell`` counts in besides
    GLOBAL_CELL, space-separated: its cell, then its region's when regions are kept
    (``precision`` between 1 and the cell's length, exclusive).

    >>> strategy_fields("u33dbc", 4), strategy_fields("u33dbc", 0)
    ('u33dbc ~u33d', 'u33dbc')
    """
    return f"{cell} {region_field(cell, precision)}" if 0 < precision < len(cell) else cell
REGEN_RUN_TTL_S = 86_400   # a sharded run's bookkeeping is kept a day
FLUSH_MARKER_TTL_S = 3600  # a served-feed flush retried within this is recognised
VOID_MARK_TTL_S = 86_400   # a cell's void mark (Redis Cluster) outlives any regeneration run
LOCATION_TTL_S = 30 * 86_400  # a user's last location is forgotten this long after their last feed


StaleCells = Callable[[list[tuple[float, float]]], Iterable[str]]

ACCEPTED, DUPLICATE, UNKNOWN_AD = 1, 0, -1   # what the accept step says of each event


class Partition:
    """The event pipeline's keys of one partition (EVENT_PARTITIONS): its inbox, seen sets,
    events stream (with its consumer group), the counters, decayed evidence and position
    counts of the ads it holds (an ad's events all go to one partition), its per-day
    counters, and the credits it found for strategies, before they are settled in partition
    0. Every key of a partition shares its hash tag: partition 0's is ``{ev}`` (the names
    of a deployment with one partition), partition p's ``{ev.p}``."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.tag = tag = "{ev}" if index == 0 else f"{{ev.{index}}}"
        self.inbox = f"{tag}:inbox"
        self.inbox_due = f"{tag}:inbox:due"
        self.events = f"{tag}:events"
        self.counts = f"{tag}:counts"             # ad -> its STAT_FIELDS counters
        self.decayed = f"{tag}:decayed"           # ad -> decayed evidence
        self.ctr_all = f"{tag}:ctr:all"
        self.position_epochs = f"{tag}:positions:epochs"
        self.position_pairs = f"{tag}:position-pairs"
        self.credits = f"{tag}:credits"   # credits found here, to settle in partition 0
        self.archived = f"{tag}:archived"  # the last entry of ``events`` archived

    def seen(self, bucket: int) -> str:
        """The event ids of a two-day bucket, as versions before ``dedupe`` kept them: read,
        never written."""
        return f"{self.tag}:seen:{bucket}"

    def dedupe(self, bucket: int) -> str:
        """A dedupe bucket's record: ``shards``, the sets its ids are spread over, and
        ``ids``, how many it holds (``store.dedupe``)."""
        return f"{self.tag}:dedupe:{bucket}"

    def dedupe_shard(self, bucket: int, shard: int) -> str:
        """One of a dedupe bucket's sets of fingerprints."""
        return f"{self.tag}:dedupe:{bucket}:{shard}"

    def ctr(self, day: str) -> str:
        return f"{self.tag}:ctr:{day}"

    def credited(self, day: str) -> str:
        return f"{self.tag}:credited:{day}"

    def position_epoch(self, epoch: int) -> str:
        return f"{self.tag}:positions:{epoch}"

    def position_folding(self, epoch: int) -> str:
        return f"{self.tag}:positions:{epoch}:folding"


class Keys:
    """Every key name. Nothing outside this module spells one."""

    @staticmethod
    def partition(index: int) -> Partition:
        """The event pipeline's keys of partition ``index`` (0 for the names below)."""
        return Partition(index)

    ads_geo = "ads:geo"
    ads_expiry = "ads:expiry"
    ads_summary = "ads:summary"
    # serial -> the ad's id, a NUL, then its card (the JSON members a feed shows of it). A serial
    # names one version of one ad: a replaced ad gets a new one, so a card never changes
    # and a web process may keep it as long as it likes.
    ads_cards = "ads:cards"
    ad_serial = "ads:serial"            # the last serial given
    catalog_epoch = "catalog:epoch"
    # every write of ads:summary, in order: "ids" -> the ids written or removed, space-
    # separated ("*": too many to list, read everything again), "voids" -> "1" when the
    # write bumped catalog:epoch; see store.catalogue_copy
    catalog_changes = "catalog:changes"
    cells_active = "cells:active"
    served = "served"
    inbox = "{ev}:inbox"
    inbox_due = "{ev}:inbox:due"
    events = "{ev}:events"
    decayed = "{ev}:decayed"            # ad -> decayed evidence
    position_epochs = "{ev}:positions:epochs"   # epoch keys -> when last added to
    generations = "regen:generations"           # when each regeneration wrote its feeds
    position_pairs = "{ev}:position-pairs"      # "pairs" -> decayed pair counts
    position_curve = "position:curve"           # the learnt examination curve (JSON)
    strategies = "{ev}:strategies"      # cell (or "*") -> decayed served feeds and applies
    served_cursor = "{ev}:served:cursor"  # the last served entry counted into strategies
    served_archived = "{ev}:served:archived"  # the last served entry archived
    archive_lock = "archive:lock"       # held by the archive run under way (a token, expiring)
    partitions = "{ev}:partitions"      # EVENT_PARTITIONS, as the first rollup found it

    @staticmethod
    def ad(ad_id: str) -> str:
        return f"ad:{ad_id}"

    @staticmethod
    def rate_bucket(limit: str, client: str) -> str:
        """A client's shared token bucket of one rate limit (``feeds``, ``events``); the
        client is ``key:<name>`` or ``addr:<address>``."""
        return f"rate:{limit}:{client}"

    ad_prefix = "ad:"

    @staticmethod
    def seen(bucket: int) -> str:
        return f"{{ev}}:seen:{bucket}"

    @staticmethod
    def dedupe(bucket: int) -> str:
        return f"{{ev}}:dedupe:{bucket}"

    @staticmethod
    def dedupe_shard(bucket: int, shard: int) -> str:
        return f"{{ev}}:dedupe:{bucket}:{shard}"

    counts = "{ev}:counts"    # ad -> its STAT_FIELDS counters, space-separated

    @staticmethod
    def stats(field: str) -> str:
        """An older version's counter hash of one STAT_FIELDS field (ad -> count): read
        and added to ``counts``, never written."""
        return f"{{ev}}:stats:{field}"

    @staticmethod
    def ctr(day: str) -> str:
        return f"{{ev}}:ctr:{day}"

    ctr_all = "{ev}:ctr:all"     # the per-day counters' fields, summed over all time
    strategy_current = "strategy:probability"
    strategy_history = "strategy:history"

    @staticmethod
    def feed(cell: str) -> str:
        return f"feed:{cell}"

    @staticmethod
    def feed_void(cell: str) -> str:
        """On Redis Cluster: the last catalogue epoch that voided the cell's feed (a single
        Redis refuses stale feeds by WATCHing catalog:epoch instead)."""
        return f"feed:{cell}:void"

    regen_latest = "regen:latest"        # the id of the last sharded regeneration run

    @staticmethod
    def regen_run(run_id: str) -> str:
        """A sharded regeneration run: its shards, cells, start, and shards finished."""
        return f"regen:run:{run_id}"

    @staticmethod
    def regen_shards(run_id: str) -> str:
        """A sharded run's shard reports: shard index -> JSON."""
        return f"regen:run:{run_id}:shards"

    @staticmethod
    def lock(name: str) -> str:
        return f"lock:{name}"

    @staticmethod
    def job(name: str) -> str:
        return f"job:{name}"

    @staticmethod
    def user_excluded(user_id: str) -> str:
        return f"user:{user_id}:excluded"

    @staticmethod
    def user_location(user_id: str) -> str:
        return f"user:{user_id}:loc"

    @staticmethod
    def user_shown(user_id: str) -> str:
        """The frequency cap's count of each ad's impressions to the user, in its window
        (tagged by the user, like ``user_capped``: one slot for the script that writes both)."""
        return f"user:{{{user_id}}}:shown"

    @staticmethod
    def user_capped(user_id: str) -> str:
        """The ads the frequency cap moves below the first screen of the user's feeds."""
        return f"user:{{{user_id}}}:capped"

    @staticmethod
    def position_epoch(epoch: int) -> str:
        """An epoch's impressions and views by ad and position (epoch: the generation's
        start, in ms)."""
        return f"{{ev}}:positions:{epoch}"

    @staticmethod
    def position_folding(epoch: int) -> str:
        return f"{{ev}}:positions:{epoch}:folding"

    @staticmethod
    def priors(model: str) -> str:
        return f"priors:{model}"

    @staticmethod
    def regional_priors(model: str, region: str) -> str:
        """A region's prior means of each category (REGION_PRECISION)."""
        return f"priors:{model}:region:{region}"

    @staticmethod
    def served_flush(flush_id: str) -> str:
        return f"served:flush:{flush_id}"

    @staticmethod
    def credited(day: str) -> str:
        return f"{{ev}}:credited:{day}"

    feed_id_secret = "secret:feed_ids"


class ClusterKeys(Keys):
    """The keys on Redis Cluster: the same, but for a hash tag wherever one atomic step
    touches several keys, so that they share a slot (redis-py's RedisCluster runs a script
    or a transaction only within one). On a single Redis the names stay as ``Keys`` has
    them, so an existing deployment keeps its data. Ads, users and cells keep keys of their
    own, spread over the slots."""

    ads_geo = "{cat}:ads:geo"
    ads_expiry = "{cat}:ads:expiry"
    ads_summary = "{cat}:ads:summary"
    ads_cards = "{cat}:ads:cards"
    ad_serial = "{cat}:ads:serial"
    catalog_epoch = "{cat}:catalog:epoch"
    catalog_changes = "{cat}:catalog:changes"
    served = "{served}:feeds"

    @staticmethod
    def feed(cell: str) -> str:
        return f"feed:{{{cell}}}"

    @staticmethod
    def feed_void(cell: str) -> str:
        return f"feed:{{{cell}}}:void"

    @staticmethod
    def served_flush(flush_id: str) -> str:
        return f"{{served}}:flush:{flush_id}"

    @staticmethod
    def regen_run(run_id: str) -> str:
        return f"regen:run:{{{run_id}}}"

    @staticmethod
    def regen_shards(run_id: str) -> str:
        return f"regen:run:{{{run_id}}}:shards"
