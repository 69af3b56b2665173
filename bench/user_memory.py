"""What the frequency cap keeps in Redis per active user (issue 18, item 2).

A fresh redis-server of our own (a free loopback port). For each profile, ``--users`` users
(default 5,000) are written as the rollup writes them (``Store.record_showings``, one call a
block of users), with ad ids of 12 characters; what Redis holds for them is then measured
two ways: the growth of ``used_memory`` over the profile, and ``MEMORY USAGE`` of each of a
sample of their keys (``user:{id}:shown`` and ``user:{id}:capped``). Both are divided by the
users. The profiles:

- ``light``: shown 20 different ads in the window, 3 of them three times (capped);
- ``active``: shown 60 different ads, 10 of them capped;
- ``bound``: the most a user can cost: FREQ_MAX_ADS ads counted, all of them capped.

    python -m bench.user_memory          # writes bench/results/user_memory.{json,md}
    python -m bench.user_memory --quick  # fewer users, no files
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine, say, table, write_results
from config import load_settings
from devtools.redis_server import RedisServer
from pipeline.learning.frequency import rule_of
from store import Showings, Store

PROFILES = {"light": (20, 3), "active": (60, 10), "bound": (None, None)}   # (ads, capped)
BLOCK = 200            # users written per call, as a rollup block holds many users
SAMPLE = 200           # users whose keys MEMORY USAGE measures


def showings(ads: int, capped: int, user: int) -> Showings:
    """``ads`` different ads, the first ``capped`` shown three times, the rest once."""
    return Showings({f"job-{(user * 7 + a) % 10**8:08d}": 3 if a < capped else 1
                     for a in range(ads)}, ())


def measure(store: Store, users: int, ads: int, capped: int, prefix: str) -> dict:
    settings = load_settings({})
    rule = rule_of(settings)
    assert rule is not None
    now = time.time()
    before = store.memory_used()[0]
    for first in range(0, users, BLOCK):
        store.record_showings({f"{prefix}-{u}": showings(ads, capped, u)
                               for u in range(first, min(users, first + BLOCK))}, now, rule)
    grown = store.memory_used()[0] - before
    sample = min(SAMPLE, users)
    usage, encodings = store.frequency_memory(f"{prefix}-{u}" for u in range(sample))
    held = store.user_context(f"{prefix}-0", now - rule.window_s)[2]
    assert len(held) == capped, (len(held), capped)
    return {"users": users, "ads": ads, "capped": capped,
            "bytes_per_user_used_memory": grown / users,
            "bytes_per_user_memory_usage": usage / sample, "encodings": sorted(encodings)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="500 users, no files")
    args = parser.parse_args(argv)
    users = 500 if args.quick else args.users
    max_ads = load_settings({}).freq_max_ads
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-user-memory-") as work, \
            RedisServer(Path(work) / "redis") as redis:
        store = Store.from_url(redis.url)
        for name, (ads, capped) in PROFILES.items():
            ads, capped = ads or max_ads, max_ads if capped is None else capped
            rows[name] = measure(store, users, ads, capped, name)
            say(f"{name}: {rows[name]['bytes_per_user_memory_usage']:.0f} B a user "
                f"(MEMORY USAGE), {rows[name]['bytes_per_user_used_memory']:.0f} B "
                "(used_memory)")
        store.close()
    info = machine()
    text = (
        "# What the frequency cap keeps per active user\n\n"
        f"{info['date']}; `python -m bench.user_memory --users {users}`; redis-server of our "
        f"own; FREQ_MAX_ADS={max_ads}, ad ids of 12 characters.\n\n"
        + table(["profile", "ads counted", "of them capped", "bytes a user (MEMORY USAGE)",
                 "bytes a user (used_memory growth)", "encoding"],
                [[f"`{n}`", r["ads"], r["capped"], f"{r['bytes_per_user_memory_usage']:,.0f}",
                  f"{r['bytes_per_user_used_memory']:,.0f}", ", ".join(r["encodings"])]
                 for n, r in rows.items()])
        + "\nBoth keys expire FREQ_WINDOW_S after the user's last counted impression, and "
          "each keeps at most FREQ_MAX_ADS members: a user who stops using the app costs "
          "nothing after a window.\n")
    print(text)
    if not args.quick:
        paths = write_results("user_memory", {"rows": rows, "machine": info,
                                              "freq_max_ads": max_ads, "users": users}, text)
        say(f"wrote {paths[1]} and {paths[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
