"""A simulated city: job ads with hidden true rates, users who ask for feeds near where they
are, and what they do with each ad shown.

A user shown a feed scrolls down it: the ad at position p is examined with probability
``b(p) = p ** -position_bias`` (one scroll depth per feed, so whoever examined position 5
examined 1 to 4 too). An examined ad is viewed with the ad's view rate, a viewed ad applied
to with its apply rate (and saved with a rate tied to it). Two ways a device reports what it
showed: an impression for every slot of the feed (``impressions="shown"``), or only for the
slots the user scrolled to (``"scrolled"``: then an impression already means "examined").

Where the ads differ is a property of the world (``signal``): in how often they are viewed,
in how often a viewer applies, or both. A minority of "standout" ads is clearly better than
the rest; categories differ by a lift on the rate that carries the signal. A world may also
change while it runs: ads arriving and expiring (``lifetime``), or a share of them taking new
rates at some point (``drift_share``). Every world follows from its spec and one seed.

Ads belong to employers, a few large and many small (shares falling as rank ** -skew), and a
world may give one employer a large share of its ads (``big_employer_share``). Whose ad it is
changes nothing for the user unless the world says so (``employer_fatigue``): then each earlier
ad of the same employer in a feed makes the next one less likely to be viewed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import geo
from devtools.demo import COMPANY_A, COMPANY_B, COMPANY_C, ROLES, SENIORITY
from pipeline.catalogue import employer_code

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
TOWN_CENTRE = (51.3397, 12.3731)   # a town of its own (Leipzig's market square)
SECOND_TOWN = (51.0504, 13.7373)   # two-towns: the second (Dresden, another region)
NEW_DISTRICT_KM = 2.5              # two-towns: each town's new district, this far east
NEW_DISTRICT_RADIUS_KM = 0.6
LAYOUTS = ("berlin", "town", "two-towns")
SIGNALS = ("both", "view", "apply")
IMPRESSIONS = ("shown", "scrolled")
CATEGORIES = tuple(ROLES)
# How much more (or less) often ads of a category carry the world's signal (hospitality
# hires on the spot, engineering candidates look around).
CATEGORY_LIFT = {"engineering": 0.6, "hospitality": 1.3, "logistics": 1.2, "retail": 1.1,
                 "care": 1.0, "office": 0.8}
# two-towns: the second town's lifts, where what sells is what does not in the first
SECOND_TOWN_LIFT = {"engineering": 1.3, "hospitality": 0.6, "logistics": 0.8, "retail": 1.0,
                    "care": 1.1, "office": 1.2}
KM_PER_DEG_LAT = 111.2
MAX_RATE = 0.95


@dataclass(frozen=True)
class WorldSpec:
    """What the city is made of. The defaults are the Berlin world: about 10 % views and 2 %
    applies per impression for an average ad at an average position of a 10-ad feed."""

    ads: int = 1000
    layout: str = "berlin"             # berlin: twenty districts; town: one centre
    signal: str = "both"               # where ads differ: view, apply (given a view) or both
    impressions: str = "shown"         # shown: every slot posts one; scrolled: examined only
    position_bias: float = 0.6         # b(p) = p ** -position_bias
    view_mean: float = 0.22            # P(view | examined) of an ordinary ad
    view_concentration: float = 12.0   # Beta(mean * c, (1 - mean) * c)
    apply_mean: float = 0.15           # P(apply | view) of an ordinary ad
    apply_concentration: float = 15.0
    standout_share: float = 0.10       # the minority of clearly better ads ...
    standout_lift: float = 3.0         # ... whose signal rate is this many times the mean
    save_ratio: float = 0.5            # P(save | view) = save_ratio x P(apply | view)
    ad_spread_km: float = 1.2          # berlin: ads scatter this far (sd) around a district
    user_spread_km: float = 1.5
    town_radius_km: float = 3.5        # town: ads within this of the centre ...
    town_user_radius_km: float = 1.0   # ... users within this
    max_age_days: float = 30.0
    lifetime: float = 0.0              # > 0: each ad is live for this share of the run
    drift_share: float = 0.0           # this share of the ads takes new rates ...
    drift_at: float = 0.5              # ... at this point of the run
    ads_per_employer: float = 5.0      # ads / this many employers ...
    employer_skew: float = 0.7         # ... the k-th largest posting a share ~ k ** -skew
    big_employer_share: float = 0.0    # one employer posts this share of the ads besides
    employer_fatigue: float = 1.0      # each earlier ad of an ad's employer in the feed
    #                                    multiplies its view rate by this (1: no effect)
    near_km: float = 0.0               # two-towns: the first town's users view an ad d km
    #                                    away exp(-d / near_km) as often (0: distance is moot)
    new_district_at: float = 1.0       # two-towns: from this share of the run a share of the
    new_district_users: float = 0.25   # users come from each town's new district, where
    new_district_ads: float = 0.15     # this share of each town's ads arrives then

    def __post_init__(self) -> None:
        for name, value, allowed in (("layout", self.layout, LAYOUTS),
                                     ("signal", self.signal, SIGNALS),
                                     ("impressions", self.impressions, IMPRESSIONS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
        if not 0 <= self.lifetime <= 1 or not 0 <= self.drift_share <= 1:
            raise ValueError("lifetime and drift_share are shares of the run, in [0, 1]")
        if self.ads_per_employer < 1 or self.employer_skew < 0:
            raise ValueError("ads_per_employer must be >= 1 and employer_skew >= 0")
        if not 0 <= self.big_employer_share < 1 or not 0 < self.employer_fatigue <= 1:
            raise ValueError("big_employer_share must be in [0, 1), employer_fatigue in (0, 1]")

    @property
    def towns(self) -> int:
        return 2 if self.layout == "two-towns" else 1

    def examine(self, positions: np.ndarray) -> np.ndarray:
        """b(p): the probability that a user examines the ad at (1-based) position p."""
        return np.asarray(positions, dtype=np.float64) ** -self.position_bias

    def impression_curve(self, positions: np.ndarray) -> np.ndarray:
        """P(view | impression at p) / P(view | impression at 1): the examination curve as
        the service can see it in its impressions (flat when only examined slots post one)."""
        if self.impressions == "scrolled":
            return np.ones(len(np.asarray(positions)))
        return self.examine(positions)

    @property
    def changes(self) -> bool:
        return self.lifetime > 0 or self.drift_share > 0


@dataclass(frozen=True)
class Outcomes:
    """What users did with each shown slot (aligned with the shown (feeds, limit) array)."""

    impressed: np.ndarray    # the device posted an impression for the slot
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
    view_rates: np.ndarray       # (phases, n) P(view | examined), before and after a drift
    apply_rates: np.ndarray      # (phases, n) P(apply | view)
    standouts: np.ndarray        # (phases, n) bool: one of the clearly better ads
    arrive: np.ndarray           # when each ad goes live, as a share of the run
    leave: np.ndarray            # when it expires (inf: never)
    employer: np.ndarray         # uint64: each ad's employer code, as the service derives it
    town: np.ndarray             # two-towns: which town each ad is in (else all 0)
    titles: list[str] = field(repr=False)
    companies: list[str] = field(repr=False)

    def __len__(self) -> int:
        return len(self.lat)

    @property
    def largest_employer(self) -> int:
        """The code of the employer with the most ads."""
        codes, counts = np.unique(self.employer, return_counts=True)
        return int(codes[counts.argmax()])

    @property
    def view_rate(self) -> np.ndarray:
        return self.view_rates[0]

    @property
    def apply_rate(self) -> np.ndarray:
        return self.apply_rates[0]

    @property
    def standout(self) -> np.ndarray:
        return self.standouts[0]

    @property
    def value(self) -> np.ndarray:
        """P(apply | examined impression) at the start: what the oracle ranks by."""
        return self.value_at(0)

    def value_at(self, phase: int) -> np.ndarray:
        return self.view_rates[phase] * self.apply_rates[phase]

    def phase_at(self, share: float) -> int:
        """The rates in force at this point of the run (0 before a drift, 1 after)."""
        return int(self.spec.drift_share > 0 and share >= self.spec.drift_at)

    def live_at(self, share: float) -> np.ndarray:
        return (self.arrive <= share) & (share < self.leave)

    def created_at(self, start: float) -> np.ndarray:
        return start - self.age_s

    def within(self, user_xyz: np.ndarray, radius_km: float) -> np.ndarray:
        """(users, ads) bool: the ad is within ``radius_km`` of the user. (einsum, not a
        matrix product: BLAS threads left spinning would slow the single-core run.)"""
        return np.einsum("ud,ad->ua", user_xyz, self.xyz) >= geo.km_to_dot(radius_km)

    def oracle(self, reachable: np.ndarray, limit: int, phase: int = 0) -> np.ndarray:
        """(users, limit) ads by true value among those ``reachable`` (users x ads), best
        first (-1 pads where fewer are in reach). Best first is optimal, since b(p) falls."""
        return top_valid(np.where(reachable, self.value_at(phase)[None, :], -1.0), limit)

    def fatigue(self, shown: np.ndarray) -> np.ndarray:
        """(feeds, limit): what each slot's view rate is multiplied by, ``employer_fatigue``
        to the power of the earlier ads of its employer in the feed (1 without fatigue)."""
        if self.spec.employer_fatigue == 1.0:
            return np.ones(shown.shape)
        codes = np.where(shown >= 0, self.employer[np.maximum(shown, 0)], 0)
        earlier = np.zeros(shown.shape)
        for d in range(1, shown.shape[1]):
            earlier[:, d:] += (codes[:, d:] == codes[:, :-d]) & (codes[:, d:] != 0)
        return self.spec.employer_fatigue ** earlier

    def nearness(self, shown: np.ndarray, users: np.ndarray | None) -> np.ndarray:
        """(feeds, limit): what each slot's view rate is multiplied by for the distance from
        its user (``users``: their unit vectors), exp(-d / near_km) for an ad of the first
        town of two (1 elsewhere, and without ``near_km`` or users)."""
        if not self.spec.near_km or users is None:
            return np.ones(shown.shape)
        ads = np.maximum(shown, 0)
        km = geo.dot_to_km(np.einsum("fld,fd->fl", self.xyz[ads], users))
        return np.where(self.town[ads] == 0, np.exp(-km / self.spec.near_km), 1.0)

    def slot_value(self, shown: np.ndarray, phase: int = 0,
                   users: np.ndarray | None = None) -> np.ndarray:
        """(feeds, limit) expected applies of each slot: b(p) x view rate x apply rate (x the
        employer fatigue, x the nearness to ``users``)."""
        positions = np.arange(1, shown.shape[1] + 1)
        return np.where(shown >= 0, self.spec.examine(positions)[None, :]
                        * self.value_at(phase)[np.maximum(shown, 0)] * self.fatigue(shown)
                        * self.nearness(shown, users), 0.0)

    def act(self, shown: np.ndarray, rng: np.random.Generator, phase: int = 0,
            users: np.ndarray | None = None) -> Outcomes:
        """Sample what users do with the shown slots (-1: an empty slot, nothing happens);
        ``users``: their unit vectors, where distance matters to them."""
        ads = np.maximum(shown, 0)
        positions = np.arange(1, shown.shape[1] + 1)
        depth = rng.random(len(shown))[:, None]      # one scroll depth per feed
        u = rng.random((3, *shown.shape))
        slot = shown >= 0
        examined = slot & (depth < self.spec.examine(positions)[None, :])
        viewed = examined & (u[0] < self.view_rates[phase][ads] * self.fatigue(shown)
                             * self.nearness(shown, users))
        apply_rate = self.apply_rates[phase][ads]
        return Outcomes(impressed=slot if self.spec.impressions == "shown" else examined,
                        viewed=viewed,
                        saved=viewed & (u[1] < np.minimum(self.spec.save_ratio * apply_rate, 1)),
                        applied=viewed & (u[2] < apply_rate))

    def users(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Where ``count`` users stand when they ask for a feed, in the run's order."""
        if self.spec.layout == "town":
            return _disk(count, self.spec.town_user_radius_km, rng)
        if self.spec.layout == "two-towns":
            town = rng.integers(2, size=count)
            lat, lon = _disk(count, self.spec.town_user_radius_km, rng, _centres(town))
            later = np.arange(count) >= self.spec.new_district_at * count
            moved = later & (rng.random(count) < self.spec.new_district_users)
            dlat, dlon = _disk(count, NEW_DISTRICT_RADIUS_KM, rng, _districts(town))
            return np.where(moved, dlat, lat), np.where(moved, dlon, lon)
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
                                                  self.companies, self.category, created,
                                                  strict=True)]


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
    return _offset(centres[hood, 0], centres[hood, 1], *rng.normal(0.0, spread_km, (2, len(hood))))


