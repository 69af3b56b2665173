"""geo.geohash: published vectors, round trips, the vector encoder and neighbours."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo import (
    BASE32,
    cell_half_diagonal_km,
    cell_half_diagonals_km,
    decode,
    decode_box,
    decode_boxes,
    encode,
    encode_many,
    neighbours,
)

latitudes = st.one_of(st.floats(-90, 90), st.sampled_from([-90.0, -45.0, 0.0, -0.0, 45.0, 90.0]))
longitudes = st.one_of(st.floats(-180, 180), st.sampled_from([-180.0, -90.0, 0.0, 90.0, 180.0]))
precisions = st.integers(1, 12)

# (lat, lon, geohash): Wikipedia's examples, geohash.org's, and the test suites of
# GeohashKit, davidmoten/geo and ngeohash.
PUBLISHED_VECTORS = [
    (57.64911, 10.40744, "u4pruydqqvj"),
    (42.6, -5.6, "ezs42"),
    (-25.382708, -49.265506, "6gkzwgjzn820"),
    (-25.382708, -49.265506, "6gkzwg"),
    (-25.383, -49.266, "6gkzwgjt"),
    (-25.427, -49.315, "6gkzmg1u"),
    (-31.953, 115.857, "qd66hrhk"),
    (38.89710201881826, -77.03669792041183, "dqcjqcp84c6e"),
    (20.0, 31.0, "sew1c2vs2q5r"),
    (0.0, 0.0, "s"),
    (0.0, 0.0, "s000"),
    (-0.01, -0.01, "7"),
    (89.0, 91.0, "y"),
    (-90.0, -180.0, "000000000000"),
    (90.0, 180.0, "zzzzzzzzzzzz"),
]


def cell_contains(cell: str, lat: float, lon: float) -> bool:
    """Whether (lat, lon) lies in the closed box of ``cell``."""
    box = decode_box(cell)
    return box.lat_min <= lat <= box.lat_max and box.lon_min <= lon <= box.lon_max


def boxes_touch(first: str, second: str) -> bool:
    """Whether two cells share an edge or a corner, longitudes compared modulo 360."""
    a, b = decode_box(first), decode_box(second)
    lat_touch = max(a.lat_min, b.lat_min) <= min(a.lat_max, b.lat_max)
    lon_touch = any(max(a.lon_min, b.lon_min + shift) <= min(a.lon_max, b.lon_max + shift)
                    for shift in (-360.0, 0.0, 360.0))
    return lat_touch and lon_touch


@pytest.mark.parametrize(("lat", "lon", "cell"), PUBLISHED_VECTORS)
def test_encode_gives_published_vectors(lat: float, lon: float, cell: str) -> None:
    assert encode(lat, lon, len(cell)) == cell


def test_encode_many_gives_published_vectors() -> None:
    for precision in {len(cell) for _, _, cell in PUBLISHED_VECTORS}:
        vectors = [vector for vector in PUBLISHED_VECTORS if len(vector[2]) == precision]
        lat, lon, cells = (np.array(column) for column in zip(*vectors, strict=True))
        assert encode_many(lat, lon, precision).tolist() == cells.tolist()


def test_decode_gives_published_centres() -> None:
    # Wikipedia: ezs42 is 42.605 +- 0.022, -5.603 +- 0.022; GeohashKit gives the exact centre.
    assert decode("ezs42") == (42.60498046875, -5.60302734375)
    lat, lon = decode("dqcjqcp84c6e")
    assert lat == pytest.approx(38.89710201881826, abs=1e-6)
    assert lon == pytest.approx(-77.03669792041183, abs=1e-6)
    lat, lon = decode("u4pruydqqvj")
    assert lat == pytest.approx(57.64911, abs=1e-5)
    assert lon == pytest.approx(10.40744, abs=1e-5)


def test_decode_box_of_ezs42_matches_wikipedia() -> None:
    box = decode_box("ezs42")
    assert (box.lat_min + box.lat_max) / 2 == pytest.approx(42.605, abs=1e-3)
    assert (box.lat_max - box.lat_min) / 2 == pytest.approx(0.022, abs=1e-3)
    assert (box.lon_min + box.lon_max) / 2 == pytest.approx(-5.603, abs=1e-3)
    assert (box.lon_max - box.lon_min) / 2 == pytest.approx(0.022, abs=1e-3)


@given(latitudes, longitudes, precisions)
def test_point_lies_in_the_box_of_its_cell(lat: float, lon: float, precision: int) -> None:
    box = decode_box(encode(lat, lon, precision))
    assert box.lat_min <= lat <= box.lat_max and box.lon_min <= lon <= box.lon_max
    assert lat < box.lat_max or box.lat_max == 90.0  # half-open, except the top row
    assert lon < box.lon_max or box.lon_max == 180.0  # half-open, except the east column


@given(latitudes, longitudes, precisions)
def test_decoded_centre_lies_within_half_a_cell(lat: float, lon: float, precision: int) -> None:
    cell = encode(lat, lon, precision)
    box = decode_box(cell)
    centre_lat, centre_lon = decode(cell)
    assert abs(centre_lat - lat) <= (box.lat_max - box.lat_min) / 2
    assert abs(centre_lon - lon) <= (box.lon_max - box.lon_min) / 2
    assert encode(centre_lat, centre_lon, precision) == cell


@given(latitudes, longitudes)
def test_shorter_geohash_is_a_prefix_of_a_longer_one(lat: float, lon: float) -> None:
    longest = encode(lat, lon, 12)
    assert all(encode(lat, lon, precision) == longest[:precision] for precision in range(1, 12))


def bisected(lat: float, lon: float, precision: int) -> str:
    """The textbook geohash: bisect longitude and latitude in turn, ``value >= mid`` upper."""
    intervals = [[-180.0, 180.0], [-90.0, 90.0]]  # longitude first
    values = (lon, lat)
    code = 0
    for bit in range(5 * precision):
        interval = intervals[bit % 2]
        mid = (interval[0] + interval[1]) / 2
        upper = values[bit % 2] >= mid
        interval[0 if upper else 1] = mid
        code = (code << 1) | upper
    return "".join(BASE32[(code >> (5 * k)) & 31] for k in reversed(range(precision)))


@settings(max_examples=1000)
@given(latitudes, longitudes, precisions)
def test_encode_equals_the_textbook_bisection(lat: float, lon: float, precision: int) -> None:
    assert encode(lat, lon, precision) == bisected(float(lat), float(lon), precision)


@pytest.mark.parametrize("precision", range(1, 13))
def test_encode_equals_the_bisection_on_cell_edges(precision: int) -> None:
    """Points on, just below and just above every edge of the first cells, and the poles and
    the antimeridian, where a quotient could round across an edge."""
    box = decode_box(encode(0.0, 0.0, precision))
    for lat in (box.lat_min, box.lat_max, -90.0, 90.0, 0.0):
        for lon in (box.lon_min, box.lon_max, -180.0, 180.0, 0.0):
            for dlat in (0.0, 1e-12, -1e-12):
                for dlon in (0.0, 1e-12, -1e-12):
                    a, o = min(90.0, max(-90.0, lat + dlat)), min(180.0, max(-180.0, lon + dlon))
                    assert encode(a, o, precision) == bisected(a, o, precision)


@settings(max_examples=300)
@given(st.lists(st.tuples(latitudes, longitudes), min_size=1, max_size=50), precisions)
def test_encode_many_equals_encode_for_every_point(points: list[tuple[float, float]],
                                                   precision: int) -> None:
    lat, lon = np.array(points).T
    cells = encode_many(lat, lon, precision)
    assert cells.dtype == np.dtype(f"<U{precision}")
    assert cells.tolist() == [encode(*point, precision) for point in points]


def test_encode_many_keeps_the_shape_and_broadcasts() -> None:
    lat = np.array([[0.0, 10.0], [20.0, 30.0]])
    cells = encode_many(lat, 5.0, 4)
    assert cells.shape == (2, 2)
    assert cells[1, 0] == encode(20.0, 5.0, 4)
    assert encode_many(np.array([]), np.array([]), 3).shape == (0,)


@pytest.mark.parametrize("precision", range(1, 13))
def test_top_and_east_edges_fall_in_the_last_row_and_column(precision: int) -> None:
    assert encode(90.0, 180.0, precision) == "z" * precision
    assert encode(-90.0, -180.0, precision) == "0" * precision
    assert encode_many(np.array([90.0, -90.0]), np.array([180.0, -180.0]), precision).tolist() == [
        "z" * precision, "0" * precision]
    assert decode_box(encode(90.0, 0.0, precision)).lat_max == 90.0
    assert decode_box(encode(0.0, 180.0, precision)).lon_max == 180.0


def test_neighbours_match_published_sets() -> None:
    # GeohashKit's README and the geohash-js notes.
    assert set(neighbours("u000")) == {"u001", "u003", "u002", "spbr", "spbp", "ezzz",
                                       "gbpb", "gbpc"}
    assert set(neighbours("dqcjqc")) == {"dqcjqf", "dqcjqb", "dqcjr1", "dqcjq9", "dqcjqd",
                                         "dqcjr4", "dqcjr0", "dqcjq8"}


@given(latitudes, longitudes, st.integers(1, 8))
def test_neighbours_touch_the_cell_and_are_distinct(lat: float, lon: float, precision: int) -> None:
    cell = encode(lat, lon, precision)
    found = neighbours(cell)
    assert cell not in found
    assert len(set(found)) == len(found)
    assert all(len(other) == precision and boxes_touch(cell, other) for other in found)
    box = decode_box(cell)
    at_a_pole = box.lat_max == 90.0 or box.lat_min == -90.0
    assert len(found) == (5 if at_a_pole else 8)


@given(latitudes, longitudes, st.integers(1, 8))
def test_neighbours_are_symmetric(lat: float, lon: float, precision: int) -> None:
    cell = encode(lat, lon, precision)
    assert all(cell in neighbours(other) for other in neighbours(cell))


@given(latitudes, longitudes, st.integers(1, 8))
def test_neighbours_are_the_cells_one_step_away(lat: float, lon: float, precision: int) -> None:
    cell = encode(lat, lon, precision)
    box = decode_box(cell)
    centre_lat, centre_lon = box.centre
    height, width = box.lat_max - box.lat_min, box.lon_max - box.lon_min
    expected = set()
    for step_lat in (-1, 0, 1):
        for step_lon in (-1, 0, 1):
            other_lat = centre_lat + step_lat * height
            if (step_lat, step_lon) != (0, 0) and -90.0 < other_lat < 90.0:
                other_lon = math.remainder(centre_lon + step_lon * width, 360.0)
                expected.add(encode(other_lat, other_lon, precision))
    assert set(neighbours(cell)) == expected


def test_neighbours_wrap_across_the_antimeridian() -> None:
    for precision in (1, 3, 6, 12):
        east, west = encode(10.0, 179.9999999, precision), encode(10.0, -179.9999999, precision)
        assert west in neighbours(east) and east in neighbours(west)


def test_cells_at_the_poles_have_no_neighbours_beyond_the_pole() -> None:
    north, south = encode(90.0, 0.0, 4), encode(-90.0, 0.0, 4)
    assert len(neighbours(north)) == 5 and len(neighbours(south)) == 5
    # "b" is the top row's westmost cell at precision 1: east, SE, south, SW (wrapped), west.
    assert neighbours("b") == ["c", "9", "8", "x", "z"]


@pytest.mark.parametrize(("lat", "lon", "precision"), [
    (90.0001, 0.0, 5), (-91.0, 0.0, 5), (0.0, 180.5, 5), (0.0, -181.0, 5),
    (math.nan, 0.0, 5), (0.0, math.inf, 5), (0.0, 0.0, 0), (0.0, 0.0, 13), (0.0, 0.0, 2.5),
    (0.0, 0.0, True), ("1", 0.0, 5), (None, 0.0, 5),
])
def test_encode_rejects_bad_input(lat: object, lon: object, precision: object) -> None:
    with pytest.raises(ValueError):
        encode(lat, lon, precision)  # type: ignore[arg-type]


@pytest.mark.parametrize(("lat", "lon", "precision"), [
    ([0.0, 91.0], [0.0, 0.0], 5), ([0.0, math.nan], [0.0, 0.0], 5), ([0.0], [-math.inf], 5),
    ([0.0, 1.0], [0.0, 1.0, 2.0], 5), ([0.0], [0.0], 0), ([0.0], [0.0], 13),
])
def test_encode_many_rejects_bad_input(lat: list[float], lon: list[float], precision: int) -> None:
    with pytest.raises(ValueError):
        encode_many(np.array(lat), np.array(lon), precision)


@pytest.mark.parametrize("cell", ["", "a", "ezs4i", "ezs4l", "ezs4o", "EZS42", "ezs42 ",
                                  "u4pruydqqvjkk", None, 42])
def test_decode_rejects_invalid_cells(cell: object) -> None:
    with pytest.raises(ValueError):
        decode_box(cell)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        decode(cell)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        neighbours(cell)  # type: ignore[arg-type]


def test_many_cells_decode_as_each_does_alone_at_every_precision():
    """``decode_boxes`` and ``cell_half_diagonals_km`` (a regeneration's cells at once) give
    exactly what ``decode_box`` and ``cell_half_diagonal_km`` give cell by cell, for cells of
    mixed precisions, the poles and the antimeridian included; a bad cell is named."""
    rng = np.random.default_rng(8)
    cells = ["".join(rng.choice(list(BASE32), int(rng.integers(1, 13)))) for _ in range(3_000)]
    cells += ["0", "zzzzzz", "pbpbpb", "b", "z", "8000"]
    lat_min, lat_max, lon_min, lon_max = decode_boxes(cells)
    lat, lon, half_km = cell_half_diagonals_km(cells)
    for i, cell in enumerate(cells):
        box = decode_box(cell)
        assert (lat_min[i], lat_max[i], lon_min[i], lon_max[i]) == (
            box.lat_min, box.lat_max, box.lon_min, box.lon_max)
        assert (lat[i], lon[i]) == decode(cell)
        assert half_km[i] == cell_half_diagonal_km(cell)
    for bad in (["u09tv", "ua"], ["u09tv", ""], ["u0ü"], ["0123456789bcd"]):
        with pytest.raises(ValueError, match="geohash"):
            decode_boxes(bad)
