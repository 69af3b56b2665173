"""The Lua scripts: one file each under store/lua/, each with a header naming its KEYS and
ARGV, and none spelling what Python owns (event types, counter names, key names)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from store import EVENT_TYPES, STAT_FIELDS, Keys, scripts

LUA = Path(scripts.__file__).parent / "lua"
SCRIPTS = sorted(p for p in LUA.glob("*.lua") if not p.name.endswith(".lib.lua"))


def code(text: str) -> str:
    """The script without its comments."""
    return "\n".join(line.split("--")[0] for line in text.splitlines())


def test_every_script_is_a_file_the_store_loads():
    assert len(SCRIPTS) >= 11
    loaded = {name.lower() for name in vars(scripts) if name.isupper() and name != "USES"}
    assert loaded == {p.stem for p in SCRIPTS}


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_each_script_names_its_keys_and_argv(path: Path):
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("--"))
    assert re.search(r"KEYS:", header) and re.search(r"ARGV:", header), path.name


@pytest.mark.parametrize("path", [*SCRIPTS, *LUA.glob("*.lib.lua")], ids=lambda p: p.stem)
def test_no_script_copies_a_name_python_owns(path: Path):
    body = code(path.read_text())
    literals = set(re.findall(r"'([^']*)'", body)) | set(re.findall(r'"([^"]*)"', body))
    keys = {v for v in vars(Keys).values() if isinstance(v, str)}
    owned = set(EVENT_TYPES) | set(STAT_FIELDS) | keys | {"ad:", "{ev}"}
    assert not literals & owned, sorted(literals & owned)


def test_a_library_comes_before_the_script_that_uses_it():
    text = scripts.source("rollup")
    assert text.index("local function decayed_add") < text.index("XACK")
