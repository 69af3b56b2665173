"""The service's bandit in process, fed by simulated users, for millions of impressions.

Each policy runs a twin of the service: the same ``bandit`` functions on the same inputs
(decayed evidence, empirical-Bayes category priors, posteriors, K Thompson variants, the
strategy orders and strategy probabilities), the same candidates per geohash cell
(``pipeline.learning.regenerate.candidate_radius_km`` around the cell's centre) and the same
serve-time steps as ``pipeline.serving.feed`` (a strategy drawn with the cell's probabilities, a
variant, the exact distance filter, the screened strategies' reorder, the employer rule, the
top ``limit``). What
is glue here is Redis: the sums live in arrays, and a whole rollup interval's feeds are
served, answered and counted as one batch of arrays.

Time moves in rollup intervals: ``feeds_per_s x ROLLUP_INTERVAL_S`` feeds are served with
the feeds as they stand, their events are rolled up at the interval's end, and every
``REGEN_INTERVAL_S`` the active cells are rebuilt. A cell without a feed (or one older than
FEED_TTL_S) is built when first asked for, as the web does on a miss.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

import geo
from bandit import (
    SCREENED,
    Candidates,
    Evidence,
    PriorRates,
    PriorSpec,
    RegionSums,
    StrategyPrior,
    ad_posterior,
    decay_factor,
    empirical_rates,
    exposure_weight,
    order_sources,
    regional_rates,
    screen_keys,
    screen_orders,
    strategy_orders,
    strategy_probabilities,
)
from bandit.diversity import WINDOW, breaks_rule, diversified, diversify_orders
from bandit.position import (
    BINS,
    PositionCurve,
    effective_pairs,
    fit_curve,
    pair_counts,
    position_bin,
)
from bandit.posterior import AdPosterior
from bench.sim.world import Outcomes, World, top_valid
from config import Settings
from pipeline.learning.examination import settle_s
from pipeline.learning.regenerate import (
    STRATEGY_DRAWS,
    candidate_radius_km,
    prior_spec,
    strategy_rows,
)

START = 1_800_000_000.0  # the simulated clock's start (epoch seconds)
THOMPSON_WITH_STRATEGIES = "thompson+strategies"
PER_REQUEST = "thompson-per-request"
PER_REQUEST_AT_REGEN = "thompson-per-request-regen"
BETA11 = "beta11-per-request"
BETA11_AT_REGEN = "beta11-per-request-regen"
GREEDY = "greedy"
ORACLE = "oracle"
RANDOM = "random"
ANY_EMPLOYER = "thompson+strategies-any-employer"


@dataclass(frozen=True)
class Policy:
    """How a twin serves. With ``strategies``, the service's way: precomputed feeds per cell,
    ordered by those FEED_STRATEGIES (``()``: the settings' own). Without, a baseline that
    ranks every request afresh over every ad in reach: by a Thompson draw, or by the
    posterior mean (``greedy``), from a posterior refreshed at every rollup (``fresh``) or only
    at each regeneration; ``plain`` takes Beta(1, 1) on applies per impression instead of the
    service's model (no funnel, no position weights, no learnt priors, no decay). The
    service's way keeps MAX_PER_EMPLOYER unless ``employer_rule`` is off; the baselines do
    not keep it."""

    strategies: tuple[str, ...] | None = None
    greedy: bool = False
    fresh: bool = True
    plain: bool = False
    employer_rule: bool = True

    @property
    def per_request(self) -> bool:
        return self.strategies is None


POLICIES: dict[str, Policy] = {
    THOMPSON_WITH_STRATEGIES: Policy(()),
    "thompson": Policy(("thompson",)),
    PER_REQUEST: Policy(),
    PER_REQUEST_AT_REGEN: Policy(fresh=False),
    BETA11: Policy(plain=True),
    BETA11_AT_REGEN: Policy(plain=True, fresh=False),
    GREEDY: Policy(greedy=True),
    "popular": Policy(("popular",)),
    "egreedy": Policy(("egreedy",)),
    RANDOM: Policy(("random",)),
    ANY_EMPLOYER: Policy((), employer_rule=False),
}
# a policy that differs from another by one rule draws that one's random numbers, so that the
# two runs differ only by what the rule changes (the rule itself draws none)
PAIRED = {ANY_EMPLOYER: THOMPSON_WITH_STRATEGIES}
PLAIN_PRIOR = PriorSpec(apply_rate=0.5, view_rate=0.75, strength=2.0)   # Beta(1, 1)
NO_DECAY_S = 1e15


def plain_settings(settings: Settings) -> Settings:
    """The settings of the plain Beta(1, 1) baseline: applies per impression, every
    impression counted fully, nothing forgotten."""
    return settings.model_copy(update={"reward_model": "direct", "position_bias_exponent": 0.0,
                                       "stats_half_life_s": NO_DECAY_S})


@dataclass(frozen=True)
class Traffic:
    """How much traffic, and how it maps onto the service's intervals."""

    feeds: int
    limit: int = 10
    radius_km: float = 5.0
    feeds_per_s: float = 20.0

    def batch(self, settings: Settings) -> int:
        """Feeds per rollup interval."""
        return max(1, round(self.feeds_per_s * settings.rollup_interval_s))

    def regen_every(self, settings: Settings) -> int:
        """Rollups per regeneration."""
        return max(1, round(settings.regen_interval_s / settings.rollup_interval_s))


@dataclass(frozen=True)
class Cells:
    """The geohash cells the users ask from, and each one's candidates (every ad within
    reach of the cell, as the service's regeneration finds them)."""

    names: list[str]
    candidates: list[np.ndarray]      # ad positions within reach of the cell, as the service

    @classmethod
    def around(cls, world: World, names: Sequence[str], settings: Settings) -> Cells:
        reach = [candidate_radius_km(c, settings) for c in names]
        index = geo.PointIndex(world.lat, world.lon, query_radius_km=max(reach))
        return cls(list(names), [index.query(*geo.decode(c), r)
                                 for c, r in zip(names, reach, strict=True)])

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class Decayed:
    """Sums that halve every half-life, all brought up to date together (the rollup's Lua
    script keeps one timestamp per field; here every field moves at once)."""

    values: np.ndarray
    updated_at: float

    def at(self, now: float, half_life_s: float) -> np.ndarray:
        return self.values * decay_factor(now - self.updated_at, half_life_s)

    def add(self, now: float, half_life_s: float, adds: np.ndarray) -> None:
        self.values = self.at(now, half_life_s) + adds
        self.updated_at = now


def choose_many(probabilities: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``bandit.choose`` for many rows at once: the index ``u[i]`` picks in row i.

    >>> choose_many(np.array([[0.2, 0.5, 0.3], [0.2, 0.5, 0.3]]), np.array([0.1, 0.69]))
    array([0, 1])
    """
    cumulative = np.cumsum(probabilities, axis=1)
    index = (cumulative <= (u * cumulative[:, -1])[:, None]).sum(axis=1)
    return np.minimum(index, probabilities.shape[1] - 1)


def employer_rule(shown: np.ndarray, employers: np.ndarray, cap: int, limit: int) -> np.ndarray:
    """``pipeline.serving.feed.employer_rule`` for a batch: each row's candidates (ad
    positions, -1 pads) cut to ``limit`` that keep at most ``cap`` ads of one employer among
    any 10 consecutive positions; an ad the rule cannot place is left out.

    >>> employer_rule(np.array([[0, 1, 2, 3], [0, 3, 1, 2]]), np.array([5, 5, 5, 6]), 2, 3)
    array([[0, 1, 3],
           [0, 3, 1]])
    """
    codes = np.where(shown >= 0, employers[np.maximum(shown, 0)], 0)
    out = shown[:, :limit].copy()
    for r in np.flatnonzero(breaks_rule(codes[:, :limit], cap)):
        length = int((shown[r] >= 0).sum())
        kept = diversified(codes[r, :length].tolist(), cap, limit=limit)
        out[r] = -1
        out[r, :len(kept)] = shown[r, kept]
    return out


def first_kept(keep: np.ndarray, limit: int) -> np.ndarray:
    """(rows, limit): where each row's first ``limit`` True entries are, -1 pads.

    >>> first_kept(np.array([[True, False, True], [False, False, True]]), 3).tolist()
    [[0, 2, -1], [2, -1, -1]]
    """
    picks = np.argsort(~keep, axis=1, kind="stable")[:, :limit]
    out = np.where(np.take_along_axis(keep, picks, axis=1), picks, -1)
    if out.shape[1] < limit:
        out = np.pad(out, ((0, 0), (0, limit - out.shape[1])), constant_values=-1)
    return out


@dataclass(frozen=True)
class Served:
    shown: np.ndarray                   # (feeds, limit) ad positions, -1 pads
    strategy: np.ndarray                # (feeds,) index into the twin's strategies
    propensity: np.ndarray              # (feeds,)
    unruled: np.ndarray | None = None   # with the employer rule: the feeds without it
    # with ``Twin.counterfactual``: each feed as every strategy would have served it (feeds,
    # strategies, limit), the probabilities it was drawn with, and those the cell would have
    # had with its evidence pooled straight into the global (no regions)
    by_strategy: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    unpooled: np.ndarray | None = None


class Twin:
    """One policy's copy of the service's state and steps."""

    def __init__(self, world: World, settings: Settings, cells: Cells, policy: Policy,
                 rng: np.random.Generator, run_s: float = 0.0) -> None:
        self.world, self.cells, self.rng, self.policy = world, cells, rng, policy
        self.settings = plain_settings(settings) if policy.plain else settings
        self.prior = PLAIN_PRIOR if policy.plain else prior_spec(settings)
        self.cap = (settings.max_per_employer
                    if policy.employer_rule and not policy.per_request else 0)
        self.strategies = (policy.strategies or tuple(settings.feed_strategies)
                           if not policy.per_request else ("thompson",))
        self.sources = order_sources(self.strategies)
        self.source_of = np.array([self.sources.index("thompson" if name in SCREENED else name)
                                   for name in self.strategies])
        n, s = len(world), len(self.strategies)
        self.evidence = Decayed(np.zeros((4, n)), START)
        self.epoch = np.zeros((2, n, BINS))     # this epoch's impressions and views by bin
        self.ended: list[tuple[float, np.ndarray]] = []   # epochs over: (end, counts)
        self.pairs = Decayed(np.zeros((2, BINS, BINS)), START)
        self.curve = PositionCurve.prior().curve   # the learnt examination curve
        # the strategy bandit's sums: a row per cell, per region (REGION_PRECISION), global
        fields, self.region_of = strategy_rows(cells.names, self.settings)
        self.regions = len(fields) - len(cells) - 1
        self.strategy_sums = Decayed(np.zeros((len(fields), 2 * s)), START)
        # each ad's region, for the regional category priors
        precision = self.settings.region_precision
        self.ad_region_names, self.ad_region = (
            np.unique(geo.encode_many(world.lat, world.lon, precision), return_inverse=True)
            if precision and not policy.plain else (np.array([]), None))
        self.rates = PriorRates.fallback(self.settings.reward_model, self.prior)
        # an ad arriving during the run is created then; one that leaves expires then
        arrives, leaves = np.isfinite(world.arrive), np.isfinite(world.leave)
        self.live_from = np.where(arrives, START + np.where(arrives, world.arrive, 0) * run_s,
                                  -np.inf)
        self.live_until = np.where(leaves, START + np.where(leaves, world.leave, 0) * run_s,
                                   np.inf)
        self.created_at = np.where(arrives, self.live_from, world.created_at(START))
        k, length = self.settings.feed_variants, self.settings.feed_length
        self.orders = np.full((len(cells), len(self.sources), k, length), -1, dtype=np.int32)
        # what the screened strategies sort by, as the cells' feeds were built
        self.keys = {name: np.zeros((len(cells), k, length))
                     for name in screen_keys(self.strategies, Candidates(*np.zeros((3, 0))))}
        # with the employer rule, the orders and keys as they would be without it too (what
        # a feed would have been, for the rule's cost)
        self.raw_orders = self.orders.copy() if self.cap else self.orders
        self.raw_keys = {n: v.copy() for n, v in self.keys.items()} if self.cap else self.keys
        self.probabilities = np.zeros((len(cells), s))
        self.counterfactual = False     # serve every strategy's feed too (``Served``)
        self.counterfactual_rng = np.random.default_rng([0, 7])
        self.unpooled = np.zeros((len(cells), s))
        self.generated_at = np.full(len(cells), -np.inf)
        self.last_request = np.full(len(cells), -np.inf)
        self.posterior: AdPosterior | None = None
        self.arrivals_seen = START   # ads live from before this are in the first feeds

    def live(self, now: float) -> np.ndarray:
        return (self.live_from <= now) & (now < self.live_until)

    # -- the evidence and the posterior ------------------------------------------------
    def current_evidence(self, now: float) -> Evidence:
        return Evidence(*self.evidence.at(now, self.settings.stats_half_life_s))

    def learn_priors(self, now: float) -> PriorRates:
        """The regeneration's empirical-Bayes priors, from the live ads (its snapshot's)."""
        if self.policy.plain:
            return self.rates
        s = self.settings
        live = self.live(now)
        evidence = Evidence(*self.evidence.at(now, s.stats_half_life_s)[:, live])
        self.rates = empirical_rates(evidence, self.world.category[live], s.reward_model,
                                     s.save_weight, self.prior)
        if self.ad_region is not None:
            self.rates = regional_rates(evidence, self.world.category[live],
                                        self.ad_region[live], self.ad_region_names.tolist(),
                                        s.reward_model, s.save_weight, self.rates)
        return self.rates

    def ad_posterior(self, now: float) -> AdPosterior:
        s = self.settings
        return ad_posterior(self.current_evidence(now),
                            self.rates.for_ads(self.world.category, self.ad_region),
                            s.reward_model, s.save_weight)

    # -- regeneration ------------------------------------------------------------------
    def probabilities_for(self, cells: np.ndarray, now: float, pooled: bool = True,
                          rng: np.random.Generator | None = None) -> np.ndarray:
        """The cells' strategy probabilities, their evidence pooled cell -> region -> global
        (``pooled``, as the settings say), or cell -> global."""
        s = self.settings
        sums = self.strategy_sums.at(now, s.stats_half_life_s)
        width = len(self.strategies)
        prior = StrategyPrior(strength=s.strategy_prior_strength,
                              cell_min_feeds=s.strategy_cell_min_feeds, floor=s.strategy_floor)
        regions = None
        if self.region_of is not None and pooled:
            rows = sums[len(self.cells):-1]
            regions = RegionSums(self.region_of[cells], rows[:, :width], rows[:, width:])
        return strategy_probabilities(sums[cells, :width], sums[cells, width:], sums[-1, :width],
                                      sums[-1, width:], prior, rng or self.rng, STRATEGY_DRAWS,
                                      regions)

    def build(self, cells: np.ndarray, now: float) -> None:
        """Rebuild these cells' feeds from the stored priors: their strategy probabilities
        (``cell_probabilities``), then their orders (``build_feeds``)."""
        if len(cells) == 0:
            return
        self.probabilities[cells] = self.probabilities_for(cells, now)
        if self.counterfactual:         # on a stream of its own: the run's draws unchanged
            self.unpooled[cells] = self.probabilities_for(cells, now, pooled=False,
                                                          rng=self.counterfactual_rng)
        self.build_orders(cells, now)

    def build_orders(self, cells: np.ndarray, now: float) -> None:
        """``build_feeds``: one set of K posterior draws per ad serves every cell; each
        strategy orders a cell's live candidates, keeping the top FEED_LENGTH."""
        s = self.settings
        posterior = self.ad_posterior(now)
        draws = posterior.sample(s.feed_variants, self.rng)
        mean = posterior.mean()
        live = self.live(now)
        for c in cells.tolist():
            found = self.cells.candidates[c]
            cand = found[live[found]]
            candidates = Candidates(draws[cand], mean[cand], self.created_at[cand])
            raw = strategy_orders(self.strategies, candidates, s.feed_length, self.rng,
                                  s.epsilon)
            keys = screen_keys(self.strategies, candidates)
            self.keep_orders(self.orders, self.keys, c, cand, keys,
                             {name: diversify_orders(rows, self.world.employer[cand], self.cap)[0]
                              for name, rows in raw.items()} if self.cap else raw)
            if self.cap:
                self.keep_orders(self.raw_orders, self.raw_keys, c, cand, keys, raw)
        self.generated_at[cells] = now

    def keep_orders(self, into: np.ndarray, keys_into: dict[str, np.ndarray], c: int,
                    cand: np.ndarray, keys: dict[str, np.ndarray],
                    orders: dict[str, np.ndarray]) -> None:
        """A cell's orders (by candidate) as ad positions, and the screened strategies' keys
        in the order of its Thompson variants."""
        into[c] = -1
        for i, name in enumerate(self.sources):
            rows = orders[name]
            into[c, i, :rows.shape[0], :rows.shape[1]] = cand[rows]
        thompson = orders.get("thompson")
        for name, key in keys.items():
            keys_into[name][c, :, :thompson.shape[1]] = key[thompson]

    def regenerate(self, now: float) -> None:
        """The beat's regeneration: priors learnt again, every active cell rebuilt."""
        if self.settings.position_bias_exponent is None:
            self.fold_epoch(now)
        self.learn_priors(now)
        if self.policy.per_request:
            self.posterior = self.ad_posterior(now)
            return
        active = np.flatnonzero(self.last_request >= now - self.settings.active_cell_ttl_s)
        self.build(active, now)

    # -- serving -----------------------------------------------------------------------
    def serve(self, cell: np.ndarray, user_xyz: np.ndarray, within: np.ndarray, limit: int,
              radius_km: float, now: float) -> Served:
        """A batch of feed requests: ``cell`` (index into the cells), the users' unit
        vectors and which ads are within their radius."""
        self.last_request[cell] = now
        if self.policy.per_request:
            return self._serve_per_request(within & self.live(now)[None, :], limit, now)
        self.void_arrivals(now)
        stale = np.unique(cell[self.generated_at[cell] < now - self.settings.feed_ttl_s])
        self.build(stale, now)                                   # a miss: built at once
        feeds = len(cell)
        probabilities = self.probabilities[cell]
        strategy = (choose_many(probabilities, self.rng.random(feeds))
                    if len(self.strategies) > 1 else np.zeros(feeds, dtype=np.int64))
        variant = self.rng.integers(self.settings.feed_variants, size=feeds)
        propensity = probabilities[np.arange(feeds), strategy]
        served = self.feeds(cell, strategy, variant, user_xyz, radius_km, now, limit)
        if self.counterfactual:
            every = np.stack([self.feeds(cell, np.full(feeds, i), variant, user_xyz, radius_km,
                                         now, limit)[0]
                              for i in range(len(self.strategies))], axis=1)
            return Served(served[0], strategy, propensity, served[1], every, probabilities,
                          self.unpooled[cell])
        return Served(served[0], strategy, propensity, served[1])

    def feeds(self, cell: np.ndarray, strategy: np.ndarray, variant: np.ndarray,
              user_xyz: np.ndarray, radius_km: float, now: float,
              limit: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(feeds, limit): what each feed shows with these strategies and variants, and,
        with the employer rule, what it would have shown without it."""
        within_reach = (cell, strategy, variant, user_xyz, radius_km, now)
        if not self.cap:
            return self.candidates(self.orders, self.keys, *within_reach, limit), None
        shown = self.candidates(self.orders, self.keys, *within_reach, 2 * limit)
        unruled = self.candidates(self.raw_orders, self.raw_keys, *within_reach, limit)
        return employer_rule(shown, self.world.employer, self.cap, limit), unruled

    def candidates(self, orders: np.ndarray, keys: dict[str, np.ndarray], cell: np.ndarray,
                   strategy: np.ndarray, variant: np.ndarray, user_xyz: np.ndarray,
                   radius_km: float, now: float, wanted: int) -> np.ndarray:
        """(feeds, wanted): each feed's first ``wanted`` ads of its variant's order within
        reach and live, a screened strategy's screens reordered by its key."""
        order = orders[cell, self.source_of[strategy], variant]   # (feeds, FEED_LENGTH)
        dot = np.einsum("fld,fd->fl", self.world.xyz[np.maximum(order, 0)], user_xyz)
        keep = ((order >= 0) & (dot >= geo.km_to_dot(radius_km))
                & (self.live_until[np.maximum(order, 0)] > now))
        picks = first_kept(keep, wanted)
        shown = np.where(picks >= 0, np.take_along_axis(order, np.maximum(picks, 0), axis=1), -1)
        for i, name in enumerate(self.strategies):
            rows = np.flatnonzero(strategy == i)
            if name not in SCREENED or len(rows) == 0:
                continue
            where = np.maximum(picks[rows], 0)
            key = (np.take_along_axis(dot[rows], where, axis=1) if name == "nearest"
                   else np.take_along_axis(keys[name][cell[rows], variant[rows]], where,
                                           axis=1))
            by = screen_orders(np.where(picks[rows] >= 0, key, -np.inf))
            shown[rows] = np.take_along_axis(shown[rows], by, axis=1)
        return shown

    def void_arrivals(self, now: float) -> None:
        """The catalogue's write of a new ad voids the feeds of the cells that may list it,
        which are rebuilt on their next request (``pipeline.catalogue.upsert_ads``): the
        ads that arrived since the last call do that here."""
        arrived = np.flatnonzero((self.live_from > self.arrivals_seen) & (self.live_from <= now))
        self.arrivals_seen = now
        if len(arrived) == 0:
            return
        for c, found in enumerate(self.cells.candidates):
            if np.isin(found, arrived, assume_unique=True).any():
                self.generated_at[c] = -np.inf

    def _serve_per_request(self, reachable: np.ndarray, limit: int, now: float) -> Served:
        if self.posterior is None:
            self.posterior = self.ad_posterior(now)
        if self.policy.greedy:
            scores = np.broadcast_to(self.posterior.mean(), reachable.shape)
        else:
            scores = self.posterior.sample(len(reachable), self.rng).T    # (feeds, ads)
        shown = top_valid(np.where(reachable, scores, -1.0), limit)
        return Served(shown, np.zeros(len(reachable), dtype=np.int64), np.ones(len(reachable)))

    # -- rollup ------------------------------------------------------------------------
    def exposure(self, positions: np.ndarray) -> np.ndarray:
        """What an impression at each position counts for: the learnt curve, unless
        POSITION_BIAS_EXPONENT fixes it."""
        exponent = self.settings.position_bias_exponent
        if exponent is None:
            return self.curve[position_bin(positions)]
        return exposure_weight(positions, exponent)

    def learn_positions(self, shown: np.ndarray, positions: np.ndarray, impressed: np.ndarray,
                        viewed: np.ndarray) -> None:
        """Count this epoch's impressions and views by ad and position, as the rollup does."""
        n = len(self.world)
        cell = shown * BINS + position_bin(positions)
        self.epoch += np.stack([np.bincount(cell[mask], minlength=n * BINS)
                                for mask in (impressed, viewed)]).reshape(2, n, BINS)

    def fold_epoch(self, now: float) -> None:
        """At a regeneration an epoch ends; those that ended at least ``settle_s`` ago are
        folded: their pairs join the decayed ones, and the examination curve is fitted
        again, as ``pipeline.learning.examination.fold_epochs`` does."""
        s = self.settings
        self.ended.append((now, self.epoch))
        self.epoch = np.zeros_like(self.epoch)
        due = [counts for end, counts in self.ended if now - end >= settle_s(s)]
        if not due:
            return
        self.ended = [(end, counts) for end, counts in self.ended if now - end < settle_s(s)]
        for counts in due:
            self.pairs.add(now, s.stats_half_life_s, pair_counts(*counts))
        self.curve = fit_curve(effective_pairs(self.pairs.at(now, s.stats_half_life_s)))


    def rollup(self, cell: np.ndarray, served: Served, outcomes: Outcomes, served_at: np.ndarray,
               now: float) -> None:
        """Count a batch's events and feeds at ``now``, as ``run_rollup`` does: impressions
        (the slots the devices posted one for) weighted by position and age, views, saves
        and applies by age; served feeds and the applies of each feed credited to its cell's
        and the global strategy counts."""
        s = self.settings
        shown = served.shown
        impressed = outcomes.impressed
        age = decay_factor(now - served_at, s.stats_half_life_s)[:, None] * np.ones(shown.shape)
        positions = np.broadcast_to(np.arange(1, shown.shape[1] + 1), shown.shape)
        n = len(self.world)
        adds = np.stack([
            np.bincount(shown[impressed], (age * self.exposure(positions))[impressed],
                        minlength=n),
            np.bincount(shown[outcomes.viewed], age[outcomes.viewed], minlength=n),
            np.bincount(shown[outcomes.saved], age[outcomes.saved], minlength=n),
            np.bincount(shown[outcomes.applied], age[outcomes.applied], minlength=n)])
        self.evidence.add(now, s.stats_half_life_s, adds)
        if s.position_bias_exponent is None:
            self.learn_positions(shown, positions, impressed, outcomes.viewed)
        if self.policy.per_request:
            if self.policy.fresh:
                self.posterior = self.ad_posterior(now)
            return
        width = len(self.strategies)
        cells = len(self.cells)
        applies = (outcomes.applied * age).sum(axis=1)
        feed_age = age[:, 0]
        sums = np.zeros((cells + self.regions + 1, 2 * width))
        for column, weights in ((served.strategy, feed_age),
                                (served.strategy + width, applies)):
            flat = np.bincount(cell * 2 * width + column, weights, minlength=cells * 2 * width)
            sums[:cells] += flat.reshape(cells, 2 * width)
        if self.region_of is not None:          # each cell's sums into its region's too
            placed = self.region_of >= 0
            np.add.at(sums, cells + self.region_of[placed], sums[:cells][placed])
        sums[-1] = sums[:cells].sum(axis=0)
        self.strategy_sums.add(now, s.stats_half_life_s, sums)


@dataclass
class Track:
    """What one policy did, per rollup interval (batch)."""

    impressions: list[int] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)     # expected applies (true rates)
    applies: list[int] = field(default_factory=list)        # sampled
    views: list[int] = field(default_factory=list)
    strategy_feeds: list[list[int]] = field(default_factory=list)       # per strategy
    strategy_impressions: list[list[int]] = field(default_factory=list)
    strategy_expected: list[list[float]] = field(default_factory=list)
    crowded: list[int] = field(default_factory=list)   # feeds with > 2 of one employer in 10
    largest: list[int] = field(default_factory=list)   # slots of the world's largest employer
    unruled: list[float] = field(default_factory=list)  # expected applies without the rule
    feed_value: list[np.ndarray] = field(default_factory=list)     # per feed, per batch
    feed_strategy: list[np.ndarray] = field(default_factory=list)  # per feed, per batch
    # with a counterfactual twin, per feed, per batch: the expected applies of the strategy
    # drawn as the cell's probabilities say, and as they would with no regions
    feed_pooled: list[np.ndarray] = field(default_factory=list)
    feed_unpooled: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0

    def record(self, world: World, shown: np.ndarray, outcomes: Outcomes | None,
               served: Served | None = None, strategies: int = 0, phase: int = 0,
               users: np.ndarray | None = None) -> None:
        value = world.slot_value(shown, phase, users)
        self.feed_value.append(value.sum(axis=1))
        if served is not None:
            self.feed_strategy.append(served.strategy)
        if served is not None and served.by_strategy is not None:
            assert served.probabilities is not None and served.unpooled is not None
            every = np.stack([world.slot_value(served.by_strategy[:, i], phase, users).sum(axis=1)
                              for i in range(served.by_strategy.shape[1])], axis=1)
            self.feed_pooled.append((served.probabilities * every).sum(axis=1))
            self.feed_unpooled.append((served.unpooled * every).sum(axis=1))
        self.impressions.append(int((shown >= 0).sum()))
        self.expected.append(float(value.sum()))
        self.applies.append(int(outcomes.applied.sum()) if outcomes else 0)
        self.views.append(int(outcomes.viewed.sum()) if outcomes else 0)
        codes = np.where(shown >= 0, world.employer[np.maximum(shown, 0)], 0)
        self.crowded.append(int(breaks_rule(codes[:, :WINDOW], 2).sum()))
        self.largest.append(int((codes == world.largest_employer).sum()))
        if served is not None and served.unruled is not None:
            self.unruled.append(float(world.slot_value(served.unruled, phase, users).sum()))
        if served is not None and strategies > 1:
            by = served.strategy
            self.strategy_feeds.append(np.bincount(by, minlength=strategies).tolist())
            self.strategy_impressions.append(
                np.bincount(by, (shown >= 0).sum(axis=1), minlength=strategies)
                .astype(int).tolist())
            self.strategy_expected.append(
                np.bincount(by, value.sum(axis=1), minlength=strategies).tolist())


