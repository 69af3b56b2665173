"""What the rate limits cost a feed request, as a ratio measured in one run.

1. A fresh redis-server of our own (a free loopback port) and ``--ads`` demo ads (default
   10,000); ``--points`` request points (default 300) around them.
2. Two apps in this process on that store: the rate limits on (a limit far above the load,
   so every request is counted and let through, and the buckets are settled with Redis every
   RATE_LIMIT_SYNC_S as in production) and off (RATE_LIMIT_FEEDS_PER_S=0). Both are warmed
   (every point's cell and cards cached), then for ``--rounds`` rounds each serves every
   point once through the Flask test client, the two taking turns to go first. A round's
   figure is this process's CPU µs (``time.process_time``) per request; the medians of the
   rounds are compared.
3. The limiter's own step alone: ``client_of`` on a request and ``RateLimiter.check`` for
   1,000 clients taking turns, settling included; CPU µs a request.

Target (issue 17, item 6): at most a few percent of a feed request.

    python -m bench.ratelimit            # writes bench/results/ratelimit.{json,md}
    python -m bench.ratelimit --quick    # fewer rounds and ads, no files
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from werkzeug.test import EnvironBuilder

from bench.common import load_catalogue, machine, median, request_points, say, write_results
from config import load_settings
from devtools.redis_server import RedisServer
from store import Store
from webapp import create_app
from webapp.ratelimit import RateLimiter, client_of

FAR_ABOVE = {"rate_limit_feeds_per_s": 1e9, "rate_limit_feeds_burst": 10**9}
OFF = {"rate_limit_feeds_per_s": 0.0}
STEP_WALL_S = 3.0        # long enough for several settlings (RATE_LIMIT_SYNC_S: 0.5 s)
CLIENTS = 1000


def limiter_step_us(settings_on: object, store: Store) -> float:
    """CPU µs of naming the client and taking its token, settling included (it runs for
    STEP_WALL_S, so that the buckets are settled with Redis several times)."""
    limiter = RateLimiter(settings_on, lambda: store)   # type: ignore[arg-type]
    request = EnvironBuilder(path="/v1/feed", environ_base={"REMOTE_ADDR": "10.0.0.1"}
                             ).get_request()
    clients = [f"addr:10.0.{i // 250}.{i % 250}" for i in range(CLIENTS)]
    checks, started, wall_end = 0, time.process_time(), time.monotonic() + STEP_WALL_S
    while time.monotonic() < wall_end:
        for client in clients:
            client_of(request, limiter.keys)
            limiter.check("feeds", client)
        checks += len(clients)
    return (time.process_time() - started) / checks * 1e6


def measure(ads: int, points: int, rounds: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-ratelimit-"))
    redis = RedisServer(work / "redis").start()
    try:
        store = Store.from_url(redis.url)
        now = time.time()
        say(f"loading {ads:,} ads")
        load_catalogue(store, ads, now)
        base = load_settings({}, redis_url=redis.url, log_level="WARNING",
                             archive_url=str(work / "archive"))
        settings = {"on": base.model_copy(update=FAR_ABOVE),
                    "off": base.model_copy(update=OFF)}
        clients = {name: create_app(s).test_client() for name, s in settings.items()}
        paths = [f"/v1/feed?lat={lat:.6f}&lon={lon:.6f}&limit=20"
                 for lat, lon in request_points(points, now)]
        for client in clients.values():                      # warm: cells and cards cached
            for path in paths:
                assert client.get(path).status_code == 200
        per_round: dict[str, list[float]] = {"on": [], "off": []}
        for r in range(rounds):
            for name in (("on", "off") if r % 2 == 0 else ("off", "on")):
                started = time.process_time()
                for path in paths:
                    clients[name].get(path)
                per_round[name].append((time.process_time() - started) / len(paths) * 1e6)
        step = median([limiter_step_us(settings["on"], store) for _ in range(3)])
        feed_on, feed_off = median(per_round["on"]), median(per_round["off"])
        return {"ads": ads, "points": points, "rounds": rounds, "machine": machine(redis),
                "feed_cpu_us": {"limits_on": feed_on, "limits_off": feed_off},
                "ratio_on_off": feed_on / feed_off,
                "limiter_step_us": step, "step_share_of_feed": step / feed_off,
                "per_round_us": per_round}
    finally:
        redis.stop()


def markdown(result: dict) -> str:
    feed = result["feed_cpu_us"]
    return "\n".join([
        "# What the rate limits cost a feed request",
        "",
        f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}; `python -m bench.ratelimit`: "
        f"{result['ads']:,} ads, {result['points']} request points, {result['rounds']} "
        f"rounds each, one process (1 core of {result['machine']['os_cpu_count']}), "
        "through the Flask test client.",
        "",
        "| | CPU µs a feed request (median of the rounds) |",
        "| --- | --- |",
        f"| rate limits off (`RATE_LIMIT_FEEDS_PER_S=0`) | {feed['limits_off']:.1f} |",
        f"| rate limits on (every request counted, settled every 0.5 s) | "
        f"{feed['limits_on']:.1f} |",
        "",
        f"Ratio on / off: **{result['ratio_on_off']:.3f}** (the rounds' spread: off "
        f"{min(result['per_round_us']['off']):.0f} to {max(result['per_round_us']['off']):.0f}"
        f" µs, on {min(result['per_round_us']['on']):.0f} to "
        f"{max(result['per_round_us']['on']):.0f} µs).",
        "",
        f"The limiter's step alone (`client_of` and `RateLimiter.check`, {CLIENTS:,} clients "
        f"taking turns, settling with Redis included): **{result['limiter_step_us']:.2f} µs**"
        f" a request, {100 * result['step_share_of_feed']:.1f} % of a feed request's CPU "
        "with the limits off. Target (issue 17, item 6): at most a few percent.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ads", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and ads; no files")
    args = parser.parse_args(argv)
    if args.quick:
        args.ads, args.points, args.rounds = 1000, 50, 3
    result = measure(args.ads, args.points, args.rounds)
    text = markdown(result)
    print(text)
    if not args.quick:
        write_results("ratelimit", result, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
