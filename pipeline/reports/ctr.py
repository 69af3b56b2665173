"""Daily CTR: what the rollup counted per UTC day, as counts and rates with 95 % Wilson
intervals, overall or for one feed strategy. GET /v1/stats/ctr and ``flask report ctr``
both answer with this.

Days are those of the events' own times (``ts``), as the rollup files them. A strategy's
figures count the events that name a feed it served (and came within EVENT_MAX_AGE_S of
the serving); events naming no feed count only overall.

Redis keeps each day's counters (``{ev}:ctr:{day}``). The days of the range before the first
one Redis holds (every day of it, when Redis holds none) are counted again from the
archived events, if an archive is given (``pipeline.reports.archived_ctr``): the days before
this Redis was started, or rebuilt. A day after that with nothing in Redis had no events.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import numpy as np

from bandit import Proportion, wilson_interval
from bandit.ope import LEVEL
from store import Store

COUNTS = ("impressions", "views", "saves", "applies")
# rate name -> (numerator, denominator), among COUNTS
RATES: dict[str, tuple[str, str]] = {
    "view_rate": ("views", "impressions"),
    "save_rate": ("saves", "impressions"),
    "apply_rate": ("applies", "impressions"),
    "apply_per_view": ("applies", "views"),
}
DEFAULT_DAYS = 14
MAX_DAYS = 92        # one read of a day's hash each: a quarter at most
DECIMALS = 6

Counters = dict[str, dict[str, int]]                  # day -> its ctr hash's fields
ArchivedCounters = Callable[[Sequence[str]], Counters]   # the same, from the archive
Source = Literal["redis", "archive"] | None


@dataclass(frozen=True)
class RateInterval:
    """A rate and its interval; ``rate`` is None when its denominator is 0 (then the
    interval is [0, 1]: no rate is ruled out)."""

    rate: float | None
    low: float
    high: float


@dataclass(frozen=True)
class CtrRow:
    """One day's (or the range's) counts and rates."""

    impressions: int
    views: int
    saves: int
    applies: int
    view_rate: RateInterval
    save_rate: RateInterval
    apply_rate: RateInterval
    apply_per_view: RateInterval


@dataclass(frozen=True)
class DailyCtr:
    start: date
    end: date
    strategy: str | None
    level: float
    days: tuple[str, ...]       # YYYY-MM-DD, every day from start to end
    rows: tuple[CtrRow, ...]    # aligned with days
    totals: CtrRow
    sources: tuple[Source, ...]  # aligned with days: where its counts came from, if any

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(),
                "strategy": self.strategy, "level": self.level,
                "days": [{"day": d, "source": source, **asdict(r)}
                         for d, source, r in zip(self.days, self.sources, self.rows,
                                                 strict=True)],
                "totals": asdict(self.totals)}

    @property
    def archived_days(self) -> int:
        return self.sources.count("archive")


def utc_today(now: float) -> date:
    return datetime.fromtimestamp(now, tz=UTC).date()


def days_between(start: date, end: date) -> tuple[str, ...]:
    """Every day from ``start`` to ``end`` inclusive, in the rollup's day format.

    >>> days_between(date(2026, 12, 31), date(2027, 1, 2))
    ('2026-12-31', '2027-01-01', '2027-01-02')
    """
    return tuple((start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1))


def day_counters(store: Store, days: Sequence[str], archived: ArchivedCounters | None = None
                 ) -> tuple[Counters, tuple[Source, ...]]:
    """Each day's counters, and where they came from: Redis, or for the days before the
    first one Redis holds, the archive (see the module's docstring)."""
    found = store.ctr_days(days)
    held = [i for i, d in enumerate(days) if found[d]]
    sources: list[Source] = ["redis" if found[d] else None for d in days]
    before = days[:held[0]] if held else days
    if archived is not None and before:
        from_archive = archived(before)
        for i, day in enumerate(before):
            if from_archive.get(day):
                found[day], sources[i] = from_archive[day], "archive"
    return found, tuple(sources)


def daily_ctr(store: Store, start: date, end: date, strategy: str | None = None,
              level: float = LEVEL, archived: ArchivedCounters | None = None,
              counters: tuple[Counters, tuple[Source, ...]] | None = None) -> DailyCtr:
    """The counts and rates of each day from ``start`` to ``end`` (UTC, inclusive; days
    without events are zeros) and of the whole range, of every feed or of ``strategy``'s;
    ``counters`` (``day_counters``' answer for those days) saves reading them again."""
    if start > end:
        raise ValueError("start must not be after end")
    days = days_between(start, end)
    found, sources = counters if counters is not None else day_counters(store, days, archived)
    prefix = f"{strategy}:" if strategy else ""
    counts = np.array([[found[d].get(prefix + f, 0) for f in COUNTS] for d in days],
                      dtype=np.int64).reshape(len(days), len(COUNTS))
    table = np.vstack([counts, counts.sum(axis=0, keepdims=True)])
    rates = {name: capped_interval(table[:, COUNTS.index(k)], table[:, COUNTS.index(n)], level)
             for name, (k, n) in RATES.items()}
    rows = [_row(table[i], rates, i) for i in range(len(table))]
    return DailyCtr(start, end, strategy, level, days, tuple(rows[:-1]), rows[-1], sources)


def capped_interval(successes: np.ndarray, trials: np.ndarray, level: float) -> Proportion:
    """The Wilson interval, with successes above trials taken as trials: a day can count
    more applies than views (a view before midnight, its apply after; a client that reports
    no view), and a rate is still at most 1."""
    return wilson_interval(np.minimum(successes, trials), trials, level)


def _row(counts: np.ndarray, rates: dict[str, Proportion], i: int) -> CtrRow:
    """Row ``i`` of the table: its counts (in COUNTS order) and its rates."""
    impressions, views, saves, applies = map(int, counts)
    return CtrRow(impressions, views, saves, applies,
                  **{name: _rate(p, i) for name, p in rates.items()})


def _rate(p: Proportion, i: int) -> RateInterval:
    rate = float(p.rate[i])
    return RateInterval(None if np.isnan(rate) else round(rate, DECIMALS),
                round(float(p.low[i]), DECIMALS), round(float(p.high[i]), DECIMALS))
