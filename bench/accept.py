"""What the accept step of POST /v1/events costs a post, in this process and in Redis.

A fresh redis-server of our own (a free loopback port), 1,000 demo ads, ``--posts`` posts of
50 events with uuid4 ids (default 3,000): the first third accepted to warm up, then the rest
timed: this process's CPU a post (``accept_batch``: validation done, the fingerprints and
the dedupe sets named, the script called) and Redis's (INFO commandstats: the scripts' µs).
Medians of ``--runs`` runs.

    python -m bench.accept             # prints a line; writes nothing
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench.common import load_catalogue, median
from config import load_settings
from devtools.redis_server import RedisServer
from pipeline.learning.ingest import Event, accept_batch
from store import Store

PER_POST = 50


def _scripts_us(store: Store) -> int:
    """Microseconds the server has spent running scripts (the accept step is one)."""
    spent = store.command_time_us()
    return spent.get("evalsha", 0) + spent.get("eval", 0)


def measure(posts: int, seed: int = 1) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-accept-"))
    redis = RedisServer(work / "redis").start()
    try:
        store = Store.from_url(redis.url)
        now = time.time()
        load_catalogue(store, 1000, now)
        settings = load_settings({}, redis_url=redis.url, archive_url=str(work / "archive"))
        known = store.live_ad_ids()
        rng = np.random.default_rng(seed)
        batches = [[Event(str(uuid.uuid4()), known[a], "view", now - 5, None, None, None)
                    for a in rng.integers(len(known), size=PER_POST).tolist()]
                   for _ in range(posts)]
        warm = posts // 3
        for batch in batches[:warm]:
            accept_batch(store, settings, batch, now)
        scripts_before = _scripts_us(store)
        started = time.process_time()
        for batch in batches[warm:]:
            accept_batch(store, settings, batch, now)
        timed = posts - warm
        client_us = (time.process_time() - started) / timed * 1e6
        redis_us = (_scripts_us(store) - scripts_before) / timed
        return {"client_us_a_post": client_us, "redis_us_a_post": redis_us}
    finally:
        redis.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    runs = [measure(args.posts, seed) for seed in range(args.runs)]
    client = median([r["client_us_a_post"] for r in runs])
    in_redis = median([r["redis_us_a_post"] for r in runs])
    print(f"accept, a post of {PER_POST} events (medians of {args.runs} runs): "
          f"{client:.0f} µs of this process's CPU, {in_redis:.0f} µs in Redis")
    return 0


if __name__ == "__main__":
    sys.exit(main())
