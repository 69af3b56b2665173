"""store.keys: how the store spells its keys. (That docs/operating.md's Redis-keys table names
every one: tests/unit/test_docs.py.)"""
from __future__ import annotations

import itertools
from typing import get_type_hints

from redis.crc import key_slot

from store.keys import EVENT_TYPES, STAT_FIELDS, Keys

# arguments of each kind as they reach a key: days and numbers made by the code, identifiers
# as validation lets them through (which may hold ":" and ".")
IDENTIFIERS = ["a1", "a1:loc", "x:excluded", "all", "epochs", "u33dc0", "rollup:8"]
NUMBERS = [0, 7, 1_800_000_000_000]
BY_PARAMETER = {"day": ["2027-01-15", "2026-12-31"], "field": list(STAT_FIELDS),
                "limit": ["feeds", "events"], "client": ["key:a1", "addr:10.0.0.1", "addr:::1"]}


def fixed_keys() -> dict[str, str]:
    return {name: value for name, value in vars(Keys).items()
            if isinstance(value, str) and not name.startswith("_") and name != "ad_prefix"}


def key_makers() -> dict[str, staticmethod]:
    return {name: value for name, value in vars(Keys).items()
            if isinstance(value, staticmethod) and name != "partition"}


def spelled(maker: staticmethod) -> list[str]:
    """The keys ``maker`` spells from sample arguments of the kind it takes (every
    combination, for a maker of several)."""
    hints = get_type_hints(maker.__func__)
    samples = [NUMBERS if kind is int else BY_PARAMETER.get(name, IDENTIFIERS)
               for name, kind in hints.items() if name != "return"]
    return [maker.__func__(*args) for args in itertools.product(*samples)]


def test_an_ads_key_is_the_ad_prefix_then_its_id():
    """The catalogue scans for ``ad_prefix*`` to find every ad's record: it must match
    what Keys.ad spells (no script builds a key: each is passed its keys)."""
    for ad_id in ("a1", "job:42", "x.y-z"):
        assert Keys.ad(ad_id) == Keys.ad_prefix + ad_id
        assert Keys.ad(ad_id).removeprefix(Keys.ad_prefix) == ad_id


def test_no_two_keys_are_spelled_alike():
    """No key made from one argument is another key's name, a fixed key's name or the same
    key made from another argument, even for identifiers with ":" in them (a day is always
    YYYY-MM-DD, so ``ctr`` never spells ``ctr_all``)."""
    owners: dict[str, str] = {}
    for name, key in fixed_keys().items():
        assert key not in owners, (name, owners.get(key))
        owners[key] = name
    for name, maker in key_makers().items():
        for key in spelled(maker):
            assert key not in owners, (name, key, owners.get(key))
            owners[key] = name


def test_the_keys_tagged_ev_share_one_cluster_slot_and_no_key_has_another_tag():
    """The store's atomic steps over events, counters and evidence touch only ``{ev}`` keys
    together, so on Redis Cluster they would still live on one node. The one other tag is a
    user's, on the frequency cap's two keys, which its script writes together."""
    keys = [*fixed_keys().values(),
            *itertools.chain.from_iterable(spelled(m) for m in key_makers().values())]
    users = [k for k in keys if k.startswith("user:{")]
    assert users and all(k.endswith(("}:shown", "}:capped")) for k in users), users
    assert key_slot(Keys.user_shown("u7").encode()) == key_slot(Keys.user_capped("u7").encode())
    tagged = [k for k in keys if "{" in k and not k.startswith("user:{")]
    assert tagged and all(k.startswith("{ev}:") for k in tagged), tagged      # (partitions:
    # the test above; on a cluster, store.keys.ClusterKeys: test_store_on_cluster.py)
    assert {key_slot(k.encode()) for k in tagged} == {key_slot(b"{ev}")}


def test_each_partition_keeps_to_one_slot_and_partition_0_is_spelled_as_ever():
    """EVENT_PARTITIONS: a partition's atomic steps touch only its own keys, which share
    its tag; partition 0's are the names a single-partition deployment always had."""
    home = Keys.partition(0)
    assert (home.inbox, home.inbox_due, home.events, home.counts, home.decayed, home.ctr_all,
            home.position_epochs, home.position_pairs) == (
        Keys.inbox, Keys.inbox_due, Keys.events, Keys.counts, Keys.decayed, Keys.ctr_all,
        Keys.position_epochs, Keys.position_pairs)
    assert (home.seen(3), home.ctr("2027-01-15"), home.credited("2027-01-15"),
            home.position_epoch(7), home.position_folding(7)) == (
        Keys.seen(3), Keys.ctr("2027-01-15"), Keys.credited("2027-01-15"),
        Keys.position_epoch(7), Keys.position_folding(7))
    tags = set()
    for index in range(8):
        part = Keys.partition(index)
        keys = [v for v in vars(part).values() if isinstance(v, str) and v != part.tag]
        keys += [part.seen(1), part.ctr("2027-01-15"), part.credited("2027-01-15"),
                 part.position_epoch(7), part.position_folding(7)]
        assert {key_slot(k.encode()) for k in keys} == {key_slot(part.tag.encode())}
        tags.add(part.tag)
    assert len(tags) == 8


def test_each_event_type_has_the_counter_field_of_the_same_place():
    """The rollup counts an event of EVENT_TYPES[i] into Keys.stats(STAT_FIELDS[i])."""
    assert len(EVENT_TYPES) == len(STAT_FIELDS)
    for event_type, field in zip(EVENT_TYPES, STAT_FIELDS, strict=True):
        assert field in (f"{event_type}s", f"{event_type.removesuffix('y')}ies")
        assert Keys.stats(field).endswith(f":{field}")
