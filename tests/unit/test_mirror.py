"""tests/unit mirrors the service file for file: a module with logic (at least one ``def``),
``pkg/sub/name.py``, is tested in ``tests/unit/pkg/sub/test_name.py``, and every test file under
a service package's tree there is named for the module it tests. The few modules tested
elsewhere are listed below, each with the reason and the place."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = Path("tests/unit")
PACKAGES = ("geo", "bandit", "config", "store", "pipeline", "webapp", "tasks", "obs")

# a package's __init__.py that holds logic is tested under the name of what it holds
INIT_TESTS = {
    "config/__init__.py": "tests/unit/config/test_settings.py",   # Settings, load_settings
    "store/__init__.py": "tests/unit/store/test_store.py",        # Store, over the areas' classes
}

# modules with logic that have no mirror file, and where they are tested instead
NOT_MIRRORED = {
    "geo/checks.py": "the argument checks of every geo function: its doctests, and each "
                     "function's *_rejects_bad_input test in tests/unit/geo/",
    "webapp/__init__.py": "create_app only wires blueprints and handlers; every test in "
                          "tests/unit/webapp/ builds its app with it",
    "webapp/runtime.py": "the per-process objects the views share, built lazily; every "
                         "webapp test goes through it (tests/unit/webapp/conftest.py swaps in "
                         "the fake store)",
    "webapp/requestlog.py": "what every request adds: its log line is read in "
                            "tests/unit/obs/test_logs.py, its count in "
                            "tests/unit/webapp/test_metrics.py",
    "obs/prometheus.py": "the metrics count what the app serves, so they are read back "
                         "through GET /metrics: tests/unit/webapp/test_metrics.py",
    "tasks/celery.py": "the app `celery -A tasks` finds: make_celery "
                       "(tests/unit/tasks/test_factory.py) on the environment's settings, run "
                       "by the real workers of tests/integration/test_learning_loop.py",
    "webapp/command_runtime.py": "finds and pings the Redis a command reads: a real "
                                 "redis-server in tests/integration/test_command_store.py",
    "config/local.py": "the running demo's state, read when a command finds its Redis: "
                       "tests/integration/test_command_store.py",
    "webapp/status.py": "`flask status` against a real Redis and worker: "
                        "tests/integration/test_status.py (its verdict: "
                        "tests/unit/pipeline/reports/test_health.py)",
}


def has_logic(module: str) -> bool:
    tree = ast.parse((ROOT / module).read_text())
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) for n in ast.walk(tree))


def service_modules() -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for package in PACKAGES
                  for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def mirror(module: str) -> str:
    """The test file of ``module``.

    >>> mirror("pipeline/learning/rollup.py")
    'tests/unit/pipeline/learning/test_rollup.py'
    >>> mirror("config/__init__.py")
    'tests/unit/config/test_settings.py'
    """
    if module in INIT_TESTS:
        return INIT_TESTS[module]
    path = Path(module)
    return (UNIT / path.parent / f"test_{path.stem}.py").as_posix()


def test_every_module_with_logic_has_its_mirror_test_file():
    missing = [f"{m}: {mirror(m)}" for m in service_modules()
               if has_logic(m) and m not in NOT_MIRRORED and not (ROOT / mirror(m)).exists()]
    assert missing == []


def test_every_test_file_under_a_service_package_mirrors_a_module():
    mirrors = {mirror(m) for m in service_modules()}
    strays = [p.relative_to(ROOT).as_posix() for package in PACKAGES
              for p in sorted((ROOT / UNIT / package).rglob("test_*.py"))
              if p.relative_to(ROOT).as_posix() not in mirrors]
    assert strays == []


def test_a_package_init_with_logic_names_its_test_file():
    unnamed = [m for m in service_modules() if m.endswith("/__init__.py") and has_logic(m)
               and m not in INIT_TESTS and m not in NOT_MIRRORED]
    assert unnamed == []


def test_each_exception_is_still_needed_and_names_files_that_exist():
    for module, reason in NOT_MIRRORED.items():
        assert (ROOT / module).exists() and has_logic(module), module
        assert not (ROOT / mirror(module)).exists(), f"{module} is mirrored now: drop it here"
        for named in re.findall(r"tests/[\w/]+(?:\.py|/)", reason):
            assert (ROOT / named).exists(), (module, named)
    for module in INIT_TESTS:
        assert (ROOT / module).exists() and has_logic(module), module
