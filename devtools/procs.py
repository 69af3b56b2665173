"""Start the service's own processes (gunicorn, a Celery worker, beat) for tests and
benchmarks, each with an environment of its own, and stop them reliably."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from devtools.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


class Proc:
    """A child process whose output goes to a log file; ``stop`` ends it and its group."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, env=dict(env), cwd=ROOT, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL, group: bool = False) -> None:
        """Signal the main process only (a crash of the worker's parent, for example), or
        with ``group`` every process it started too (a machine losing the whole worker)."""
        if self.alive():
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                os.kill(self.proc.pid, sig)
            self.proc.wait(30)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        else:
            # children of a killed parent may linger in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()

    def wait_for_log(self, needle: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.log():
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name}: no {needle!r} in {timeout_s}s:\n{self.log()[-3000:]}")
            time.sleep(0.1)


def service_env(redis_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update({"REDIS_URL": redis_url, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    # the archive's files: one directory per Redis server, outside the project's tree
    tag = re.sub(r"[^A-Za-z0-9]+", "-", redis_url.partition("://")[2]).strip("-")
    env["ARCHIVE_URL"] = str(Path(tempfile.gettempdir()) / f"recommender-archive-{tag}")
    # the load of tests and benchmarks comes from one loopback address: the rate limits run
    # (their cost is in every figure) but are far above it, unless given
    env.update({f"RATE_LIMIT_{limit}_{kind}": "1000000"
                for limit in ("FEEDS", "EVENTS") for kind in ("PER_S", "BURST")})
    env.update(settings)
    return env


def start_worker(env: Mapping[str, str], log_dir: Path, concurrency: int = 2,
                 name: str = "worker", queues: str = "ingest,rollup,regen",
                 heartbeat: bool = False) -> Proc:
    """A Celery worker; with ``heartbeat`` it sends heartbeats (Flower sees it alive), as
    the Procfile's worker does."""
    hostname = f"{name}-{free_port()}@%h"
    proc = Proc(name, [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queues,
                       "-c", str(concurrency), "-n", hostname, "--without-gossip",
                       "--without-mingle", *([] if heartbeat else ["--without-heartbeat"]),
                       "-l", "INFO"], env, log_dir)
    proc.wait_for_log("ready.", 60)
    return proc


def start_beat(env: Mapping[str, str], log_dir: Path, name: str = "beat") -> Proc:
    schedule = Path(log_dir) / f"{name}-schedule"
    return Proc(name, [sys.executable, "-m", "celery", "-A", "tasks", "beat", "-l", "INFO",
                       "--schedule", str(schedule)], env, log_dir)


def start_flower(env: Mapping[str, str], log_dir: Path) -> tuple[Proc, str]:
    """Flower as the Procfile starts it (FLOWER_PORT, FLOWER_BASIC_AUTH from ``env``)."""
    proc = Proc("flower", [sys.executable, "-m", "tasks.flower"], env, log_dir)
    base = f"http://127.0.0.1:{env.get('FLOWER_PORT', '5555')}"
    wait_for_http(base + "/", proc)
    return proc, base


def wait_until(predicate, timeout_s: float = 30.0, what: str = "condition",
               poll_s: float = 0.1) -> None:
    """Returns once ``predicate()`` is true; AssertionError naming ``what`` after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_s)


def wait_for_http(url: str, proc: Proc, timeout_s: float = 60.0) -> None:
    """Returns once ``url`` answers anything at all; raises if ``proc`` dies first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            if not proc.alive() or time.monotonic() > deadline:
                proc.stop()
                raise RuntimeError(f"{proc.name} did not start:\n{proc.log()[-2000:]}") from None
            time.sleep(0.2)


WEB_SERVERS = ("sync", "gthread", "granian")


def web_command(server: str, port: int, workers: int, threads: int = 4) -> list[str]:
    """The command that serves the app on the loopback: gunicorn's sync workers (the
    Procfile's), gunicorn's gthread workers (``threads`` each, keep-alive), or granian's
    WSGI mode (a Rust HTTP server; ``threads`` blocking threads a worker)."""
    if server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers), "--blocking-threads",
                str(threads), "--no-access-log", "--factory", "webapp:create_app"]
    if server not in WEB_SERVERS:
        raise ValueError(f"unknown web server {server!r}: one of {', '.join(WEB_SERVERS)}")
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers",
               str(workers), "--timeout", "60"]
    if server == "gthread":
        command += ["--worker-class", "gthread", "--threads", str(threads)]
    return [*command, "webapp:create_app()"]


def start_web(env: Mapping[str, str], log_dir: Path, workers: int = 2,
              port: int | None = None, name: str = "web", server: str | None = None,
              threads: int = 4) -> tuple[Proc, str]:
    """The app on a free loopback port (or ``port``), by ``server`` (default: the
    Procfile's sync workers, or WEB_SERVER_UNDER_TEST from this process's environment, so
    that the tests can be run against another server). granian reads no gunicorn.conf.py:
    its workers get a metrics directory of their own here unless ``env`` names one."""
    server = server or os.environ.get("WEB_SERVER_UNDER_TEST", "sync")
    port = port or free_port()
    if server == "granian" and "PROMETHEUS_MULTIPROC_DIR" not in env:
        metrics = log_dir / f"{name}-metrics"
        metrics.mkdir(parents=True, exist_ok=True)
        env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    proc = Proc(name, web_command(server, port, workers, threads), env, log_dir)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except requests.RequestException:
            pass
        if not proc.alive() or time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(f"{server} did not start:\n{proc.log()[-3000:]}")
        time.sleep(0.1)
