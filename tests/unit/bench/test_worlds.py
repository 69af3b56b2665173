"""The family of simulated worlds: each world's generator does what its line says, the
baselines are what they claim, and the family's report is written."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import geo
from bench import worlds
from bench.sim.family import FAMILY, REDUCED, TOWN, TRAPS
from bench.sim.fast import (
    BETA11,
    GREEDY,
    PER_REQUEST,
    POLICIES,
    Cells,
    Twin,
    plain_settings,
)
from bench.sim.world import TOWN_CENTRE, make_world
from config import load_settings


@pytest.mark.parametrize("name", list(FAMILY))
def test_every_world_follows_from_its_seed(name):
    spec = FAMILY[name].spec
    a, b, c = make_world(spec, 3), make_world(spec, 3), make_world(spec, 4)
    assert np.array_equal(a.view_rates, b.view_rates) and np.array_equal(a.lat, b.lat)
    assert np.array_equal(a.arrive, b.arrive)
    assert not np.array_equal(a.value, c.value)
    assert len(a) == spec.ads and FAMILY[name].line


def examined_share(world, rng, feeds: int = 40_000) -> tuple[np.ndarray, np.ndarray]:
    """Impressions per slot, and views per slot over the ad's own view rate, by position
    (ads 0 to 9 in every feed)."""
    shown = np.broadcast_to(np.arange(10), (feeds, 10)).copy()
    acted = world.act(shown, rng)
    return acted.impressed.mean(axis=0), acted.viewed.mean(axis=0) / world.view_rate[:10]


def test_only_the_signal_stage_differs_across_ads():
    view = make_world(FAMILY["view-signal"].spec, 1)
    apply = make_world(FAMILY["apply-signal"].spec, 1)
    both = make_world(TOWN, 1)
    assert np.unique(view.apply_rate).size == 1 and view.view_rate.std() > 0.05
    assert np.unique(apply.view_rate).size == 1 and apply.apply_rate.std() > 0.05
    assert both.view_rate.std() > 0.05 and both.apply_rate.std() > 0.05
    for w, rate in ((view, view.view_rate), (apply, apply.apply_rate)):
        assert rate[w.standout].mean() > 2 * rate[~w.standout].mean()


@pytest.mark.parametrize("name, exponent", [("no-bias", 0.0), ("view-signal", 0.5),
                                            ("steep-bias", 1.0), ("town-scrolled", 0.7)])
def test_users_examine_position_p_with_probability_p_to_the_minus_bias(name, exponent, rng):
    w = make_world(FAMILY[name].spec, 2)
    impressed, viewed = examined_share(w, rng)
    curve = viewed / viewed[0]
    assert curve == pytest.approx(np.arange(1, 11) ** -exponent, rel=0.08)
    if w.spec.impressions == "scrolled":   # an impression only where the user scrolled to
        assert impressed == pytest.approx(np.arange(1, 11) ** -exponent, rel=0.03)
        assert w.spec.impression_curve(np.arange(1, 11)).tolist() == [1.0] * 10
    else:
        assert impressed.tolist() == [1.0] * 10


def test_scrolling_is_one_depth_per_feed():
    w = make_world(FAMILY["town-scrolled"].spec, 1)
    shown = np.broadcast_to(np.arange(10), (5000, 10)).copy()
    impressed = w.act(shown, np.random.default_rng(0)).impressed
    assert (np.diff(impressed.astype(int), axis=1) <= 0).all()   # none after a gap


@pytest.mark.parametrize("name, share", [("trap", 0.01), ("view-signal", 0.05),
                                         ("many-standouts", 0.20)])
def test_the_standout_share_is_the_worlds(name, share):
    w = make_world(replace(FAMILY[name].spec, ads=20_000), 1)
    assert w.standout.mean() == pytest.approx(share, rel=0.15)


def test_the_town_holds_its_ads_and_users_in_their_disks(rng):
    w = make_world(FAMILY["town-scrolled"].spec, 1)
    assert geo.haversine_km(*TOWN_CENTRE, w.lat, w.lon).max() <= 3.5 + 1e-6
    lat, lon = w.users(2000, rng)
    assert geo.haversine_km(*TOWN_CENTRE, lat, lon).max() <= 1.0 + 1e-6
    assert w.within(geo.unit_vectors(lat, lon), 5.0).all()        # every ad in reach


def test_sparse_worlds_show_each_ad_about_100_times():
    for name in ("sparse", "sparse-trap-scrolled"):
        member = FAMILY[name]
        slots = member.traffic().feeds * member.limit
        assert slots / member.spec.ads == pytest.approx(100, rel=0.01)


def test_churn_keeps_ads_arriving_and_leaving():
    w = make_world(FAMILY["churn"].spec, 1)
    assert np.allclose(w.leave - w.arrive, 1 / 3)
    live = [w.live_at(t).mean() for t in np.linspace(0, 0.99, 12)]
    assert min(live) > 0.2 and max(live) < 0.35            # about a quarter live at a time
    assert (w.arrive > 0.5).mean() > 0.3                   # many arrive during the run
    steady = make_world(TOWN, 1)
    assert steady.live_at(0.0).all() and steady.live_at(0.99).all()


def test_drift_gives_a_share_of_the_ads_new_rates_half_way():
    w = make_world(replace(FAMILY["drift"].spec, ads=5000), 1)
    moved = w.value_at(0) != w.value_at(1)
    assert moved.mean() == pytest.approx(0.3, abs=0.03)
    assert (w.phase_at(0.49), w.phase_at(0.5)) == (0, 1)
    assert np.array_equal(make_world(TOWN, 1).value_at(0), make_world(TOWN, 1).view_rates[0]
                          * make_world(TOWN, 1).apply_rates[0])


def test_the_plain_baseline_is_beta_1_1_on_applies_per_impression():
    settings = plain_settings(load_settings({}))
    assert settings.reward_model == "direct" and settings.position_bias_exponent == 0.0
    w = make_world(replace(TOWN, ads=50), 1)
    twin = Twin(w, load_settings({}), Cells.around(w, [geo.encode(*TOWN_CENTRE, 6)],
                                                   load_settings({})),
                POLICIES[BETA11], np.random.default_rng(0))
    post = twin.ad_posterior(0.0)
    assert post.alpha.tolist() == [[1.0] * 50] and post.beta.tolist() == [[1.0] * 50]
    assert POLICIES[BETA11].per_request and POLICIES[GREEDY].greedy


def test_greedy_shows_the_best_posterior_means():
    w = make_world(replace(TOWN, ads=60), 1)
    settings = load_settings({})
    cells = Cells.around(w, [geo.encode(*TOWN_CENTRE, 6)], settings)
    twin = Twin(w, settings, cells, POLICIES[GREEDY], np.random.default_rng(0))
    rng = np.random.default_rng(1)
    twin.evidence.values = np.stack([np.full(60, 200.0), rng.integers(0, 60, 60).astype(float),
                                     np.zeros(60), rng.integers(0, 10, 60).astype(float)])
    twin.posterior = twin.ad_posterior(0.0)
    xyz = geo.unit_vectors(*w.users(5, rng))
    shown = twin.serve(np.zeros(5, dtype=int), xyz, w.within(xyz, 5.0), 10, 5.0, 0.0).shown
    mean = twin.posterior.mean()
    for row in shown:
        assert (np.diff(mean[row]) <= 0).all()                          # best first
        assert mean[row].min() >= np.delete(mean, row).max()           # and the best ten


def test_the_family_report_names_every_target(tmp_path: Path):
    code = worlds.main(["--worlds", "town-scrolled,trap", "--seeds", "2", "--scale", "0.1",
                        "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "worlds.json").read_text())
    assert [w["world"] for w in result["worlds"]] == ["town-scrolled", "trap"]
    for w in result["worlds"]:
        assert set(w["share"]) == set(worlds.POLICIES)
        assert all(0 < w["share"][p][0] <= 1.0 + 1e-9 for p in worlds.POLICIES)
        assert w["share"]["random"][0] < w["share"][PER_REQUEST][0]
        assert len(w["per_seed"]) == 2 and w["curve"] is not None
    targets = [t for t, _, _ in result["checks"]]
    assert any("per-request Thompson" in t for t in targets)
    assert any("Thompson alone" in t for t in targets) and "trap" in TRAPS
    markdown = (tmp_path / "worlds.md").read_text()
    assert "| `town-scrolled` |" in markdown and "## Targets" in markdown
    assert (tmp_path / "worlds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_the_defaults_hold_across_the_reduced_family():
    """The robustness check: in every world of the reduced family (3 seeds each), the
    default settings reach at least 0.9 x the applies of per-request Thompson sampling with
    the same priors, in the last quarter."""
    summary = worlds.run_family(REDUCED, 3, {}, 1.0, (worlds.DEFAULT, PER_REQUEST), jobs=2,
                                progress=lambda _m: None)
    ratios = {w["world"]: w["vs_per_request"][0] for w in summary}
    assert min(ratios.values()) >= 0.9, ratios
