"""Great-circle distances on a spherical Earth, and the lat/lon boxes they are tested against.

Angles are in degrees, distances in km. A sphere of the mean Earth radius is within 0.5 % of
the ellipsoid, far finer than a job seeker's idea of "5 km away".
"""
from __future__ import annotations

import math
from typing import NamedTuple, overload

import numpy as np

from geo.checks import checked_point, checked_radius_km

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius


class Box(NamedTuple):
    """A lat/lon box in degrees, ``lon_min <= lon_max`` (boxes never cross the antimeridian)."""

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    @property
    def centre(self) -> tuple[float, float]:
        """(lat, lon) of the box's middle in degrees.

        >>> Box(0.0, 10.0, 20.0, 40.0).centre
        (5.0, 30.0)
        """
        return (self.lat_min + self.lat_max) / 2, (self.lon_min + self.lon_max) / 2


# haversine_km: scalars give a float, an array anywhere gives an array
_Deg = float | np.ndarray      # degrees: a scalar or an array


@overload
def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float: ...
@overload
def haversine_km(lat1: np.ndarray, lon1: _Deg, lat2: _Deg, lon2: _Deg) -> np.ndarray: ...
@overload
def haversine_km(lat1: _Deg, lon1: np.ndarray, lat2: _Deg, lon2: _Deg) -> np.ndarray: ...
@overload
def haversine_km(lat1: _Deg, lon1: _Deg, lat2: np.ndarray, lon2: _Deg) -> np.ndarray: ...
@overload
def haversine_km(lat1: _Deg, lon1: _Deg, lat2: _Deg, lon2: np.ndarray) -> np.ndarray: ...
def haversine_km(lat1: _Deg, lon1: _Deg, lat2: _Deg, lon2: _Deg) -> float | np.ndarray:
    """Great-circle distance in km between points given in degrees; arrays broadcast.

    Returns a float when every argument is a scalar, else an array.

    >>> round(haversine_km(48.8566, 2.3522, 51.5074, -0.1278), 1)
    343.6
    >>> haversine_km(np.array([0.0, 0.0]), 0.0, 0.0, np.array([0.0, 180.0])).round(1)
    array([    0. , 20015.1])
    """
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    half_dphi = (phi2 - phi1) / 2
    half_dlambda = np.radians(np.subtract(lon2, lon1)) / 2
    a = np.sin(half_dphi) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(half_dlambda) ** 2
    distance_km = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return float(distance_km) if np.ndim(distance_km) == 0 else distance_km


