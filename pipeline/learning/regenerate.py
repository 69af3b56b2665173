"""Regeneration: feeds precomputed per geohash cell, one packed value per cell.

For each active cell, the candidates are the live ads within FEED_RADIUS_KM plus the cell's
half-diagonal of its centre: every ad within the radius of any point in the cell. Each
strategy of FEED_STRATEGIES orders them (Thompson: FEED_VARIANTS independent posterior
draws), keeping the top FEED_LENGTH; the ads those orders name, the orders and the
probability of serving each strategy (the strategy bandit) are packed into one value.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

import geo
from bandit import (
    STRATEGIES,
    AdPriors,
    Candidates,
    Evidence,
    PriorRates,
    PriorSpec,
    RegionSums,
    StrategyPrior,
    ad_posterior,
    decay_to,
    empirical_rates,
    order_sources,
    regional_rates,
    screen_keys,
    strategy_orders,
    strategy_probabilities,
)
from bandit.diversity import diversify_orders
from config import Settings
from pipeline.catalogue import reindex_ads
from pipeline.serving.cellfeed import AdColumns, pack_feeds
from store import EVIDENCE_FIELDS, GLOBAL_CELL, Decayed, Store, Summaries, region_field
from store.feed_store import AreaInputs, CellInputs

log = logging.getLogger(__name__)

WRITE_CHUNK = 200
MAX_ATTEMPTS = 3
# Redis measures geo distance on a slightly larger sphere than geo.EARTH_RADIUS_KM;
# searching a touch wider and filtering exactly keeps every ad our own distance admits.
SEARCH_SLACK = 1.001
STRATEGY_DRAWS = 500   # Monte Carlo draws for each cell's strategy probabilities


@dataclass(frozen=True)
class Snapshot:
    """The live catalogue and its evidence as arrays, aligned by position."""

    serials: np.ndarray      # uint64: each ad's serial (its card's key)
    lat: np.ndarray
    lon: np.ndarray
    expires_at: np.ndarray
    created_at: np.ndarray
    categories: np.ndarray   # the distinct category codes
    groups: np.ndarray       # each ad's position in ``categories``
    evidence: Evidence       # decayed to the snapshot's time
    employers: np.ndarray | None = None   # uint64: each ad's employer code (0: unknown)
    _regions: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False,
                                            compare=False)

    def __len__(self) -> int:
        return len(self.lat)

    def regions(self, precision: int) -> np.ndarray:
        """Each ad's region, its geohash at ``precision``: encoded once per snapshot, for
        the priors it learns and the feeds it builds."""
        if precision not in self._regions:
            self._regions[precision] = ad_regions(self.lat, self.lon, precision)
        return self._regions[precision]


def decayed_now(stored: Decayed, now: float, settings: Settings) -> np.ndarray:
    """Stored decayed sums as they stand at ``now``."""
    updated_at = np.where(np.isnan(stored.updated_at), now, stored.updated_at)
    return decay_to(stored.values, updated_at, now, settings.stats_half_life_s)


def load_snapshot(store: Store, settings: Settings, now: float) -> Snapshot:
    """Every indexed ad live at ``now`` (from this process's copy of the catalogue, brought
    up to date), with its decayed evidence. Ads whose summaries an older version wrote (no
    serial, so no card to serve) are reindexed from their records first."""
    found = store.current_summaries()
    older = unserialled(found, now)
    if older:
        reindex_ads(store, settings, older, now)
        found = store.current_summaries()
    live = servable(found, now)
    ids = [a for a, ok in zip(found.ids, live, strict=True) if ok]
    return snapshot_of(found, live, store.decayed_evidence(ids), now, settings)


def unserialled(found: Summaries, now: float) -> list[str]:
    """The live ads of ``found`` whose summaries an older version wrote (no serial): they
    are logged, for ``reindex_ads``."""
    older_at = np.flatnonzero((found.rows["sn"] == 0) & (found.rows["exp"] > now))
    older = [found.ids[i].decode() for i in older_at.tolist()]
    if older:
        log.warning("reindexing %d ads written by an older version (no serial)", len(older))
    return older


def servable(found: Summaries, now: float) -> np.ndarray:
    """Which of the ads found can be in a feed: live, and with a card."""
    return (found.rows["exp"] > now) & (found.rows["sn"] > 0)


def area_snapshot(found: AreaInputs, now: float, settings: Settings) -> Snapshot:
    """The servable ads of an area the store read (``AreaInputs``) as a snapshot."""
    live = servable(found.ads, now)
    evidence = Decayed(found.evidence.updated_at[live], found.evidence.values[live])
    return snapshot_of(found.ads, live, evidence, now, settings)


def snapshot_of(found: Summaries, live: np.ndarray, evidence: Decayed, now: float,
                settings: Settings) -> Snapshot:
    """The ``live`` ads of ``found`` as a snapshot (``evidence``: one row per live ad)."""
    sums = decayed_now(evidence, now, settings)
    rows = found.rows[live]
    categories, groups = np.unique(rows["cat"], return_inverse=True)
    return Snapshot(
        serials=rows["sn"].copy(),
        lat=rows["lat"].copy(), lon=rows["lon"].copy(), expires_at=rows["exp"].copy(),
        created_at=rows["created"].copy(),
        categories=categories, groups=groups.reshape(-1),
        evidence=Evidence(*(sums[:, i] for i in range(len(EVIDENCE_FIELDS)))),
        employers=rows["emp"].copy())


def candidate_radius_km(cell: str, settings: Settings) -> float:
    return float(candidate_reach([cell], settings)[2][0])


def candidate_reach(cells: Sequence[str], settings: Settings
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each cell's centre (lat, lon arrays) and how far from it its candidates lie:
    FEED_RADIUS_KM plus the cell's half-diagonal, every ad within the radius of any point
    of the cell."""
    lat, lon, half_diagonal_km = geo.cell_half_diagonals_km(cells)
    return lat, lon, settings.feed_radius_km + half_diagonal_km


