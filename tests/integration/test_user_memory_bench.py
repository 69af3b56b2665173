"""bench.user_memory on a redis-server of its own: the frequency cap's keys stay compact
(listpack) and within their bound per user."""
from __future__ import annotations

import pytest

from bench import user_memory


@pytest.mark.slow
def test_the_frequency_caps_memory_per_user_is_bounded(capsys):
    assert user_memory.main(["--quick"]) == 0
    page = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in page.splitlines()
            if line.startswith("| `")}
    assert set(rows) == {"`light`", "`active`", "`bound`"}
    bound = float(rows["`bound`"].split("|")[4].replace(",", ""))
    light = float(rows["`light`"].split("|")[4].replace(",", ""))
    assert light < bound < 10_000 and "listpack" in rows["`bound`"]
