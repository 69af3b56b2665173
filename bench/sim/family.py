"""The family of simulated worlds every default is judged on.

Each world changes one or two things from a plain town (ads differ in both funnel stages,
an impression for every slot shown, examination p ** -0.5, 5 % standout ads, about 500
shown slots per ad over the run; employers a few large and many small, which users do not
mind), so that a setting tuned on one of them shows what it costs on the others.
``FAMILY`` lists them with a line each; ``REDUCED`` is the part the robustness test runs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from bench.sim.fast import Traffic
from bench.sim.world import WorldSpec

TOWN = WorldSpec(ads=400, layout="town", signal="both", impressions="shown", position_bias=0.5,
                 standout_share=0.05)


@dataclass(frozen=True)
class Member:
    """One world of the family: what it is, and the traffic it gets."""

    line: str
    spec: WorldSpec
    slots_per_ad: float = 500.0       # feed slots shown per ad over the run
    feeds_per_s: float = 5.0          # the city's traffic (feeds per regeneration: x 60 s)
    limit: int = 10

    def traffic(self, scale: float = 1.0) -> Traffic:
        feeds = max(200, round(self.spec.ads * self.slots_per_ad * scale / self.limit))
        return Traffic(feeds=feeds, limit=self.limit, feeds_per_s=self.feeds_per_s)


FAMILY: dict[str, Member] = {
    "berlin": Member(
        "Berlin: 600 ads over twenty districts, both stages differ, p^-0.6, 10 % standouts, "
        "dense (1,000 slots per ad), 1,200 feeds per regeneration",
        WorldSpec(ads=600), slots_per_ad=1000.0, feeds_per_s=20.0),
    "town-scrolled": Member(
        "the new user's town: 300 ads, only the view rate differs (1 view in 8 applies), "
        "an impression only for slots scrolled to (1/(1+k)^0.7), 4 % standouts, 9,000 "
        "feeds, 150 per regeneration",
        replace(TOWN, ads=300, signal="view", impressions="scrolled", position_bias=0.7,
                view_mean=0.16, view_concentration=30.0, apply_mean=0.125,
                standout_share=0.04, standout_lift=4.5),
        slots_per_ad=300.0, feeds_per_s=2.5),
    "view-signal": Member(
        "ads differ only in how often they are viewed; applying given a view is the same "
        "for all", replace(TOWN, signal="view")),
    "apply-signal": Member(
        "ads differ only in how often a viewer applies; every ad is viewed as often",
        replace(TOWN, signal="apply")),
    "no-bias": Member("no position bias: every slot is examined",
                      replace(TOWN, position_bias=0.0)),
    "steep-bias": Member("steep position bias, p^-1", replace(TOWN, position_bias=1.0)),
    "trap": Member(
        "the trap: 1 % standouts (4 x the others) among 800 ads",
        replace(TOWN, ads=800, standout_share=0.01, standout_lift=4.0), slots_per_ad=300.0),
    "many-standouts": Member("20 % standouts", replace(TOWN, standout_share=0.20)),
    "sparse": Member("sparse: 1,000 ads, about 100 slots shown per ad over the run",
                     replace(TOWN, ads=1000), slots_per_ad=100.0, feeds_per_s=2.5),
    "churn": Member("churn: each ad is live for a third of the run, new ones keep arriving",
                    replace(TOWN, ads=900, lifetime=1 / 3)),
    "drift": Member("drift: 30 % of the ads take new rates half-way through the run",
                    replace(TOWN, drift_share=0.3)),
    "sparse-trap-scrolled": Member(
        "together: 1,000 ads, 1 % standouts, impressions only when scrolled to, about 100 "
        "slots per ad",
        replace(TOWN, ads=1000, standout_share=0.01, standout_lift=4.0,
                impressions="scrolled"), slots_per_ad=100.0, feeds_per_s=2.5),
    "one-employer-indifferent": Member(
        "one employer posts 30 % of the ads, which users do not mind (the rule binds "
        "most, for nothing)", replace(TOWN, big_employer_share=0.3)),
    "one-employer": Member(
        "one employer posts 30 % of the ads, and users tire of an employer: each earlier ad "
        "of an ad's employer in the feed cuts its views by 40 %",
        replace(TOWN, big_employer_share=0.3, employer_fatigue=0.6)),
}
REDUCED = ("town-scrolled", "apply-signal", "trap", "churn")
EMPLOYER_EFFECTS = ("one-employer",)   # the worlds where whose ad it is matters to users
TRAPS = ("trap", "sparse-trap-scrolled")