def cell_probabilities(store: Store, settings: Settings, cells: Sequence[str], now: float,
                       rng: np.random.Generator) -> np.ndarray:
    """The probability of serving each of FEED_STRATEGIES in each cell, shape (cells, S),
    from the strategy bandit's decayed counts, pooled cell -> region -> global (the cell's
    own once it has enough, else its region's, else the global ones)."""
    fields, region_of = strategy_rows(cells, settings)
    stored = store.strategy_stats(fields, 2 * len(STRATEGIES))
    return probabilities_of(stored, settings, now, rng, region_of)


def strategy_rows(cells: Sequence[str], settings: Settings
                  ) -> tuple[list[str], np.ndarray | None]:
    """The strategies hash's fields the cells' probabilities read: the cells, their regions
    (REGION_PRECISION; each once), then GLOBAL_CELL; and each cell's region among them (-1:
    none). Without regions (REGION_PRECISION 0): the cells and GLOBAL_CELL, and None.

    >>> from config import load_settings
    >>> strategy_rows(["u33dbc", "u33dbd", "u0"], load_settings({}))
    (['u33dbc', 'u33dbd', 'u0', '~u33d', '*'], array([ 0,  0, -1]))
    """
    precision = settings.region_precision
    if not precision:
        return [*cells, GLOBAL_CELL], None
    regions: dict[str, int] = {}
    region_of = [regions.setdefault(region_field(c, precision), len(regions))
                 if 0 < precision < len(c) else -1 for c in cells]
    return [*cells, *regions, GLOBAL_CELL], np.array(region_of, dtype=np.int64)


