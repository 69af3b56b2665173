"""The log of served feeds: what was served reaches Redis, once, even across Redis
outages (up to a bound)."""
from __future__ import annotations

import redis

from pipeline.serving.feed import ServingLog
from store import Keys


def test_the_serving_log_writes_feeds_and_cells_in_one_flush(fake_store):
    log = ServingLog(fake_store, 1000, flush_s=None)
    log.add({"feed_id": "f1", "ads": "a"}, "u33dc0", 10.0)
    log.add({"feed_id": "f2", "ads": "b"}, "u33dc0", 11.0)
    assert fake_store.r.xlen(Keys.served) == 0
    assert log.flush() == 2
    assert fake_store.r.xlen(Keys.served) == 2
    assert fake_store.r.zscore(Keys.cells_active, "u33dc0") == 11.0
    assert log.flush() == 0


def test_the_serving_log_keeps_entries_while_redis_is_down(fake_store, monkeypatch):
    log = ServingLog(fake_store, 1000, flush_s=None)
    log.add({"feed_id": "f1"}, "u33dc0", 10.0)

    def down(*_a, **_k):
        raise redis.ConnectionError("down")
    monkeypatch.setattr(fake_store, "record_serving", down)
    assert log.flush() == 0
    monkeypatch.undo()
    log.add({"feed_id": "f2"}, "u33dc1", 11.0)
    assert log.flush() == 2
    assert [f[b"feed_id"] for _, f in fake_store.r.xrange(Keys.served)] == [b"f1", b"f2"]


def test_the_serving_log_drops_the_oldest_past_its_bound(fake_store):
    log = ServingLog(fake_store, 1000, flush_s=None, max_buffered=2)
    for i in range(3):
        log.add({"feed_id": f"f{i}"}, "u33dc0", 10.0)
    assert log.flush() == 2
    assert [f[b"feed_id"] for _, f in fake_store.r.xrange(Keys.served)] == [b"f1", b"f2"]


def test_a_large_buffer_is_written_in_chunks(fake_store, monkeypatch):
    import pipeline.serving.feed as serving
    monkeypatch.setattr(serving, "FLUSH_CHUNK", 2)
    calls = []
    real = fake_store.record_serving
    monkeypatch.setattr(fake_store, "record_serving",
                        lambda served, *a: (calls.append(len(served)), real(served, *a)))
    log = ServingLog(fake_store, 1000, flush_s=None)
    for i in range(5):
        log.add({"feed_id": f"f{i}"}, "u33dc0", 10.0)
    assert log.flush() == 5
    assert calls == [2, 2, 1]
    assert fake_store.r.xlen(Keys.served) == 5


def test_a_flush_whose_reply_was_lost_is_not_appended_twice(fake_store, monkeypatch):
    """The write reached Redis but the reply did not (a timeout): the retry carries the same
    flush id and appends nothing, so each served feed is in the log (and counted) once."""
    log = ServingLog(fake_store, 1000, flush_s=None)
    for i in range(5):
        log.add({"feed_id": f"f{i}", "ads": ""}, "u33dc0", 1.0)
    real = fake_store.record_serving
    lost = []

    def written_then_timed_out(*args, **kwargs):
        real(*args, **kwargs)
        if not lost:
            lost.append(1)
            raise redis.TimeoutError("reply lost")

    monkeypatch.setattr(fake_store, "record_serving", written_then_timed_out)
    assert log.flush() == 0
    log.add({"feed_id": "f5", "ads": ""}, "u33dc0", 2.0)
    assert log.flush() == 6
    logged = [f[b"feed_id"].decode() for _, f in fake_store.r.xrange(Keys.served)]
    assert logged == [f"f{i}" for i in range(6)]
