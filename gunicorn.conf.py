"""gunicorn's hooks for the web (gunicorn reads this file from the working directory).

Metrics: each worker writes its counters to files in PROMETHEUS_MULTIPROC_DIR and /metrics
sums them over every worker, so a scrape answered by any one worker counts the requests of
all. The directory is emptied when gunicorn starts (stale files would be summed too); without
the setting, a private temporary one is made and removed at exit.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from config import load_settings

_made_here: list[str] = []


def on_starting(server) -> None:
    path = load_settings().prometheus_multiproc_dir
    if path is None:
        path = tempfile.mkdtemp(prefix="recommender-metrics-")
        _made_here.append(path)
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    # prometheus-client reads it from the environment when a worker imports it
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_exit(server) -> None:
    for path in _made_here:
        shutil.rmtree(path, ignore_errors=True)