def destination_point(lat: float | np.ndarray, lon: float | np.ndarray,
                      bearing_deg: float | np.ndarray,
                      distance_km: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) reached by travelling ``distance_km`` along a great circle from (lat, lon)
    with initial ``bearing_deg`` (clockwise from north); arrays broadcast.

    Longitudes are wrapped into [-180, 180). Computed with unit vectors and atan2, so it stays
    accurate next to the poles, where the textbook asin form loses digits. Used to place points
    at a known distance, e.g. to test that a covering holds every point of a circle.

    >>> lat, lon = destination_point(0.0, 179.0, 90.0, 222.39)
    >>> round(float(lat), 6), round(float(lon), 3)
    (0.0, -179.0)
    """
    lat, lon, bearing_deg, distance_km = np.broadcast_arrays(lat, lon, bearing_deg, distance_km)
    phi, lam, theta = np.radians(lat), np.radians(lon), np.radians(bearing_deg)
    delta = distance_km / EARTH_RADIUS_KM
    start = np.moveaxis(unit_vectors(lat, lon), -1, 0)
    north = np.stack([-np.sin(phi) * np.cos(lam), -np.sin(phi) * np.sin(lam), np.cos(phi)])
    east = np.stack([-np.sin(lam), np.cos(lam), np.zeros_like(lam)])
    heading = north * np.cos(theta) + east * np.sin(theta)
    x, y, z = start * np.cos(delta) + heading * np.sin(delta)
    lat2 = np.degrees(np.arctan2(z, np.hypot(x, y)))
    lon2 = np.mod(np.degrees(np.arctan2(y, x)) + 180.0, 360.0) - 180.0
    return lat2, lon2


def unit_vectors(lat: float | np.ndarray, lon: float | np.ndarray) -> np.ndarray:
    """Points on the unit sphere (x towards lon 0, z towards the north pole), shape (..., 3).

    >>> unit_vectors(0.0, 90.0).round(12).tolist()
    [0.0, 1.0, 0.0]
    """
    phi, lam = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


def unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    """``unit_vectors`` for one point, as plain floats (no array overhead).

    >>> [round(v, 12) for v in unit_vector(90.0, 0.0)]
    [0.0, 0.0, 1.0]
    """
    phi, lam = math.radians(lat), math.radians(lon)
    return math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)


def dots(xyz: np.ndarray, point: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """The dot product of each unit vector (n, 3) with ``point``, element by element: each
    row's value is the same whatever the array's length (a matrix product may group the
    sums differently for another shape).

    >>> dots(unit_vectors(np.array([0.0, 60.0]), np.array([0.0, 0.0])), unit_vector(0, 0)).round(12)
    array([1. , 0.5])

    One row in plain floats, ``x * px + y * py + z * pz``, gives the same value bit for bit
    (the same products, summed in the same order).
    """
    return xyz[:, 0] * point[0] + xyz[:, 1] * point[1] + xyz[:, 2] * point[2]


def middle_point(xyz: np.ndarray) -> tuple[float, float]:
    """(lat, lon) of the direction of the sum of unit vectors (n, 3): a middle of points
    near each other that the antimeridian does not split (the first point, should they
    cancel out).

    >>> [round(v, 6) for v in middle_point(unit_vectors(np.array([0.0, 0.0]),
    ...                                                 np.array([179.0, -179.0])))]
    [0.0, 180.0]
    """
    total = xyz.sum(axis=0)
    norm = float(np.linalg.norm(total))
    x, y, z = total / norm if norm > 0 else xyz[0]
    return math.degrees(math.asin(max(-1.0, min(1.0, float(z))))), math.degrees(math.atan2(y, x))


def dot_to_km(dot: np.ndarray) -> np.ndarray:
    """Great-circle distance in km between unit vectors whose dot product is ``dot``.

    Uses the half-chord, sqrt((1 - dot) / 2), like the haversine; precise to well under a
    metre at any range, which is what a feed shows.

    >>> london, paris = unit_vectors(51.5074, -0.1278), unit_vectors(48.8566, 2.3522)
    >>> dot_to_km(np.array([london @ paris])).round(1)
    array([343.6])
    """
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip((1.0 - dot) / 2.0, 0.0, 1.0)))


def dot_km(dot: float) -> float:
    """``dot_to_km`` of one dot product, in plain floats (a feed's few dozen distances).

    >>> round(dot_km(km_to_dot(5.0)), 9), dot_km(1.0 + 1e-16)
    (5.0, 0.0)
    """
    half_chord_sq = (1.0 - dot) / 2.0
    if half_chord_sq <= 0.0:
        return 0.0
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(half_chord_sq, 1.0)))


def km_to_dot(distance_km: float) -> float:
    """The dot product of unit vectors ``distance_km`` apart: points within that distance of
    a point ``u`` are those whose unit vector ``v`` has ``v @ u >= km_to_dot(distance_km)``.

    >>> float(dot_to_km(np.array([km_to_dot(5.0)]))[0]).__round__(9)
    5.0
    """
    return math.cos(min(distance_km / EARTH_RADIUS_KM, math.pi))


def distance_to_boxes_km(lat: float, lon: float, lat_min: np.ndarray, lat_max: np.ndarray,
                         lon_min: np.ndarray, lon_max: np.ndarray) -> np.ndarray:
    """Great-circle distance in km from (lat, lon) to the nearest point of each box.

    Boxes must be narrower than 180 degrees of longitude (every geohash cell is). The nearest
    point is then one of: the point of the box on the query's own meridian closest in latitude,
    a corner, or the foot of the perpendicular to a meridian edge, since along a parallel the
    distance grows with the longitude difference. This is exact, so a caller can drop boxes
    beyond a radius without ever dropping one that touches the circle.

    >>> distance_to_boxes_km(0.0, 0.0, np.array([1.0]), np.array([2.0]),
    ...                      np.array([-1.0]), np.array([1.0])).round(3)
    array([111.195])
    """
    return _point_to_box_km(lat, lon, lat_min, lat_max, lon_min, lon_max)


def distance_from_box_km(lat: np.ndarray, lon: np.ndarray, box: Box) -> np.ndarray:
    """Great-circle distance in km from each point to the nearest point of one box (0 inside
    it), exactly as ``distance_to_boxes_km``.

    >>> distance_from_box_km(np.array([0.0, 1.5, 3.0]), np.array([0.0, 0.0, 0.0]),
    ...                      Box(1.0, 2.0, -1.0, 1.0)).round(3)
    array([111.195,   0.   , 111.195])
    """
    return _point_to_box_km(lat, lon, box.lat_min, box.lat_max, box.lon_min, box.lon_max)


def _point_to_box_km(lat: float | np.ndarray, lon: float | np.ndarray,
                     lat_min: float | np.ndarray, lat_max: float | np.ndarray,
                     lon_min: float | np.ndarray, lon_max: float | np.ndarray) -> np.ndarray:
    """Points to boxes, all broadcast together (the reasoning: ``distance_to_boxes_km``)."""
    lat, lon, lat_min, lat_max, lon_min, lon_max = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (lat, lon, lat_min, lat_max, lon_min, lon_max)))
    on_own_meridian = np.mod(lon - lon_min, 360.0) <= lon_max - lon_min
    nearest_lat = np.minimum(np.maximum(lat, lat_min), lat_max)
    lat_gap_km = np.radians(np.abs(lat - nearest_lat)) * EARTH_RADIUS_KM
    corners_km = haversine_km(lat[None], lon[None], np.stack([lat_min, lat_min, lat_max, lat_max]),
                              np.stack([lon_min, lon_max, lon_min, lon_max]))
    phi = np.radians(lat)[None]
    dlambda = np.radians(lon[None] - np.stack([lon_min, lon_max]))
    foot_lat = np.degrees(np.arctan2(np.sin(phi), np.cos(phi) * np.cos(dlambda)))
    foot_on_edge = (np.cos(dlambda) > 0) & (foot_lat >= lat_min) & (foot_lat <= lat_max)
    cross_km = np.arcsin(np.minimum(np.cos(phi) * np.abs(np.sin(dlambda)), 1.0)) * EARTH_RADIUS_KM
    along_meridian_km = np.where(on_own_meridian, lat_gap_km, np.inf)
    to_edge_km = np.where(foot_on_edge, cross_km, np.inf).min(axis=0)
    return np.minimum(along_meridian_km, np.minimum(corners_km.min(axis=0), to_edge_km))


def bounding_boxes(lat: float, lon: float, radius_km: float) -> list[Box]:
    """Lat/lon boxes that together contain every point within ``radius_km`` of (lat, lon).

    One box, or two when the circle crosses the antimeridian (split there, the part ending at
    lon 180 first).
    When the circle holds a pole the box spans every longitude. The longitude half-width
    asin(sin(r) / cos(lat)) is exact for a circle that holds no pole (J. P. Matuschek,
    "Finding points within a distance of a latitude/longitude using bounding coordinates").

    >>> one_degree_km = math.radians(1.0) * EARTH_RADIUS_KM
    >>> [[round(edge, 6) for edge in box] for box in bounding_boxes(0.0, 179.5, one_degree_km)]
    [[-1.0, 1.0, 178.5, 180.0], [-1.0, 1.0, -180.0, -179.5]]
    >>> [[round(edge, 6) for edge in box] for box in bounding_boxes(89.5, 0.0, one_degree_km)]
    [[88.5, 90.0, -180.0, 180.0]]
    """
    lat, lon = checked_point(lat, lon)
    angle = checked_radius_km(radius_km) / EARTH_RADIUS_KM
    angle_deg = math.degrees(angle)
    lat_min, lat_max = lat - angle_deg, lat + angle_deg
    if lat_min <= -90.0 or lat_max >= 90.0:
        return [Box(max(lat_min, -90.0), min(lat_max, 90.0), -180.0, 180.0)]
    sin_half_width = min(1.0, math.sin(angle) / math.cos(math.radians(lat)))
    half_width_deg = math.degrees(math.asin(sin_half_width))
    lon_min, lon_max = lon - half_width_deg, lon + half_width_deg
    if lon_min < -180.0:
        return [Box(lat_min, lat_max, lon_min + 360.0, 180.0),
                Box(lat_min, lat_max, -180.0, lon_max)]
    if lon_max > 180.0:
        return [Box(lat_min, lat_max, lon_min, 180.0),
                Box(lat_min, lat_max, -180.0, lon_max - 360.0)]
    return [Box(lat_min, lat_max, lon_min, lon_max)]
