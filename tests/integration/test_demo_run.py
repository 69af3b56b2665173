"""``make run`` as a new user meets it (``python -m devtools.run``, in a run directory of the
test's own): it listens on the loopback address only, refuses a busy port before doing
anything, keeps its data and credentials across a restart, starts afresh on request, and
ends cleanly on Ctrl-C."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from devtools.procs import ROOT
from devtools.redis_server import free_port

pytestmark = pytest.mark.slow


class Demo:
    def __init__(self, run_dir: Path, port: int, flower_port: int, *args: str) -> None:
        env = {k: v for k, v in os.environ.items()
               if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        env.update(PORT=str(port), FLOWER_PORT=str(flower_port), PYTHONUNBUFFERED="1")
        self.port, self.flower_port, self.run_dir = port, flower_port, run_dir
        self.log = run_dir.parent / f"demo-{time.monotonic_ns()}.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.run", "--run-dir", str(run_dir),
             "--demo-ads", "200", *args], env=env, cwd=ROOT, stdout=self._out,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()[-3000:]
            try:
                ready = requests.get(f"{self.base}/readyz", timeout=1).status_code == 200
                if ready and listening(self.flower_port) and worker_ready(self.output()):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise TimeoutError(self.output()[-3000:])

    def interrupt(self) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to the whole process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(60)
        finally:
            self.stop()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._out.close()


def banner_curls(output: str) -> list[str]:
    """The curl commands the demo's banner prints, a continued line joined to the next."""
    lines = output[output.index("Try:"):output.index("Ctrl-C stops")].splitlines()
    commands, pending = [], ""
    for line in lines:
        text = pending + line.strip() if pending else line
        if not pending and "curl " not in text:
            continue
        text = text[text.index("curl "):] if not pending else text
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        commands.append(text.split("   (")[0].strip())
    return commands


def listening(port: int) -> list[str]:
    """The local addresses that listen on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:   # 0A: LISTEN
                found.append(decode(address, width))
    return found


def decode(address: str, width: int) -> str:
    if width == 8:
        return ".".join(str(b) for b in reversed(bytes.fromhex(address)))
    words = [bytes.fromhex(address[i:i + 8])[::-1].hex() for i in range(0, 32, 8)]
    return "".join(words)   # IPv6, enough to tell it is not 127.0.0.1


def test_the_demo_is_local_refuses_a_busy_port_keeps_its_data_and_stops_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    port, flower_port = free_port(), free_port()
    demo = Demo(run_dir, port, flower_port)
    try:
        demo.wait_ready()
        # only the loopback address, for the web and for Flower
        assert listening(port) == ["127.0.0.1"]
        assert listening(flower_port) == ["127.0.0.1"]
        # every curl the banner offers answers 2xx with a body
        for command in banner_curls(demo.output()):
            run = subprocess.run(["bash", "-c", f"{command} -sS -w '\\n%{{http_code}}'"],
                                 capture_output=True, text=True, timeout=120)
            body, _, code = run.stdout.rpartition("\n")
            assert run.returncode == 0 and code.startswith("2") and body.strip(), \
                (command, run.stdout[-500:], run.stderr[-500:])
        state = json.loads((run_dir / "demo.json").read_text())
        assert (run_dir / "demo.json").stat().st_mode & 0o077 == 0
        assert str(run_dir / "demo.json") in demo.output()
        assert state["urls"]["api"] == demo.base
        admin = {"Authorization": f"Bearer {state['admin_token']}"}
        ad_id = json.loads((run_dir / "demo-ads.jsonl").read_text().splitlines()[1])["ad_id"]
        posted = requests.post(f"{demo.base}/v1/events", json={"events": [
            {"event_id": "kept-1", "ad_id": ad_id, "type": "apply"}]}, timeout=5)
        assert posted.status_code == 202, posted.text
        deadline = time.monotonic() + 60   # the event is ingested by the worker, then rolled up
        while True:
            rolled = requests.post(f"{demo.base}/v1/admin/rollup?wait=true", headers=admin,
                                   timeout=60)
            assert rolled.status_code == 200, rolled.text
            stats = requests.get(f"{demo.base}/v1/stats/ads/{ad_id}", timeout=5).json()
            if stats["counters"]["applies"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert stats["counters"]["applies"] == 1, stats

        # a second demo on the same port: refused at once, naming the port and the way out
        second = subprocess.run(
            [sys.executable, "-m", "devtools.run", "--run-dir", str(tmp_path / "other")],
            env={**os.environ, "PORT": str(port), "FLOWER_PORT": str(free_port())},
            cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"port {port} (PORT)" in second.stderr and "PORT=" in second.stderr
        assert "Traceback" not in second.stderr + second.stdout
        assert "importing" not in second.stderr + second.stdout
        assert not (tmp_path / "other" / "demo.json").exists()
    finally:
        code = demo.interrupt()
    assert code == 0, demo.output()[-3000:]
    assert "Traceback" not in demo.output()
    assert not listening(port) and not listening(flower_port)

    # a restart keeps the ads, what was learnt and the credentials
    again = Demo(run_dir, port, flower_port)
    try:
        again.wait_ready()
        assert "keeping the 200 live ads" in again.output()
        assert "importing" not in again.output()
        assert json.loads((run_dir / "demo.json").read_text())["admin_token"] == \
            state["admin_token"]
        stats = requests.get(f"{again.base}/v1/stats/ads/{ad_id}", timeout=5).json()
        assert stats["counters"]["applies"] == 1
    finally:
        assert again.interrupt() == 0

    # FRESH=1: an empty store, a new catalogue and new credentials
    fresh = Demo(run_dir, port, flower_port, "--fresh")
    try:
        fresh.wait_ready()
        assert "created 200" in fresh.output()
        assert json.loads((run_dir / "demo.json").read_text())["admin_token"] != \
            state["admin_token"]
        assert requests.get(f"{fresh.base}/v1/stats/ads/{ad_id}",
                            timeout=5).json()["counters"]["applies"] == 0
    finally:
        assert fresh.interrupt() == 0


def worker_ready(output: str) -> bool:
    """Whether the Celery worker has said it is ready (its pool started)."""
    return re.search(r"celery@\S+ ready\.", output) is not None


def test_ctrl_c_ends_make_run_without_a_make_error(tmp_path):
    """`make run` as the README gives it, stopped with Ctrl-C (SIGINT to the terminal's
    process group): everything stops and make prints no "make: *** ... Error" line."""
    port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(PORT=str(port), FLOWER_PORT=str(flower_port), PYTHONUNBUFFERED="1",
               RUN_DIR=str(tmp_path / "run"))
    log = tmp_path / "make.log"
    with log.open("wb") as out:
        make = subprocess.Popen(["make", "-s", "run"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            # as a user would, once everything is up: a Ctrl-C while Celery still forks its
            # pool makes Celery itself print a traceback (WorkerLostError)
            while (not listening(flower_port) or not listening(port)
                   or not worker_ready(log.read_text())):
                assert make.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
            assert (tmp_path / "run" / "demo.json").exists()     # RUN_DIR was used
            os.killpg(make.pid, signal.SIGINT)
            code = make.wait(60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(make.pid, signal.SIGKILL)
    text = log.read_text()
    # make itself gets the SIGINT too and ends by it once its recipe has ended (as with any
    # Ctrl-C); what it must not do is report the recipe as failed
    assert code in (0, -signal.SIGINT), text[-3000:]
    assert "make: ***" not in text and "Traceback" not in text, text[-3000:]
    assert not listening(port) and not listening(flower_port)
