"""Input checks shared by the geo functions, each returning the typed value it checked.

Every public geo function checks its arguments once, here, so a bad coordinate fails at the
call that received it with the argument's name in the message, not deep inside numpy.
"""
from __future__ import annotations

import math

import numpy as np

MAX_PRECISION = 12


def checked_precision(precision: int) -> int:
    """``precision`` as an int, if it is a geohash length we support (1..12).

    Twelve characters are 60 bits, the most that fit the uint64 codes used for vector work.

    >>> checked_precision(5)
    5
    >>> checked_precision(13)
    Traceback (most recent call last):
    ...
    ValueError: precision must be an integer in 1..12, got 13
    """
    if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)) or not (
        1 <= precision <= MAX_PRECISION
    ):
        raise ValueError(f"precision must be an integer in 1..{MAX_PRECISION}, got {precision!r}")
    return int(precision)


def checked_point(lat: float, lon: float) -> tuple[float, float]:
    """``(lat, lon)`` as floats, if both are finite and in range (degrees).

    >>> checked_point(57.6, 10)
    (57.6, 10.0)
    >>> checked_point(91, 0)
    Traceback (most recent call last):
    ...
    ValueError: lat must be a finite number in [-90, 90], got 91
    """
    if not _is_real(lat) or not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise ValueError(f"lat must be a finite number in [-90, 90], got {lat!r}")
    if not _is_real(lon) or not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise ValueError(f"lon must be a finite number in [-180, 180], got {lon!r}")
    return float(lat), float(lon)


def checked_points(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``lat`` and ``lon`` as float64 arrays of one broadcast shape, if every value is in range.

    >>> lat, lon = checked_points([0, 45], 10)
    >>> lat.tolist(), lon.tolist()
    ([0.0, 45.0], [10.0, 10.0])
    >>> checked_points([0, np.nan], [0, 0])
    Traceback (most recent call last):
    ...
    ValueError: lat must be finite numbers in [-90, 90]; 1 value(s) are not, first at index 1
    """
    lat_deg = np.asarray(lat, dtype=np.float64)
    lon_deg = np.asarray(lon, dtype=np.float64)
    try:
        lat_deg, lon_deg = np.broadcast_arrays(lat_deg, lon_deg)
    except ValueError:
        raise ValueError(
            f"lat and lon must have broadcastable shapes, got {lat_deg.shape} and {lon_deg.shape}"
        ) from None
    _require_within(lat_deg, "lat", 90.0)
    _require_within(lon_deg, "lon", 180.0)
    return lat_deg, lon_deg


def checked_radius_km(radius_km: float) -> float:
    """``radius_km`` as a float, if it is finite and not negative.

    >>> checked_radius_km(5)
    5.0
    >>> checked_radius_km(-1)
    Traceback (most recent call last):
    ...
    ValueError: radius_km must be a finite number >= 0, got -1
    """
    if not _is_real(radius_km) or not (math.isfinite(radius_km) and radius_km >= 0.0):
        raise ValueError(f"radius_km must be a finite number >= 0, got {radius_km!r}")
    return float(radius_km)


def _is_real(value: object) -> bool:
    """True for int and float values (numpy's too), False for bools, strings and None."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _require_within(values: np.ndarray, name: str, limit: float) -> None:
    """Raise ValueError naming ``name`` unless every value is finite and in [-limit, limit]."""
    bad = ~(np.abs(values) <= limit)  # NaN compares False, so it is caught here too
    if bad.any():
        first = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(
            f"{name} must be finite numbers in [-{limit:g}, {limit:g}]; "
            f"{int(bad.sum())} value(s) are not, first at index {first}"
        )
