"""A 60 s mixed load at capacity (bench/load.py): zero errors, and every event the server
accepted counted by the rollup exactly once."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import load
from tests.support.tools import require_tool


@pytest.mark.slow
def test_a_minute_at_capacity_has_no_errors_and_accounts_for_every_event(tmp_path: Path):
    require_tool("wrk")
    result = load.run(60.0, tmp_path)
    assert result["errors"] == 0, result
    assert result["requests"] > 10_000 and result["posts"] > 1_000
    assert result["accounted"], result
    assert result["counted"] == result["accepted_by_server"] >= result["accepted"] > 0
