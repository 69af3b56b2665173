"""How much code a feed request runs through, so that a reader can follow it: a cached
request stays within six files of the service's own layers, and a miss goes one way
(read the cell's inputs, build in memory, write)."""
from __future__ import annotations

import sys
from pathlib import Path

from tests.support.api import put_ad

ROOT = Path(__file__).resolve().parents[3]
LAYERS = ("webapp", "pipeline", "store", "tasks", "config")   # the service's own layers
LIBRARIES = ("geo", "bandit", "obs")                          # pure maths; telemetry
FEED = "/v1/feed?lat=52.52&lon=13.405"


def files_run(call) -> set[str]:
    """The repository's files whose code runs during ``call()``."""
    seen: set[str] = set()

    def profile(frame, event, arg):
        if event == "call":
            seen.add(frame.f_code.co_filename)
    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return {Path(f).relative_to(ROOT).as_posix() for f in seen
            if f.startswith(str(ROOT)) and "/.venv/" not in f and "/tests/" not in f}


def test_a_cached_feed_reads_in_at_most_six_files_of_the_service(client, admin):
    for i in range(3):
        put_ad(client, admin, f"ad-{i}", 52.52 + i * 0.001, 13.405)
    assert client.get(FEED).get_json()["cache"] == "miss"
    for _ in range(2):        # the second read also fills this process's cache
        assert client.get(FEED).status_code == 200
    files = files_run(lambda: client.get(FEED))
    own = sorted(f for f in files if f.startswith(LAYERS))
    assert own == ["pipeline/serving/cellfeed.py", "pipeline/serving/feed.py",
                   "webapp/feeds.py", "webapp/requestlog.py", "webapp/runtime.py",
                   "webapp/validation.py"], own
    others = sorted(files - set(own))
    assert all(f.startswith(LIBRARIES) for f in others), others
    assert len(files) <= 12, sorted(files)


def test_a_missed_cell_is_read_once_built_and_written_once(client, admin, fake_store):
    for i in range(3):
        put_ad(client, admin, f"ad-{i}", 52.52 + i * 0.001, 13.405)
    calls: list[str] = []
    for name in dir(type(fake_store)):
        method = getattr(fake_store, name)
        if not name.startswith("_") and callable(method):
            def record(*args, _name=name, _method=method, **kwargs):
                calls.append(_name)
                return _method(*args, **kwargs)
            setattr(fake_store, name, record)
    body = client.get(FEED).get_json()
    assert body["cache"] == "miss" and len(body["ads"]) == 3
    reads = [c for c in calls if c not in ("locate_user", "feed_id_secret", "feed_changes")]
    assert reads == ["feed_value", "cell_inputs", "write_feeds"], calls
