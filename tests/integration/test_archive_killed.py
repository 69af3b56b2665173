"""An archive run killed with -9 at each step, on a real redis-server: while writing a file,
after renaming it, after moving the cursor. The process dies holding the archive lock; the
next run waits for the lock to expire (TASK_TIME_LIMIT_S) and then archives the rest:
every counted event is in the archive exactly once, and no hidden file is left."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from config import Settings
from devtools.procs import ROOT
from pipeline.archive import read_archive, run_archive
from pipeline.learning.rollup import run_rollup
from store import Store
from tests.support.builders import events_of, send

# run in a child process: archive, and SIGKILL ourselves at STEP
CHILD = """
import os, signal, sys, time
from config import load_settings
from pipeline.archive import Archive, run_archive
from store import Store

step = sys.argv[1]
settings = load_settings()
store = Store.from_url(settings.redis_url)
real_write, real_move = Archive.write, Store.move_archive_cursor

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def write(self, kind, day, partition, first, groups):
    if step == "writing":
        def one_then_die():
            yield next(groups)
            die()
        return real_write(self, kind, day, partition, first, one_then_die())
    done = real_write(self, kind, day, partition, first, groups)
    if step == "renamed":
        die()
    return done

def move(self, kind, partition, expected, new):
    moved = real_move(self, kind, partition, expected, new)
    if step == "cursor_moved":
        die()
    return moved

Archive.write, Store.move_archive_cursor = write, move
run_archive(store, settings, time.time())
sys.exit(3)    # not killed: the step was never reached
"""


@pytest.mark.slow
@pytest.mark.parametrize("step", ["writing", "renamed", "cursor_moved"])
def test_an_archive_run_killed_at_each_step_loses_and_doubles_nothing(
        real_store: Store, real_settings: Settings, redis_url: str, tmp_path: Path, step: str):
    settings = real_settings.model_copy(update={"archive_row_group": 100,
                                                "task_time_limit_s": 10,
                                                "archive_url": str(tmp_path / "archive")})
    events = [e for a in range(20) for e in events_of(f"a{a}", time.time(), impressions=25)]
    for i in range(0, len(events), 50):
        send(real_store, settings, events[i:i + 50], time.time())
    run_rollup(real_store, settings, time.time())
    env = {"REDIS_URL": redis_url, "ARCHIVE_URL": settings.archive_url,
           "ARCHIVE_ROW_GROUP": "100", "TASK_TIME_LIMIT_S": "10", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(ROOT)}
    child = subprocess.run([sys.executable, "-c", CHILD, step], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -9, child.stdout + child.stderr
    hidden = [p for p in Path(settings.archive_url).rglob(".tmp-*")]
    assert len(hidden) == (1 if step == "writing" else 0)

    assert "skipped_run" in run_archive(real_store, settings, time.time())   # lock still held
    deadline = time.monotonic() + 30
    while "skipped_run" in (report := run_archive(real_store, settings, time.time())):
        assert time.monotonic() < deadline, "the dead run's lock never expired"
        time.sleep(0.5)
    assert report["events_adopted"] == (1 if step == "renamed" else 0)
    ids = read_archive(settings.archive_url, "events", ["event_id"]).column("event_id").to_pylist()
    assert sorted(ids) == sorted(e.event_id for e in events)        # none lost, none twice
    assert not list(Path(settings.archive_url).rglob(".tmp-*"))
