"""``flask --app webapp ads import`` of a large catalogue, as an operator runs it.

The demo catalogue (``--ads`` lines, default 1,000,000, and a tenth of that to show memory
does not grow with the file) is written to a JSON-lines file, then imported into a
redis-server of our own by the real command in a process of its own, pinned to one core
with Redis on the other. Reported: wall time, ads per second, the command's peak resident
memory, Redis's CPU and memory, and that every line landed.

    python -m bench.imports                  # writes bench/results/import.{json,md}
    python -m bench.imports --ads 100000 --no-write
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench.common import (
    code_check,
    code_digest,
    cpu_seconds,
    machine,
    pin,
    redis_memory,
    say,
    table,
    write_results,
)
from devtools.demo import demo_ads
from devtools.procs import service_env
from devtools.redis_server import RedisServer
from store import Store

TARGET_S = 60.0            # for 1,000,000 ads
ADMIN_TOKEN = "import-admin-token-0123456789"


def write_file(path: Path, count: int, now: float) -> int:
    """``count`` demo ads as import lines; returns the file's size in bytes."""
    with path.open("wb") as fh:
        for line in demo_ads(count, now):
            fh.write(orjson.dumps(line) + b"\n")
    return path.stat().st_size


def high_water_kib(pid: int) -> int:
    """A process's peak resident memory so far (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def import_once(count: int, workdir: Path) -> dict:
    """Write the file, import it into a fresh Redis, and measure."""
    path = workdir / f"ads-{count}.jsonl"
    size = write_file(path, count, time.time())
    say(f"{count:,} ads: {size / 2**20:.0f} MiB of import lines written")
    with RedisServer(workdir / f"redis-{count}") as redis:
        pin(redis.proc.pid, [1])
        env = service_env(redis.url, ADMIN_TOKEN=ADMIN_TOKEN)
        redis_cpu = cpu_seconds([redis.proc.pid])
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "webapp", "ads", "import",
                                 str(path)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        pin(proc.pid, [0])
        peak_kib = 0
        while proc.poll() is None:      # VmHWM: the high-water mark, so the last read is it
            peak_kib = max(peak_kib, high_water_kib(proc.pid))
            time.sleep(0.1)
        out = proc.stdout.read() if proc.stdout else ""
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"the import exited {proc.returncode}: {out}")
        store = Store.from_url(redis.url)
        try:
            live = store.live_ad_count(time.time())
            memory = redis_memory(store)
        finally:
            store.close()
        result = {
            "ads": count, "file_bytes": size, "wall_s": round(wall, 2),
            "ads_per_s": round(count / wall), "summary": out.strip().splitlines()[-1],
            "peak_rss_mib": round(peak_kib / 1024, 1),
            "redis_cpu_s": round(cpu_seconds([redis.proc.pid]) - redis_cpu, 2),
            "live_ads_after": live, **memory,
        }
    path.unlink()
    say(f"  imported in {result['wall_s']} s ({result['ads_per_s']:,} ads/s), "
        f"peak RSS {result['peak_rss_mib']} MiB; {result['summary']}")
    return result


def markdown(info: dict, runs: list[dict]) -> str:
    big = runs[-1]
    target = "met" if big["ads"] < 1_000_000 or big["wall_s"] <= TARGET_S else "**not met**"
    rows = [[f"{r['ads']:,}", f"{r['file_bytes'] / 2**20:.0f} MiB", f"{r['wall_s']} s",
             f"{r['ads_per_s']:,}", f"{r['peak_rss_mib']} MiB", f"{r['redis_cpu_s']} s",
             r["used_memory_human"], f"{r['live_ads_after']:,}", r["summary"]] for r in runs]
    return (
        "# `flask --app webapp ads import` of a large catalogue\n\n"
        f"{info['date']}, os.cpu_count() = {info['os_cpu_count']}; the command pinned to "
        "core 0, its redis-server to core 1; demo ads (`devtools.demo`), one JSON object a "
        "line. Peak RSS is the command's resident memory at its largest: it stays flat as "
        "the file grows, since lines are read and written in chunks.\n\n"
        + table(["ads", "file", "wall", "ads/s", "peak RSS", "Redis CPU", "Redis memory after",
                 "live ads after", "the command's summary"], rows)
        + f"\nTarget: 1,000,000 ads in at most {TARGET_S:.0f} s: {target}.\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ads", type=int, default=1_000_000, help="the large catalogue")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    digest = code_digest()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        sizes = sorted({max(1, args.ads // 10), args.ads})
        runs = [import_once(n, Path(tmp)) for n in sizes]
    data = {"machine": info, "runs": runs, **code_check(digest)}
    text = markdown(info, runs)
    print(text)
    if not args.no_write:
        paths = write_results("import", data, text)
        say(f"wrote {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    main()
