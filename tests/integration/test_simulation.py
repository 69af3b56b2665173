"""The simulation's real mode, briefly: its own redis-server, Celery worker, beat and gunicorn
per policy, users driven over HTTP, and every event sent counted by the rollup."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import simulate
from config import load_settings

FEEDS = 600


@pytest.mark.slow
def test_real_mode_serves_learns_from_and_counts_every_event(tmp_path: Path):
    code = simulate.main(["--real", "--ads", "150", "--feeds", str(FEEDS), "--feeds-per-s", "150",
                          "--policies", "thompson+strategies,thompson", "--out", str(tmp_path)])
    assert code == 0, "some event sent was not accepted or not counted"
    result = json.loads((tmp_path / "real_simulation.json").read_text())

    mixed, plain = result["policies"]["thompson+strategies"], result["policies"]["thompson"]
    assert sum(mixed["strategies"].values()) == FEEDS
    assert set(mixed["strategies"]) == {"thompson", "popular", "newest", "nearest"}
    floor = load_settings({}).strategy_floor
    assert floor - 1e-9 <= mixed["propensity_min"] <= mixed["propensity_max"] < 1.0
    assert plain["strategies"] == {"thompson": FEEDS}
    assert plain["propensity_min"] == plain["propensity_max"] == 1.0

    # the service's own evaluation of the mixed log sees exactly the feeds and applies the
    # clients saw (served log joined with the events)
    evaluation = mixed["evaluation"]
    assert evaluation["feeds"] == FEEDS and evaluation["skipped"] == 0
    assert round(evaluation["policy"]["value"] * FEEDS) == mixed["feeds_with_apply"]
    assert set(evaluation["strategies"]) == set(mixed["strategies"])

    rows = {r["policy"]: r for r in result["summary"]}
    for name, run in (("thompson+strategies", mixed), ("thompson", plain)):
        assert run["all_counted"]
        assert run["accepted"] == run["events_sent"] > rows[name]["impressions"]
        assert run["duplicates"] == 0 and run["rejected"] == 0
        assert run["counted"] == run["sent"]
        assert run["counted"]["impressions"] == rows[name]["impressions"]  # every ad shown
        assert run["served_logged"] == FEEDS
        assert run["served_counted_decayed"] == pytest.approx(FEEDS, rel=1e-3)
        for ad, counters in run["api_counters_sample"].items():   # GET /v1/stats/ads/{id}
            assert counters["api"] == counters["sent"] and counters["sent"]["applies"] >= 1, ad

    assert rows["thompson"]["rate"] <= rows["oracle"]["rate"]
    markdown = (tmp_path / "real_simulation.md").read_text()
    assert "| `thompson+strategies` |" in markdown and "| yes |" in markdown
    for plot in ("apply_rate", "regret", "strategies"):
        assert (tmp_path / f"real_simulation_{plot}.png").stat().st_size > 10_000



@pytest.mark.slow
def test_real_mode_runs_a_world_of_the_family_against_its_baselines(tmp_path: Path):
    """The new user's town through HTTP: devices post impressions only for what was
    scrolled to, every event is counted, and the report sets the real default against fast
    mode's per-request baselines on the same users."""
    code = simulate.main(["--real", "--world", "town-scrolled", "--scale", "0.05",
                          "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "real_town-scrolled.json").read_text())
    run = result["policies"]["thompson+strategies"]
    assert run["all_counted"] and run["served_logged"] == 450
    shown = {r["policy"]: r for r in result["summary"]}["thompson+strategies"]["impressions"]
    assert 0 < run["counted"]["impressions"] < shown          # only the slots scrolled to
    shares = result["last_quarter"]
    for key in ("thompson+strategies", "fast:thompson+strategies", "fast:thompson-per-request",
                "fast:beta11-per-request"):
        assert 0 < shares[key] <= 1.0 + 1e-9, key
    markdown = (tmp_path / "real_town-scrolled.md").read_text()
    assert "the `town-scrolled` world" in markdown and "real / this" in markdown
    with pytest.raises(SystemExit, match="changes while it runs"):
        simulate.main(["--real", "--world", "churn", "--out", str(tmp_path)])