def _disk(count: int, radius_km: float, rng: np.random.Generator,
          centres: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Points spread evenly over a disk around the town's centre (or around each point's
    own centre of ``centres``)."""
    r = radius_km * np.sqrt(rng.random(count))
    angle = rng.uniform(0.0, 2 * np.pi, count)
    lat0, lon0 = centres or (np.full(count, TOWN_CENTRE[0]), np.full(count, TOWN_CENTRE[1]))
    return _offset(lat0, lon0, r * np.cos(angle), r * np.sin(angle))


def _centres(town: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's town centre (two-towns: 0 the first, 1 the second)."""
    return (np.where(town == 0, TOWN_CENTRE[0], SECOND_TOWN[0]),
            np.where(town == 0, TOWN_CENTRE[1], SECOND_TOWN[1]))


def _districts(town: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's town's new district: NEW_DISTRICT_KM east of its centre."""
    return _offset(*_centres(town), np.zeros(len(town)), np.full(len(town), NEW_DISTRICT_KM))


def _offset(lat0: np.ndarray, lon0: np.ndarray, north_km: np.ndarray,
            east_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat = lat0 + north_km / KM_PER_DEG_LAT
    return lat, lon0 + east_km / (KM_PER_DEG_LAT * np.cos(np.radians(lat0)))


def _rates(spec: WorldSpec, category: np.ndarray, rng: np.random.Generator,
           town: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(view rate, apply rate, standout) of ``len(category)`` ads: the signal's stage varies
    by ad (standouts ``standout_lift`` times the mean) and by category (in the second town of
    two, by SECOND_TOWN_LIFT); a stage that carries no signal is the same for every ad."""
    n = len(category)
    standout = rng.random(n) < spec.standout_share
    lifts = np.array([CATEGORY_LIFT[c] for c in CATEGORIES])
    lift = lifts[category]
    if town is not None:
        second = np.array([SECOND_TOWN_LIFT[c] for c in CATEGORIES])
        lift = np.where(town == 1, second[category], lift)

    def varied(mean: float, concentration: float) -> np.ndarray:
        high = min(spec.standout_lift * mean, 0.9)
        base = np.where(standout, _beta(high, concentration, n, rng),
                        _beta(mean, concentration, n, rng))
        return np.clip(base * lift, 1e-4, MAX_RATE)

    if spec.signal == "both":
        apply_rate = varied(spec.apply_mean, spec.apply_concentration)
        view_rate = np.clip(_beta(spec.view_mean, spec.view_concentration, n, rng), 1e-4, MAX_RATE)
    elif spec.signal == "view":
        view_rate = varied(spec.view_mean, spec.view_concentration)
        apply_rate = np.full(n, spec.apply_mean)
    else:
        apply_rate = varied(spec.apply_mean, spec.apply_concentration)
        view_rate = np.full(n, spec.view_mean)
    return view_rate, apply_rate, standout


def _companies(spec: WorldSpec, n: int, rng: np.random.Generator) -> list[str]:
    """Each ad's company: ``n / ads_per_employer`` employers whose shares fall as
    rank ** -skew, and one more posting ``big_employer_share`` of the ads when set."""
    count = max(1, round(n / spec.ads_per_employer))
    names = [" ".join(p) for p in zip(*(np.array(part)[rng.integers(len(part), size=count)]
                                        for part in (COMPANY_A, COMPANY_B, COMPANY_C)),
                                      strict=True)]
    names = [f"{name} {i}" for i, name in enumerate(names)]   # employers apart, whatever names
    weights = np.arange(1, count + 1, dtype=np.float64) ** -spec.employer_skew
    employer = rng.choice(count, size=n, p=weights / weights.sum())
    big = rng.random(n) < spec.big_employer_share
    return ["Big Works Group" if b else names[e] for b, e in zip(big.tolist(), employer.tolist(),
                                                                    strict=True)]


def make_world(spec: WorldSpec = WorldSpec(), seed: int = 1) -> World:
    """The city for ``seed``: the same ads, places and hidden rates every time."""
    rng = np.random.default_rng([seed, 0])
    n = spec.ads
    town = np.zeros(n, dtype=np.int64)
    if spec.layout == "town":
        lat, lon = _disk(n, spec.town_radius_km, rng)
    elif spec.layout == "two-towns":
        town = rng.integers(2, size=n)
        lat, lon = _disk(n, spec.town_radius_km, rng, _centres(town))
    else:
        shares = np.array([v[2] for v in NEIGHBOURHOODS.values()])
        lat, lon = _scatter(rng.choice(len(shares), size=n, p=shares / shares.sum()),
                            spec.ad_spread_km, rng)
    category = rng.integers(len(CATEGORIES), size=n)
    view_rate, apply_rate, standout = _rates(spec, category, rng,
                                             town if spec.towns == 2 else None)
    roles = [ROLES[c] for c in CATEGORIES]
    titles = [SENIORITY[rng.integers(len(SENIORITY))] + roles[k][rng.integers(len(roles[k]))]
              for k in category]
    age_s = rng.uniform(0.0, spec.max_age_days * 86_400, n)
    # what changes while the world runs draws from generators of its own, so a world without
    # changes is the same whatever these settings
    later = np.random.default_rng([seed, 6])
    views, applies, standouts = [view_rate], [apply_rate], [standout]
    if spec.drift_share > 0:
        v2, a2, s2 = _rates(spec, category, later, town if spec.towns == 2 else None)
        moved = later.random(n) < spec.drift_share
        views.append(np.where(moved, v2, view_rate))
        applies.append(np.where(moved, a2, apply_rate))
        standouts.append(np.where(moved, s2, standout))
    if spec.lifetime > 0:
        arrive = later.uniform(-spec.lifetime, 1.0, n)
        leave = arrive + spec.lifetime
    else:
        arrive, leave = np.full(n, -np.inf), np.full(n, np.inf)
    if spec.towns == 2:          # each town's new district: its ads arrive when it opens
        district = later.random(n) < spec.new_district_ads
        dlat, dlon = _disk(n, NEW_DISTRICT_RADIUS_KM, later, _districts(town))
        lat, lon = np.where(district, dlat, lat), np.where(district, dlon, lon)
        arrive = np.where(district, spec.new_district_at, arrive)
        leave = np.where(district, np.inf, leave)
    companies = _companies(spec, n, np.random.default_rng([seed, 7]))
    return World(spec=spec, seed=seed, ad_ids=[f"sim-{i:05d}" for i in range(n)],
                 lat=lat, lon=lon, xyz=geo.unit_vectors(lat, lon), category=category,
                 age_s=age_s, view_rates=np.stack(views), apply_rates=np.stack(applies),
                 standouts=np.stack(standouts), arrive=arrive, leave=leave,
                 employer=np.array([employer_code(c) for c in companies], dtype=np.uint64),
                 town=town, titles=titles, companies=companies)
