"""store.rows: the Python values the store reads and writes, and the helpers that pack and
parse them (float rows, decayed sums, ads:summary values, search centres, stream ids)."""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest

import geo
from store.keys import EVENT_TYPES, GEO_LAT_LIMIT, NO_EXPIRY, STAT_FIELDS
from store.rows import (
    AdRow,
    Decayed,
    Summaries,
    _entry_ms,
    _s,
    consumer_name,
    float_rows,
    searchable,
    stat_type_index,
    summary,
)
from tests.conftest import NOW


def test_rows_of_mixed_widths_are_read_one_by_one_never_misaligned():
    rows = float_rows([b"1 2 3", b"4 5", None, b"6 7 8 9"], 3)
    assert np.isnan(rows[2]).all()
    assert rows[[0, 1, 3]].tolist()[0] == [1, 2, 3]
    assert rows[1][:2].tolist() == [4, 5] and np.isnan(rows[1][2])
    assert rows[3].tolist() == [6, 7, 8]


def test_missing_and_short_rows_read_as_nan_where_they_have_no_number():
    aligned = float_rows([None, b"1.5 -2", None, b"3 4e3"], 2)
    assert aligned.shape == (4, 2)
    assert np.isnan(aligned[[0, 2]]).all()
    assert aligned[[1, 3]].tolist() == [[1.5, -2.0], [3.0, 4000.0]]
    short = float_rows([b"7", None], 3)
    assert short[0, 0] == 7 and np.isnan(short[0, 1:]).all() and np.isnan(short[1]).all()


def test_no_rows_or_only_missing_ones_are_all_nan():
    assert float_rows([], 4).shape == (0, 4)
    assert np.isnan(float_rows([None, None], 4)).all()


def test_decayed_sums_never_written_are_zero_with_no_time():
    decayed = Decayed.parse([b"5 1 2", None, b"6 3"], 2)
    assert decayed.updated_at[[0, 2]].tolist() == [5, 6] and np.isnan(decayed.updated_at[1])
    assert decayed.values.tolist() == [[1, 2], [0, 0], [3, 0]]    # the short row: 0, not NaN


def ad(ad_id: str, card: bytes, category_code: int = 7) -> AdRow:
    return AdRow(ad_id, {}, 52.5, 13.4, None, NOW - 60, category_code, card)


def test_summaries_read_back_the_fixed_part_and_the_card_of_each_value():
    values = [summary(ad("a", b"card:a"), NOW + 5),
              summary(ad("b", "Bäcker".encode(), 2**64 - 1), NO_EXPIRY),
              summary(ad("c", b""), NOW)]
    found = Summaries.decode([b"a", b"b", b"c"], values)
    assert found.ids == [b"a", b"b", b"c"]
    assert found.rows["exp"].tolist() == [NOW + 5, NO_EXPIRY, NOW]
    assert found.rows["cat"].tolist() == [7, 2**64 - 1, 7]
    assert found.rows["created"].tolist() == [NOW - 60] * 3
    cards = [found.buffer[s:s + n]
             for s, n in zip(found.card_starts, found.card_lengths, strict=True)]
    assert cards == [b"card:a", "Bäcker".encode(), b""]


def test_a_summary_of_the_first_layout_reads_with_creation_time_and_category_zero():
    first = np.array([(48.85, 2.35, NO_EXPIRY)], dtype="<f8,<f8,<f8").tobytes() + b"old card"
    found = Summaries.decode([b"new", b"old"], [summary(ad("new", b"new card"), NOW), first])
    new, old = found.rows
    assert (new["lat"], new["created"], new["cat"]) == (52.5, NOW - 60, 7)
    assert (old["lat"], old["lon"], old["exp"]) == (48.85, 2.35, NO_EXPIRY)
    assert (old["created"], old["cat"]) == (0, 0)
    assert found.buffer[found.card_starts[1]:][:found.card_lengths[1]] == b"old card"


def test_a_search_centre_within_the_geo_limit_is_kept_as_it_is():
    assert searchable(52.5, 13.4, 5.0) == (52.5, 5.0)
    assert searchable(-GEO_LAT_LIMIT, 0.0, 1.0) == (-GEO_LAT_LIMIT, 1.0)


@pytest.mark.parametrize("lat", [89.0, 85.1, -90.0])
def test_a_search_centre_past_the_geo_limit_moves_to_it_and_widens_to_cover_the_circle(lat):
    lon, radius_km = 10.0, 3.0
    centre_lat, widened_km = searchable(lat, lon, radius_km)
    assert centre_lat == np.sign(lat) * GEO_LAT_LIMIT
    edge_lat, edge_lon = geo.destination_point(np.full(36, lat), np.full(36, lon),
                                               np.arange(0.0, 360.0, 10.0), radius_km)
    assert (geo.haversine_km(centre_lat, lon, edge_lat, edge_lon) <= widened_km).all()


def test_a_reply_reads_as_text_whether_the_client_decodes_or_not():
    assert _s(b"B\xc3\xa4cker") == "Bäcker" and _s("Bäcker") == "Bäcker" and _s(None) is None


def test_a_stream_ids_time_is_its_milliseconds():
    assert _entry_ms(b"1800000000000-3") == 1_800_000_000_000
    assert _entry_ms("1800000000123-0") == 1_800_000_000_123


def test_each_event_type_is_counted_in_its_place_and_any_other_type_not_at_all():
    assert [stat_type_index(t) for t in EVENT_TYPES] == list(range(1, len(STAT_FIELDS) + 1))
    assert stat_type_index("purchase") == 0 and stat_type_index("") == 0


def test_a_consumer_is_named_for_its_host_and_process():
    assert consumer_name() == f"{socket.gethostname()}:{os.getpid()}"
