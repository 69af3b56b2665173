"""store.Store as a whole: the client it holds, what INFO says of the server, and
flushing and reconnecting.
(All on fakeredis; tests/integration/test_store_on_redis.py runs them on a real server.)"""
from __future__ import annotations

from store import Store
from tests.support.stored_ads import put


class ServerInfo:
    """INFO replies as redis-py parses them (fakeredis has no INFO)."""

    replies = {"memory": {"used_memory": 1_593_416, "used_memory_human": "1.52M",
                          "maxmemory": 0},
               "commandstats": {"cmdstat_get": {"calls": 4, "usec": 12, "usec_per_call": 3.0},
                                "cmdstat_info": {"calls": 1, "usec": 30,
                                                 "usec_per_call": 30.0}}}

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, section: str) -> dict:
        self.asked.append(section)
        return self.replies[section]


def test_memory_and_command_time_come_from_info(fake_store: Store, monkeypatch):
    info = ServerInfo()
    monkeypatch.setattr(fake_store.r, "info", info)
    assert fake_store.memory_used() == (1_593_416, "1.52M")
    assert fake_store.command_time_us() == {"get": 12, "info": 30}
    assert info.asked == ["memory", "commandstats"]


def test_flush_all_empties_the_server_and_close_lets_a_later_call_reconnect(fake_store: Store):
    put(fake_store, "a", 52.5, 13.4)
    fake_store.flush_all()
    assert fake_store.get_ad("a") is None and fake_store.live_ad_ids() == []
    fake_store.close()
    assert fake_store.ping()
