"""bench.employers: the employer rule's cost and effect over worlds of the family, on a small
run: the rule empties the crowded feeds the service without it serves, and its results are
written."""
from __future__ import annotations

import json
from pathlib import Path

from bench import employers
from bench.sim.fast import ANY_EMPLOYER, THOMPSON_WITH_STRATEGIES


def test_a_small_run_shows_the_rule_at_work_and_writes_its_results(tmp_path: Path):
    employers.main(["--worlds", "one-employer-indifferent,apply-signal", "--seeds", "2",
                    "--scale", "0.2", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "employers.json").read_text())
    worlds = {w["world"]: w for w in result["worlds"]}
    crowded = worlds["one-employer-indifferent"]["crowded"]
    assert crowded[THOMPSON_WITH_STRATEGIES] == 0 and crowded[ANY_EMPLOYER] > 0.3
    largest = worlds["one-employer-indifferent"]["largest"]
    assert largest[ANY_EMPLOYER] > 0.25 > 0.2 >= largest[THOMPSON_WITH_STRATEGIES]
    for w in worlds.values():
        assert 0.9 < w["per_feed"][0] < 1.05            # feed by feed: a little either way
        assert len(w["runs"]) == 2
    page = (tmp_path / "employers.md").read_text()
    assert "feed by feed" in page and "| `apply-signal` |" in page
