"""Which geohash cells a circle on the Earth touches, and how far a cell reaches from its centre.

A "circle" here is a spherical cap: every point within ``radius_km`` (great-circle) of a centre.
Coverings are built for a grid precision by enumerating the cells over the cap's bounding
box(es) with numpy and dropping the cells whose nearest point is beyond the radius.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from geo.checks import MAX_PRECISION, checked_point, checked_precision, checked_radius_km
from geo.distance import EARTH_RADIUS_KM, Box, bounding_boxes, distance_to_boxes_km, haversine_km
from geo.geohash import (
    cell_size_deg,
    cells_from_codes,
    codes_from_rows_cols,
    decode_box,
    decode_boxes,
)

MAX_COVERING_CELLS = 100_000
# Coverings are computed for radius_km + SLACK_KM, so float rounding in the bounding boxes or
# in a caller's haversine can never push a point that is within the radius out of the covering.
SLACK_KM = 1e-6

_CELL_SIZE_DEG = {precision: cell_size_deg(precision) for precision in range(1, MAX_PRECISION + 1)}
_CELL_HEIGHT_KM = {precision: math.radians(height_deg) * EARTH_RADIUS_KM
                   for precision, (height_deg, _) in _CELL_SIZE_DEG.items()}
# Inclusive (row_lo, row_hi, col_lo, col_hi) cell index ranges, one per bounding box.
_CellRanges = list[tuple[int, int, int, int]]


def cell_half_diagonal_km(cell: str) -> float:
    """Largest great-circle distance in km from the centre of ``cell`` to any point of it.

    Every point within ``r`` km of any point of the cell is within ``r + half_diagonal`` km of
    its centre (triangle inequality), which is how a per-cell candidate search stays complete.
    The farthest points are the corners, at every precision: along a parallel the distance from
    the centre grows with the longitude difference, so the farthest point is on an east or west
    edge, and along a meridian edge (less than 180 degrees from the centre's meridian) the
    distance is largest at one of the edge's ends.

    >>> round(cell_half_diagonal_km("ezs42"), 3)
    3.034
    """
    box = decode_box(cell)
    centre_lat, centre_lon = box.centre
    corner_lats = np.array([box.lat_min, box.lat_min, box.lat_max, box.lat_max])
    corner_lons = np.array([box.lon_min, box.lon_max, box.lon_min, box.lon_max])
    return float(np.max(haversine_km(centre_lat, centre_lon, corner_lats, corner_lons)))


def cell_half_diagonals_km(cells: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre lat, centre lon, half-diagonal in km) arrays of many cells at once, the same
    as ``decode`` and ``cell_half_diagonal_km`` of each.

    >>> [np.round(v, 3).tolist() for v in cell_half_diagonals_km(["ezs42"])]
    [[42.605], [-5.603], [3.034]]
    """
    lat_min, lat_max, lon_min, lon_max = decode_boxes(cells)
    lat, lon = (lat_min + lat_max) / 2, (lon_min + lon_max) / 2
    corners = [haversine_km(lat, lon, corner_lat, corner_lon)
               for corner_lat in (lat_min, lat_max) for corner_lon in (lon_min, lon_max)]
    return lat, lon, np.max(corners, axis=0) if len(cells) else np.empty(0)


def precision_for_radius(radius_km: float) -> int:
    """The largest precision whose cells are at least ``radius_km / 2`` tall (1 if none is).

    A circle of that radius then spans a handful of cells a side: few enough ranges to look
    up, small enough cells that the candidates are not much more than the circle holds.

    >>> precision_for_radius(5.0), precision_for_radius(5.7), precision_for_radius(1.0)
    (5, 5, 6)
    """
    radius_km = checked_radius_km(radius_km)
    return next((precision for precision, height_km in reversed(_CELL_HEIGHT_KM.items())
                 if height_km >= radius_km / 2), 1)


def cells_covering(lat: float, lon: float, radius_km: float, precision: int) -> list[str]:
    """Sorted cells of ``precision`` that touch the circle of ``radius_km`` around (lat, lon).

    Every point within ``radius_km`` lies in one of them, across the antimeridian and at the
    poles too (a circle holding a pole takes every cell of the rows it reaches there).
    Raises ValueError if more than ``MAX_COVERING_CELLS`` cells would have to be enumerated;
    ``covering_precision`` finds a precision that fits.

    >>> cells_covering(42.6, -5.6, 1.0, 5)
    ['ezs42']
    >>> cells_covering(0.5, 180.0, 1.0, 4)
    ['8004', 'xbpf']
    """
    lat, lon = checked_point(lat, lon)
    radius_km = checked_radius_km(radius_km)
    precision = checked_precision(precision)
    ranges = grid_ranges(bounding_boxes(lat, lon, radius_km + SLACK_KM), precision)
    if _cell_count(ranges) > MAX_COVERING_CELLS:
        raise ValueError(
            f"a {radius_km:g} km circle at ({lat:g}, {lon:g}) spans {_cell_count(ranges)} cells "
            f"of precision {precision}, over the limit of {MAX_COVERING_CELLS}; "
            "use a coarser precision"
        )
    codes = _touching_codes(lat, lon, radius_km, precision, ranges)
    return cells_from_codes(codes, precision).tolist()


def covering_precision(lat: float, lon: float, radius_km: float, max_precision: int,
                       max_cells: int = MAX_COVERING_CELLS) -> int:
    """The largest precision up to ``max_precision`` whose covering enumerates at most
    ``max_cells`` cells.

    Near a pole the cells get narrow and a small circle can touch thousands of them, so a
    search that must work anywhere steps down to coarser cells there. Precision 1 always fits
    (32 cells in all).

    >>> covering_precision(45.0, 0.0, 5.0, 5, max_cells=1000)
    5
    >>> covering_precision(89.99, 0.0, 5.0, 5, max_cells=1000)
    3
    """
    boxes = bounding_boxes(lat, lon, checked_radius_km(radius_km) + SLACK_KM)
    for precision in range(checked_precision(max_precision), 1, -1):
        if _cell_count(grid_ranges(boxes, precision)) <= max_cells:
            return precision
    return 1


def grid_ranges(boxes: list[Box], precision: int) -> _CellRanges:
    """Inclusive (row_lo, row_hi, col_lo, col_hi) ranges of the cells of ``precision`` over
    each box.

    Plain float arithmetic can put an edge that lies within a hair of a cell boundary on the
    wrong side of it; the boxes callers pass are grown by ``SLACK_KM``, far more than that
    hair, so every point within the radius still lands inside the ranges.

    >>> grid_ranges([Box(-90.0, 90.0, -180.0, 180.0)], 1)
    [(0, 3, 0, 7)]
    """
    height_deg, width_deg = _CELL_SIZE_DEG[precision]
    last_row, last_col = round(180.0 / height_deg) - 1, round(360.0 / width_deg) - 1
    return [(min(math.floor((box.lat_min + 90.0) / height_deg), last_row),
             min(math.floor((box.lat_max + 90.0) / height_deg), last_row),
             min(math.floor((box.lon_min + 180.0) / width_deg), last_col),
             min(math.floor((box.lon_max + 180.0) / width_deg), last_col)) for box in boxes]


def _cell_count(ranges: _CellRanges) -> int:
    """Number of cells in the ranges."""
    return sum((row_hi - row_lo + 1) * (col_hi - col_lo + 1)
               for row_lo, row_hi, col_lo, col_hi in ranges)


def _touching_codes(lat: float, lon: float, radius_km: float, precision: int,
                    ranges: _CellRanges) -> np.ndarray:
    """Sorted distinct codes of the cells in ``ranges`` whose nearest point is within the radius."""
    rows = np.concatenate([np.repeat(np.arange(row_lo, row_hi + 1), col_hi - col_lo + 1)
                           for row_lo, row_hi, col_lo, col_hi in ranges])
    cols = np.concatenate([np.tile(np.arange(col_lo, col_hi + 1), row_hi - row_lo + 1)
                           for row_lo, row_hi, col_lo, col_hi in ranges])
    height_deg, width_deg = _CELL_SIZE_DEG[precision]
    lat_min = -90.0 + rows * height_deg
    lon_min = -180.0 + cols * width_deg
    gap_km = distance_to_boxes_km(lat, lon, lat_min, lat_min + height_deg,
                                  lon_min, lon_min + width_deg)
    touching = gap_km <= radius_km + SLACK_KM
    return np.unique(codes_from_rows_cols(rows[touching], cols[touching], precision))
