"""The whole system watched by a real Prometheus: web, worker (with heartbeats), beat, Flower
behind basic auth and a Redis exporter, scraped with deploy/prometheus/prometheus.yml (its
targets pointed at this run) under a short load. Prometheus loads the alert rules, scrapes
every target, and every query of every panel of deploy/grafana/recommender.json parses and
returns data. Flower answers 401 without its password and, with it, lists the worker and the
tasks it ran."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
import yaml

from devtools.procs import (
    Proc,
    start_beat,
    start_flower,
    start_web,
    start_worker,
    wait_for_http,
    wait_until,
)
from devtools.redis_server import free_port
from tests.conftest import ROOT
from tests.integration.traffic import drive_load
from tests.support.tools import require_tool

FLOWER_USER, FLOWER_PASSWORD = "ops", "flower-pw-31c4e9"


def prometheus_config(tmp_path: Path, web: str, flower: str, exporter: str) -> Path:
    """deploy/prometheus/prometheus.yml with this run's targets and a 1 s scrape."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ROOT / "deploy/prometheus" / f) for f in config["rule_files"]]
    targets = {"web": web, "flower": flower, "redis": exporter}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]].split("//")[-1]]}]
        if "basic_auth" in job:
            password = tmp_path / "flower_password"
            password.write_text(FLOWER_PASSWORD)
            job["basic_auth"] = {"username": FLOWER_USER, "password_file": str(password)}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((ROOT / "deploy/grafana/recommender.json").read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel["targets"]]


def query(prometheus: str, expr: str) -> dict:
    return requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_prometheus_scrapes_everything_and_every_panel_has_data(env: dict[str, str],
                                                                  redis_url: str,
                                                                  tmp_path: Path):
    prometheus_bin = require_tool("prometheus")
    exporter_bin = require_tool("prometheus-redis-exporter")
    env = {**env, "ROLLUP_INTERVAL_S": "1", "REGEN_INTERVAL_S": "2",
           "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
           "FLOWER_PORT": str(free_port())}
    procs: list[Proc] = []
    try:
        worker = start_worker(env, tmp_path, heartbeat=True)
        procs.append(worker)
        flower, flower_base = start_flower(env, tmp_path)
        procs.append(flower)
        procs.append(start_beat(env, tmp_path))
        web_proc, web = start_web(env, tmp_path)
        procs.append(web_proc)
        exporter_port = free_port()
        exporter = Proc("redis-exporter", [exporter_bin, "-redis.addr", redis_url,
                                           "-web.listen-address", f"127.0.0.1:{exporter_port}"],
                        env, tmp_path)
        procs.append(exporter)
        wait_for_http(f"http://127.0.0.1:{exporter_port}/metrics", exporter)
        prometheus_port = free_port()
        prometheus = f"http://127.0.0.1:{prometheus_port}"
        config = prometheus_config(tmp_path, web, flower_base, f"127.0.0.1:{exporter_port}")
        procs.append(Proc("prometheus", [prometheus_bin, f"--config.file={config}",
                                         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                         f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                          env, tmp_path))
        wait_for_http(f"{prometheus}/-/ready", procs[-1])

        feeds = drive_load(web, 12)
        assert feeds > 50

        # Flower: closed without its password; with it, the worker and the tasks it ran
        assert requests.get(f"{flower_base}/api/workers", timeout=10).status_code == 401
        auth = (FLOWER_USER, FLOWER_PASSWORD)
        workers = requests.get(f"{flower_base}/api/workers", params={"refresh": "1"},
                               auth=auth, timeout=30).json()
        assert any(name.startswith("worker-") for name in workers), workers
        types = requests.get(f"{flower_base}/api/task/types", auth=auth, timeout=10).json()
        assert {"ingest.events", "rollup.run", "regenerate.run"} <= set(types["task-types"])

        # every target up, the rules loaded and healthy
        wait_until(lambda: {r["metric"]["job"] for r in query(prometheus, "up == 1")["data"]
                            ["result"]} == {"web", "flower", "redis"}, 60, "every target up",
                   poll_s=0.5)
        rules = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = {r["name"]: r["health"] for g in rules for r in g["rules"]}
        assert len(loaded) >= 8 and set(loaded.values()) == {"ok"}, loaded

        # every panel's query parses and returns data
        def missing() -> list[str]:
            out = []
            for title, expr in panel_queries():
                answer = query(prometheus, expr)
                if answer.get("status") != "success" or not answer["data"]["result"]:
                    out.append(f"{title}: {expr} -> {str(answer)[:200]}")
            return out

        deadline = time.monotonic() + 60
        while missing() and time.monotonic() < deadline:
            time.sleep(1)
        assert not missing(), "\n".join(missing())
        flower_tasks = query(prometheus,
                             'sum by (task) (flower_events_total{type="task-succeeded"})')
        assert {r["metric"]["task"] for r in flower_tasks["data"]["result"]} >= {
            "ingest.events", "rollup.run", "regenerate.run"}
        sent = query(prometheus, 'flower_events_total{type="task-sent", task="rollup.run"}')
        assert sent["data"]["result"], "beat's task-sent events reach Flower (BeatSilent)"
        # a healthy system: the alert rules, evaluated on the real series, find nothing
        firing = query(prometheus, "ALERTS")["data"]["result"]
        assert firing == [], [a["metric"] for a in firing]
        # Flower asked the worker for its registered tasks and the rest, and had its answers
        assert "Inspect method" not in flower.log(), flower.log()[-2000:]
    finally:
        for proc in reversed(procs):
            proc.stop()
