"""bench.regions on a small run: new cells of the region where nearest sorts best draw it
more with regions than without, and the results are written."""
from __future__ import annotations

import json
from pathlib import Path

from bench import regions


def test_a_small_run_compares_regions_with_none_and_writes_its_results(tmp_path: Path):
    assert regions.main(["--seeds", "2", "--scale", "0.5", "--jobs", "2",
                         "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "regions.json").read_text())
    first, second = result["summary"]["0"], result["summary"]["1"]
    assert all(min(r["district_feeds"]) > 300 for r in result["runs"])
    share = first["strategy_share"]
    assert share["4"]["nearest"] > share["0"]["nearest"] + 0.1   # its region's taste
    assert second["strategy_share"]["4"]["nearest"] < share["4"]["nearest"]
    for summary in (first, second):
        assert summary["lift"][0] > 0 and summary["applies"]["4"] > 0
    page = (tmp_path / "regions.md").read_text()
    assert "first 1,000 feeds" in page and "lift: regions / no regions" in page