@dataclass(frozen=True)
class FastRun:
    policies: dict[str, Track]
    strategies: tuple[str, ...]          # of thompson+strategies
    probabilities: list[list[float]]     # its traffic-weighted strategy probabilities, per batch
    batch_feeds: int
    regen_every: int
    cells: int
    seconds: float
    curve: np.ndarray | None = None      # thompson+strategies' learnt examination curve


def user_points(world: World, feeds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The users of a run, in order: the same for every policy and for both modes."""
    return world.users(feeds, np.random.default_rng([seed, 1]))


def run_fast(world: World, settings: Settings, traffic: Traffic, seed: int,
             policies: Sequence[str] = tuple(POLICIES),
             progress: Callable[[str], None] | None = None,
             counterfactual: bool = False) -> FastRun:
    """Serve ``traffic.feeds`` feeds with every policy and the oracle, to the same users;
    with ``counterfactual``, the service's twins also price every feed under each strategy
    (``Track.feed_pooled`` and ``feed_unpooled``)."""
    started = time.perf_counter()
    unknown = set(policies) - set(POLICIES)
    if unknown:
        raise ValueError(f"unknown policies {sorted(unknown)}; expected some of {list(POLICIES)}")
    lat, lon = user_points(world, traffic.feeds, seed)
    user_xyz = geo.unit_vectors(lat, lon)
    names, cell_of = np.unique(geo.encode_many(lat, lon, settings.geohash_precision),
                               return_inverse=True)
    cells = Cells.around(world, names.tolist(), settings)
    batch = traffic.batch(settings)
    regen_every = traffic.regen_every(settings)
    interval_s = settings.rollup_interval_s
    batches = -(-traffic.feeds // batch)
    run_s = batches * interval_s
    # each policy's random streams follow from its place in POLICIES, not in ``policies``,
    # so that a policy's figures do not change with the baselines run beside it
    stream = {name: list(POLICIES).index(PAIRED.get(name, name)) for name in policies}
    twins = {name: Twin(world, settings, cells, POLICIES[name],
                        np.random.default_rng([seed, 2, stream[name]]), run_s)
             for name in policies}
    behaviour = {name: np.random.default_rng([seed, 3, stream[name]]) for name in policies}
    for twin in twins.values():
        twin.counterfactual = counterfactual and not twin.policy.per_request
    oracle_behaviour = np.random.default_rng([seed, 3, len(POLICIES)])
    tracks = {name: Track() for name in [*policies, ORACLE]}
    probabilities: list[list[float]] = []
    report_every = max(1, batches // 10)
    for b in range(batches):
        lo, hi = b * batch, min(traffic.feeds, (b + 1) * batch)
        t0 = START + b * interval_s
        share = b / batches
        phase = world.phase_at(share)
        served_at = t0 + (np.arange(hi - lo) + 0.5) * interval_s / batch
        xyz, cell = user_xyz[lo:hi], cell_of[lo:hi]
        within = world.within(xyz, traffic.radius_km)
        best = world.oracle(within & world.live_at(share)[None, :], traffic.limit, phase)
        tracks[ORACLE].record(world, best, world.act(best, oracle_behaviour, phase, xyz),
                              phase=phase, users=xyz)
        now = t0 + interval_s
        for name, twin in twins.items():
            tick = time.perf_counter()
            served = twin.serve(cell, xyz, within, traffic.limit, traffic.radius_km, t0)
            outcomes = world.act(served.shown, behaviour[name], phase, xyz)
            tracks[name].record(world, served.shown, outcomes, served, len(twin.strategies),
                                phase, xyz)
            if name == THOMPSON_WITH_STRATEGIES:
                probabilities.append(twin.probabilities[cell].mean(axis=0).tolist())
            twin.rollup(cell, served, outcomes, served_at, now)
            if (b + 1) % regen_every == 0:
                twin.regenerate(now)
            tracks[name].seconds += time.perf_counter() - tick
        if progress and ((b + 1) % report_every == 0 or b + 1 == batches):
            progress(f"  {hi:,}/{traffic.feeds:,} feeds "
                     f"({time.perf_counter() - started:.0f} s)")
    default = twins.get(THOMPSON_WITH_STRATEGIES)
    learnt = default is not None and default.settings.position_bias_exponent is None
    return FastRun(tracks, default.strategies if default else (), probabilities, batch,
                   regen_every, len(cells), time.perf_counter() - started,
                   default.curve.copy() if learnt else None)


__all__ = ["POLICIES", "FastRun", "Policy", "Traffic", "Twin", "choose_many", "first_kept",
           "run_fast", "user_points"]
