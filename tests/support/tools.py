"""System tools some tests drive (prometheus, promtool, chromium, a Redis exporter): found on
PATH, else the test skips naming the Debian package, except under CI=true, where a missing
tool fails the test (CI must run them all; `make test` installs them when run as root)."""
from __future__ import annotations

import os
import shutil

import pytest

PACKAGES = {"promtool": "prometheus", "prometheus": "prometheus",
            "prometheus-redis-exporter": "prometheus-redis-exporter",
            "chromium": "chromium", "chromedriver": "chromium-driver", "wrk": "wrk"}


def require_tool(name: str) -> str:
    """The tool's path; a skip (a failure under CI=true) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        message = (f"{name} is not installed: apt-get install {PACKAGES[name]} "
                   "(make test installs it when run as root)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path
