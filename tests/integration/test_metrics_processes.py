"""/metrics on the real gunicorn with several workers: whichever worker answers the scrape,
the counters are the sums over all of them (prometheus-client's multiprocess mode, set up by
gunicorn.conf.py), exact to the request."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devtools.procs import start_web


def healthz_count(base: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "recommender_http_requests_total" and s.labels == {
                    "route": "/healthz", "method": "GET", "status": "200"}:
                return s.value
    return 0.0


@pytest.mark.slow
def test_counters_are_summed_over_every_gunicorn_worker(env: dict[str, str], tmp_path: Path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "gunicorn-metrics").mkdir()
    (metrics_dir / "gunicorn-metrics" / "counter_1.db").write_bytes(b"stale")  # removed
    (metrics_dir / "notes.db").write_bytes(b"not a metric file")  # left alone
    proc, base = start_web({**env, "METRICS_DIR": str(metrics_dir)}, tmp_path, workers=3)
    try:
        start = healthz_count(base)        # the start-up probes of start_web
        sent = 600

        def hit(_: int) -> int:
            with requests.Session() as s:   # a connection each: the workers share the load
                return s.get(f"{base}/healthz", timeout=10).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(hit, range(sent))) == {200}
        counts = {healthz_count(base) for _ in range(12)}   # scrapes answered by any worker
        assert counts == {start + sent}
        writers = {p.name.split("_")[-1]
                   for p in (metrics_dir / "gunicorn-metrics").glob("counter_*.db")}
        assert len(writers) >= 2, writers   # the load reached more than one worker
        assert (metrics_dir / "notes.db").read_bytes() == b"not a metric file"
    finally:
        proc.stop()
