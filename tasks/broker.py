"""The Redis broker transport, with one guard.

Celery 5.7 handles a lost broker connection by collecting the connection and then closing it
again. The close asks kombu's Redis channel to put unacknowledged messages back through the
collected connection, whose client is gone, and the AttributeError that follows stops the
worker ("Unrecoverable error"). Here that request fails with a connection error instead,
which the cleanup already ignores: the worker reconnects by itself, and the unacknowledged
messages, still in kombu's unacked hash in Redis, are restored after VISIBILITY_TIMEOUT_S.
(tests/integration/test_redis_restart.py kills Redis under a running worker.)
"""
from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection was already closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
