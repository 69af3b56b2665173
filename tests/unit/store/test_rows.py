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
    card_value,
    consumer_name,
    float_rows,
    searchable,
    split_card,
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


def test_rows_read_every_number_lua_writes_and_refuse_what_is_not_one():
    rows = float_rows([b"1.5 -2e-05 inf", b"nan -nan 17", b"3 4 5"], 3)
    assert rows[0].tolist() == [1.5, -2e-05, float("inf")]
    assert np.isnan(rows[1, :2]).all() and rows[1, 2] == 17
    with pytest.raises((ValueError, DeprecationWarning)):
        float_rows([b"1 2 3", b"4 five 6"], 3)


def test_no_rows_or_only_missing_ones_are_all_nan():
    assert float_rows([], 4).shape == (0, 4)
    assert np.isnan(float_rows([None, None], 4)).all()


def test_decayed_sums_never_written_are_zero_with_no_time():
    decayed = Decayed.parse([b"5 1 2", None, b"6 3"], 2)
    assert decayed.updated_at[[0, 2]].tolist() == [5, 6] and np.isnan(decayed.updated_at[1])
    assert decayed.values.tolist() == [[1, 2], [0, 0], [3, 0]]    # the short row: 0, not NaN


def ad(ad_id: str, card: bytes, category_code: int = 7, employer: int = 0) -> AdRow:
    return AdRow(ad_id, {}, 52.5, 13.4, None, NOW - 60, category_code, card, employer)


def test_summaries_read_back_the_fixed_part_and_the_serial_of_each_value():
    values = [summary(ad("a", b"card:a"), NOW + 5, 1),
              summary(ad("b", "Bäcker".encode(), 2**64 - 1), NO_EXPIRY, 2**40 + 3),
              summary(ad("c", b""), NOW, 9)]
    found = Summaries.decode([b"a", b"b", b"c"], values)
    assert found.ids == [b"a", b"b", b"c"]
    assert found.rows["exp"].tolist() == [NOW + 5, NO_EXPIRY, NOW]
    assert found.rows["cat"].tolist() == [7, 2**64 - 1, 7]
    assert found.rows["created"].tolist() == [NOW - 60] * 3
    assert found.rows["sn"].tolist() == [1, 2**40 + 3, 9]


def test_summaries_of_older_layouts_read_with_employer_and_serial_zero():
    """The first layout (lat, lon, expiry, card) also reads with creation time and category
    0; the second (tagged, no serial, a card) with its own; the third (no employer) with its
    serial and employer 0, unknown."""
    first = np.array([(48.85, 2.35, NO_EXPIRY)], dtype="<f8,<f8,<f8").tobytes() + b"old card"
    second = (b"AS2\x00" + np.array([(40.4, -3.7, NOW + 9, NOW - 5, 3)],
                                    dtype="<f8,<f8,<f8,<f8,<u8").tobytes() + b"card")
    third = b"AS3\x00" + np.array([(41.4, 2.2, NOW + 8, NOW - 4, 5, 77)],
                                  dtype="<f8,<f8,<f8,<f8,<u8,<u8").tobytes()
    found = Summaries.decode([b"new", b"first", b"second", b"third"],
                             [summary(ad("new", b"new card", employer=99), NOW, 12), first,
                              second, third])
    new, old, older, earlier = found.rows.tolist()
    assert new == (52.5, 13.4, NOW, NOW - 60, 7, 99, 12)
    assert old == (48.85, 2.35, NO_EXPIRY, 0, 0, 0, 0)
    assert older == (40.4, -3.7, NOW + 9, NOW - 5, 3, 0, 0)
    assert earlier == (41.4, 2.2, NOW + 8, NOW - 4, 5, 0, 77)


def test_a_summary_of_no_known_layout_is_an_error():
    with pytest.raises(ValueError, match="layout"):
        Summaries.decode([b"x"], [b"AS4\x00short"])


def test_a_card_value_holds_the_id_then_the_card():
    value = card_value(ad("a-1", b'{"ad_id":"a-1"'))
    assert split_card(value) == ("a-1", b'{"ad_id":"a-1"')


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
