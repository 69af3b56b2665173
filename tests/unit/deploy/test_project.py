"""The project as a package: installable (``pip install -e .``, which ``make`` runs), with
its packages and data listed, and nothing that edits ``sys.path`` by hand."""
from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("webapp", "tasks", "geo", "bandit", "config", "pipeline", "store", "obs",
            "devtools", "bench")


def test_the_project_table_names_its_packages_and_pinned_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11"
    dynamic = project["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"]["file"] == ["requirements.txt"]
    assert set(dynamic["optional-dependencies"]) == {"test", "bench"}
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(p.rstrip("*") for p in include) == sorted(PACKAGES)
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert on_disk == set(PACKAGES)          # every package is listed, nothing else is


def test_it_is_installed_in_the_virtualenv_from_this_checkout():
    dist = importlib.metadata.distribution("job-ad-recommender")
    required = {re.split(r"[=<>\[ ]", r)[0].lower() for r in dist.requires or []
                if "extra ==" not in r}
    pinned = {re.split(r"[=<>\[ ]", line)[0].lower()
              for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert required == pinned


def test_nothing_edits_sys_path():
    offenders = [str(p.relative_to(ROOT)) for package in (*PACKAGES, "tests")
                 for p in (ROOT / package).rglob("*.py")
                 if re.search(r"sys\.path\.(insert|append)|sys\.path \+?=", p.read_text())
                 and p.name != "test_project.py"]
    assert offenders == []


def test_running_installs_no_test_or_benchmark_tool():
    """`make run` installs requirements.txt alone: the tests' and benchmarks' tools are in
    requirements-dev.txt, which `make test` adds."""
    def names(path: Path) -> set[str]:
        return {re.split(r"[=<>\[ ]", line)[0].lower()
                for line in path.read_text().splitlines()
                if line.strip() and not line.startswith(("#", "-"))}
    run, dev = names(ROOT / "requirements.txt"), names(ROOT / "requirements-dev.txt")
    assert not run & dev
    assert {"pytest", "selenium", "schemathesis", "hypothesis", "matplotlib"} <= dev
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: \$\(BIN\)/\.installed$", makefile, re.M)
    assert re.search(r"^test: \$\(BIN\)/\.installed-dev$", makefile, re.M)
