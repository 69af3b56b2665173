"""Serving a feed: the cell's packed feed (from this process's cache, else one Redis read),
then pure work in memory; the feed's signed id; and the log of what was served.

Feed ids read "<ms>-<cell>-<strategy>-<8 hex nonce><12 hex MAC>". The id tells when a feed
was served, for which cell and by which strategy, so an event naming its feed credits the
right strategy without a lookup. The MAC (HMAC-SHA256 of the rest, under a secret the store
keeps) makes the id unforgeable: a client cannot credit a strategy with feeds the service
never served.

``ServingLog`` buffers served feeds and active cells, and a background thread writes them
every SERVED_FLUSH_S in one round trip. A process that dies loses at most that interval's
log entries (never events or counters). Users' last locations are not buffered: the feed
writes them at once, so the user's next request sees them.
"""
from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import math
import os
import re
import threading
import time
import uuid
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import orjson
import redis

import geo
from bandit import SCREEN, SCREENED, STRATEGIES, screen_order
from bandit.diversity import diversified
from config import Settings
from pipeline.learning.regenerate import build_one_cell
from pipeline.serving.cellfeed import CardCache, CellFeed, FeedCache
from store import Store

log = logging.getLogger(__name__)

FLUSH_CHUNK = 2000   # served feeds per write, so that one flush never holds Redis long


@dataclass(frozen=True)
class FeedRequest:
    lat: float
    lon: float
    limit: int
    radius_km: float
    user_id: str | None = None


class Draws(Protocol):
    """What serving draws from: ``random.Random`` (a web process's, cheapest) or a numpy
    ``Generator`` (the tests' and the simulation's, seeded). Uniform floats in [0, 1)."""

    def random(self) -> float: ...


def parse_location(value: str | None) -> tuple[float, float] | None:
    """A stored "lat,lon" as numbers, or None if there is none (or it is unusable).

    >>> parse_location("52.520000,13.405000"), parse_location("x,1"), parse_location(None)
    ((52.52, 13.405), None, None)
    """
    try:
        lat, lon = (float(v) for v in (value or "").split(","))
    except ValueError:
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def location_text(lat: float, lon: float) -> str:
    return f"{lat:.6f},{lon:.6f}"


