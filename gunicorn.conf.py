"""gunicorn's hooks for the web (gunicorn reads this file from the working directory).

Metrics: each worker writes its counters to files in METRICS_DIR/gunicorn-metrics and
/metrics sums them over every worker, so a scrape answered by any one worker counts the
requests of all. That directory is emptied when gunicorn starts (stale files would be summed
too); without the setting, a private temporary directory is made and removed at exit.
prometheus-client finds the directory in PROMETHEUS_MULTIPROC_DIR, set here for gunicorn's
workers only: a flask command run beside them writes no metric files.
"""
from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path

from config import load_settings

_made_here: list[str] = []


def on_starting(server) -> None:
    path = load_settings().metrics_dir
    if path is None:
        path = tempfile.mkdtemp(prefix="recommender-metrics-")
        _made_here.append(path)
    # a directory of our own inside it: prometheus-client reads every *.db file it finds
    directory = Path(path) / "gunicorn-metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    # prometheus-client reads it from the environment when a worker imports it
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def post_worker_init(worker) -> None:
    """The app is loaded: its modules, routes and models live as long as the worker. Frozen
    out of the garbage collector's sight, a full collection (which a busy worker makes every
    few tens of seconds, as served-log entries outlive the young generations) walks only
    what was made since, a few milliseconds instead of tens: the feed's slowest thousandth."""
    gc.collect()
    gc.freeze()


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_exit(server) -> None:
    for path in _made_here:
        shutil.rmtree(path, ignore_errors=True)
