"""Which Redis a ``flask`` command reads, and what it says when it cannot reach it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from config import load_settings
from config.local import write_state
from devtools.redis_server import free_port
from store import Store
from webapp import command_runtime, create_app

COMMANDS = [["report", "ctr"], ["evaluate"], ["ads", "reindex"]]


def invoke(settings, args, demo_state: Path, monkeypatch):
    monkeypatch.setattr(command_runtime, "DEMO_STATE", demo_state)
    return create_app(settings).test_cli_runner().invoke(args=args)


@pytest.mark.parametrize("args", [*COMMANDS, ["ads", "import", "ADS"]], ids=" ".join)
def test_an_unreachable_store_is_one_line_naming_the_url_and_exit_1(args, tmp_path,
                                                                    monkeypatch):
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    ads = tmp_path / "ads.jsonl"
    ads.write_text(json.dumps({"ad_id": "a1", "title": "x", "lat": 1, "lon": 2}) + "\n")
    args = [str(ads) if a == "ADS" else a for a in args]
    result = invoke(load_settings({"REDIS_URL": url}), args, tmp_path / "none.json", monkeypatch)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: cannot reach Redis at redis://:***@127.0.0.1:")
    assert "Traceback" not in result.output and "s3cret" not in result.output
    assert len(lines) == 1


def test_without_redis_url_a_command_reads_the_running_demos_redis(redis_url, tmp_path,
                                                                    monkeypatch):
    state = tmp_path / "demo.json"
    write_state({"redis_url": redis_url}, state)
    ads = tmp_path / "ads.jsonl"
    ads.write_text(json.dumps({"ad_id": "found-1", "title": "Barista", "company": "Kaffee",
                               "lat": 52.5, "lon": 13.4}) + "\n")
    result = invoke(load_settings({}), ["ads", "import", str(ads)], state, monkeypatch)
    assert result.exit_code == 0, result.output
    assert f"using the demo's Redis at {redis_url}" in result.output
    assert Store.from_url(redis_url).get_ad("found-1") is not None
    assert state.stat().st_mode & 0o077 == 0              # the state is this user's only


def test_without_redis_url_or_a_running_demo_the_command_says_which_redis_it_reads(
        tmp_path, monkeypatch):
    state = tmp_path / "demo.json"
    write_state({"redis_url": f"redis://127.0.0.1:{free_port()}/0"}, state)   # a stopped demo
    settings = load_settings({})
    app = create_app(settings)
    app.extensions["runtime"].store = Store.from_url(f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(command_runtime, "DEMO_STATE", state)
    result = app.test_cli_runner().invoke(args=["report", "ctr"])
    assert "REDIS_URL is unset: reading redis://localhost:6379/0, the default" in result.output
    assert result.exit_code == 1 and "cannot reach Redis" in result.output


def test_a_command_on_the_demo_judges_it_by_the_demos_own_intervals(redis_url, tmp_path,
                                                                     monkeypatch):
    """`flask status` in another shell: the demo regenerates every 15 s, so a regeneration
    is late after 45 s, not after the default's 180 s."""
    state = tmp_path / "demo.json"
    write_state({"redis_url": redis_url, "settings": {"REGEN_INTERVAL_S": "15",
                                                      "LOCAL_DEMO": "true"}}, state)
    result = invoke(load_settings({}), ["status", "--format", "json"], state, monkeypatch)
    assert json.loads(result.stdout)["thresholds"]["regenerate_age_s"] == 45
    # an explicit setting still wins over the demo's
    result = invoke(load_settings({"REGEN_INTERVAL_S": "30"}), ["status", "--format", "json"],
                    state, monkeypatch)
    assert json.loads(result.stdout)["thresholds"]["regenerate_age_s"] == 90
