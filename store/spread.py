"""Running one script many times, each call on keys of one slot, in as few round trips as
the server's layout allows: one pipeline on a single Redis; on Redis Cluster one pipeline
per node holding the calls' slots (redis-py's cluster pipeline refuses scripts). A call the
cluster redirects meanwhile (a slot moving: MOVED, ASK, TRYAGAIN; or CLUSTERDOWN during a
failover), and every call of a node that cannot be reached, is run again through the cluster
client, which follows redirects, refreshes its view of the slots and retries."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import AskError, ClusterDownError, TryAgainError

# replies after which a call goes again through the cluster client (MovedError is an AskError)
AGAIN = (AskError, TryAgainError, ClusterDownError, redis.ConnectionError, redis.TimeoutError)

Call = tuple[Sequence[str], Sequence[object]]   # a call's KEYS (one slot) and ARGV


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def run_each(client: redis.Redis | RedisCluster, script: Script,
             calls: Sequence[Call]) -> list[Any]:
    """Each call's reply, in order. A call that fails raises its error, once every call
    was sent."""
    if not calls:
        return []
    if not is_cluster(client):
        with client.pipeline(transaction=False) as p:
            for keys, args in calls:
                script(keys=keys, args=args, client=p)
            return p.execute()
    cluster: RedisCluster = client
    by_node: dict[str, list[int]] = defaultdict(list)
    for i, (keys, _) in enumerate(calls):
        by_node[cluster.get_node_from_key(keys[0]).name].append(i)
    out: list[Any] = [None] * len(calls)
    failed: list[Exception] = []
    for name, indexes in by_node.items():
        node = cluster.get_node(node_name=name)
        try:
            with node.redis_connection.pipeline(transaction=False) as p:
                for i in indexes:
                    script(keys=calls[i][0], args=calls[i][1], client=p)
                replies: list[Any] = p.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            replies = [exc] * len(indexes)
        for i, reply in zip(indexes, replies, strict=True):
            if isinstance(reply, AGAIN):
                try:
                    reply = script(keys=calls[i][0], args=calls[i][1], client=cluster)
                except redis.RedisError as exc:
                    reply = exc
            if isinstance(reply, Exception):
                failed.append(reply)
            out[i] = reply
    if failed:
        raise failed[0]
    return out
