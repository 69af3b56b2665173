"""tasks.broker: the guarded channel that turns a collected connection into the error
kombu reconnects on."""
from __future__ import annotations

import pytest


def test_the_guarded_channel_turns_a_collected_connection_into_a_connection_error():
    import redis as redis_py

    from tasks.broker import Channel
    channel = Channel.__new__(Channel)          # the state it is in after collect()
    channel.connection = type("CollectedTransport", (), {"client": None})()
    with pytest.raises(redis_py.ConnectionError):
        channel._connparams()


def test_a_channel_keeps_one_client_for_its_pool_and_makes_another_for_a_new_pool():
    """kombu would build a client for every command it sends (a task, an ack, an event);
    the channel keeps one, and a reconnect's new pool gets a new one."""
    import redis as redis_py

    from tasks.broker import Channel
    channel = Channel.__new__(Channel)
    channel.Client = redis_py.Redis
    channel._pool = redis_py.ConnectionPool(host="127.0.0.1", port=1)   # nothing is sent
    first = channel._create_client()
    assert channel._create_client() is first and first.connection_pool is channel._pool
    channel._pool = redis_py.ConnectionPool(host="127.0.0.1", port=2)
    second = channel._create_client()
    assert second is not first and second.connection_pool is channel._pool
    with channel.conn_or_acquire() as client:
        assert client is second
