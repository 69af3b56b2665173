"""Redis memory per sustained event a second, before and after the archive.

1. A fresh redis-server of our own (a free loopback port), 1,000 demo ads.
2. ``--posts`` posts (default 4,000) of 50 events each, with uuid4 event ids as devices make
   them, accepted, rolled in and rolled up as the service does (``accept_batch``,
   ``roll_in``, ``run_rollup``); ``--feeds`` served-feed entries (default 20,000) of 20 ads
   written as the web's served log writes them (``Store.record_serving``) and counted.
3. What Redis holds for them, every element counted (``Store.telemetry_memory``: MEMORY
   USAGE of the events stream, the dedupe sets and the served log): bytes an event, bytes
   an event id remembered, bytes a served feed.
4. Then an archive run (``run_archive``, EVENTS_RETENTION_S=0, into a temporary directory):
   what is left in Redis, and the archive's own bytes an event and a feed, on disk.
5. The steady state, per sustained event a second (and per feed a second), from those
   per-item bytes and how long each item stays. Before the archive, the stream kept events
   7 days (604,800 s); after it, EVENTS_RETENTION_S (900 s). Event ids: before, each was kept
   as itself in a set a window of two days (172,800 s), and held 2.5 windows on average;
   the bench writes the second half's ids in that layout too, to measure it in the same
   run. Now each is a 64-bit fingerprint in a dedupe bucket's sets (``store/dedupe.py``),
   held 1.25 windows of DEDUPE_WINDOW_S (86,700 s) on average. The posts are accepted in
   two buckets, the first half a bucket before the second, as a service that has run a
   while: the second bucket's sets are sized from the first's count, and its bytes an id
   are the steady state's (the first's, sized for a new deployment, are shown too).
   Served feeds: before, the log held SERVED_MAXLEN entries whatever the rate.

Target (issue 17): the bytes per sustained event a second fall at least 100 x.

    python -m bench.archive            # writes bench/results/archive.{json,md}
    python -m bench.archive --quick    # 200 posts, 2,000 feeds, no files
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench.common import load_catalogue, machine, say, write_results
from config import load_settings
from devtools.redis_server import RedisServer
from pipeline.archive import Archive, run_archive
from pipeline.learning.ingest import Event, accept_batch, roll_in
from pipeline.learning.rollup import run_rollup
from pipeline.serving.feed import make_feed_id
from store import Store, dedupe

PER_POST = 50
OLD_RETENTION_S = 7 * 86_400                 # EVENTS_RETENTION_S before the archive
OLD_WINDOW_S, OLD_HELD = 172_800, 2.5         # DEDUPE_WINDOW_S then, and windows an id was held
HELD = 1.25                                   # windows an id is held now (store/dedupe.py)
RETENTION_S = load_settings({}).events_retention_s   # its default now
TYPES = ("impression",) * 7 + ("view", "view", "apply")


def measure(posts: int, feeds: int, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    redis = RedisServer(work / "redis").start()
    try:
        store = Store.from_url(redis.url)
        now = time.time()
        settings = load_settings({}, redis_url=redis.url, archive_url=str(work / "archive"),
                                 events_retention_s=0)
        load_catalogue(store, 1000, now)
        secret = store.feed_id_secret()
        say(f"{posts:,} posts of {PER_POST} events")
        known = store.live_ad_ids()
        half_window = settings.dedupe_window_s / dedupe.SPLIT
        second_ids: list[str] = []
        for i in range(posts):
            # the first half a bucket earlier: the second's sets are sized from its count
            at = now - half_window if i < posts // 2 else now
            picks = rng.integers(len(known), size=PER_POST).tolist()
            kinds = rng.integers(len(TYPES), size=PER_POST).tolist()
            events = [Event(str(uuid.uuid4()), known[a], TYPES[k], at - 5.0,
                            f"user-{a % 300}", make_feed_id(at - 60, "u33dbc", "thompson",
                                                             rng, secret), 1 + a % 20)
                      for a, k in zip(picks, kinds, strict=True)]
            accepted = accept_batch(store, settings, events, at)
            roll_in(store, accepted.batch_id)
            if at == now:
                second_ids += [e.event_id for e in events]
        bucket = dedupe.bucket_of(now, settings.dedupe_window_s)
        first, second = (store.dedupe_bucket_memory(b) for b in (bucket - 1, bucket))
        # the same ids as earlier versions kept them, for the "before" of the same run
        per_id_before = store.legacy_dedupe_bytes(second_ids)
        say(f"{feeds:,} served feeds")
        served = [{"feed_id": make_feed_id(now - 1, "u33dbc", "thompson", rng, secret),
                   "ts": now - 1, "cell": "u33dbc", "strategy": "thompson",
                   "propensity": 0.8125, "variant": 3, "generated_at": now - 31.5,
                   "cache": "hit", "user_id": "",
                   "ads": " ".join(known[i] for i in rng.integers(len(known), size=20))}
                  for _ in range(feeds)]
        for i in range(0, feeds, 1000):
            store.record_serving(served[i:i + 1000], {"u33dbc": now}, 10_000_000)
        run_rollup(store, settings, now + 1)
        events = posts * PER_POST
        held = store.telemetry_memory()
        say(f"in Redis: {held}")
        report = run_archive(store, settings, time.time() + 1)   # the ids are the clock's
        left = store.telemetry_memory()
        disk = {kind: sum(Path(f).stat().st_size for f in Archive(settings.archive_url)
                          .files(kind)) for kind in ("events", "served")}
        per_event = held["events"] / events
        per_id = second["bytes"] / second["ids"]
        per_feed = held["served"] / feeds
        window = settings.dedupe_window_s
        before_dedupe = per_id_before * OLD_HELD * OLD_WINDOW_S
        after_dedupe = per_id * HELD * window
        before = per_event * OLD_RETENTION_S + before_dedupe
        after = per_event * RETENTION_S + after_dedupe
        return {
            "posts": posts, "events": events, "feeds": feeds,
            "redis_bytes": held, "redis_bytes_after_archive": left, "archive_report": report,
            "archive_disk_bytes": disk,
            "per_event": {"stream": per_event, "dedupe_id": per_id,
                          "dedupe_id_before": per_id_before,
                          "dedupe_id_first_bucket": first["bytes"] / first["ids"],
                          "archive_disk": disk["events"] / events},
            "dedupe_buckets": {"first": first, "second": second},
            "per_feed": {"served_log": per_feed, "archive_disk": disk["served"] / feeds},
            "steady_state_per_event_per_s": {
                "before": {"stream": per_event * OLD_RETENTION_S,
                           "dedupe": before_dedupe, "total": before},
                "after": {"stream": per_event * RETENTION_S, "dedupe": after_dedupe,
                          "total": after},
                "ratio": before / after},
            "steady_state_per_feed_per_s_after": per_feed * RETENTION_S,
            "served_log_before_bytes": per_feed * settings.served_maxlen,
            "dedupe_window_s": window,
        }
    finally:
        redis.stop()


def markdown(r: dict) -> str:
    s, b = r["steady_state_per_event_per_s"], r["dedupe_buckets"]
    mb = 1e6
    return "\n".join([
        "# Redis memory per sustained event a second, before and after the archive",
        "",
        f"{r['machine']['date']}; `python -m bench.archive`: {r['posts']:,} posts of "
        f"{PER_POST} events (uuid4 event ids), {r['feeds']:,} served feeds of 20 ads, every "
        "element counted (MEMORY USAGE ... SAMPLES 0).",
        "",
        "| item | Redis bytes | archive bytes on disk (Parquet, zstd) |",
        "| --- | --- | --- |",
        f"| an event in the stream | {r['per_event']['stream']:.1f} | "
        f"{r['per_event']['archive_disk']:.1f} |",
        f"| an event id in the dedupe sets, before (the id itself, in a set a window) | "
        f"{r['per_event']['dedupe_id_before']:.1f} | |",
        f"| an event id in the dedupe sets, now (a fingerprint in a bucket's intsets; "
        f"{b['second']['ids']:,} ids in {b['second']['shards']} sets, "
        f"{b['second']['intsets']} of them intsets) | {r['per_event']['dedupe_id']:.1f} | |",
        f"| the same in a new deployment's first bucket ({b['first']['shards']} sets) | "
        f"{r['per_event']['dedupe_id_first_bucket']:.1f} | |",
        f"| a served feed in the log | {r['per_feed']['served_log']:.1f} | "
        f"{r['per_feed']['archive_disk']:.1f} |",
        "",
        "Steady state, per sustained event a second (an event id held 2.5 dedupe windows of "
        f"{OLD_WINDOW_S:,} s on average before, {HELD} windows of "
        f"{r['dedupe_window_s']:,} s now):",
        "",
        "| | stream | dedupe sets | total |",
        "| --- | --- | --- | --- |",
        f"| before (7 days in the stream) | {s['before']['stream'] / mb:.2f} MB | "
        f"{s['before']['dedupe'] / mb:.2f} MB | {s['before']['total'] / mb:.2f} MB |",
        f"| after (900 s, EVENTS_RETENTION_S) | {s['after']['stream'] / mb:.3f} MB | "
        f"{s['after']['dedupe'] / mb:.2f} MB | {s['after']['total'] / mb:.2f} MB |",
        "",
        f"Ratio before / after: **{s['ratio']:.1f} x** (target 100 x).",
        "",
        f"Served feeds: the log held up to SERVED_MAXLEN entries, "
        f"{r['served_log_before_bytes'] / mb:.0f} MB; now 900 s of them, "
        f"{r['steady_state_per_feed_per_s_after'] / mb:.3f} MB per sustained feed a second.",
        "",
        f"After an archive run with EVENTS_RETENTION_S=0: {r['redis_bytes_after_archive']} "
        f"bytes left (from {r['redis_bytes']}).",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=4000)
    parser.add_argument("--feeds", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="a small run, no files")
    args = parser.parse_args(argv)
    posts, feeds = (200, 2000) if args.quick else (args.posts, args.feeds)
    result = {**measure(posts, feeds), "machine": machine()}
    text = markdown(result)
    print(text)
    if not args.quick:
        paths = write_results("archive", result, text)
        say(f"wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
