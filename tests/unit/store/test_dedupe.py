"""store.dedupe: an event id is found by every accept within a dedupe window of its own, and
its set is gone by one and a half windows; a bucket's sets are sized to stay intsets when the
rate holds or grows by up to a third; fingerprints do not collide; what a process knows of
buckets' shard counts. (The sets themselves, on fakeredis and a real server:
tests/unit/store/test_event_store.py; their bytes: tests/integration/test_archive_memory.py.)"""
from __future__ import annotations

import uuid
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from store import dedupe

WINDOW = 86_700


@given(st.floats(1e9, 2e9), st.floats(0, WINDOW))
def test_an_id_is_found_for_a_window_and_kept_at_most_one_and_a_half(accepted_at, later):
    bucket = dedupe.bucket_of(accepted_at, WINDOW)
    asked = dedupe.consulted(dedupe.bucket_of(accepted_at + later, WINDOW))
    assert bucket in asked
    expires = accepted_at + dedupe.ttl_s(bucket, accepted_at, WINDOW)
    assert expires >= accepted_at + later           # still there when asked
    assert expires <= accepted_at + 1.5 * WINDOW + 1


def test_a_bucket_set_is_asked_until_it_expires_and_never_after():
    """The last accept that consults a bucket is in the bucket two after it; the set
    expires as the one after that begins."""
    half = WINDOW / dedupe.SPLIT
    for bucket in (10, 11):
        end = dedupe.ttl_s(bucket, bucket * half, WINDOW) + bucket * half
        assert bucket in dedupe.consulted(dedupe.bucket_of(end - 1, WINDOW))
        assert bucket not in dedupe.consulted(dedupe.bucket_of(end, WINDOW))


def test_sets_sized_from_the_bucket_before_stay_intsets_if_the_rate_grows_by_a_third():
    ids = [dedupe.fingerprint(str(uuid.uuid4())) for _ in range(130_000)]
    shards = dedupe.shards_for(100_000)
    sizes = Counter(dedupe.shard_of(fp, shards) for fp in ids)      # 1.3 x as many
    assert len(sizes) == shards and max(sizes.values()) <= 512      # set-max-intset-entries
    steady = Counter(dedupe.shard_of(fp, shards) for fp in ids[:100_000])
    assert max(steady.values()) <= 400
    few = dedupe.shards_for(10)
    assert few == dedupe.LEAST_SHARDS


def test_fingerprints_of_a_million_ids_do_not_collide():
    ids = [f"e-{i}" for i in range(500_000)] + [str(uuid.uuid4()) for _ in range(500_000)]
    assert len({dedupe.fingerprint(i) for i in ids}) == len(ids)


def test_a_process_keeps_shard_counts_and_asks_again_about_empty_buckets():
    now = [100.0]
    known = dedupe.ShardCounts(clock=lambda: now[0])
    assert known.missing("{ev}", [5, 4, 3]) == [5, 4, 3]
    known.learn("{ev}", 5, 300)
    known.learn("{ev}", 4, None)                    # nothing accepted there (yet)
    assert known.missing("{ev}", [5, 4, 3]) == [3]
    now[0] += dedupe.NEGATIVE_RECHECK_S
    assert known.missing("{ev}", [5, 4, 3]) == [4, 3]
    assert known.missing("{ev.1}", [5]) == [5]      # partitions apart
    assert known.of("{ev}", [6, 5, 4]) == {5: 300}
    known.learn("{ev}", 2, 9)
    known.of("{ev}", [6, 5, 4])                     # older buckets forgotten
    assert known.missing("{ev}", [2]) == [2]
