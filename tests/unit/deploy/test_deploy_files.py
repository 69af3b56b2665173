"""The container and CI files, checked by the tools made for them (no image is built or
pulled here, no container runs): docker-compose validates the stack and renders it, hadolint
lints the Dockerfile, actionlint (with shellcheck) the CI workflow, promtool the Prometheus
config that the compose entrypoint derives from deploy/prometheus. The commands are the
Procfile's, and the image's files (what .dockerignore lets through) import and load the app."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.support.tools import require_tool

SECRETS = {"ADMIN_TOKEN": "compose-admin-token-0123456789",
           "FLOWER_PASSWORD": "compose-flower-password",
           "GRAFANA_ADMIN_PASSWORD": "compose-grafana-password"}
APP_SERVICES = {"web", "worker", "beat", "flower"}
SERVICES = APP_SERVICES | {"redis", "redis-exporter", "prometheus", "grafana"}


def _compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [require_tool("docker-compose")]
    return subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), *args], cwd=ROOT,
                          env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"),
                               **env}, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    """The stack as docker-compose resolves it (anchors merged, variables filled in)."""
    run = _compose("config", env=SECRETS)
    assert run.returncode == 0, run.stderr
    return yaml.safe_load(run.stdout)["services"]


def _procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {name: shlex.split(command) for name, command in
            (line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))}


def _dockerfile() -> list[tuple[str, str]]:
    """The instructions, as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _published(service: dict) -> list[tuple[str, int]]:
    """(host address, host port) of each published port, in either syntax compose prints."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), int(port["published"])))
        else:   # "[host_ip:]published:target[/protocol]"
            fields = port.split(":")
            out.append((fields[0] if len(fields) == 3 else "", int(fields[-2])))
    return out


def test_compose_config_is_valid_and_holds_the_whole_stack(services):
    quiet = _compose("config", "-q", env=SECRETS)
    assert quiet.returncode == 0, quiet.stderr
    assert set(services) == SERVICES


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(secret):
    run = _compose("config", "-q", env={k: v for k, v in SECRETS.items() if k != secret})
    assert run.returncode != 0
    assert secret in run.stderr


def test_the_processes_run_the_procfiles_commands(services):
    procfile = _procfile()
    assert set(procfile) == APP_SERVICES
    assert services["worker"]["command"] == procfile["worker"]
    assert services["flower"]["command"] == procfile["flower"]
    # beat: the Procfile's, with its schedule file out of the read-only code directory
    assert services["beat"]["command"] == [*procfile["beat"], "--schedule",
                                           "/tmp/celerybeat-schedule"]
    # web: the image's CMD is the Procfile's web, binding 0.0.0.0:$PORT through gunicorn's
    # own default instead of --bind, and keeping worker heartbeats in memory
    assert "command" not in services["web"]
    cmd = json.loads(dict(_dockerfile())["CMD"])
    web = procfile["web"]
    bind = web.index("--bind")
    assert cmd == [*web[:bind], "--worker-tmp-dir", "/dev/shm", *web[bind + 2:]]
    assert services["web"]["environment"]["PORT"] == "8000"
    for name in APP_SERVICES:
        assert services[name]["image"] == services["web"]["image"]
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_redis_keeps_an_append_only_file_on_a_volume(services):
    redis = services["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    assert any(v.split(":")[1] == "/data" for v in redis["volumes"])
    assert "ports" not in redis     # reached by the services only


def test_published_ports_listen_on_the_loopback_only(services):
    published = {name: _published(s) for name, s in services.items() if s.get("ports")}
    assert set(published) == {"web", "flower", "prometheus", "grafana"}
    for name, ports in published.items():
        assert all(host_ip == "127.0.0.1" for host_ip, _ in ports), (name, ports)


def test_long_running_services_have_healthchecks(services):
    unchecked = {name for name, s in services.items() if "healthcheck" not in s}
    # beat has no port to ask (BeatSilent alerts on it); the exporter's image has no shell
    assert unchecked == {"beat", "redis-exporter"}


def test_prometheus_entrypoint_points_the_deploy_config_at_the_services(services, tmp_path):
    """Runs the Prometheus service's start script (all but its final exec) on this machine,
    with the container's paths mapped here, then checks its output with promtool."""
    service = services["prometheus"]
    assert service["entrypoint"] == ["/bin/sh", "-c"]
    script = service["command"][0].replace("$$", "$")
    prepare, launch = script.split("&& exec ", 1)
    assert launch.startswith("/bin/prometheus --config.file=/tmp/prometheus/prometheus.yml")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    source = Path(mounts["/etc/prometheus/deploy"])
    assert source == ROOT / "deploy" / "prometheus"
    prepare = (prepare.replace("/etc/prometheus/deploy", str(source))
               .replace("/tmp/prometheus", str(tmp_path / "prometheus")))
    run = subprocess.run(["sh", "-c", prepare], env={"PATH": os.environ["PATH"],
                         **service["environment"]}, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "prometheus"
    assert (out / "flower_password").read_text() == SECRETS["FLOWER_PASSWORD"]
    assert (out / "flower_password").stat().st_mode & 0o077 == 0
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    targets = {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
               for job in config["scrape_configs"]}
    assert targets == {"web": ["web:8000"], "flower": ["flower:5555"],
                       "redis": ["redis-exporter:9121"]}
    assert services["flower"]["environment"]["FLOWER_PORT"] == "5555"
    flower_job = next(j for j in config["scrape_configs"] if j["job_name"] == "flower")
    user = services["flower"]["environment"]["FLOWER_BASIC_AUTH"].split(":", 1)[0]
    assert flower_job["basic_auth"]["username"] == user
    check = subprocess.run([require_tool("promtool"), "check", "config", "prometheus.yml"],
                           cwd=out, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard(services):
    grafana = services["grafana"]
    mounts = {v.split(":")[1]: Path(v.split(":")[0]) for v in grafana["volumes"]
              if v.startswith("/")}
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == ROOT / "deploy" / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    assert "--web.listen-address=:9090" in services["prometheus"]["command"][0]
    providers = yaml.safe_load((provisioning / "dashboards" / "recommender.yml").read_text())
    (provider,) = providers["providers"]
    path = provider["options"]["path"]
    assert mounts[f"{path}/recommender.json"] == ROOT / "deploy" / "grafana" / "recommender.json"
    # the dashboard's panels use its `datasource` variable, which picks the default of a type
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "recommender.json").read_text())
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert variable["type"] == "datasource" and variable["query"] == source["type"]


