"""No two modules of the service share a name, and no two classes: a name says where a thing
lives (the newcomer's search for `health` or `ServedFeed` finds one place)."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("webapp", "tasks", "geo", "bandit", "config", "pipeline", "store", "obs",
            "devtools")


def modules() -> list[Path]:
    return [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")
            if p.name != "__init__.py"]


def test_no_two_modules_share_a_name():
    by_name = defaultdict(list)
    for path in modules():
        by_name[path.stem].append(str(path.relative_to(ROOT)))
    assert {n: p for n, p in by_name.items() if len(p) > 1} == {}
    packages = {p.name for package in PACKAGES for p in (ROOT / package).rglob("*")
                if p.is_dir() and (p / "__init__.py").exists()} | set(PACKAGES)
    assert not packages & set(by_name), "a module named as a package"


def test_no_two_classes_share_a_name():
    by_name = defaultdict(list)
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                by_name[node.name].append(str(path.relative_to(ROOT)))
    assert {n: p for n, p in by_name.items() if len(p) > 1} == {}