def numpy_generator(rng: Draws) -> np.random.Generator:
    """``rng`` itself if it is a numpy Generator, else one seeded from it (a miss builds the
    cell's feed with array draws)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(int(rng.random() * 2**53))


def load_cell(store: Store, settings: Settings, cell: str, now: float,
              rng: Draws, cache: FeedCache | None,
              cards: CardCache | None = None) -> tuple[CellFeed, str]:
    """The cell's feed and where it came from: "hit" (cached here or read from Redis) or
    "miss" (built now, with the beat's code, and stored). A feed not cached here has the
    cards ``cards`` lacks read with it (one command), so that serving it from this process
    never waits for a card."""
    feed = cache.get(cell) if cache else None
    if feed is not None:
        return feed, "hit"
    # after the lookup, which applied every change delivered so far: the read below is newer
    generation = cache.generation if cache else 0
    raw = store.feed_value(cell)
    feed, outcome = _decode(raw), "hit"
    if raw is None or feed is None:
        raw = build_one_cell(store, cell, settings, now, numpy_generator(rng))
        feed, outcome = CellFeed.unpack(raw), "miss"
    if cards is not None:
        cards.get_many(feed.serials.tolist())
    if cache:     # its variants laid out later (``Prepared``) are counted now, at most
        cache.put(cell, feed, generation, len(raw) + prepared_bytes(feed))
    return feed, outcome


@dataclass(frozen=True)
class FeedAnswer:
    """A feed as served; ``json()`` is the response body, assembled from the ads' cards."""

    feed_id: str
    cell: str
    strategy: str
    propensity: float
    generated_at: float
    cache: str
    ads_json: bytes

    def json(self, **extra: object) -> bytes:
        """The response body; ``extra`` fields go before the ads."""
        head = orjson.dumps({"feed_id": self.feed_id, "cell": self.cell,
                             "strategy": self.strategy, "propensity": self.propensity,
                             "generated_at": self.generated_at, "cache": self.cache, **extra})
        return head[:-1] + b',"ads":[' + self.ads_json + b"]}"

    def as_dict(self) -> dict:
        return orjson.loads(self.json())


@dataclass(frozen=True)
class Pick:
    """The strategy a feed is served by, the probability it had, and its order of the ads:
    variant ``variant`` of the orders of ``source`` (Thompson's, for a screened strategy)."""

    strategy: str
    propensity: float
    variant: int
    order: np.ndarray
    source: str = "thompson"


def pick_order(feed: CellFeed, rng: Draws) -> Pick:
    """Draw a strategy with the cell's probabilities (``bandit.choose``, on the cumulative
    probabilities the feed keeps), then one of its variants uniformly (a screened
    strategy's variants are Thompson's)."""
    s = 0
    if len(feed.strategies) > 1:
        cumulative = feed.cumulative
        s = min(bisect_right(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)
    strategy = feed.strategies[s]
    source = "thompson" if strategy in SCREENED else strategy
    rows = feed.orders[source]
    count = rows.shape[0]
    variant = min(int(rng.random() * count), count - 1) if count > 1 else 0
    return Pick(strategy, feed.probabilities_list[s], variant, rows[variant], source)


def serve_feed(store: Store, settings: Settings, req: FeedRequest, now: float,
               rng: Draws, cache: FeedCache | None, served: ServingLog,
               user: UserAds | None = None, secret: bytes | None = None,
               cards: CardCache | None = None) -> FeedAnswer:
    """The ordered ads for a point. A cached cell costs no Redis round trip; an uncached one
    a single GET, whatever the size of the catalogue. With a user_id and no ``user``, one
    more round trip keeps the point as the user's last location and reads their excluded
    and capped ads (given ``user``, the caller read the user's context, location
    included). The
    ads' cards come from ``cards`` (the process's: one more round trip only for cards it
    has not seen; without it, every time). The served feed is logged through ``served``.
    ``secret`` signs the feed id (serving processes keep it: else it is read).

    Each step is a function of its own, which ``bench.budget`` times alone. A cached cell
    and a request that excludes nothing (the common case) take the quick path: plain
    floats over the variant's first ads, laid out once; no array call."""
    cell = geo.encode(req.lat, req.lon, settings.geohash_precision)
    cards = CardCache(store) if cards is None else cards
    feed, outcome = load_cell(store, settings, cell, now, rng, cache, cards)
    if user is None:
        user = user_ads(store, settings, req, now)
    pick = pick_order(feed, rng)
    cap = settings.max_per_employer
    # the rules move ads down into the candidates past the limit; the capped ads may be
    # among the candidates, so as many more are taken
    wanted = req.limit * (2 if cap or user.capped else 1) + len(user.capped)
    chosen = quick_ads(feed, pick, req, now, user.excluded, cards, wanted)
    if chosen is None:
        chosen = within_reach(feed, pick.order, req, now, user.excluded, cards, wanted)
    placed = place(feed, pick, screened(feed, pick, chosen), user.capped, cap, req.limit)
    chosen = placed.chosen
    feed_id = make_feed_id(now, cell, pick.strategy, rng, secret or store.feed_id_secret())
    served.add(served_entry(feed_id, now, cell, pick, feed, outcome, req, chosen.cards, placed,
                            rules_text(settings)), cell, now)
    return FeedAnswer(feed_id, cell, pick.strategy, pick.propensity, feed.generated_at, outcome,
                      render_ads(chosen))


class UserAds(NamedTuple):
    """What a user's feeds leave out (the ads they applied to or hid) and move below the
    first screen (the ads the frequency cap holds for them)."""

    excluded: set[str]
    capped: set[str]


NOBODY = UserAds(set(), set())


def capped_since(settings: Settings, now: float) -> float | None:
    """Since when a capped ad is still held (None: the frequency cap is off)."""
    return now - settings.freq_window_s if settings.freq_cap else None


def user_ads(store: Store, settings: Settings, req: FeedRequest, now: float) -> UserAds:
    """With a user_id, keep the point as the user's last location and read the ads they
    applied to or hid and those the frequency cap holds (one round trip); without, none."""
    if not req.user_id:
        return NOBODY
    return UserAds(*store.locate_user(req.user_id, location_text(req.lat, req.lon),
                                      capped_since(settings, now)))


class Chosen(NamedTuple):
    """The ads a feed lists, in order: their positions in the variant's order, their dot
    products with the point (their distances) and their (ad id, open card)."""

    positions: list[int]
    dots: list[float]
    cards: list[tuple[str, bytes]]


PREPARED_LENGTH = 64   # a variant's leading ads laid out for the quick path
PREPARED_AD_BYTES = 260  # one laid out, as measured: vector, expiry, card slot, sort keys


def prepared_bytes(feed: CellFeed) -> int:
    """The most memory the feed's variants take once laid out (``Prepared``): counted with
    the packed feed against FEED_CACHE_MB when the feed is cached."""
    return PREPARED_AD_BYTES * sum(rows.shape[0] * min(rows.shape[1], PREPARED_LENGTH)
                                   for rows in feed.orders.values())


@dataclass(frozen=True)
class Prepared:
    """A variant's first PREPARED_LENGTH ads laid out for serving, as plain Python values
    in the order's sequence: unit vectors, expiries, cards and the screened strategies' sort
    keys, gathered once (about 16 KB a variant: Python floats cost memory, and save the
    array calls a request would make). Tuples of floats, strings and bytes, which the
    garbage collector stops tracking: thousands of variants cached add nothing to the
    pauses of its full collections. It lives with its CellFeed in the feed cache, so a
    change that voids the cell drops it too."""

    xyz: tuple[tuple[float, float, float], ...]
    expires_at: tuple[float, ...]
    live_until: float                            # none has expired before this
    cards: tuple[tuple[str, bytes] | None, ...]  # (ad id, open card) of each, None if gone
    keys: dict[str, tuple[float, ...]]           # screened strategy -> each ad's sort key
    whole: bool                                  # the variant has no more ads than these

    @classmethod
    def of(cls, feed: CellFeed, order: np.ndarray, cards: CardCache) -> Prepared:
        head = order[:PREPARED_LENGTH]
        expires_at = tuple(feed.expires_at[head].tolist())
        return cls(tuple((x, y, z) for x, y, z in feed.xyz[head].tolist()), expires_at,
                   min(expires_at, default=math.inf),
                   tuple(cards.get_many(feed.serials[head].tolist())),
                   {k: tuple(v[head].tolist()) for k, v in feed.keys.items()},
                   len(head) == len(order))


def quick_ads(feed: CellFeed, pick: Pick, req: FeedRequest, now: float, excluded: set[str],
              cards: CardCache, wanted: int | None = None) -> Chosen | None:
    """What ``within_reach`` would choose, from the variant's first ads laid out once
    (``Prepared``): plain floats over the first few dozen ads, no gather and no card
    lookup. None when the full filter must run: a user who excludes ads (it reads their
    cards), or fewer than ``wanted`` (default ``req.limit``) ads kept among the laid-out
    ones of a longer variant (the next ones could be kept)."""
    if excluded:
        return None
    key = (pick.source, pick.variant)
    prepared = feed.prepared.get(key)
    if prepared is None:
        prepared = feed.prepared[key] = Prepared.of(feed, pick.order, cards)
    ux, uy, uz = geo.unit_vector(req.lat, req.lon)
    floor, limit = geo.km_to_dot(req.radius_km), wanted or req.limit
    listed, expires_at = prepared.cards, prepared.expires_at
    fresh = now < prepared.live_until
    positions: list[int] = []
    dots: list[float] = []
    for i, (x, y, z) in enumerate(prepared.xyz):
        dot = x * ux + y * uy + z * uz            # geo.dots' value, bit for bit
        if dot >= floor and listed[i] is not None and (fresh or expires_at[i] > now):
            positions.append(i)
            dots.append(dot)
            if len(positions) == limit:
                break
    if len(positions) < limit and not prepared.whole:
        return None
    return Chosen(positions, dots, [listed[i] for i in positions])  # type: ignore[misc]


def within_reach(feed: CellFeed, order: np.ndarray, req: FeedRequest, now: float,
                 excluded: set[str], cards: CardCache, wanted: int | None = None) -> Chosen:
    """The first ``wanted`` (default ``req.limit``) ads of ``order`` within the radius of
    the point, not expired, not excluded for the user and not deleted since the feed was
    read (the next one takes a deleted ad's place)."""
    wanted = wanted or req.limit
    dot = geo.dots(feed.xyz[order], geo.unit_vector(req.lat, req.lon))
    keep = (dot >= geo.km_to_dot(req.radius_km)) & (feed.expires_at[order] > now)
    if excluded:
        entries = cards.get_many(feed.serials[order].tolist())
        keep &= np.fromiter((e is not None and e[0] not in excluded for e in entries), bool,
                            len(order))
    kept = np.flatnonzero(keep)
    positions: list[int] = []
    listed: list[tuple[str, bytes]] = []
    start = 0
    while len(positions) < wanted and start < len(kept):
        batch = kept[start:start + wanted - len(positions)]
        start += len(batch)
        for i, entry in zip(batch.tolist(), cards.get_many(feed.serials[order[batch]].tolist()),
                            strict=True):
            if entry is not None:
                positions.append(i)
                listed.append(entry)
    return Chosen(positions, dot[positions].tolist(), listed)


def screened(feed: CellFeed, pick: Pick, chosen: Chosen) -> Chosen:
    """A screened strategy's ads (``bandit.SCREENED``) reordered by its key over the ads
    Thompson chose; any other strategy's as they are."""
    if pick.strategy not in SCREENED or not chosen.positions:
        return chosen
    positions = chosen.positions
    if pick.strategy == "nearest":
        key = chosen.dots
    else:
        prepared = feed.prepared.get((pick.source, pick.variant))
        if prepared is not None and positions[-1] < len(prepared.xyz):
            column = prepared.keys[pick.strategy]
            key = [column[i] for i in positions]
        else:
            key = feed.keys[pick.strategy][pick.order[positions]].tolist()
    return subset(chosen, screen_order(key))


class Placed(NamedTuple):
    """A feed's ads once the feed rules placed them, and the ads each rule moved down or
    left out."""

    chosen: Chosen
    employer_moved: list[str]
    frequency_moved: list[str]


def subset(chosen: Chosen, at: Sequence[int]) -> Chosen:
    return Chosen([chosen.positions[i] for i in at], [chosen.dots[i] for i in at],
                  [chosen.cards[i] for i in at])


def place(feed: CellFeed, pick: Pick, chosen: Chosen, capped: set[str], cap: int,
          limit: int) -> Placed:
    """The feed rules over the ads chosen, ``limit`` of them. The frequency cap: an ad the
    user was shown FREQ_CAP times without engaging (``capped``) goes below the first screen,
    after every other ad, and only once a screen (SCREEN ads) of others is filled; else it
    is left out. The employer rule (``employer_rule``) holds in the whole feed."""
    if not capped or not any(card[0] in capped for card in chosen.cards):
        ruled, moved = employer_rule(feed, pick, chosen, cap, limit)
        return Placed(ruled, moved, [])
    held = [i for i, card in enumerate(chosen.cards) if card[0] in capped]
    free = [i for i, card in enumerate(chosen.cards) if card[0] not in capped]
    ruled, moved = employer_rule(feed, pick, subset(chosen, free), cap, limit)
    if SCREEN <= len(ruled.positions) < limit:
        after = subset(chosen, held)
        ruled = employer_rule(feed, pick, Chosen(ruled.positions + after.positions,
                                                 ruled.dots + after.dots,
                                                 ruled.cards + after.cards), cap, limit)[0]
    return Placed(ruled, moved, [card[0] for card in chosen.cards[:limit]
                                 if card[0] in capped])


def employer_rule(feed: CellFeed, pick: Pick, chosen: Chosen, cap: int,
                  limit: int) -> tuple[Chosen, list[str]]:
    """At most ``cap`` ads of one employer among any 10 consecutive positions of the feed
    (``bandit.diversity.diversified``) over the ads chosen, ``limit`` of them; and the ads
    the rule moved down or left out. Without a rule (``cap`` 0), the first ``limit``."""
    first = list(range(min(limit, len(chosen.positions))))
    if not cap or feed.employers is None or len(first) < 2:
        return subset(chosen, first), []
    kept = diversified(feed.employers[pick.order[chosen.positions]].tolist(), cap, limit=limit)
    if kept == first:
        return subset(chosen, first), []
    moved = [chosen.cards[p][0] for i, p in enumerate(kept) if i > p]
    moved += [chosen.cards[p][0] for p in sorted(set(first) - set(kept))]
    return subset(chosen, kept), moved


def rules_text(settings: Settings) -> str:
    """The feed rules' settings in force (and the region pooling's), as a served feed's
    provenance keeps them.

    >>> from config import load_settings
    >>> rules_text(load_settings({}))
    'MAX_PER_EMPLOYER=2 FREQ_CAP=3 FREQ_WINDOW_S=604800 FREQ_MAX_ADS=100 REGION_PRECISION=4'
    """
    return (f"MAX_PER_EMPLOYER={settings.max_per_employer} FREQ_CAP={settings.freq_cap} "
            f"FREQ_WINDOW_S={settings.freq_window_s} FREQ_MAX_ADS={settings.freq_max_ads} "
            f"REGION_PRECISION={settings.region_precision}")


def served_entry(feed_id: str, now: float, cell: str, pick: Pick, feed: CellFeed,
                 outcome: str, req: FeedRequest, cards_shown: list[tuple[str, bytes]],
                 placed: Placed | None = None, rules: str = "") -> dict[str, str | float | int]:
    """The served log's entry of a feed (what the evaluation and the strategy counts read);
    ``placed``: what the feed rules moved down or left out, and ``rules`` the rules in force
    (every entry has the same fields: the log writes them so)."""
    return {"feed_id": feed_id, "ts": now, "cell": cell, "strategy": pick.strategy,
            "propensity": pick.propensity, "variant": pick.variant,
            "generated_at": feed.generated_at, "cache": outcome,
            "user_id": req.user_id or "", "ads": " ".join(e[0] for e in cards_shown),
            "employer_moved": " ".join(placed.employer_moved if placed else ()),
            "frequency_moved": " ".join(placed.frequency_moved if placed else ()),
            "rules": rules}


def render_ads(chosen: Chosen) -> bytes:
    """The feed's ads as JSON objects, comma-joined: each card, its position and distance."""
    dot_km, out = geo.dot_km, []
    for p, ((_, card), dot) in enumerate(zip(chosen.cards, chosen.dots, strict=True), start=1):
        out.append(b'%s,"position":%d,"distance_km":%.3f}' % (card, p, dot_km(dot)))
    return b",".join(out)


def _decode(raw: bytes | None) -> CellFeed | None:
    """A stored feed, or None for a miss (absent, or packed by another format version)."""
    if raw is None:
        return None
    try:
        return CellFeed.unpack(raw)
    except (ValueError, KeyError):
        return None


# ---- feed ids -------------------------------------------------------------------------

_FEED_ID = re.compile(
    r"^((\d{1,15})-([0-9b-hjkmnp-z]{1,12})-([a-z]{1,16})-[0-9a-f]{8})([0-9a-f]{12})$")


@dataclass(frozen=True)
class FeedRef:
    served_ms: int
    cell: str
    strategy: str
    feed_id: str


_KEYED: dict[bytes, hmac.HMAC] = {}   # an HMAC keyed with each secret, copied per id


def _mac(secret: bytes, head: str) -> str:
    keyed = _KEYED.get(secret)
    if keyed is None:
        if len(_KEYED) > 8:                  # secrets rotated many times: start afresh
            _KEYED.clear()
        keyed = _KEYED[secret] = hmac.new(secret, digestmod=hashlib.sha256)
    mac = keyed.copy()
    mac.update(head.encode())
    return mac.hexdigest()[:12]


def make_feed_id(now: float, cell: str, strategy: str, rng: Draws,
                 secret: bytes) -> str:
    """
    >>> make_feed_id(1800000000.0, "u33dc0", "thompson", np.random.default_rng(0), b"k")[:30]
    '1800000000000-u33dc0-thompson-'
    """
    head = f"{int(now * 1000)}-{cell}-{strategy}-{int(rng.random() * 4294967296):08x}"
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
    if feed_id is None:
        return None
    match = _FEED_ID.match(feed_id)
    if match is None or match.group(4) not in STRATEGIES:
        return None
    if not hmac.compare_digest(match.group(5), _mac(secret, match.group(1))):
        return None
    return FeedRef(int(match.group(2)), match.group(3), match.group(4), feed_id)


# ---- the served-feed log --------------------------------------------------------------

class ServingLog:
    def __init__(self, store: Store, maxlen: int, flush_s: float | None,
                 max_buffered: int = 100_000) -> None:
        self.store, self.maxlen = store, maxlen
        self.flush_s, self.max_buffered = flush_s, max_buffered
        self._lock = threading.Lock()
        self._served: list[dict] = []
        self._chunks: list[tuple[str, list[dict]]] = []   # failed writes, retried with their id
        self._active: dict[str, float] = {}
        self._flusher_pid = -1

    def add(self, entry: dict[str, str | float | int], cell: str, now: float) -> None:
        """Buffer a served feed's entry (kept as given: the caller must not change it) and
        mark its cell active."""
        self._ensure_flusher()
        with self._lock:
            self._served.append(entry)
            self._active[cell] = now
            self._bound()

    def flush(self) -> int:
        """Write what is buffered, in chunks; on a Redis error (down, read-only replica, out
        of memory) keep what was not written for the next try. Each chunk keeps its id
        through retries, so a write that happened but whose reply was lost is not repeated."""
        with self._lock:
            chunks = self._chunks + [(uuid.uuid4().hex, self._served[i:i + FLUSH_CHUNK])
                                     for i in range(0, len(self._served), FLUSH_CHUNK)]
            active = self._active
            self._served, self._chunks, self._active = [], [], {}
        if not chunks and active:
            chunks = [(uuid.uuid4().hex, [])]
        written = 0
        for i, (flush_id, chunk) in enumerate(chunks):
            try:
                self.store.record_serving(chunk, active, self.maxlen, flush_id)
            except redis.RedisError as exc:
                with self._lock:
                    self._chunks[:0] = chunks[i:]
                    self._active = {**active, **self._active}
                    self._bound()
                log.warning("serving log: flush failed (%s); %d entries kept",
                            type(exc).__name__, sum(len(c) for _, c in chunks[i:]))
                break
            written += len(chunk)
            active = {}
        return written

    def _bound(self) -> None:
        """Drop the oldest entries beyond ``max_buffered`` (Redis unreachable for long)."""
        excess = len(self._served) + sum(len(c) for _, c in self._chunks) - self.max_buffered
        if excess <= 0:
            return
        dropped = excess
        while excess > 0 and self._chunks:
            _, oldest = self._chunks[0]
            if len(oldest) <= excess:
                excess -= len(oldest)
                self._chunks.pop(0)
            else:
                del oldest[:excess]
                excess = 0
        del self._served[:excess]
        log.warning("serving log: %d served-feed entries dropped (Redis unreachable)", dropped)

    def _ensure_flusher(self) -> None:
        if self.flush_s is None or self._flusher_pid == os.getpid():
            return
        self._flusher_pid = os.getpid()
        threading.Thread(target=self._run, args=(self.flush_s,), name="serving-log-flush",
                         daemon=True).start()
        atexit.register(self.flush)

    def _run(self, every_s: float) -> None:
        while True:
            time.sleep(every_s)
            try:
                self.flush()
            except Exception:  # a flush must never kill the thread that does them
                log.exception("serving log: flush failed")
