"""store.spread: one script run for many single-slot calls, replies in the calls' order.
On fakeredis (one server: one pipeline); tests/integration/test_store_on_cluster.py runs the
store's steps that use it on a cluster, a pipeline per node."""
from __future__ import annotations

import fakeredis
import pytest
import redis

from store.spread import is_cluster, run_each

SCRIPT = """if ARGV[1] == 'fail' then return redis.error_reply('told to fail') end
redis.call('RPUSH', KEYS[1], ARGV[1]); return redis.call('LLEN', KEYS[1])"""


def test_each_call_runs_once_in_order_and_replies_in_order():
    client = fakeredis.FakeRedis()
    script = client.register_script(SCRIPT)
    replies = run_each(client, script, [(["a"], ["1"]), (["b"], ["2"]), (["a"], ["3"])])
    assert replies == [1, 1, 2]
    assert client.lrange("a", 0, -1) == [b"1", b"3"] and client.lrange("b", 0, -1) == [b"2"]
    assert run_each(client, script, []) == []


def test_a_failing_call_raises_after_the_others_ran():
    client = fakeredis.FakeRedis()
    script = client.register_script(SCRIPT)
    with pytest.raises(redis.ResponseError, match="told to fail"):
        run_each(client, script, [(["a"], ["fail"]), (["b"], ["2"])])
    assert client.lrange("b", 0, -1) == [b"2"]


def test_only_a_cluster_client_is_a_cluster():
    assert not is_cluster(fakeredis.FakeRedis())
    assert not is_cluster(redis.Redis())
