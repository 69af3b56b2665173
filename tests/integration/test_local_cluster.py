"""devtools.redis_cluster: a Redis Cluster of the tests' own, 3 masters on free loopback
ports, every slot served, stopped with nothing left behind. It also pins down the rule the
store has to keep on a cluster: a multi-key command, script or transaction must keep to one
hash slot, which a hash tag ({...}) gives."""
from __future__ import annotations

import socket

import pytest
import redis
from redis.cluster import RedisCluster

from devtools.redis_cluster import BUS_OFFSET, SLOTS, LocalCluster


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_a_local_cluster_serves_every_slot_and_keeps_multi_key_work_to_one_slot(tmp_path):
    with LocalCluster(tmp_path) as cluster:
        client = RedisCluster.from_url(cluster.url)
        try:
            masters = client.get_primaries()
            assert sorted(n.port for n in masters) == sorted(cluster.ports)
            assert int(client.cluster_info()["cluster_slots_assigned"]) == SLOTS
            keys = [f"key-{i}" for i in range(60)]
            for i, key in enumerate(keys):
                client.set(key, i)
            assert [int(client.get(k)) for k in keys] == list(range(60))
            # the keys landed on every master
            assert {client.get_node_from_key(k).port for k in keys} == set(cluster.ports)
            # one slot: fine; two: refused, which is why the store's keys need hash tags
            assert client.mset_nonatomic({"{ev}:a": 1, "{ev}:b": 2}) is not None
            assert client.eval("return redis.call('GET', KEYS[1]) + redis.call('GET', KEYS[2])",
                               2, "{ev}:a", "{ev}:b") == 3
            with pytest.raises(redis.RedisClusterException):
                client.eval("return 1", 2, "key-1", "key-2")
        finally:
            client.close()
    assert not any(listening(p) or listening(p + BUS_OFFSET) for p in cluster.ports)