def probabilities_of(stored: Decayed, settings: Settings, now: float,
                     rng: np.random.Generator,
                     region_of: np.ndarray | None = None) -> np.ndarray:
    """``cell_probabilities`` from the stored strategy sums: a row per cell, then a row per
    region (``region_of``: each cell's, as ``strategy_rows`` gives it; None: no region
    rows), then the GLOBAL_CELL row."""
    width = len(STRATEGIES)
    sums = decayed_now(stored, now, settings)
    cols = [STRATEGIES.index(s) for s in settings.feed_strategies]
    served, applies = sums[:, cols], sums[:, [width + c for c in cols]]
    prior = StrategyPrior(strength=settings.strategy_prior_strength,
                          cell_min_feeds=settings.strategy_cell_min_feeds,
                          floor=settings.strategy_floor)
    cells = len(sums) - 1 if region_of is None else len(region_of)
    regions = (None if region_of is None
               else RegionSums(region_of, served[cells:-1], applies[cells:-1]))
    probabilities = strategy_probabilities(served[:cells], applies[:cells], served[-1],
                                           applies[-1], prior, rng, STRATEGY_DRAWS, regions)
    # to 12 decimals: the propensities a feed answers with carry no last-bit noise
    # (0.24632, not 0.24631999999999998), and serving draws with the very values it logs
    return np.round(probabilities, 12)


def prior_spec(settings: Settings) -> PriorSpec:
    return PriorSpec(settings.prior_mean, settings.prior_view_rate, settings.prior_strength)


def learn_priors(store: Store, settings: Settings, snapshot: Snapshot) -> PriorRates:
    """The empirical-Bayes prior means of every category, from the whole catalogue's
    evidence, and with REGION_PRECISION each region's (``bandit.regional_rates``); stored
    for shards, cells built on a miss and the stats endpoint."""
    rates = empirical_rates(snapshot.evidence, snapshot.groups, settings.reward_model,
                            settings.save_weight, prior_spec(settings))
    regional: dict[str, dict[int, list[float]]] = {}
    if settings.region_precision and len(snapshot):
        names, of_ad = np.unique(snapshot.regions(settings.region_precision),
                                 return_inverse=True)
        rates = regional_rates(snapshot.evidence, snapshot.groups, of_ad, names.tolist(),
                               settings.reward_model, settings.save_weight, rates)
        assert rates.regional is not None
        present = np.unique(of_ad * len(snapshot.categories) + snapshot.groups)
        for flat in present.tolist():
            r, g = divmod(flat, len(snapshot.categories))
            regional.setdefault(rates.regions[r], {})[int(snapshot.categories[g])] = [
                *rates.regional[r, g].tolist(), *rates.strengths[g].tolist()]
    rows, overall = rates.rows()
    store.write_priors(settings.reward_model,
                       {int(c): row.tolist()
                        for c, row in zip(snapshot.categories, rows, strict=True)},
                       overall.tolist(), regional, REGIONAL_PRIORS_TTL_S)
    return rates


REGIONAL_PRIORS_TTL_S = 86_400   # a region's priors no longer learnt are forgotten after this


def ad_regions(lat: np.ndarray, lon: np.ndarray, precision: int) -> np.ndarray:
    """Each ad's region: its geohash at ``precision`` (REGION_PRECISION)."""
    return geo.encode_many(np.asarray(lat), np.asarray(lon), precision)


def stored_priors(store: Store, settings: Settings, categories: np.ndarray,
                  regions: Sequence[str] = ()) -> PriorRates:
    """The priors the last regeneration learnt, for these category codes (and these
    regions'); a category it has not seen takes the overall prior (before any regeneration:
    the settings')."""
    model = settings.reward_model
    return priors_from(settings, categories, partial(store.prior_rows, model), regions,
                       partial(store.regional_prior_rows, model))


def priors_of(inputs: CellInputs, settings: Settings, categories: np.ndarray,
              regions: Sequence[str] = ()) -> PriorRates:
    """``stored_priors`` from the priors a cell's inputs hold."""
    return priors_from(settings, categories, inputs.prior_rows, regions,
                       inputs.regional_prior_rows)


