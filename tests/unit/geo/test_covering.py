"""geo.covering: circle coverings and the reach of a cell from its centre."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo import (
    cell_half_diagonal_km,
    cells_covering,
    covering_precision,
    decode,
    decode_box,
    destination_point,
    encode,
    encode_many,
    haversine_km,
    precision_for_radius,
)

latitudes = st.one_of(st.floats(-90, 90), st.floats(89, 90), st.floats(-90, -89),
                      st.sampled_from([-90.0, -89.9, 0.0, 89.9, 90.0]))
longitudes = st.one_of(st.floats(-180, 180), st.floats(179, 180), st.floats(-180, -179),
                       st.sampled_from([-180.0, 0.0, 180.0]))
bearings_deg = st.floats(0, 360)
fractions = st.floats(0, 1)


def point_in_box(cell: str, lat_fraction: float, lon_fraction: float) -> tuple[float, float]:
    """The point of ``cell`` at the given fractions of its height and width."""
    box = decode_box(cell)
    return (box.lat_min + lat_fraction * (box.lat_max - box.lat_min),
            box.lon_min + lon_fraction * (box.lon_max - box.lon_min))


@settings(max_examples=200, deadline=None)
@given(latitudes, longitudes, st.floats(0.1, 50), st.integers(0, 6), bearings_deg, fractions)
def test_covering_holds_every_point_within_the_radius(lat: float, lon: float, radius_km: float,
                                                      finer: int, bearing_deg: float,
                                                      fraction: float) -> None:
    wanted = min(precision_for_radius(radius_km) + finer, 12)
    precision = covering_precision(lat, lon, radius_km, wanted, max_cells=20_000)
    cells = set(cells_covering(lat, lon, radius_km, precision))
    point_lat, point_lon = destination_point(lat, lon, bearing_deg, fraction * radius_km)
    assert encode(float(point_lat), float(point_lon), precision) in cells


@settings(max_examples=50, deadline=None)
@given(latitudes, longitudes, st.floats(0.1, 50), st.integers(0, 3))
def test_covering_holds_a_ring_of_points_on_the_circle(lat: float, lon: float, radius_km: float,
                                                       finer: int) -> None:
    precision = covering_precision(lat, lon, radius_km, precision_for_radius(radius_km) + finer,
                                   max_cells=20_000)
    cells = set(cells_covering(lat, lon, radius_km, precision))
    ring_lat, ring_lon = destination_point(lat, lon, np.linspace(0, 360, 720), radius_km)
    assert set(encode_many(ring_lat, ring_lon, precision).tolist()) <= cells


@settings(max_examples=50, deadline=None)
@given(latitudes, longitudes, st.floats(0.1, 50))
def test_covering_cells_all_come_near_the_circle(lat: float, lon: float, radius_km: float) -> None:
    precision = covering_precision(lat, lon, radius_km, precision_for_radius(radius_km), 2_000)
    for cell in cells_covering(lat, lon, radius_km, precision):
        centre_lat, centre_lon = decode(cell)
        reach_km = radius_km + cell_half_diagonal_km(cell)
        assert haversine_km(lat, lon, centre_lat, centre_lon) <= reach_km


def test_small_circle_inside_one_cell_is_covered_by_that_cell() -> None:
    assert cells_covering(42.6, -5.6, 1.0, 5) == ["ezs42"]


def test_covering_at_a_typical_feed_radius_is_a_handful_of_cells() -> None:
    cells = cells_covering(52.52, 13.40, 5.7, 5)
    assert 4 <= len(cells) <= 16
    assert cells == sorted(cells)


def test_covering_crosses_the_antimeridian() -> None:
    cells = cells_covering(0.5, 179.99, 5.0, 5)
    east_edge = {cell for cell in cells if decode_box(cell).lon_max == 180.0}
    west_edge = {cell for cell in cells if decode_box(cell).lon_min == -180.0}
    assert east_edge and west_edge
    assert encode(0.5, -179.97, 5) in cells


def test_covering_of_a_circle_around_a_pole_takes_whole_rows() -> None:
    for lat in (89.9, -89.9):
        cells = set(cells_covering(lat, 10.0, 50.0, 3))
        ring_lat = math.copysign(89.99, lat)
        every_longitude = np.linspace(-180, 180, 2001)
        ring = encode_many(np.full_like(every_longitude, ring_lat), every_longitude, 3)
        assert set(ring.tolist()) <= cells
        assert len(cells) >= 256  # precision 3 has 256 columns


def test_covering_of_a_point_at_a_pole_takes_the_polar_row() -> None:
    assert len(cells_covering(90.0, 0.0, 0.0, 2)) == 32  # precision 2 has 32 columns
    assert len(cells_covering(-90.0, 0.0, 1.0, 1)) == 8


def test_covering_refuses_absurd_sizes() -> None:
    with pytest.raises(ValueError, match="over the limit"):
        cells_covering(0.0, 0.0, 1000.0, 8)


def test_covering_precision_steps_down_where_cells_are_narrow() -> None:
    assert covering_precision(45.0, 0.0, 5.7, 5, max_cells=1000) == 5
    assert covering_precision(89.99, 0.0, 5.7, 5, max_cells=1000) < 5
    # The whole globe: 128 rows x 256 columns at precision 3, four times 1024 x 1024 at 4.
    assert covering_precision(0.0, 0.0, 20_000.0, 12) == 3


@pytest.mark.parametrize(("lat", "lon", "radius_km", "precision"), [
    (91.0, 0.0, 1.0, 5), (0.0, 200.0, 1.0, 5), (0.0, 0.0, -1.0, 5), (0.0, 0.0, math.nan, 5),
    (0.0, 0.0, 1.0, 0), (0.0, 0.0, 1.0, 13),
])
def test_covering_rejects_bad_input(lat: float, lon: float, radius_km: float,
                                    precision: int) -> None:
    with pytest.raises(ValueError):
        cells_covering(lat, lon, radius_km, precision)


@given(latitudes, longitudes, st.integers(1, 12), fractions, fractions)
def test_half_diagonal_bounds_every_point_of_the_cell(lat: float, lon: float, precision: int,
                                                      lat_fraction: float,
                                                      lon_fraction: float) -> None:
    cell = encode(lat, lon, precision)
    centre_lat, centre_lon = decode(cell)
    inside_lat, inside_lon = point_in_box(cell, lat_fraction, lon_fraction)
    reach_km = cell_half_diagonal_km(cell)
    distance_km = haversine_km(centre_lat, centre_lon, inside_lat, inside_lon)
    assert distance_km <= reach_km * (1 + 1e-12) + 1e-12


@pytest.mark.parametrize("precision", [1, 2, 3])
def test_half_diagonal_bounds_dense_samples_of_large_cells(precision: int) -> None:
    rng = np.random.default_rng(precision)
    for cell in encode_many(rng.uniform(-90, 90, 40), rng.uniform(-180, 180, 40), precision):
        box = decode_box(str(cell))
        centre_lat, centre_lon = box.centre
        grid_lat, grid_lon = np.meshgrid(np.linspace(box.lat_min, box.lat_max, 301),
                                         np.linspace(box.lon_min, box.lon_max, 301))
        farthest_km = float(haversine_km(centre_lat, centre_lon, grid_lat, grid_lon).max())
        assert farthest_km == pytest.approx(cell_half_diagonal_km(str(cell)), rel=1e-12)


@settings(max_examples=300)
@given(latitudes, longitudes, st.integers(1, 12), fractions, fractions, st.floats(0, 50),
       bearings_deg, fractions)
def test_centre_search_widened_by_half_diagonal_finds_everything_near_the_cell(
        lat: float, lon: float, precision: int, lat_fraction: float, lon_fraction: float,
        radius_km: float, bearing_deg: float, fraction: float) -> None:
    cell = encode(lat, lon, precision)
    inside_lat, inside_lon = point_in_box(cell, lat_fraction, lon_fraction)
    near_lat, near_lon = destination_point(inside_lat, inside_lon, bearing_deg,
                                           fraction * radius_km)
    centre_lat, centre_lon = decode(cell)
    reach_km = radius_km + cell_half_diagonal_km(cell)
    assert haversine_km(centre_lat, centre_lon, float(near_lat), float(near_lon)) <= reach_km + 1e-9


def test_precision_for_radius_picks_cells_about_as_tall_as_half_the_radius() -> None:
    assert precision_for_radius(5.0) == 5
    assert precision_for_radius(5.7) == 5
    assert precision_for_radius(1.0) == 6
    assert precision_for_radius(20.0) == 4
    assert precision_for_radius(0.0) == 12
    assert precision_for_radius(50_000.0) == 1
