"""A RabbitMQ node of our own: free loopback ports, its own epmd, its own data directory.

Used by the tests that run the pipeline with RabbitMQ as the broker. It never talks to a
node already running on the machine: the node's name, its AMQP and distribution ports and
the epmd it registers with are all its own, and everything it writes is under
``directory``. It needs Debian's ``rabbitmq-server`` package (``make test`` installs it).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from kombu import Connection
from kombu.exceptions import ChannelError
from kombu.transport.native_delayed_delivery import MAX_LEVEL, level_name

from devtools.redis_server import _end_with_parent, free_port

# Debian's /usr/sbin/rabbitmq-server switches to the rabbitmq user, which could not write
# our directory; the script it wraps runs the node as whoever starts it
SCRIPT_CANDIDATES = ("/usr/lib/rabbitmq/bin/rabbitmq-server",)


def rabbitmq_binary() -> str | None:
    """The script that starts a node, or None when RabbitMQ is not installed."""
    for path in SCRIPT_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("rabbitmq-server")


def clear_queues(url: str, queues: Sequence[str]) -> list[str]:
    """Delete ``queues`` and Celery's delayed-delivery queues on the broker at ``url`` (a
    node of the tests' own), so that no message of one test reaches the next; the workers
    declare them again. Returns the queues that existed."""
    deleted = []
    with Connection(url, connect_timeout=5) as conn:
        for name in (*queues, *(level_name(level) for level in range(MAX_LEVEL + 1))):
            channel = conn.channel()
            try:
                channel.queue_declare(queue=name, passive=True)
                channel.queue_delete(queue=name)
                deleted.append(name)
            except ChannelError:       # never declared
                pass
            finally:
                # a channel the broker closed after the failed check raises here
                with contextlib.suppress(Exception):
                    channel.close()
    return deleted


class RabbitNode:
    """Start with ``start()``, stop with ``stop()``; or use it as a context manager."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory or tempfile.mkdtemp(prefix="rabbitmq-"))
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.name = f"test{self.port}@localhost"
        self.epmd: subprocess.Popen | None = None
        self.node: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        d = self.directory
        return {**os.environ,
                "HOME": str(d),                      # its own Erlang cookie
                "ERL_EPMD_PORT": str(self.epmd_port),
                "RABBITMQ_NODENAME": self.name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
                # none of the machine's own files under /etc/rabbitmq: they could name its
                # epmd port or listeners
                "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
                "RABBITMQ_CONFIG_FILES": str(d / "conf.d"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
                "RABBITMQ_LOG_BASE": str(d / "log"),
                "RABBITMQ_PID_FILE": str(d / "node.pid")}

    def start(self, timeout_s: float = 60.0) -> RabbitNode:
        script = rabbitmq_binary()
        epmd = shutil.which("epmd")
        if script is None or epmd is None:
            raise RuntimeError("rabbitmq-server is not installed (Debian: apt-get install "
                               "rabbitmq-server; make test installs it)")
        d = self.directory
        for sub in ("mnesia", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "log.console = false\nlog.file.level = warning\n")
        (d / "enabled_plugins").write_text("[].\n")
        (d / "rabbitmq-env.conf").write_text("")
        (d / "conf.d").mkdir(exist_ok=True)
        (d / "advanced.config").write_text("[].\n")
        try:
            # each in a session of its own (a Ctrl-C reaches the tests first, which stop it),
            # and ended by the kernel should this process die first
            self.epmd = subprocess.Popen([epmd, "-address", "127.0.0.1", "-port",
                                          str(self.epmd_port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=_end_with_parent)
            with open(d / "node.out", "wb") as out:
                self.node = subprocess.Popen([script], env=self._env(), stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True,
                                             preexec_fn=_end_with_parent)
            self._wait(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, timeout_s: float) -> None:
        assert self.node is not None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with Connection(self.url, connect_timeout=1) as conn:
                    conn.connect()
                return
            except OSError:
                if self.node.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the RabbitMQ node did not start on port {self.port}; "
                                       f"see {self.directory / 'node.out'} and "
                                       f"{self.directory / 'log'}") from None
                time.sleep(0.25)

    def stop(self) -> None:
        """Stop the node, then its epmd (each with its whole process group)."""
        for proc in (self.node, self.epmd):
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        self.node = self.epmd = None

    def __enter__(self) -> RabbitNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
