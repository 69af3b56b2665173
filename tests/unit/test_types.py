"""mypy, with the [tool.mypy] settings of pyproject.toml (the service packages, every function
annotated), finds nothing: the test command (and so CI) fails on a type error."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.support.tools import missing

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_finds_nothing():
    if importlib.util.find_spec("mypy") is None:      # pinned in requirements-dev.txt
        missing("mypy is not installed: pip install -r requirements-dev.txt (make test does)")
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "pyproject.toml"],
                            cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
