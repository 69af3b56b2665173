"""A Redis Cluster of our own: a few masters on free loopback ports, never a server already
running. Each master needs its port and the port 10,000 above it (the cluster bus) free.

    with LocalCluster(Path("/tmp/c")) as cluster:
        client = redis.cluster.RedisCluster.from_url(cluster.url)

The slots are spread over the masters with ``redis-cli --cluster create`` (the redis-cli
beside the redis-server binary, else the one on PATH). Redis 7 is needed for sharded pub/sub,
which the binary on PATH (Debian's redis-server) gives; the embedded one is 6.2.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from devtools.redis_server import _end_with_parent, redis_binary

BUS_OFFSET = 10_000      # the cluster bus listens this far above a node's port
SLOTS = 16_384


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """``count`` loopback ports, each free with its bus port (port + 10,000) free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + BUS_OFFSET < 65_536 and port not in ports and _bindable(port + BUS_OFFSET):
            ports.append(port)
    return ports


class LocalCluster:
    """Start with ``start()``, stop with ``stop()``; or use it as a context manager."""

    def __init__(self, directory: Path | None = None, masters: int = 3,
                 binary: str | None = None) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        self.directory = Path(directory or tempfile.mkdtemp(prefix="redis-cluster-"))
        self.binary = binary or redis_binary()
        self.ports = cluster_ports(masters)
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        """A startup node's URL: redis-py's RedisCluster finds the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def _cli(self) -> str:
        beside = Path(self.binary).with_name("redis-cli")
        found = str(beside) if beside.exists() else shutil.which("redis-cli")
        if found is None:
            raise RuntimeError("redis-cli not found beside redis-server nor on PATH")
        return found

    def start(self, timeout_s: float = 30.0) -> LocalCluster:
        try:
            for port in self.ports:
                home = self.directory / str(port)
                home.mkdir(parents=True, exist_ok=True)
                self.procs.append(subprocess.Popen(
                    [self.binary, "--port", str(port), "--bind", "127.0.0.1",
                     "--cluster-enabled", "yes", "--cluster-config-file", str(home / "nodes.conf"),
                     "--cluster-node-timeout", "5000", "--dir", str(home), "--save", "",
                     "--appendonly", "no", "--daemonize", "no",
                     "--logfile", str(home / "redis.log")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True, preexec_fn=_end_with_parent))
            deadline = time.monotonic() + timeout_s
            for port in self.ports:
                self._wait(lambda p=port: redis.Redis(port=p).ping(), deadline,
                           f"redis-server on port {port}")
            created = subprocess.run(
                [self._cli(), "--cluster", "create",
                 *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", "0",
                 "--cluster-yes"], capture_output=True, text=True, timeout=timeout_s)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}\n"
                                   f"{created.stderr}")
            for port in self.ports:
                self._wait(lambda p=port: redis.Redis(port=p).cluster("info")["cluster_state"]
                           == "ok", deadline, f"the cluster's state on port {port}")
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _wait(check, deadline: float, what: str) -> None:
        while True:
            try:
                if check():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
