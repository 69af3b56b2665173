"""What both benchmarks share: the machine's description, a demo catalogue loaded straight
into the store, request points spread like the ads, and writing results."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from devtools.demo import demo_ads
from devtools.redis_server import RedisServer
from pipeline.catalogue import AdRecord
from store import Store

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
LOAD_CHUNK = 5000
AD_SEED = 7
POINT_SEED = 20_240_601  # request points: the ads' distribution, another draw
_USABLE_CORES = os.sched_getaffinity(0)
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine(redis: RedisServer | None = None) -> dict:
    """Where and when a run happened, so figures from two runs are not compared blindly."""
    info = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "os_cpu_count": os.cpu_count(),
        "bench_process_affinity": sorted(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty_files": _git("status", "--porcelain").splitlines(),
        "code_digest": code_digest(),
    }
    if redis is not None:
        info["redis_server"] = redis.binary
        info["redis_version"] = _run([redis.binary, "--version"])
    return info


CODE_DIRS = ("bandit", "config", "devtools", "geo", "pipeline", "store", "webapp")


def code_digest() -> str:
    """A digest of the service's sources, to tell which code a run measured (and whether
    someone changed it while the run went on)."""
    digest = hashlib.sha256()
    for path in sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def code_check(started_digest: str) -> dict:
    """Whether the sources are still those a run started with; warns on the console if not."""
    now = code_digest()
    changed = now != started_digest
    if changed:
        say("WARNING: the service's code changed during this run; its figures mix versions")
    return {"code_digest_at_start": started_digest, "code_digest_at_end": now,
            "code_changed_during_run": changed}


def _git(*args: str) -> str:
    return _run(["git", "-C", str(ROOT), *args])


def _run(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def ad_records(count: int, now: float, seed: int = AD_SEED) -> Iterator[AdRecord]:
    """The demo catalogue as AdRecords, as the import command would build them."""
    for line in demo_ads(count, now, seed=seed):
        yield AdRecord.from_wire(line["ad_id"], line, now)


def load_catalogue(store: Store, count: int, now: float, chunk: int = LOAD_CHUNK) -> float:
    """Write ``count`` new demo ads through ``Store.put_ads`` (no stale feeds: they are new).
    Returns the seconds it took."""
    started = time.perf_counter()
    batch: list[AdRecord] = []
    done = 0
    step = max(chunk, count // 10)
    for record in ad_records(count, now):
        batch.append(record)
        if len(batch) == chunk:
            _put(store, batch)
            done += len(batch)
            batch = []
            if done % step < chunk:
                say(f"  loaded {done:,}/{count:,} ads ({time.perf_counter() - started:.1f} s)")
    if batch:
        _put(store, batch)
    return time.perf_counter() - started


def edit_ads(store: Store, count: int, now: float, batch: int = 20) -> None:
    """Rewrite ``count`` ads of the demo catalogue (the first ones, each with a new serial)
    in writes of ``batch`` ads, as a marketplace's ads are edited through the API between two
    regenerations: what a regeneration's copy of the catalogue (``store.CatalogueCopy``)
    then reads again."""
    records = list(ad_records(count, now))
    for i in range(0, len(records), batch):
        _put(store, records[i:i + batch])


def _put(store: Store, batch: Sequence[AdRecord]) -> None:
    store.put_ads([a.row() for a in batch], lambda old: [])


def request_points(count: int, now: float, seed: int = POINT_SEED) -> list[tuple[float, float]]:
    """Points spread like the ads (the same cities and spread, another seed), the same for
    every catalogue size."""
    return [(line["lat"], line["lon"]) for line in demo_ads(count, now, seed=seed)]


def redis_memory(store: Store) -> dict:
    used, human = store.memory_used()
    return {"used_memory": used, "used_memory_human": human}


def pin(pid: int, cores: Iterable[int]) -> list[int]:
    """Pin a process we started to ``cores`` (those this machine lets us use; all of them
    if none of those). Returns the cores it may run on."""
    wanted = set(cores) & _USABLE_CORES or set(_USABLE_CORES)
    os.sched_setaffinity(pid, wanted)
    return sorted(wanted)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (gunicorn's master and its workers, say)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, []))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time the processes have used so far (those still alive)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLK_TCK


def peak_rss_mb(pids: Iterable[int]) -> dict[int, float]:
    """Each live process's peak resident memory so far (VmHWM), in MiB, by pid."""
    out = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                out[pid] = int(line.split()[1]) / 1024
    return out


def machine_busy_seconds() -> float:
    """CPU time every core of the machine has spent busy (not idle or iowait) since boot."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _CLK_TCK


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def write_results(name: str, data: dict, markdown: str) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
