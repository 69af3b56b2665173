"""geo/ and bandit/ stay pure: numpy, math and the standard library only, no I/O."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"os", "redis", "flask", "celery", "kombu", "requests", "socket", "subprocess",
             "config", "store", "webapp", "tasks", "pipeline"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["geo", "bandit"])
def test_package_imports_only_numpy_math_and_stdlib(package):
    files = list((ROOT / package).rglob("*.py"))
    assert files
    for path in files:
        bad = imported_modules(path) & FORBIDDEN
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
        assert "open(" not in path.read_text(), f"{path.relative_to(ROOT)} does I/O"
