"""ruff, with the rules pyproject.toml selects, finds nothing in the repository: the test
command (and so CI) fails on a finding."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).parent / "ruff"      # pinned in requirements-dev.txt


def test_ruff_finds_nothing():
    assert RUFF.exists(), f"no {RUFF}: pip install -r requirements-dev.txt"
    result = subprocess.run([str(RUFF), "check", "--no-cache", "--output-format", "concise",
                             "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
