"""The examples in docstrings are tests: ``pytest`` (so ``make test``) collects them from every
package with ``--doctest-modules``. This checks that set-up, and that the pure modules whose
docstrings show what they compute keep showing it."""
from __future__ import annotations

import doctest
import importlib
import pkgutil
import tomllib
from pathlib import Path

import pytest

import bandit
import geo

ROOT = Path(__file__).resolve().parents[2]
SHOWN_BY_EXAMPLE = [
    *(f"{package.__name__}.{info.name}" for package in (geo, bandit)
      for info in pkgutil.iter_modules(package.__path__)),
    "pipeline.learning.examination", "bench.sim.world", "bench.sim.fast", "bench.sim.report",
]


def test_the_test_command_runs_the_examples_of_every_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    options = pyproject["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in options["addopts"].split()
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages <= set(options["testpaths"])


@pytest.mark.parametrize("name", SHOWN_BY_EXAMPLE)
def test_the_module_shows_examples(name: str):
    module = importlib.import_module(name)
    examples = sum(len(test.examples) for test in doctest.DocTestFinder().find(module))
    assert examples > 0, f"{name} has no docstring examples"
