"""``flask --app webapp report ctr --days 90`` over a quarter of archived events.

1. A fresh redis-server of our own (a free loopback port) that holds no daily counters: every
   day of the report is read from the archive, the worst case (a Redis started after them).
2. ``--events`` archived events (default 10,000,000) over the 90 UTC days ending today,
   written as the archive writes them: per day, one file an archive run (``--runs-per-day``,
   default 1,440: ARCHIVE_INTERVAL_S = 60 s), through ``Archive.write`` with the archive's
   own columns (``events_rows``: the credited strategy by the rollup's rule). A post of 10
   events is one stream entry; an event happened up to minutes before it reached Redis
   (exponential, mean 2 min), so events near midnight are filed under the next day. Types:
   85 % impressions, 10 % views, 3 % saves, 2 % applies; each feed (one of the four
   strategies) is named by about 10 events.
3. The archive run's compaction of every closed day (``compact_closed_days``), timed; today,
   still open, stays one file a run (up to now's minute of the day).
4. The command, run ``--repeats`` times (default 5) as a user runs it, in a process of its
   own (its Python and Flask start included): the median wall time and the peak RSS. In the
   same run, the same command over an empty archive (the command's fixed cost), and a check
   that its totals equal the events generated for those days.

Target (issue 17, item 4): under 10 s for 10 M events.

    python -m bench.report_ctr            # writes bench/results/report_ctr.{json,md}
    python -m bench.report_ctr --quick    # 200,000 events, 60 runs a day, no files
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from bandit import STRATEGIES
from bench.common import ROOT, machine, median, say, table, write_results
from config import load_settings
from devtools.redis_server import RedisServer
from pipeline.archive import EVENTS_SCHEMA, Archive, compact_closed_days, credited_strategies
from pipeline.serving.feed import make_feed_id
from store import Store

DAYS = 90
PER_POST = 10            # events a stream entry (a post)
PER_FEED = 10            # events naming one feed
TYPES = np.array(["impression", "view", "save", "apply"])
TYPE_P = [0.85, 0.10, 0.03, 0.02]
COUNTS = ("impressions", "views", "saves", "applies")


def generate(archive: Archive, store: Store, settings, events: int, runs_per_day: int,
             now: float, rng: np.random.Generator) -> dict[str, int]:
    """Write the archive (see the module's docstring); returns the impressions, views,
    saves and applies whose own day is one of the report's days."""
    secret = store.feed_id_secret()
    today = datetime.fromtimestamp(now, tz=UTC).date()
    first = today - timedelta(days=DAYS - 1)
    per_day = events // DAYS
    totals = dict.fromkeys(COUNTS, 0)
    last_entry = "0-0"
    for d in range(DAYS):
        day = first + timedelta(days=d)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        end = min(start + 86_400, now)
        n = per_day if d < DAYS - 1 else max(PER_POST, int(per_day * (end - start) / 86_400))
        posts = max(1, n // PER_POST)
        n = posts * PER_POST
        reached = np.sort(rng.uniform(start, end - 0.001, posts))
        reached_ms = (reached * 1000).astype(np.int64)
        seq = np.zeros(posts, dtype=np.int64)            # a later entry in the same ms
        same = np.flatnonzero(np.diff(reached_ms) == 0) + 1
        for i in same.tolist():
            seq[i] = seq[i - 1] + 1
        entry_of = np.repeat(np.arange(posts), PER_POST)[:n]
        at = reached[entry_of]
        ts = at - rng.exponential(120.0, n)
        kinds = TYPES[rng.choice(len(TYPES), n, p=TYPE_P)]
        feeds = max(1, n // PER_FEED)
        feed_of = np.minimum(np.arange(n) // PER_FEED, feeds - 1)
        feed_at = ts[np.arange(feeds) * PER_FEED] - rng.uniform(1, 600, feeds)
        strategy = rng.integers(0, len(STRATEGIES), feeds)
        feed_ids = [make_feed_id(float(t), "u33dbc", STRATEGIES[s], rng, secret)
                    for t, s in zip(feed_at.tolist(), strategy.tolist(), strict=True)]
        entry_ids = [f"{ms}-{q}" for ms, q in zip(reached_ms.tolist(), seq.tolist(),
                                                   strict=True)]
        columns = {
            "entry_id": [entry_ids[i] for i in entry_of.tolist()],
            "partition": [0] * n,
            "event_id": [f"{day.isoformat()}-{i}" for i in range(n)],
            "ad_id": [f"ad-{a}" for a in rng.integers(0, 20_000, n).tolist()],
            "type": kinds.tolist(), "ts": ts.tolist(),
            "user_id": [f"user-{u}" for u in rng.integers(0, 50_000, n).tolist()],
            "feed_id": [feed_ids[f] for f in feed_of.tolist()],
            "position": rng.integers(1, 40, n).tolist(), "accepted_at": at.tolist()}
        columns["credited"] = credited_strategies(columns["feed_id"], columns["ts"], secret,
                                                  settings.event_max_age_s)
        full = pa.Table.from_pydict(columns, schema=EVENTS_SCHEMA)
        # the files of the day's archive runs, each from the first entry after a run's start
        run_of = np.minimum(((at - start) // (86_400 / runs_per_day)).astype(np.int64),
                            runs_per_day - 1)
        # (a post's events share their time, so a run's file starts at an entry)
        cuts = [0, *(np.flatnonzero(np.diff(run_of)) + 1).tolist(), n]
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            batch = full.slice(lo, hi - lo).combine_chunks().to_batches()[0]
            archive.write("events", day.isoformat(), 0, columns["entry_id"][lo],
                          iter([(batch, columns["entry_id"][hi - 1])]))
        last_entry = columns["entry_id"][n - 1]
        own_day = np.floor_divide(np.round(ts, 6), 86_400)
        first_n = (first - datetime(1970, 1, 1, tzinfo=UTC).date()).days
        inside = (own_day >= first_n) & (own_day <= first_n + DAYS - 1)
        for name, kind in zip(COUNTS, TYPES, strict=True):
            totals[name] += int(((kinds == kind) & inside).sum())
        if d % 10 == 9 or d == DAYS - 1:
            say(f"  day {d + 1}/{DAYS}: {n:,} events in {len(cuts) - 1} files")
    store.move_archive_cursor("events", 0, "0-0", last_entry)
    return totals


def run_report(env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "webapp", "report", "ctr",
                          "--days", str(DAYS)], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return time.perf_counter() - started, out.stdout


def totals_of(output: str) -> dict[str, int]:
    line = next(row for row in output.splitlines() if row.startswith("total "))
    numbers = re.split(r"\s+", line.strip())[1:1 + len(COUNTS)]
    return {name: int(v) for name, v in zip(COUNTS, numbers, strict=True)}


def measure(events: int, runs_per_day: int, repeats: int, seed: int = 3) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-report-ctr-"))
    archive_url, empty_url = str(work / "archive"), str(work / "empty")
    now = time.time()
    try:
        with RedisServer(work / "redis") as redis:
            settings = load_settings({}, redis_url=redis.url, archive_url=archive_url)
            store = Store.from_url(redis.url)
            archive = Archive(archive_url)
            say(f"writing {events:,} archived events over {DAYS} days, {runs_per_day} files "
                f"a day")
            started = time.perf_counter()
            expected = generate(archive, store, settings, events, runs_per_day, now,
                                np.random.default_rng(seed))
            written_s = time.perf_counter() - started
            files_before = len(archive.files("events"))
            say(f"  {files_before:,} files in {written_s:.0f} s; compacting the closed days")
            started = time.perf_counter()
            merged = compact_closed_days(archive, store, settings, "events", 0, float("inf"),
                                         store.feed_id_secret())
            compact_s = time.perf_counter() - started
            files_after = len(archive.files("events"))
            size = sum(p.stat().st_size for p in Path(archive_url).rglob("*.parquet"))
            say(f"  {merged:,} files merged in {compact_s:.1f} s: {files_after:,} left")
            env = {**os.environ, "REDIS_URL": redis.url, "ARCHIVE_URL": archive_url,
                   "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
            times, fixed = [], []
            for i in range(repeats):
                took, output = run_report({**env, "ARCHIVE_URL": empty_url})
                fixed.append(took)
                took, output = run_report(env)
                times.append(took)
                say(f"  run {i + 1}: {took:.2f} s (empty archive: {fixed[-1]:.2f} s)")
            got = totals_of(output)
            footer = re.search(r"^\* (\d+) of \d+ days read from the archive", output, re.M)
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"events": events, "days": DAYS, "runs_per_day": runs_per_day,
            "files_written": files_before, "files_after_compaction": files_after,
            "files_merged": merged, "write_s": round(written_s, 1),
            "compaction_s": round(compact_s, 1), "archive_mb": round(size / 2**20, 1),
            "report_s": [round(t, 3) for t in times], "report_median_s": round(median(times), 3),
            "empty_archive_s": [round(t, 3) for t in fixed],
            "empty_archive_median_s": round(median(fixed), 3),
            "peak_rss_mb": round(peak_mb, 1), "totals_expected": expected, "totals_reported": got,
            "totals_match": got == expected,
            "archived_days_reported": int(footer.group(1)) if footer else 0, "target_s": 10.0}


def markdown(r: dict) -> str:
    m = r["machine"]
    rows = [("report ctr --days 90, archive of 10 M events" if r["events"] == 10_000_000
             else f"report ctr --days 90, archive of {r['events']:,} events",
             r["report_median_s"], ", ".join(map(str, r["report_s"]))),
            ("report ctr --days 90, empty archive (the command's own start)",
             r["empty_archive_median_s"], ", ".join(map(str, r["empty_archive_s"])))]
    return (
        f"# `flask --app webapp report ctr --days 90` over archived events\n\n"
        f"{m['date']}, commit {m['git_commit'][:10]}, {m['os_cpu_count']} cores (the command "
        f"unpinned), Python {m['python']}. Command: `python -m bench.report_ctr`.\n\n"
        f"The archive: {r['events']:,} events over {r['days']} days ending today, written "
        f"{r['runs_per_day']} files a day as the archive runs write them "
        f"({r['files_written']:,} files, {r['write_s']} s to write); the archive's "
        f"compaction merged the closed days' {r['files_merged']:,} files in "
        f"{r['compaction_s']} s, leaving {r['files_after_compaction']:,} "
        f"({r['archive_mb']} MB of Parquet). Redis holds no daily counters: every day is "
        f"read from the archive.\n\n"
        + table(("command", "median s", f"each of {len(r['report_s'])} runs, s"), rows)
        + f"\nTarget: under {r['target_s']:.0f} s. Peak RSS of the command: "
        f"{r['peak_rss_mb']} MB. Totals reported equal the events generated for those days: "
        f"**{r['totals_match']}** ({r['totals_reported']}).\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs-per-day", type=int, default=1440)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a small run, no files")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.runs_per_day, args.repeats = 200_000, 60, 2
    result = {**measure(args.events, args.runs_per_day, args.repeats), "machine": machine()}
    text = markdown(result)
    print(text)
    if not args.quick:
        paths = write_results("report_ctr", result, text)
        say(f"wrote {paths[0]} and {paths[1]}")
    return 0 if result["totals_match"] else 1


if __name__ == "__main__":
    sys.exit(main())
