"""The simulated city: job ads at real Berlin neighbourhoods, each with hidden true rates,
users who ask for feeds near where they are, and what they do with each ad shown.

A user shown an ad at position p examines it with probability ``b(p) = p ** -position_bias``;
an examined ad is viewed with the ad's view rate, a viewed ad applied to with its apply rate
(and saved with a rate tied to it). The rates are heterogeneous: most ads are ordinary, a
minority are clearly better, and categories differ, so that the service's empirical-Bayes
category priors have something to find. The whole world follows from one seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import geo
from pipeline.demo import COMPANY_A, COMPANY_B, COMPANY_C, ROLES, SENIORITY

# name: (lat, lon, share of ads, share of users); district centres, to a few hundred metres
NEIGHBOURHOODS: dict[str, tuple[float, float, float, float]] = {
    "mitte": (52.5200, 13.4050, 10, 6), "kreuzberg": (52.4970, 13.4100, 7, 6),
    "prenzlauer-berg": (52.5380, 13.4240, 6, 6), "friedrichshain": (52.5150, 13.4540, 6, 5),
    "neukoelln": (52.4810, 13.4350, 5, 6), "charlottenburg": (52.5160, 13.3040, 7, 5),
    "schoeneberg": (52.4840, 13.3530, 4, 4), "wedding": (52.5500, 13.3660, 3, 5),
    "moabit": (52.5300, 13.3430, 3, 3), "tempelhof": (52.4700, 13.3850, 2, 3),
    "steglitz": (52.4560, 13.3220, 3, 3), "wilmersdorf": (52.4870, 13.3200, 3, 3),
    "lichtenberg": (52.5130, 13.4990, 2, 4), "pankow": (52.5690, 13.4020, 2, 3),
    "treptow": (52.4890, 13.4700, 2, 3), "spandau": (52.5360, 13.2000, 2, 4),
    "koepenick": (52.4450, 13.5750, 1.5, 3), "marzahn": (52.5440, 13.5640, 1, 4),
    "reinickendorf": (52.5880, 13.3280, 1.5, 3), "zehlendorf": (52.4340, 13.2590, 1.5, 2),
}
CATEGORIES = tuple(ROLES)
# How much more (or less) often a viewer applies, by category (hospitality hires on the spot,
# engineering candidates look around).
APPLY_LIFT = {"engineering": 0.6, "hospitality": 1.3, "logistics": 1.2, "retail": 1.1,
              "care": 1.0, "office": 0.8}
KM_PER_DEG_LAT = 111.2


@dataclass(frozen=True)
class WorldSpec:
    """What the city is made of. Defaults give about 10 % views and 2 % applies per
    impression for an average ad at an average position of a 10-ad feed."""

    ads: int = 1000
    view_mean: float = 0.22            # P(view | examined), mean over ads
    view_concentration: float = 12.0   # Beta(mean * c, (1 - mean) * c): sd about 0.11
    apply_mean: float = 0.15           # P(apply | view) of an ordinary ad
    standout_share: float = 0.10       # the minority of clearly better ads ...
    standout_apply_mean: float = 0.45  # ... and their P(apply | view)
    apply_concentration: float = 15.0
    save_ratio: float = 0.5            # P(save | view) = save_ratio x P(apply | view)
    position_bias: float = 0.6         # b(p) = p ** -position_bias
    ad_spread_km: float = 1.2          # ads scatter this far (sd) around their neighbourhood
    user_spread_km: float = 1.5
    max_age_days: float = 30.0

    def examine(self, positions: np.ndarray) -> np.ndarray:
        """b(p): the probability that a user examines the ad at (1-based) position p."""
        return np.asarray(positions, dtype=np.float64) ** -self.position_bias


@dataclass(frozen=True)
class Outcomes:
    """What users did with each shown slot (aligned with the shown (feeds, limit) array)."""

    viewed: np.ndarray
    saved: np.ndarray
    applied: np.ndarray


@dataclass(frozen=True)
class World:
    spec: WorldSpec
    seed: int
    ad_ids: list[str]
    lat: np.ndarray
    lon: np.ndarray
    xyz: np.ndarray              # (n, 3) unit vectors
    category: np.ndarray         # index into CATEGORIES
    age_s: np.ndarray            # how long before the start each ad was created
    view_rate: np.ndarray        # P(view | examined)
    apply_rate: np.ndarray       # P(apply | view)
    save_rate: np.ndarray        # P(save | view)
    standout: np.ndarray         # bool: one of the clearly better ads
    titles: list[str] = field(repr=False)
    companies: list[str] = field(repr=False)

    def __len__(self) -> int:
        return len(self.lat)

    @property
    def value(self) -> np.ndarray:
        """P(apply | examined impression): what the oracle ranks by."""
        return self.view_rate * self.apply_rate

    def created_at(self, start: float) -> np.ndarray:
        return start - self.age_s

    def within(self, user_xyz: np.ndarray, radius_km: float) -> np.ndarray:
        """(users, ads) bool: the ad is within ``radius_km`` of the user. (einsum, not a
        matrix product: BLAS threads left spinning would slow the single-core run.)"""
        return np.einsum("ud,ad->ua", user_xyz, self.xyz) >= geo.km_to_dot(radius_km)

    def oracle(self, user_xyz: np.ndarray, radius_km: float, limit: int) -> np.ndarray:
        """(users, limit) ads by true value among those within the radius, best first (-1 pads
        where fewer are in reach). Best first is optimal, since b(p) falls with p."""
        scores = np.where(self.within(user_xyz, radius_km), self.value[None, :], -1.0)
        return top_valid(scores, limit)

    def slot_value(self, shown: np.ndarray) -> np.ndarray:
        """(feeds, limit) expected applies of each slot: b(p) x view rate x apply rate."""
        positions = np.arange(1, shown.shape[1] + 1)
        return np.where(shown >= 0, self.spec.examine(positions)[None, :]
                        * self.value[np.maximum(shown, 0)], 0.0)

    def act(self, shown: np.ndarray, rng: np.random.Generator) -> Outcomes:
        """Sample what users do with the shown slots (-1: an empty slot, nothing happens)."""
        ads = np.maximum(shown, 0)
        positions = np.arange(1, shown.shape[1] + 1)
        u = rng.random((4, *shown.shape))
        viewed = ((shown >= 0) & (u[0] < self.spec.examine(positions)[None, :])
                  & (u[1] < self.view_rate[ads]))
        return Outcomes(viewed=viewed, saved=viewed & (u[2] < self.save_rate[ads]),
                        applied=viewed & (u[3] < self.apply_rate[ads]))

    def users(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Where ``count`` users stand when they ask for a feed: near a neighbourhood chosen
        by its share of users."""
        shares = np.array([v[3] for v in NEIGHBOURHOODS.values()])
        return _scatter(rng.choice(len(shares), size=count, p=shares / shares.sum()),
                        self.spec.user_spread_km, rng)

    def ad_lines(self, start: float) -> list[dict]:
        """The catalogue as the API's ad bodies (PUT /v1/ads/{id} and the import command)."""
        created = self.created_at(start)
        return [{"ad_id": a, "lat": round(float(la), 6), "lon": round(float(lo), 6),
                 "title": t, "company": c, "category": CATEGORIES[k],
                 "created_at": round(float(ts), 3)}
                for a, la, lo, t, c, k, ts in zip(self.ad_ids, self.lat, self.lon, self.titles,
                                                  self.companies, self.category, created)]


