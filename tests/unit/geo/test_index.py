"""geo.index.PointIndex: radius queries agree with a brute-force haversine scan."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo import PointIndex, destination_point, haversine_km
from geo import index as index_module

latitudes = st.one_of(st.floats(-90, 90), st.floats(89, 90), st.floats(-90, -89),
                      st.sampled_from([-90.0, 0.0, 90.0]))
longitudes = st.one_of(st.floats(-180, 180), st.floats(179, 180), st.floats(-180, -179),
                       st.sampled_from([-180.0, 0.0, 180.0]))


def brute_force(lat: np.ndarray, lon: np.ndarray, centre_lat: float, centre_lon: float,
                radius_km: float) -> np.ndarray:
    """Indices of the points within ``radius_km``, by checking every one."""
    return np.flatnonzero(haversine_km(centre_lat, centre_lon, lat, lon) <= radius_km)


def points_around(rng: np.random.Generator, lat: float, lon: float, reach_km: float,
                  count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random points within ``reach_km`` of (lat, lon)."""
    return destination_point(lat, lon, rng.uniform(0, 360, count), rng.uniform(0, reach_km, count))


@settings(max_examples=150, deadline=None)
@given(latitudes, longitudes, st.floats(0, 60), st.integers(1, 12) | st.none(),
       st.integers(0, 2**32 - 1))
