"""deploy/prometheus: the scrape config and the alert rules are valid for promtool, and every
alert has a unit test that makes it fire and one where it stays silent."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.conftest import ROOT
from tests.support.tools import require_tool

DEPLOY = ROOT / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("promtool"), *args], cwd=DEPLOY, capture_output=True,
                          text=True, timeout=120)


def test_the_config_and_the_rules_pass_promtool_checks():
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_the_alert_unit_tests_pass():
    run = promtool("test", "rules", "alerts_test.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout + run.stderr


def test_every_alert_is_tested_firing_and_silent():
    alerts = {r["alert"] for g in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
              for r in g["rules"] if "alert" in r}
    assert alerts >= {"PipelineLagHigh", "FeedsStale", "HighErrorRate", "NoWorkerAlive",
                      "BeatSilent", "RedisDown", "PeriodicJobLate", "FlowerDown"}
    fired, silent = set(), set()
    for test in yaml.safe_load((DEPLOY / "alerts_test.yml").read_text())["tests"]:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else silent).add(case["alertname"])
    assert fired == alerts and silent == alerts


def test_a_broken_rule_is_caught(tmp_path: Path):
    """The checks above can fail: promtool rejects a rule with a bad expression."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: Bad\n"
                   "        expr: sum(rate(recommender_http_requests_total[5m]) > \n")
    run = subprocess.run([require_tool("promtool"), "check", "rules", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