def top_valid(scores: np.ndarray, limit: int) -> np.ndarray:
    """(rows, limit) column indices of each row's best scores, best first; -1 where the row
    has fewer than ``limit`` scores >= 0.

    >>> top_valid(np.array([[0.2, -1.0, 0.5], [-1.0, -1.0, 0.1]]), 2).tolist()
    [[2, 0], [2, -1]]
    """
    keep = min(limit, scores.shape[1])
    top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1,
                                             kind="stable"), axis=1)
    out = np.where(np.take_along_axis(scores, top, axis=1) >= 0, top, -1)
    if keep < limit:
        out = np.pad(out, ((0, 0), (0, limit - keep)), constant_values=-1)
    return out


def _beta(mean: float, concentration: float, size: int, rng: np.random.Generator) -> np.ndarray:
    return rng.beta(mean * concentration, (1.0 - mean) * concentration, size)


def _scatter(hood: np.ndarray, spread_km: float,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centres = np.array([(v[0], v[1]) for v in NEIGHBOURHOODS.values()])
    lat0, lon0 = centres[hood, 0], centres[hood, 1]
    north, east = rng.normal(0.0, spread_km, (2, len(hood)))
    lat = lat0 + north / KM_PER_DEG_LAT
    return lat, lon0 + east / (KM_PER_DEG_LAT * np.cos(np.radians(lat0)))


def make_world(spec: WorldSpec = WorldSpec(), seed: int = 1) -> World:
    """The city for ``seed``: the same ads, places and hidden rates every time."""
    rng = np.random.default_rng([seed, 0])
    n = spec.ads
    shares = np.array([v[2] for v in NEIGHBOURHOODS.values()])
    lat, lon = _scatter(rng.choice(len(shares), size=n, p=shares / shares.sum()),
                        spec.ad_spread_km, rng)
    category = rng.integers(len(CATEGORIES), size=n)
    standout = rng.random(n) < spec.standout_share
    base = np.where(standout, _beta(spec.standout_apply_mean, spec.apply_concentration, n, rng),
                    _beta(spec.apply_mean, spec.apply_concentration, n, rng))
    lift = np.array([APPLY_LIFT[c] for c in CATEGORIES])[category]
    apply_rate = np.clip(base * lift, 1e-4, 0.95)
    view_rate = np.clip(_beta(spec.view_mean, spec.view_concentration, n, rng), 1e-4, 0.95)
    roles = [ROLES[c] for c in CATEGORIES]
    titles = [SENIORITY[rng.integers(len(SENIORITY))] + roles[k][rng.integers(len(roles[k]))]
              for k in category]
    companies = [" ".join((COMPANY_A[rng.integers(len(COMPANY_A))],
                           COMPANY_B[rng.integers(len(COMPANY_B))],
                           COMPANY_C[rng.integers(len(COMPANY_C))])) for _ in range(n)]
    return World(spec=spec, seed=seed, ad_ids=[f"sim-{i:05d}" for i in range(n)],
                 lat=lat, lon=lon, xyz=geo.unit_vectors(lat, lon), category=category,
                 age_s=rng.uniform(0.0, spec.max_age_days * 86_400, n),
                 view_rate=view_rate, apply_rate=apply_rate,
                 save_rate=np.clip(spec.save_ratio * apply_rate, 0.0, 1.0),
                 standout=standout, titles=titles, companies=companies)
