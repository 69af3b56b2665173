"""What ``make run`` keeps under ``.run/``, and how a command finds the demo's Redis.

``make run`` writes ``.run/demo.json`` (mode 0600): its URLs, the admin token, Flower's
password and, while it runs, the embedded Redis's URL and the settings it gave its
processes. A ``flask`` command run without REDIS_URL reads them from it, so it talks to the
demo (and judges it by the demo's own intervals) rather than to whatever listens on
localhost:6379.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
DEMO_STATE = RUN_DIR / "demo.json"


def read_state(path: Path = DEMO_STATE) -> dict[str, Any]:
    """The demo's saved state; empty when there is none or it cannot be read."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_state(state: dict[str, Any], path: Path = DEMO_STATE) -> None:
    """Write ``state`` readable by this user only, replacing the file in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state, out, indent=2)
        out.write("\n")
    os.replace(part, path)


def running_demo(path: Path = DEMO_STATE) -> tuple[str, dict[str, str]] | None:
    """The running demo's Redis URL and the settings it gave its processes (as environment
    variables, so a command judges the demo by the intervals it runs with); None when no
    ``make run`` recorded one."""
    state = read_state(path)
    url, given = state.get("redis_url"), state.get("settings")
    if not isinstance(url, str) or not url:
        return None
    return url, ({str(k): str(v) for k, v in given.items()} if isinstance(given, dict) else {})


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for a message or a log line.

    >>> redacted("redis://:s3cret@cache.internal:6380/0")
    'redis://:***@cache.internal:6380/0'
    >>> redacted("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
