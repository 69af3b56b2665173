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