def test_the_dockerfile_passes_hadolint():
    hadolint = require_tool("hadolint")
    run = subprocess.run([hadolint, "--failure-threshold", "info", "Dockerfile"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_image_runs_as_a_user_on_a_pinned_python_311():
    instructions = _dockerfile()
    (base,) = [args for key, args in instructions if key == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    users = [args for key, args in instructions if key == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "ADD" not in dict(instructions)
    assert ("RUN", "pip install --no-cache-dir -r requirements.txt") in instructions


def _ignored(patterns: list[str], path: str) -> bool:
    """Whether .dockerignore's patterns leave ``path`` (or a directory above it) out."""
    def regex(pattern: str) -> str:
        out = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        return out.replace(r"\?", "[^/]")
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(re.fullmatch(regex(p), prefix) for p in patterns for prefix in prefixes)


def test_the_image_files_load_the_web_app_and_the_celery_app(tmp_path):
    """What .dockerignore lets into the build context is enough to load every process's
    code: the app factory through gunicorn's config check, the Celery app, Flower's
    launcher. (Run with this venv's packages, which are requirements.txt's and more.)"""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns)   # _ignored has no exceptions
    context = tmp_path / "app"
    for directory, subdirectories, files in os.walk(ROOT):
        here = Path(directory).relative_to(ROOT)
        subdirectories[:] = [d for d in subdirectories
                             if not _ignored(patterns, (here / d).as_posix())]
        for name in files:
            if not _ignored(patterns, (here / name).as_posix()):
                (context / here).mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / here / name, context / here / name)
    assert not (context / "tests").exists() and not (context / ".venv").exists()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(context),
           "PORT": "8000", "REDIS_URL": "redis://redis:6379/0"}
    load = subprocess.run([sys.executable, "-c", "import tasks.celery, tasks.flower, webapp; "
                           "webapp.create_app()"], cwd=context, env=env,
                          capture_output=True, text=True, timeout=120)
    assert load.returncode == 0, load.stderr
    cmd = json.loads(dict(_dockerfile())["CMD"])
    gunicorn = Path(sys.executable).parent / cmd[0]
    check = subprocess.run([str(gunicorn), "--check-config", *cmd[1:]], cwd=context, env=env,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_ci_workflow_passes_actionlint_and_runs_make_test():
    path = ROOT / ".github" / "workflows" / "ci.yml"
    actionlint = require_tool("actionlint")
    shellcheck = require_tool("shellcheck")
    run = subprocess.run([actionlint, "-shellcheck", shellcheck, str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    workflow = yaml.safe_load(path.read_text())
    triggers = workflow[True]   # YAML 1.1 reads the key `on` as a boolean
    assert {"push", "pull_request"} <= set(triggers)
    (job,) = workflow["jobs"].values()
    assert job["container"]["image"].startswith("python:3.11-bookworm")
    assert [step["run"] for step in job["steps"] if "run" in step] == ["make test"]


def test_a_gunicorn_worker_freezes_the_loaded_app_out_of_the_collectors_sight():
    """gunicorn.conf.py's post_worker_init: after the app is loaded, its objects are frozen
    (a full collection then walks only what was made since), and collection stays on."""
    script = (
        "import gc, runpy\n"
        "conf = runpy.run_path('gunicorn.conf.py')\n"
        "from webapp import create_app\n"
        "create_app()\n"
        "before = gc.get_freeze_count()\n"
        "conf['post_worker_init'](None)\n"
        "print(before, gc.get_freeze_count(), gc.isenabled())\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "REDIS_URL": "redis://x:1"})
    assert done.returncode == 0, done.stderr
    before, after, enabled = done.stdout.split()
    assert int(before) == 0 and int(after) > 10_000 and enabled == "True"
