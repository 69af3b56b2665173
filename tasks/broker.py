"""The Redis broker transport, with one guard and one saving.

Celery 5.7 handles a lost broker connection by collecting the connection and then closing it
again. The close asks kombu's Redis channel to put unacknowledged messages back through the
collected connection, whose client is gone, and the AttributeError that follows stops the
worker ("Unrecoverable error"). Here that request fails with a connection error instead,
which the cleanup already ignores: the worker reconnects by itself, and the unacknowledged
messages, still in kombu's unacked hash in Redis, are restored after VISIBILITY_TIMEOUT_S.
(tests/integration/test_redis_restart.py kills Redis under a running worker.)

The saving: kombu builds a new redis-py client (about 130 µs of Python, most of the cost of
a publish) for every command it sends outside its event loop: each task sent, each
acknowledgement, each task event. A channel here keeps one, bound to the channel's own
connection pool, so a new pool (a reconnect) gets a new client.
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

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = getattr(self, "_sync_client", None)
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
