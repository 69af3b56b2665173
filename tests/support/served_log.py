"""The served-feed log and the events stream as `flask evaluate` reads them, written
directly (each entry at the time it names), and the command run on them."""
from __future__ import annotations

import itertools
import json

import numpy as np
import orjson
from flask import Flask

from pipeline.learning.ingest import Batch, Event
from pipeline.serving.feed import make_feed_id
from store import Keys, Store
from tests.conftest import NOW

SINCE, UNTIL = NOW - 6 * 3600, NOW
EVENT_IDS = itertools.count()


def run(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["evaluate", *args])


def run_json(app: Flask, *args: str) -> dict:
    result = run(app, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def add_served(store: Store, feeds: list[dict[str, str]]) -> None:
    """Served-log entries, each at the time its feed was served."""
    with store.r.pipeline(transaction=False) as p:
        for i, fields in enumerate(sorted(feeds, key=lambda f: float(f["ts"]))):
            p.xadd(Keys.served, fields, id=f"{int(float(fields['ts']) * 1000)}-{i}")
        p.execute()


def add_events(store: Store, events: list[tuple[float, bytes]]) -> None:
    """Events-stream entries, each reaching the stream at its time: a batch of one accepted
    event (``event``), or one an earlier version wrote (``old_event``)."""
    with store.r.pipeline(transaction=False) as p:
        for j, (reached, payload) in enumerate(sorted(events, key=lambda e: e[0])):
            fields = {"e": payload} if payload.startswith(b'{"id":"') else \
                {"k": b"1", "b": payload}
            p.xadd(Keys.events, fields, id=f"{int(reached * 1000)}-{j}")
        p.execute()


def served(feed_id: str, ts: float, strategy: str, propensity: float,
           cell: str = "u33dc0") -> dict[str, str]:
    ts, propensity = float(ts), float(propensity)
    return {"feed_id": feed_id, "ts": repr(ts), "cell": cell, "strategy": strategy,
            "propensity": repr(propensity), "variant": "0", "generated_at": repr(ts - 30),
            "cache": "hit", "user_id": "", "ads": "ad1 ad2 ad3"}


def event(feed_id: str | None, at: float, type_: str = "apply") -> tuple[float, bytes]:
    """An accepted event as it reaches the stream at ``at`` (in a batch of its own)."""
    at = float(at)
    return at, Batch.of([Event(f"e{next(EVENT_IDS)}", "ad1", type_, at - 1, "u1", feed_id,
                               1)]).encode(at)


def old_event(feed_id: str | None, at: float, type_: str = "apply") -> tuple[float, bytes]:
    """An event as an earlier version kept it: an entry of its own."""
    at = float(at)
    return at, orjson.dumps({"id": f"e{next(EVENT_IDS)}", "ad": "ad1", "type": type_,
                             "ts": at - 1, "user": "u1", "feed": feed_id, "pos": 1, "at": at})


def feed_id(ts: float, strategy: str, rng: np.random.Generator, cell: str = "u33dc0") -> str:
    return make_feed_id(ts, cell, strategy, rng, b"test secret")


def small_log(store: Store, rng: np.random.Generator) -> dict[str, str]:
    """Three feeds in range (a thompson with one apply, two popular: one apply, none) and
    one served before the range; applies that must not count around them."""
    ids = {"a": feed_id(SINCE + 100, "thompson", rng), "b": feed_id(SINCE + 200, "popular", rng),
           "d": feed_id(SINCE + 300, "popular", rng), "old": feed_id(SINCE - 100, "thompson", rng)}
    add_served(store, [served(ids["a"], SINCE + 100, "thompson", 0.5),
                       served(ids["b"], SINCE + 200, "popular", 0.25),
                       served(ids["d"], SINCE + 300, "popular", 0.25),
                       served(ids["old"], SINCE - 100, "thompson", 0.5)])
    add_events(store, [
        event(ids["a"], SINCE + 160),                   # counts
        event(ids["a"], SINCE + 100 + 601),             # after the 600 s window
        event(ids["a"], SINCE + 170, "view"),           # not an apply
        event(ids["b"], SINCE + 200 + 600),             # counts: the window's last moment
        event(ids["old"], SINCE + 10),                  # its feed was served before the range
        event(feed_id(SINCE + 150, "thompson", rng), SINCE + 180),  # a feed never served
        event(None, SINCE + 190),                       # no feed
        (SINCE + 195, b'{"type": "apply", "feed": '),   # unreadable
    ])
    return ids
