"""bench.regen's page: the sharded speed-up bench.regen_shards measured, or word that it has
not been measured."""
from __future__ import annotations

import json
from pathlib import Path

from bench.regen import sharded_section


def test_the_page_carries_the_sharded_speed_up_or_says_it_is_missing(tmp_path: Path):
    path = tmp_path / "regen_shards.json"
    assert "not measured yet" in sharded_section(path)
    path.write_text(json.dumps({
        "machine": {"date": "2026-12-03T18:32:21+00:00"},
        "params": {"ads": 1_000_000, "cells": 10_000},
        "workers": [{"concurrency": 1, "median_s": 10.5}, {"concurrency": 2, "median_s": 6.65}],
        "summary": {"ratio": 1.578, "target_ratio": 1.7, "target_met": False}}))
    text = sharded_section(path)
    assert "10.50 s on one worker process, 6.65 s on two, **1.58x**" in text
    assert "target 1.7x: not met" in text and "2026-12-03;" in text
