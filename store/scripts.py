"""Every Lua script the service runs, one file each under ``store/lua/`` (package data).
Each script is one atomic step of the flow; its header names its KEYS and ARGV. A line
``-- uses: NAME.lib`` at the top puts that library (``store/lua/NAME.lib.lua``) before it.
What a script shares with Python (event types, counter names, key prefixes) is passed in
its ARGV or KEYS, never written into it."""
from __future__ import annotations

import re
from functools import cache
from importlib import resources

USES = re.compile(r"^-- uses: ([a-z_]+\.lib)$", re.M)


@cache
def source(name: str) -> str:
    """The script ``name`` as Redis runs it: its libraries, then its own text.

    >>> "local function exclude" in source("accept") and "EXISTS" in source("accept")
    True
    """
    text = (resources.files("store") / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    libraries = [source(lib) for lib in USES.findall(text)]
    return "".join(libraries) + text


ACCEPT = source("accept")
EXCLUDE = source("exclude")
SHOWINGS = source("showings")
ROLL_IN = source("roll_in")
ROLLUP = source("rollup")
COUNT_SERVED = source("count_served")
BEGIN_FOLD = source("begin_fold")
FOLD_POSITIONS = source("fold_positions")
NEARBY = source("nearby")
APPEND_SERVED = source("append_served")
DROP_EXPIRED = source("drop_expired")
FINISH_SHARD = source("finish_shard")
PUT_RECORDS = source("put_records")
SET_FEED = source("set_feed")
VOID_FEED = source("void_feed")
SETTLE_CREDITS = source("settle_credits")
DROP_SETTLED = source("drop_settled")
MOVE_CURSOR = source("move_cursor")
SETTLE_BUCKET = source("settle_bucket")
SIZE_DEDUPE = source("size_dedupe")
