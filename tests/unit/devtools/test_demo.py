"""devtools.demo: the demo catalogue."""
from __future__ import annotations

from devtools.demo import demo_ads
from tests.conftest import NOW


def test_demo_catalogues_of_two_seeds_share_no_ids():
    first = {line["ad_id"] for line in demo_ads(500, NOW, seed=7)}
    second = {line["ad_id"] for line in demo_ads(500, NOW, seed=8)}
    assert len(first) == len(second) == 500 and not first & second
