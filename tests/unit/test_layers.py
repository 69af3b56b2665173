"""Redis is reached through the store's API only: outside store/, no code reads the store's
raw client (``store.r``), imports its key names or Lua (``Keys``, ``store.keys``,
``store.scripts``) or spells a key, and the benchmarks and dev tools open no Redis client of
their own (``Store.from_url`` does)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("webapp", "pipeline", "tasks", "obs", "config", "geo", "bandit", "bench",
            "devtools")
STORE_INTERNALS = {"store.keys", "store.scripts"}
KEY = re.compile(r"""["'](ad|ads|feed|cells|served|catalog|lock|job|user|regen|strategy|"""
                 r"""position|priors|secret|\{ev\}):""")
OWN_CLIENT = {  # code that may open a Redis client of its own, and why
    "devtools/redis_server.py": "starts a redis-server and waits for it to answer",
    "devtools/redis_cluster.py": "starts cluster nodes and waits for each, then the cluster",
}


def sources(packages: tuple[str, ...] = PACKAGES) -> list[Path]:
    files = [p for package in packages for p in sorted((ROOT / package).rglob("*.py"))]
    assert files
    return files


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def raw_client_uses(tree: ast.AST) -> list[int]:
    """Lines that read an attribute ``r``: the store's raw client (nothing else outside
    store/ has an attribute of that name)."""
    return sorted(n.lineno for n in ast.walk(tree)
                  if isinstance(n, ast.Attribute) and n.attr == "r")


def store_internals(tree: ast.AST) -> list[int]:
    """Lines that import store.keys or store.scripts, or the name ``Keys`` from anywhere, or
    read ``something.Keys``."""
    lines = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            bad = any(a.name in STORE_INTERNALS for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            bad = (n.module in STORE_INTERNALS or any(a.name == "Keys" for a in n.names)
                   or (n.module == "store" and any(f"store.{a.name}" in STORE_INTERNALS
                                                   for a in n.names)))
        else:
            bad = isinstance(n, ast.Attribute) and n.attr == "Keys"
        if bad:
            lines.append(n.lineno)
    return sorted(lines)


def client_constructions(tree: ast.AST) -> list[int]:
    """Lines that call ``redis.Redis(...)``, ``Redis.from_url(...)`` and the like."""
    lines = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute | ast.Name):
            func = n.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id
            owner = func.value if isinstance(func, ast.Attribute) else None
            via_redis = (isinstance(owner, ast.Name) and owner.id in ("redis", "Redis")
                         or isinstance(owner, ast.Attribute) and owner.attr == "Redis")
            if called in ("Redis", "StrictRedis") or (called == "from_url" and via_redis):
                lines.append(n.lineno)
    return sorted(lines)


@pytest.mark.parametrize("check", [raw_client_uses, store_internals])
def test_no_code_outside_the_store_reaches_past_its_api(check):
    offenders = {name(p): lines for p in sources() if (lines := check(ast.parse(p.read_text())))}
    assert offenders == {}


def test_no_module_outside_the_store_spells_a_key():
    # config/ is left out: it talks to no Redis, and its "user:password" reads like a key
    checked = sources(tuple(p for p in PACKAGES if p != "config"))
    assert [name(p) for p in checked if KEY.search(p.read_text())] == []


def test_benchmarks_and_dev_tools_open_redis_through_the_store():
    offenders = {name(p): lines for p in sources(("bench", "devtools"))
                 if name(p) not in OWN_CLIENT
                 and (lines := client_constructions(ast.parse(p.read_text())))}
    assert offenders == {}


def test_each_check_finds_what_it_looks_for():
    code = ast.parse("from store import Keys, Store\nimport store.keys\nimport redis\n"
                     "s = Store(redis.Redis.from_url('redis://'))\ns.r.get(Keys.feed('c'))\n"
                     "c = redis.Redis(port=1)\nfrom store.scripts import ACCEPT\n"
                     "import store\nstore.Keys.ad('a')\nfrom store import keys\n"
                     "s.feed_value('c')\n")
    assert raw_client_uses(code) == [5]
    assert store_internals(code) == [1, 2, 7, 9, 10]
    assert client_constructions(code) == [4, 6]
    assert KEY.search("f'feed:{cell}'") and not KEY.search("'feeds'")
