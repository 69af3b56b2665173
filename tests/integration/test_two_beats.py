"""Two beats started by mistake: every periodic job still runs once per schedule slot."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from devtools.procs import start_beat, start_worker
from store import Store

WATCH_S = 9.0


def task_results(log: str, task: str) -> list[dict]:
    """The results the worker logged for ``task`` (one JSON line per task run)."""
    out = []
    for line in log.splitlines():
        if line.startswith("{") and f'"task":"{task}"' in line:
            result = orjson.loads(line).get("result")
            if isinstance(result, dict):
                out.append(result)
    return out


@pytest.mark.slow
def test_two_beats_run_each_periodic_job_once_per_slot(env: dict[str, str], tmp_path: Path,
                                                       real_store: Store):
    env = {**env, "ROLLUP_INTERVAL_S": "1", "REGEN_INTERVAL_S": "2"}
    worker = start_worker(env, tmp_path)
    beats = [start_beat(env, tmp_path, name=f"beat{i}") for i in (1, 2)]
    try:
        time.sleep(WATCH_S)
    finally:
        for beat in beats:
            beat.stop()
        time.sleep(1.0)                  # the last messages they sent reach the worker
        worker.stop()
    for task, job, interval_s in (("rollup.run", "rollup", 1.0),
                                  ("regenerate.run", "regenerate", 2.0)):
        results = task_results(worker.log(), task)
        ran = [r["slot"] for r in results if "skipped_run" not in r]
        skipped = [r["slot"] for r in results if "skipped_run" in r]
        assert ran, f"{task} never ran:\n{worker.log()[-3000:]}"
        assert max(Counter(ran).values()) == 1, f"{task} ran twice in a slot: {sorted(ran)}"
        assert len(ran) <= WATCH_S / interval_s + 2
        assert set(skipped) <= set(ran)          # a skipped run's slot did run, once
        assert len(skipped) >= len(ran) - 2      # the second beat fired them too
        assert int(real_store.job_status(job)["runs"]) == len(ran)