def priors_from(settings: Settings, categories: np.ndarray,
                read: Callable[[Sequence[int], int], tuple[np.ndarray, np.ndarray]],
                regions: Sequence[str] = (),
                read_regional: Callable[[Sequence[str], Sequence[int], int], np.ndarray]
                | None = None) -> PriorRates:
    """The priors for these category codes from ``read`` (codes, width) -> (rows, overall),
    with the means of ``regions`` from ``read_regional`` (a region's category it has no
    row for keeps the category's means)."""
    fallback = PriorRates.fallback(settings.reward_model, prior_spec(settings))
    width = 2 * len(fallback.overall)
    rows, overall = read(categories.tolist(), width)
    rates = PriorRates.from_rows(settings.reward_model, rows, overall, fallback)
    if not regions or read_regional is None:
        return rates
    stages = len(fallback.overall)
    means = read_regional(list(regions), categories.tolist(), width)[:, :, :stages]
    regional = np.where(np.isnan(means), rates.groups[None, :, :], means)
    return replace(rates, regions=tuple(regions), regional=regional)


def snapshot_regions(snapshot: Snapshot, settings: Settings) -> list[str]:
    """The regions of a snapshot's ads, each once (none without REGION_PRECISION)."""
    if not settings.region_precision or not len(snapshot):
        return []
    return np.unique(snapshot.regions(settings.region_precision)).tolist()


def ad_priors(snapshot: Snapshot, rates: PriorRates, settings: Settings) -> AdPriors:
    """Each snapshot ad's prior: its category's, in its region where ``rates`` has one."""
    if rates.regional is None or not settings.region_precision:
        return rates.for_ads(snapshot.groups)
    names = snapshot.regions(settings.region_precision).tolist()
    return rates.for_ads(snapshot.groups, rates.region_index(names))


def build_feeds(snapshot: Snapshot, cells: Sequence[str], probabilities: np.ndarray,
                rates: PriorRates, settings: Settings, rng: np.random.Generator,
                now: float, *, per_cell: bool = False) -> dict[str, bytes]:
    """Packed feeds for ``cells`` (``probabilities``: one row per cell; ``rates``: one row
    per snapshot category). One set of K draws per ad serves every cell: each cell's
    Thompson variant k is its candidates' best FEED_LENGTH by draw k.

    With Thompson orders only (the screened strategies serve from them), every cell's best
    are found together (``geo.PointIndex.best_within``), reading a neighbourhood's ads once
    for all its cells. The ``random`` and ``egreedy`` baselines order each cell's whole
    candidate list, cell by cell, as does ``per_cell`` (the same feeds, slower: the
    reference the fast way is tested against)."""
    if not len(cells):
        return {}
    posterior = ad_posterior(snapshot.evidence, ad_priors(snapshot, rates, settings),
                             settings.reward_model, settings.save_weight)
    every_ad = Candidates(posterior.sample(settings.feed_variants, rng), posterior.mean(),
                          snapshot.created_at)         # draws: one row of K per ad
    keys = screen_keys(settings.feed_strategies, every_ad)
    lat, lon, reach_km = candidate_reach(cells, settings)
    index = geo.PointIndex(snapshot.lat, snapshot.lon,
                           query_radius_km=float(reach_km.max(initial=1.0)))
    if per_cell or order_sources(settings.feed_strategies) != ["thompson"]:
        orders = padded([cell_orders(index.query(one_lat, one_lon, radius_km), every_ad,
                                     settings, rng)
                         for one_lat, one_lon, radius_km in zip(lat.tolist(), lon.tolist(),
                                                                reach_km.tolist(), strict=True)],
                        settings.feed_variants, settings.feed_length)
    else:
        orders = {"thompson": index.best_within(lat, lon, reach_km, every_ad.draws.T,
                                                settings.feed_length)}
    if settings.max_per_employer and snapshot.employers is not None:
        orders = {name: diversify_orders(o, snapshot.employers, settings.max_per_employer)[0]
                  for name, o in orders.items()}
    columns = AdColumns.of(snapshot.serials, snapshot.lat, snapshot.lon, snapshot.expires_at,
                           keys, snapshot.employers)
    packed = pack_feeds(columns, cells, now, settings.feed_strategies, probabilities, orders)
    return dict(zip(cells, packed, strict=True))


