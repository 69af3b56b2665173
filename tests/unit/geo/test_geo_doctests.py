"""Every example in a geo docstring runs and gives what it shows."""
from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import geo

GEO_MODULES = [importlib.import_module(f"geo.{info.name}")
               for info in pkgutil.iter_modules(geo.__path__)]


@pytest.mark.parametrize("module", GEO_MODULES, ids=lambda module: module.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module.__name__} has no docstring examples"
    assert result.failed == 0
