"""Start Flower behind basic auth. Flower reads FLOWER_BASIC_AUTH and FLOWER_PORT from the
environment itself, so the credentials never show on a command line. Without
FLOWER_BASIC_AUTH it refuses to start, unless LOCAL_DEMO is set, and then it listens on
the loopback address only. HOST, when set, is the one address it listens on."""
from __future__ import annotations

import os
import sys

from config import SettingsError, load_settings

INSPECT_TIMEOUT_MS = 5000


def flower_command() -> list[str]:
    settings = load_settings()
    # a worker still starting (or busy on a loaded machine) answers Flower's first inspect
    # calls after its 1 s default, which Flower logs as "Inspect method ... failed"
    command = [sys.executable, "-m", "celery", "-A", "tasks", "flower",
               f"--port={settings.flower_port}", f"--inspect_timeout={INSPECT_TIMEOUT_MS}"]
    if settings.flower_basic_auth is None:
        if not settings.local_demo:
            raise SettingsError("FLOWER_BASIC_AUTH is not set (user:password): Flower would "
                                "be open to anyone; set it, or LOCAL_DEMO=true for a local run")
        if settings.host is None:
            command.append("--address=127.0.0.1")
    if settings.host is not None:
        command.append(f"--address={settings.host}")
    return command


def main() -> None:
    try:
        command = flower_command()
    except SettingsError as exc:
        sys.exit(f"flower: {exc}")
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
