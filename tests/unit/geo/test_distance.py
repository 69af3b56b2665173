"""geo.distance: haversine, destination points, point-to-box distance and bounding boxes."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo import (
    EARTH_RADIUS_KM,
    bounding_boxes,
    decode_box,
    destination_point,
    distance_to_boxes_km,
    encode,
    haversine_km,
)

latitudes = st.one_of(st.floats(-90, 90), st.floats(89, 90), st.floats(-90, -89),
                      st.sampled_from([-90.0, 0.0, 90.0]))
longitudes = st.one_of(st.floats(-180, 180), st.floats(179, 180), st.floats(-180, -179),
                       st.sampled_from([-180.0, 0.0, 180.0]))
bearings_deg = st.floats(0, 360)


def test_haversine_gives_known_distances() -> None:
    paris_london_km = haversine_km(48.8566, 2.3522, 51.5074, -0.1278)
    assert paris_london_km == pytest.approx(343.5, rel=0.005)
    assert haversine_km(12.3, 45.6, 12.3, 45.6) == 0.0
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert haversine_km(90.0, 0.0, -90.0, 0.0) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert haversine_km(0.0, 0.0, 90.0, 123.0) == pytest.approx(math.pi / 2 * EARTH_RADIUS_KM)
    assert haversine_km(0.0, 179.5, 0.0, -179.5) == pytest.approx(haversine_km(0.0, 0.0, 0.0, 1.0))


def test_haversine_returns_a_float_for_scalars_and_broadcasts_arrays() -> None:
    assert isinstance(haversine_km(1.0, 2.0, 3.0, 4.0), float)
    distances_km = haversine_km(np.zeros((2, 1)), 0.0, 0.0, np.array([0.0, 1.0, 2.0]))
    assert distances_km.shape == (2, 3)
    assert distances_km[1, 2] == pytest.approx(2 * math.radians(1.0) * EARTH_RADIUS_KM)


@given(latitudes, longitudes, latitudes, longitudes)
def test_haversine_is_symmetric_and_at_most_half_the_circumference(
        lat1: float, lon1: float, lat2: float, lon2: float) -> None:
    distance_km = haversine_km(lat1, lon1, lat2, lon2)
    assert distance_km == pytest.approx(haversine_km(lat2, lon2, lat1, lon1), abs=1e-9)
    assert 0.0 <= distance_km <= math.pi * EARTH_RADIUS_KM + 1e-9


@given(latitudes, longitudes, bearings_deg, st.floats(0, 10_000))
def test_destination_point_lies_at_the_distance_travelled(lat: float, lon: float,
                                                          bearing_deg: float,
                                                          distance_km: float) -> None:
    lat2, lon2 = destination_point(lat, lon, bearing_deg, distance_km)
    assert -90.0 <= lat2 <= 90.0 and -180.0 <= lon2 < 180.0
    assert haversine_km(lat, lon, float(lat2), float(lon2)) == pytest.approx(distance_km, abs=1e-6)


def test_destination_point_follows_the_bearing() -> None:
    one_degree_km = math.radians(1.0) * EARTH_RADIUS_KM
    lat, lon = destination_point(10.0, 20.0, 0.0, one_degree_km)
    assert (float(lat), float(lon)) == pytest.approx((11.0, 20.0))
    lat, lon = destination_point(0.0, 179.5, 90.0, one_degree_km)
    assert (float(lat), float(lon)) == pytest.approx((0.0, -179.5), abs=1e-9)


def test_distance_to_boxes_is_zero_inside_and_the_gap_outside() -> None:
    box = decode_box("u4pruyd")
    lat, lon = box.centre
    inside_km = distance_to_boxes_km(lat, lon, *(np.array([edge]) for edge in box))
    assert inside_km.tolist() == [0.0]
    one_degree_km = math.radians(1.0) * EARTH_RADIUS_KM
    south_km = distance_to_boxes_km(-1.0, 0.5, np.array([0.0]), np.array([1.0]),
                                    np.array([0.0]), np.array([1.0]))
    assert south_km[0] == pytest.approx(one_degree_km)
    across_antimeridian_km = distance_to_boxes_km(0.5, 179.0, np.array([0.0]), np.array([1.0]),
                                                  np.array([-180.0]), np.array([-179.0]))
    assert across_antimeridian_km[0] == pytest.approx(one_degree_km, rel=1e-4)


@settings(max_examples=150, deadline=None)
@given(latitudes, longitudes, latitudes, longitudes, st.integers(1, 4))
def test_distance_to_box_equals_the_nearest_of_dense_samples(
        lat: float, lon: float, cell_lat: float, cell_lon: float, precision: int) -> None:
    box = decode_box(encode(cell_lat, cell_lon, precision))
    exact_km = distance_to_boxes_km(lat, lon, *(np.array([edge]) for edge in box))[0]
    steps = 200
    sample_lat, sample_lon = np.meshgrid(np.linspace(box.lat_min, box.lat_max, steps + 1),
                                         np.linspace(box.lon_min, box.lon_max, steps + 1))
    sampled_km = float(haversine_km(lat, lon, sample_lat, sample_lon).min())
    spacing_km = math.radians((box.lat_max - box.lat_min + box.lon_max - box.lon_min) / steps / 2)
    assert exact_km <= sampled_km + 1e-9
    assert exact_km >= sampled_km - spacing_km * EARTH_RADIUS_KM - 1e-9


@settings(max_examples=300)
@given(latitudes, longitudes, st.floats(0, 3000), bearings_deg, st.floats(0, 1))
def test_bounding_boxes_hold_every_point_within_the_radius(
        lat: float, lon: float, radius_km: float, bearing_deg: float, fraction: float) -> None:
    point_lat, point_lon = destination_point(lat, lon, bearing_deg, fraction * radius_km)
    boxes = bounding_boxes(lat, lon, radius_km + 1e-6)
    assert 1 <= len(boxes) <= 2
    assert all(box.lat_min <= box.lat_max and box.lon_min <= box.lon_max for box in boxes)
    assert any(box.lat_min <= point_lat <= box.lat_max and box.lon_min <= point_lon <= box.lon_max
               for box in boxes)


def test_bounding_boxes_split_at_the_antimeridian() -> None:
    west_part, east_part = bounding_boxes(10.0, -179.9, 50.0)
    assert west_part.lon_max == 180.0 and west_part.lon_min > 179.0
    assert east_part.lon_min == -180.0 and east_part.lon_max < -179.0


def test_bounding_boxes_span_every_longitude_when_a_pole_is_inside() -> None:
    (box,) = bounding_boxes(89.9, 10.0, 50.0)
    assert (box.lat_max, box.lon_min, box.lon_max) == (90.0, -180.0, 180.0)
    (box,) = bounding_boxes(-89.9, 10.0, 50.0)
    assert (box.lat_min, box.lon_min, box.lon_max) == (-90.0, -180.0, 180.0)
    (box,) = bounding_boxes(0.0, 0.0, 30_000.0)
    assert tuple(box) == (-90.0, 90.0, -180.0, 180.0)


@pytest.mark.parametrize(("lat", "lon", "radius_km"), [
    (0.0, 0.0, -1.0), (0.0, 0.0, math.nan), (0.0, 0.0, math.inf), (95.0, 0.0, 1.0),
    (0.0, -190.0, 1.0), (0.0, 0.0, "5"),
])
def test_bounding_boxes_reject_bad_input(lat: float, lon: float, radius_km: object) -> None:
    with pytest.raises(ValueError):
        bounding_boxes(lat, lon, radius_km)  # type: ignore[arg-type]