def padded(orders: Sequence[dict[str, np.ndarray]], rows: int,
           length: int) -> dict[str, np.ndarray]:
    """Cells' orders (each a (rows, at most length) array per name) as one (cells, rows,
    length) array per name, -1 past each cell's last."""
    out: dict[str, np.ndarray] = {}
    for c, cell_orders_kept in enumerate(orders):
        for name, order in cell_orders_kept.items():
            if name not in out:
                out[name] = np.full((len(orders), rows, length), -1, dtype=np.int64)
            out[name][c, :, :order.shape[1]] = order
    return out


def cell_orders(candidates: np.ndarray, every_ad: Candidates, settings: Settings,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The orders one cell keeps, as snapshot positions, from its ``candidates`` (snapshot
    positions)."""
    cand = Candidates(every_ad.draws[candidates], every_ad.mean[candidates],
                      every_ad.created_at[candidates])
    return {name: candidates[order]
            for name, order in strategy_orders(settings.feed_strategies, cand,
                                               settings.feed_length, rng,
                                               settings.epsilon).items()}


def run_regenerate(store: Store, settings: Settings, now: float,
                   rng: np.random.Generator) -> dict[str, float | int | dict[str, float]]:
    """Rebuild the feed of every active cell in this process, learning the category priors
    on the way. Cells idle past ACTIVE_CELL_TTL_S are dropped from the active set and stop
    being rebuilt. A catalogue change during the run (an ad removed or moved) voids the
    feeds not yet written; they are rebuilt from a fresh snapshot, up to MAX_ATTEMPTS
    times."""
    started = time.perf_counter()
    todo = store.active_cells(since=now - settings.active_cell_ttl_s)

    def snapshot() -> tuple[str, Snapshot, PriorRates]:
        epoch = store.catalog_epoch()
        snap = load_snapshot(store, settings, now)
        return epoch, snap, learn_priors(store, settings, snap)

    written, skipped, ads = regenerate_cells(store, settings, todo, now, rng, snapshot)
    report: dict[str, float | int] = {
        "cells": len(todo), "written": written, "skipped": skipped, "ads": ads,
        "duration_s": round(time.perf_counter() - started, 4), "finished_at": now}
    return {**report, "strategy_probability": record_run(store, settings, report, now, rng)}


def regenerate_cells(store: Store, settings: Settings, todo: Sequence[str], now: float,
                     rng: np.random.Generator,
                     snapshot: Callable[[], tuple[str, Snapshot, PriorRates]]
                     ) -> tuple[int, int, int]:
    """Build and write the feeds of ``todo`` from what ``snapshot`` reads (the catalogue
    epoch, the ads, their priors); the feeds a catalogue change voided are rebuilt from a
    fresh one, up to MAX_ATTEMPTS times. Returns (written, skipped, ads read)."""
    todo = list(todo)
    written = ads = 0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if not todo:
            break
        epoch, snap, rates = snapshot()
        ads = len(snap)
        probabilities = cell_probabilities(store, settings, todo, now, rng)
        feeds = build_feeds(snap, todo, probabilities, rates, settings, rng, now)
        for i in range(0, len(todo), WRITE_CHUNK):
            chunk = {c: feeds[c] for c in todo[i:i + WRITE_CHUNK]}
            if not store.write_feeds(epoch, chunk, settings.feed_ttl_s):
                todo = todo[i:]
                log.info("catalogue changed during regeneration; rebuilding %d cells "
                         "(attempt %d)", len(todo), attempt)
                break
            written += len(chunk)
        else:
            todo = []
            break
    return written, len(todo), ads


def record_run(store: Store, settings: Settings, report: dict[str, float | int], now: float,
               rng: np.random.Generator) -> dict[str, float]:
    """A whole run's report, its generation (if it wrote) and the strategies' overall
    probabilities, as the status, metrics and dashboard read them. Returns those."""
    overall = cell_probabilities(store, settings, [GLOBAL_CELL], now, rng)[0]
    chances = {s: round(float(p), 4)
               for s, p in zip(settings.feed_strategies, overall, strict=True)}
    store.record_strategy_probabilities(chances, now)
    if report["written"]:
        store.record_generation(now)
    store.record_job("regenerate", report)
    return chances


# ---- a run sharded over workers -------------------------------------------------------------

def plan_shards(store: Store, settings: Settings, now: float,
                rng: np.random.Generator) -> tuple[str, list[list[str]]]:
    """A sharded run: its id and the active cells split into at most REGEN_SHARDS shards of
    neighbouring cells (runs of the cells in geohash order, so each shard reads one area).
    The run is recorded as started; each shard reports through ``run_shard``."""
    todo = sorted(store.active_cells(since=now - settings.active_cell_ttl_s))
    shards = split_cells(todo, min(settings.regen_shards, len(todo)))
    run_id = f"{int(now * 1000)}"
    store.begin_regen_run(run_id, len(shards), len(todo), now)
    if not shards:      # nothing to rebuild: the run is complete as planned
        record_run(store, settings, {"cells": 0, "shards": 0, "written": 0, "skipped": 0,
                                     "ads": 0, "duration_s": 0.0, "finished_at": now}, now, rng)
    return run_id, shards


def split_cells(cells: Sequence[str], count: int, leeway: float = 0.2) -> list[list[str]]:
    """``cells`` (in geohash order) in ``count`` runs of about equal length, each cut where
    two neighbours in the order lie farthest apart within ``leeway`` of a shard's length of
    the even cut: between two cities rather than across one, so that no area is read by two
    shards.

    >>> [len(s) for s in split_cells(["u09tv", "u09tw", "u09ty", "xn76c", "xn76f"], 2)]
    [3, 2]
    """
    if not cells:
        return []
    if count <= 1:
        return [list(cells)]
    centres = np.array([geo.decode(c) for c in cells])
    apart = geo.haversine_km(centres[:-1, 0], centres[:-1, 1], centres[1:, 0], centres[1:, 1])
    size = len(cells) / count
    cuts = [0]
    for k in range(1, count):           # cut c: a shard ends before cells[c]
        lo = max(cuts[-1] + 1, math.ceil((k - leeway) * size))
        hi = max(lo, min(len(cells) - (count - k), math.floor((k + leeway) * size)))
        cuts.append(lo + int(np.argmax(apart[lo - 1:hi])))
    cuts.append(len(cells))
    return [list(cells[a:b]) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def run_shard(store: Store, settings: Settings, run_id: str, index: int, cells: Sequence[str],
              now: float, rng: np.random.Generator) -> dict[str, Any]:
    """Rebuild one shard's cells, an area at a time (``shard_areas``): each area's ads are
    read once (only the ads within reach of its cells) with the category priors the last
    learning stored, its feeds built and written before the next area is read, so that
    Redis serves one worker's reads while the other workers compute. Then report; the shard
    that completes the run records it as a whole. A shard run again (a redelivered task)
    rebuilds its cells again but reports once."""
    started = time.perf_counter()
    written = skipped = ads = 0
    for area_cells, circles in shard_areas(cells, settings):
        def snapshot(circles: list[tuple[float, float, float]] = circles
                     ) -> tuple[str, Snapshot, PriorRates]:
            found = store.ads_within(circles)
            older = unserialled(found.ads, now)
            if older:
                reindex_ads(store, settings, older, now)
                found = store.ads_within(circles)
            snap = area_snapshot(found, now, settings)
            return found.epoch, snap, stored_priors(store, settings, snap.categories,
                                                    snapshot_regions(snap, settings))

        done = regenerate_cells(store, settings, area_cells, now, rng, snapshot)
        written, skipped, ads = written + done[0], skipped + done[1], ads + done[2]
    report = {"shard": index, "cells": len(cells), "written": written, "skipped": skipped,
              "ads": ads, "duration_s": round(time.perf_counter() - started, 4),
              "finished_at": now}
    done_shards, total, completed = store.finish_shard(run_id, index, report)
    if completed:
        run = store.regen_run(run_id) or {}
        shards = list(run.get("reports", {}).values())
        whole: dict[str, float | int] = {
            "cells": int(run.get("cells", 0)), "shards": total,
            **{k: sum(int(r[k]) for r in shards) for k in ("written", "skipped", "ads")},
            "duration_s": round(time.time() - float(run.get("started_at", now)), 4),
            "finished_at": now}
        record_run(store, settings, whole, now, rng)
    return {**report, "run_id": run_id, "shards_done": done_shards, "shards": total}


AREA_MIN_CELLS = 500   # a shard's areas are read in batches of at least this many cells


def shard_areas(cells: Sequence[str], settings: Settings, min_cells: int | None = None
                ) -> list[tuple[list[str], list[tuple[float, float, float]]]]:
    """A shard's cells in batches, each with the circles that hold every ad within reach of
    its cells: the covering areas (``covering_areas``) in geohash order, each joined to the
    batch before it while that batch has fewer than ``min_cells`` (default AREA_MIN_CELLS)
    cells (a batch costs a few round trips of its own) or one of its circles overlaps the
    area's (the ads they share are then read once)."""
    min_cells = AREA_MIN_CELLS if min_cells is None else min_cells
    batches: list[tuple[list[str], list[tuple[float, float, float]]]] = []
    for members, circle in covering_areas(cells, settings):
        if batches and (len(batches[-1][0]) < min_cells or _overlaps(circle, batches[-1][1])):
            batches[-1][0].extend(members)
            batches[-1][1].append(circle)
        else:
            batches.append((list(members), [circle]))
    return batches


def _overlaps(circle: tuple[float, float, float],
              others: Sequence[tuple[float, float, float]]) -> bool:
    """Whether ``circle`` shares ground with any of ``others`` (their ads are read together,
    once, rather than twice)."""
    lat, lon, radius = circle
    return any(geo.haversine_km(lat, lon, o_lat, o_lon) < radius + o_radius
               for o_lat, o_lon, o_radius in others)


def covering_areas(cells: Sequence[str], settings: Settings,
                   precisions: Sequence[int] = (2, 3, 4, 5)
                   ) -> list[tuple[list[str], tuple[float, float, float]]]:
    """``cells`` grouped by a geohash prefix, in prefix order, each group with a circle
    (lat, lon, radius_km) that holds every ad within reach of its cells, a touch wider than
    needed (Redis measures on a slightly larger sphere). The prefix length is the one whose
    circles cover the least area (overlapping circles read the same ads twice; large ones
    read ads no cell needs)."""
    options = [_areas_by_prefix(cells, settings, p) for p in precisions]
    return min(options, key=lambda areas: sum(r * r for _, (_, _, r) in areas))


def _areas_by_prefix(cells: Sequence[str], settings: Settings, precision: int
                     ) -> list[tuple[list[str], tuple[float, float, float]]]:
    groups: dict[str, list[str]] = {}
    for cell in cells:
        groups.setdefault(cell[:precision], []).append(cell)
    areas = []
    for _, members in sorted(groups.items()):
        lat, lon, reach_km = candidate_reach(members, settings)
        m_lat, m_lon = geo.middle_point(geo.unit_vectors(lat, lon))
        radius = float((geo.haversine_km(m_lat, m_lon, lat, lon) + reach_km).max())
        areas.append((members, (m_lat, m_lon, radius * SEARCH_SLACK + 0.01)))
    return areas


def maybe_learn_priors(store: Store, settings: Settings, now: float) -> bool:
    """In a sharded deployment (whose shards read only their own areas), learn the category
    priors from the whole catalogue when the stored ones are older than PRIORS_MAX_AGE_S.
    True when it learnt them."""
    learnt_at = store.job_status("priors").get("finished_at")
    if learnt_at is not None and now - float(learnt_at) < settings.priors_max_age_s:
        return False
    started = time.perf_counter()
    snapshot = load_snapshot(store, settings, now)
    learn_priors(store, settings, snapshot)
    store.record_job("priors", {"ads": len(snapshot), "finished_at": now,
                                "duration_s": round(time.perf_counter() - started, 4)})
    return True


class CellUnavailable(Exception):
    """A cell's feed could not be built from a steady catalogue (it kept changing)."""


def build_one_cell(store: Store, cell: str, settings: Settings, now: float,
                   rng: np.random.Generator) -> bytes:
    """A cell's feed built on demand (a cache miss), with the same code as the beat run, and
    stored. One way through: read everything the cell needs (``Store.cell_inputs``), build
    in memory, write. A build that the catalogue changed under is never served: after
    MAX_ATTEMPTS such builds, CellUnavailable."""
    lat, lon = geo.decode(cell)
    radius_km = candidate_radius_km(cell, settings) * SEARCH_SLACK
    for _ in range(MAX_ATTEMPTS):
        inputs = store.cell_inputs(cell, lat, lon, radius_km, settings.reward_model,
                                   2 * len(STRATEGIES), strategy_rows([cell], settings)[0],
                                   regions_around(cell, settings))
        older = unserialled(inputs.ads, now)
        if older:      # written by an older version: rewritten, then read again
            reindex_ads(store, settings, older, now)
            continue
        packed = cell_feed(inputs, cell, settings, now, rng)
        if store.write_feeds(inputs.epoch, {cell: packed}, settings.feed_ttl_s):
            return packed
    raise CellUnavailable(cell)


def regions_around(cell: str, settings: Settings) -> list[str]:
    """The regions a cell's candidates may lie in: those that touch the circle of its
    candidates' reach (``candidate_radius_km``, with the search's slack); none without
    REGION_PRECISION.

    >>> from config import load_settings
    >>> regions_around("u09tvw", load_settings({}))
    ['u09t', 'u09w']
    """
    if not 0 < settings.region_precision < len(cell):
        return []
    lat, lon = geo.decode(cell)
    try:
        found = geo.cells_covering(lat, lon, candidate_radius_km(cell, settings) * SEARCH_SLACK,
                                   settings.region_precision)
    except ValueError:
        found = []
    if 0 < len(found) <= MISS_REGIONS:
        return found
    # regions far smaller than the reach (REGION_PRECISION near GEOHASH_PRECISION): a miss
    # reads its own and the eight around it, the farther candidates taking their category's
    # priors everywhere
    region = cell[:settings.region_precision]
    return [region, *geo.neighbours(region)]


MISS_REGIONS = 25   # the most regions' priors a cell built on a miss reads


def cell_feed(inputs: CellInputs, cell: str, settings: Settings, now: float,
              rng: np.random.Generator) -> bytes:
    """One cell's packed feed from what the store read for it (pure)."""
    snapshot = area_snapshot(inputs, now, settings)
    rates = priors_of(inputs, settings, snapshot.categories,
                      [r for r in snapshot_regions(snapshot, settings)
                       if r in inputs.regional_priors])
    probabilities = probabilities_of(inputs.strategies, settings, now, rng,
                                     strategy_rows([cell], settings)[1])
    return build_feeds(snapshot, [cell], probabilities, rates, settings, rng, now)[cell]
