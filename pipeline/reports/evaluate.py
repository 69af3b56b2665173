"""Off-policy evaluation of the feed strategies, from the served log joined with the events.

A served feed's reward is 1 if an apply naming it reached the events stream within
``attribution_s`` of its serving, else 0: the share of feeds that led to an apply, which is
what the strategy bandit learns.
Both logs are read in chunks into arrays; the join is a sorted search on the feed ids.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from bandit import STRATEGIES, Estimate, ips, logged_value, mean_estimate, snips
from pipeline.archive import Archive, applies_between, served_between
from pipeline.learning.ingest import decode_entries
from store import Store, StreamEntry, stat_type_index

APPLY = stat_type_index("apply")


@dataclass(frozen=True)
class StrategyReport:
    strategy: str
    feeds: int           # feeds it served
    logged: Estimate     # the mean reward of those feeds
    ips: Estimate        # "always serve it", inverse propensity scoring
    snips: Estimate      # the same, self-normalised


@dataclass(frozen=True)
class Report:
    since: float
    until: float
    attribution_s: float
    feeds: int                  # served feeds used
    applies: int                # applies credited to them
    skipped: int                # served entries left out: unreadable, or a feed logged twice
    policy: Estimate            # the logging policy's own mean reward
    strategies: tuple[StrategyReport, ...]

    def as_dict(self) -> dict:
        out = asdict(self)
        out["strategies"] = {s.pop("strategy"): s for s in out["strategies"]}
        return out


@dataclass(frozen=True)
class ServedLog:
    """The usable served feeds of a range as aligned arrays, sorted by feed id."""

    feed_ids: np.ndarray      # bytes
    served_ms: np.ndarray     # int64
    strategy: np.ndarray      # index into STRATEGIES
    propensity: np.ndarray    # float64, in (0, 1]
    skipped: int

    def __len__(self) -> int:
        return len(self.feed_ids)


def evaluate(store: Store, since: float, until: float, attribution_s: float,
             archive: Archive | None = None) -> Report:
    """Each strategy seen among the feeds served from ``since`` to ``until`` (epoch seconds):
    its logged value, and the IPS and SNIPS estimates of serving it always. With
    ``archive``, what it holds is read from it and only the rest from Redis."""
    log = read_served(store, int(since * 1000), int(until * 1000), archive)
    applies = credit_applies(store, log, int(since * 1000), int(until * 1000),
                             int(attribution_s * 1000), archive)
    rewards = np.minimum(applies, 1.0)
    strategies = tuple(
        StrategyReport(STRATEGIES[code], int((log.strategy == code).sum()),
                       logged_value(log.strategy, rewards, code),
                       ips(log.strategy, rewards, log.propensity, code),
                       snips(log.strategy, rewards, log.propensity, code))
        for code in np.unique(log.strategy).tolist())
    return Report(since, until, attribution_s, len(log), int(applies.sum()), log.skipped,
                  mean_estimate(rewards), strategies)


def read_served(store: Store, start_ms: int, end_ms: int,
                archive: Archive | None = None) -> ServedLog:
    """The feeds logged from ``start_ms`` to ``end_ms`` (from the archive up to its cursor,
    then from Redis); entries without a feed id, a known strategy and a propensity in
    (0, 1] are counted as skipped, as is a feed id's repeat."""
    parts: list[tuple] = []
    skipped = 0
    chunks: Iterable[list[tuple[str, dict[str, str]]]] = store.served_between(start_ms, end_ms)
    if archive is not None:
        chunks = itertools.chain(
            served_between(archive, start_ms, end_ms),
            store.served_between(start_ms, end_ms, after=store.archive_cursor("served")))
    for chunk in chunks:
        rows = [row for row in map(_served_row, (fields for _, fields in chunk)) if row]
        skipped += len(chunk) - len(rows)
        if rows:
            parts.append(tuple(map(np.array, zip(*rows, strict=True))))
    if not parts:
        empty = np.array([], dtype=np.int64)
        return ServedLog(np.array([], dtype="S1"), empty, empty, empty.astype(np.float64),
                         skipped)
    feed_ids, served_ms, strategy, propensity = (np.concatenate(c)
                                                 for c in zip(*parts, strict=True))
    feed_ids, first = np.unique(feed_ids, return_index=True)
    return ServedLog(feed_ids, served_ms[first].astype(np.int64), strategy[first],
                     propensity[first].astype(np.float64),
                     skipped + len(served_ms) - len(first))


def credit_applies(store: Store, log: ServedLog, since_ms: int, until_ms: int,
                   attribution_ms: int, archive: Archive | None = None) -> np.ndarray:
    """Each served feed's applies: those naming it that reached the events stream at most
    ``attribution_ms`` after it was served (read from the archive up to each partition's
    cursor, then from Redis). Applies naming other feeds are ignored."""
    rewards = np.zeros(len(log), dtype=np.float64)
    if not len(log):
        return rewards
    start_ms = min(since_ms, int(log.served_ms.min()))
    end_ms = max(until_ms, int(log.served_ms.max())) + attribution_ms
    found: Iterable[tuple[np.ndarray, np.ndarray]]
    if archive is None:
        found = map(_applies, store.events_between(start_ms, end_ms))
    else:
        cursors = {p.index: store.archive_cursor("events", p.index) for p in store.parts}
        found = itertools.chain(applies_between(archive, start_ms, end_ms),
                                map(_applies, store.events_between(start_ms, end_ms,
                                                                   after=cursors)))
    for feeds, reached_ms in found:
        if not len(feeds):
            continue
        rows = np.minimum(np.searchsorted(log.feed_ids, feeds), len(log) - 1)
        credited = ((log.feed_ids[rows] == feeds)
                    & (reached_ms <= log.served_ms[rows] + attribution_ms))
        rewards += np.bincount(rows[credited], minlength=len(log))
    return rewards


def _served_row(fields: dict[str, str]) -> tuple[bytes, int, int, float] | None:
    try:
        row = (fields["feed_id"].encode(), round(float(fields["ts"]) * 1000),
               STRATEGIES.index(fields["strategy"]), float(fields["propensity"]))
    except (KeyError, ValueError, OverflowError):
        return None
    return row if row[0] and 0 < row[3] <= 1 else None


def _applies(chunk: list[StreamEntry]) -> tuple[np.ndarray, np.ndarray]:
    """The feed ids that the apply events of a chunk name, and when each reached the stream."""
    with_apply = [entry for entry in chunk if b"apply" in entry.payload]   # most hold none
    events = decode_entries(with_apply, "left out of the evaluation")
    reached = {entry.entry_id: int(entry.entry_id.split("-")[0]) for entry in with_apply}
    picked = [(feed.encode(), reached[entry_id]) for feed, kind, entry_id
              in zip(events.feed_id, events.type_index.tolist(), events.entry_id, strict=True)
              if kind == APPLY and feed]
    return (np.array([f for f, _ in picked], dtype=bytes),
            np.array([ms for _, ms in picked], dtype=np.int64))