def test_query_equals_brute_force(lat: float, lon: float, radius_km: float,
                                  cell_precision: int | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    near_lat, near_lon = points_around(rng, lat, lon, 2 * radius_km + 1, 300)
    point_lat = np.concatenate([near_lat, rng.uniform(-90, 90, 100), [lat]])
    point_lon = np.concatenate([near_lon, rng.uniform(-180, 180, 100), [lon]])
    index = PointIndex(point_lat, point_lon, query_radius_km=max(radius_km, 0.1),
                       cell_precision=cell_precision)
    expected = brute_force(point_lat, point_lon, lat, lon, radius_km)
    assert np.array_equal(index.query(lat, lon, radius_km), expected)
    indices, distances_km = index.query_with_distance(lat, lon, radius_km)
    assert np.array_equal(np.sort(indices), expected)
    assert np.all(distances_km <= radius_km) and np.all(np.diff(distances_km) >= 0)


def test_query_equals_brute_force_over_clustered_cities() -> None:
    rng = np.random.default_rng(20240601)
    cities = [(52.52, 13.40), (0.0, 179.95), (-33.87, 151.21), (89.95, 0.0), (-89.99, 45.0),
              (64.0, -180.0)]
    clusters = [points_around(rng, lat, lon, 30.0, 2_000) for lat, lon in cities]
    lat = np.concatenate([cluster[0] for cluster in clusters])
    lon = np.concatenate([cluster[1] for cluster in clusters])
    index = PointIndex(lat, lon, query_radius_km=5.7)
    for centre_lat, centre_lon in cities:
        query_lat, query_lon = points_around(rng, centre_lat, centre_lon, 35.0, 25)
        radii_km = rng.uniform(0.5, 20.0, 25)
        for one_lat, one_lon, radius_km in zip(query_lat, query_lon, radii_km, strict=True):
            expected = brute_force(lat, lon, float(one_lat), float(one_lon), radius_km)
            assert np.array_equal(index.query(float(one_lat), float(one_lon), radius_km), expected)


@pytest.mark.parametrize("cell_precision", [1, 5, 12])
@pytest.mark.parametrize(("lat", "lon", "radius_km"), [
    (0.0, 0.0, 15_000.0), (89.99, 10.0, 300.0), (-90.0, 0.0, 50.0), (10.0, 180.0, 2_000.0),
    (10.0, -180.0, 20_016.0), (80.0, 170.0, 19_000.0), (0.0, 0.0, 0.0),
])
def test_query_handles_huge_circles_poles_and_the_antimeridian_on_any_grid(
        cell_precision: int, lat: float, lon: float, radius_km: float) -> None:
    rng = np.random.default_rng(cell_precision)
    point_lat = np.concatenate([rng.uniform(-90, 90, 3_000), [90.0, -90.0, 0.0, 0.0, 10.0]])
    point_lon = np.concatenate([rng.uniform(-180, 180, 3_000), [0.0, 180.0, 180.0, -180.0, 180.0]])
    index = PointIndex(point_lat, point_lon, cell_precision=cell_precision)
    expected = brute_force(point_lat, point_lon, lat, lon, radius_km)
    assert np.array_equal(index.query(lat, lon, radius_km), expected)


def test_query_with_distance_is_nearest_first_with_exact_distances() -> None:
    rng = np.random.default_rng(7)
    lat, lon = points_around(rng, 48.14, 11.58, 10.0, 500)
    lat, lon = np.append(lat, [48.14, 48.14]), np.append(lon, [11.58, 11.58])  # a tie at 0 km
    index = PointIndex(lat, lon, query_radius_km=5.0)
    indices, distances_km = index.query_with_distance(48.14, 11.58, 5.0)
    assert indices.dtype == np.int64 and distances_km.dtype == np.float64
    assert np.all(np.diff(distances_km) >= 0)
    assert np.array_equal(distances_km, haversine_km(48.14, 11.58, lat[indices], lon[indices]))
    assert indices[:2].tolist() == [500, 501]
    assert np.array_equal(index.query(48.14, 11.58, 5.0), np.sort(indices))


def test_query_includes_a_point_exactly_on_the_radius() -> None:
    lat, lon = np.array([40.0, 40.05]), np.array([-3.0, -3.02])
    radius_km = haversine_km(40.0, -3.0, 40.05, -3.02)
    assert PointIndex(lat, lon).query(40.0, -3.0, radius_km).tolist() == [0, 1]
    assert PointIndex(lat, lon).query(40.0, -3.0, math.nextafter(radius_km, 0.0)).tolist() == [0]


@settings(max_examples=60, deadline=None)
@given(latitudes, longitudes, st.floats(0.01, 50), st.integers(0, 2**32 - 1))
def test_points_a_hair_either_side_of_the_radius_are_decided_as_the_haversine_decides(
        lat: float, lon: float, radius_km: float, seed: int) -> None:
    """The query lets a dot product settle the points well inside; those within metres of
    the edge, on either side, must still come out as the haversine says."""
    rng = np.random.default_rng(seed)
    point_lat, point_lon = destination_point(lat, lon, rng.uniform(0, 360, 400),
                                             radius_km + rng.uniform(-0.005, 0.005, 400))
    index = PointIndex(point_lat, point_lon, query_radius_km=radius_km)
    expected = brute_force(point_lat, point_lon, lat, lon, radius_km)
    assert np.array_equal(index.query(lat, lon, radius_km), expected)


def test_empty_index_and_empty_results_are_empty_int64_arrays() -> None:
    empty = PointIndex(np.array([]), np.array([]))
    assert len(empty) == 0
    assert empty.query(0.0, 0.0, 100.0).dtype == np.int64
    assert empty.query(0.0, 0.0, 100.0).size == 0
    indices, distances_km = empty.query_with_distance(0.0, 0.0, 100.0)
    assert (indices.dtype, indices.size, distances_km.size) == (np.dtype(np.int64), 0, 0)
    lonely = PointIndex(np.array([10.0]), np.array([10.0]))
    assert lonely.query(-10.0, -10.0, 5.0).dtype == np.int64
    assert lonely.query(-10.0, -10.0, 5.0).size == 0


def test_default_precision_follows_the_expected_query_radius() -> None:
    lat, lon = np.zeros(3), np.zeros(3)
    assert PointIndex(lat, lon, query_radius_km=5.7).cell_precision == 5
    assert PointIndex(lat, lon, query_radius_km=1.0).cell_precision == 6
    assert PointIndex(lat, lon, query_radius_km=5.7, cell_precision=7).cell_precision == 7


@pytest.mark.parametrize(("lat", "lon", "options"), [
    ([0.0, 91.0], [0.0, 0.0], {}),
    ([0.0, math.nan], [0.0, 0.0], {}),
    ([0.0, 1.0], [0.0, 1.0, 2.0], {}),
    ([[0.0, 1.0]], [[0.0, 1.0]], {}),
    ([0.0], [0.0], {"cell_precision": 0}),
    ([0.0], [0.0], {"query_radius_km": -1.0}),
])
def test_building_rejects_bad_input(lat: list[float], lon: list[float], options: dict) -> None:
    with pytest.raises(ValueError):
        PointIndex(np.array(lat), np.array(lon), **options)


@pytest.mark.parametrize(("lat", "lon", "radius_km"), [
    (91.0, 0.0, 1.0), (0.0, math.inf, 1.0), (0.0, 0.0, -0.1), (0.0, 0.0, math.nan),
])
def test_querying_rejects_bad_input(lat: float, lon: float, radius_km: float) -> None:
    index = PointIndex(np.array([0.0]), np.array([0.0]))
    with pytest.raises(ValueError):
        index.query(lat, lon, radius_km)
    with pytest.raises(ValueError):
        index.query_with_distance(lat, lon, radius_km)


def ranked_by_query(index: PointIndex, lat: np.ndarray, lon: np.ndarray, radii_km: np.ndarray,
                    scores: np.ndarray, length: int) -> list[np.ndarray]:
    """What ``best_within`` promises, circle by circle: each row's best ``length`` of the
    points ``query`` finds, best first."""
    out = []
    for one_lat, one_lon, radius_km in zip(lat, lon, radii_km, strict=True):
        inside = index.query(float(one_lat), float(one_lon), float(radius_km))
        best = np.argsort(-scores[:, inside], axis=1, kind="stable")[:, :length]
        out.append(inside[best])
    return out


def assert_same_best(index: PointIndex, lat: np.ndarray, lon: np.ndarray, radii_km: np.ndarray,
                     scores: np.ndarray, length: int) -> None:
    found = index.best_within(lat, lon, radii_km, scores, length)
    expected = ranked_by_query(index, lat, lon, radii_km, scores, length)
    assert found.dtype == np.int64 and found.shape == (len(expected), len(scores), length)
    for one, other in zip(found, expected, strict=True):
        width = other.shape[1]
        assert np.array_equal(one[:, :width], other) and (one[:, width:] == -1).all()


@pytest.mark.parametrize("seed", range(4))
def test_best_within_equals_ranking_each_circles_query_result(seed: int) -> None:
    """Clusters in a city, over the antimeridian and at both poles; circles many to a grid
    cell and alone, dense and nearly empty, with rows of scores that disagree."""
    rng = np.random.default_rng(seed)
    places = [(52.52, 13.40), (0.0, 179.99), (-16.5, -179.98), (89.9, 0.0), (-89.95, 120.0),
              (64.0, -180.0)]
    clusters = [points_around(rng, lat, lon, rng.uniform(5.0, 40.0), int(rng.integers(0, 4_000)))
                for lat, lon in places]
    lat = np.concatenate([c[0] for c in clusters] + [rng.uniform(-90, 90, 500)])
    lon = np.concatenate([c[1] for c in clusters] + [rng.uniform(-180, 180, 500)])
    index = PointIndex(lat, lon, query_radius_km=5.7)
    circles = [points_around(rng, p_lat, p_lon, 45.0, 40) for p_lat, p_lon in places]
    c_lat = np.concatenate([c[0] for c in circles])
    c_lon = np.concatenate([c[1] for c in circles])
    radii_km = rng.uniform(0.0, 12.0, len(c_lat))
    scores = rng.beta(1.0, rng.uniform(1.0, 60.0, len(lat)), size=(8, len(lat)))
    for length in (1, 20, 100):
        assert_same_best(index, c_lat, c_lon, radii_km, scores, length)


def test_best_within_looks_further_when_the_first_shortlist_is_too_short(monkeypatch) -> None:
    """A group's first look that holds too few points inside some circle is followed by a
    longer one until every circle has its best (here every first look is as short as can
    be)."""
    monkeypatch.setattr(index_module, "first_shortlist", lambda share, length: length)
    rng = np.random.default_rng(7)
    lat, lon = points_around(rng, 48.85, 2.35, 12.0, 20_000)
    index = PointIndex(lat, lon, query_radius_km=5.0)
    c_lat, c_lon = points_around(rng, 48.85, 2.35, 12.0, 60)
    scores = rng.random((3, 20_000))
    assert_same_best(index, c_lat, c_lon, rng.uniform(0.2, 6.0, 60), scores, 30)


def test_best_within_gives_every_point_inside_when_fewer_than_length() -> None:
    lat, lon = np.array([0.0, 0.0, 0.0, 50.0]), np.array([0.0, 0.01, 0.02, 0.0])
    index = PointIndex(lat, lon)
    scores = np.array([[0.3, 0.2, 0.1, 0.9], [0.1, 0.2, 0.3, 0.9]])
    found = index.best_within(np.array([0.0, 10.0]), np.array([0.0, 10.0]),
                              np.array([5.0, 5.0]), scores, 10)
    assert found.shape == (2, 2, 10)
    assert found[0, :, :3].tolist() == [[0, 1, 2], [2, 1, 0]]
    assert (found[0, :, 3:] == -1).all() and (found[1] == -1).all()


@pytest.mark.parametrize(("args", "message"), [
    ((np.array([0.0]), np.array([0.0]), np.array([-1.0]), np.zeros((1, 2)), 5), "radius_km"),
    ((np.array([0.0]), np.array([0.0]), np.array([1.0]), np.zeros((1, 3)), 5), "scores"),
    ((np.array([0.0]), np.array([0.0]), np.array([1.0]), np.zeros((1, 2)), 0), "length"),
    ((np.array([95.0]), np.array([0.0]), np.array([1.0]), np.zeros((1, 2)), 5), "lat"),
])
def test_best_within_rejects_bad_input(args: tuple, message: str) -> None:
    index = PointIndex(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=message):
        index.best_within(*args)
