"""Standard base32 geohash: encode, decode and neighbours, one point or many at once.

A geohash of ``precision`` characters names one cell of a regular lat/lon grid with
``2**lat_bits`` rows and ``2**lon_bits`` columns (5 bits a character, longitude first).
Cells are half-open, ``[min, max)``: a point on a boundary belongs to the cell above or to the
east of it, and lat = 90 / lon = 180 belong to the top row / east column.

For vector work a cell is also a (row, col) pair or a uint64 ``code`` (its 5 * precision bits);
codes sort in the same order as the cell strings.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from geo.checks import MAX_PRECISION, checked_point, checked_points, checked_precision
from geo.distance import Box

BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
_DIGIT = {char: value for value, char in enumerate(BASE32)}
_BASE32_CODEPOINTS = np.array([ord(char) for char in BASE32], dtype=np.uint32)
_DIGIT_OF_CODEPOINT = np.full(128, -1, dtype=np.int64)   # -1: not a geohash character
_DIGIT_OF_CODEPOINT[_BASE32_CODEPOINTS] = np.arange(32)

# Row and column offsets of the eight neighbours, in the order north, NE, east, SE, south,
# SW, west, NW.
_NEIGHBOUR_STEPS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))


def grid_bits(precision: int) -> tuple[int, int]:
    """(lat_bits, lon_bits) of a geohash of ``precision`` characters.

    Longitude takes the first, third, ... bit, so it gets the extra bit when 5 * precision is odd.

    >>> grid_bits(5)
    (12, 13)
    """
    total = 5 * precision
    return total // 2, total - total // 2


def cell_size_deg(precision: int) -> tuple[float, float]:
    """(height, width) of every cell of ``precision``, in degrees of latitude and longitude.

    >>> cell_size_deg(1)
    (45.0, 45.0)
    """
    lat_bits, lon_bits = grid_bits(checked_precision(precision))
    return 180.0 / 2**lat_bits, 360.0 / 2**lon_bits


def encode(lat: float, lon: float, precision: int) -> str:
    """Geohash of ``precision`` characters of the cell holding (lat, lon).

    ``encode_many``'s integer arithmetic for one point, in plain Python (a feed request
    makes one, and array calls on one value cost more than the work): the same answers as
    the textbook bisection, one bit at a time with ``value >= mid``, which the tests keep
    as the reference.

    >>> encode(57.64911, 10.40744, 11)
    'u4pruydqqvj'
    >>> encode(90, 180, 3)
    'zzz'
    """
    lat, lon = checked_point(lat, lon)
    precision = checked_precision(precision)
    lat_bits, lon_bits = grid_bits(precision)
    row = _slice_index(lat, -90.0, 180.0, lat_bits)
    col = _slice_index(lon, -180.0, 360.0, lon_bits)
    if (5 * precision) % 2:  # lon has the extra bit: its last bit is the code's last bit
        code = _spread(col) | (_spread(row) << 1)
    else:
        code = (_spread(col) << 1) | _spread(row)
    return "".join(BASE32[(code >> shift) & 31] for shift in range(5 * precision - 5, -1, -5))


def _slice_index(value: float, low: float, span: float, bits: int) -> int:
    """``_grid_index`` for one value."""
    slices = 1 << bits
    step = span / slices
    index = min(max(math.floor((value - low) / step), 0), slices - 1)
    if value < low + index * step:
        index -= 1
    if index < slices - 1 and value >= low + (index + 1) * step:
        index += 1
    return index


def _spread(value: int) -> int:
    """``_spread_bits`` for one value."""
    value &= 0xFFFFFFFF
    value = (value | (value << 16)) & 0x0000FFFF0000FFFF
    value = (value | (value << 8)) & 0x00FF00FF00FF00FF
    value = (value | (value << 4)) & 0x0F0F0F0F0F0F0F0F
    value = (value | (value << 2)) & 0x3333333333333333
    return (value | (value << 1)) & 0x5555555555555555


def encode_many(lat: np.ndarray, lon: np.ndarray, precision: int) -> np.ndarray:
    """Geohash of every point, as an array of dtype ``<U{precision}`` shaped like the inputs.

    ``lat`` and ``lon`` broadcast against each other. Gives exactly what ``encode`` gives.

    >>> encode_many(np.array([57.64911, 42.6]), np.array([10.40744, -5.6]), 5)
    array(['u4pru', 'ezs42'], dtype='<U5')
    """
    lat, lon = checked_points(lat, lon)
    precision = checked_precision(precision)
    return cells_from_codes(cell_codes(lat, lon, precision), precision)


def cell_codes(lat: np.ndarray, lon: np.ndarray, precision: int) -> np.ndarray:
    """uint64 code of the cell of ``precision`` holding each point (inputs already checked).

    >>> int(cell_codes(np.array([42.6]), np.array([-5.6]), 5)[0]) == int("dfe082", 16)
    True
    """
    rows, cols = grid_rows_cols(lat, lon, precision)
    return codes_from_rows_cols(rows, cols, precision)


def grid_rows_cols(lat: np.ndarray, lon: np.ndarray,
                   precision: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) uint64 indices of the cell of ``precision`` holding each point.

    Row 0 is the southernmost row, col 0 starts at lon -180.

    >>> rows, cols = grid_rows_cols(np.array([-90.0, 0.0, 90.0]), np.array([-180.0, 0.0, 180.0]), 1)
    >>> rows.tolist(), cols.tolist()
    ([0, 2, 3], [0, 4, 7])
    """
    lat_bits, lon_bits = grid_bits(precision)
    return _grid_index(lat, -90.0, 180.0, lat_bits), _grid_index(lon, -180.0, 360.0, lon_bits)


def _grid_index(values: np.ndarray, low: float, span: float, bits: int) -> np.ndarray:
    """Index of the slice holding each value, ``[low, low + span]`` cut in ``2**bits`` slices.

    The quotient ``(value - low) / step`` can round across a slice edge, so the first guess is
    corrected against the edges themselves, which are exact in float64 (dyadic multiples of the
    step). This makes the result identical to bisection with ``value >= mid``.
    """
    slices = 2**bits
    step = span / slices
    index = np.minimum(np.maximum(np.floor((values - low) / step), 0), slices - 1)
    index = np.where(values < low + index * step, index - 1, index)
    index = np.where((index < slices - 1) & (values >= low + (index + 1) * step), index + 1, index)
    return index.astype(np.uint64)


def codes_from_rows_cols(rows: np.ndarray, cols: np.ndarray, precision: int) -> np.ndarray:
    """Interleave row and column bits into uint64 geohash codes (longitude bit first).

    >>> codes_from_rows_cols(np.array([3], dtype=np.uint64), np.array([7], dtype=np.uint64), 1)
    array([31], dtype=uint64)
    """
    rows = np.asarray(rows, dtype=np.uint64)
    cols = np.asarray(cols, dtype=np.uint64)
    if (5 * precision) % 2:  # lon has the extra bit: its last bit is the code's last bit
        return _spread_bits(cols) | (_spread_bits(rows) << 1)
    return (_spread_bits(cols) << 1) | _spread_bits(rows)


def _spread_bits(values: np.ndarray) -> np.ndarray:
    """Move bit k of each value (below 2**32) to bit 2k, leaving zeros between (Morton order)."""
    spread = values & 0xFFFFFFFF
    spread = (spread | (spread << 16)) & 0x0000FFFF0000FFFF
    spread = (spread | (spread << 8)) & 0x00FF00FF00FF00FF
    spread = (spread | (spread << 4)) & 0x0F0F0F0F0F0F0F0F
    spread = (spread | (spread << 2)) & 0x3333333333333333
    return (spread | (spread << 1)) & 0x5555555555555555


def cells_from_codes(codes: np.ndarray, precision: int) -> np.ndarray:
    """Geohash strings (dtype ``<U{precision}``) of uint64 codes, shaped like ``codes``.

    >>> cells_from_codes(np.array([int("dfe082", 16)], dtype=np.uint64), 5)
    array(['ezs42'], dtype='<U5')
    """
    codes = np.asarray(codes, dtype=np.uint64)
    shifts = np.arange(5 * (precision - 1), -1, -5, dtype=np.uint64)
    digits = (codes.reshape(-1, 1) >> shifts) & 31
    codepoints = np.ascontiguousarray(_BASE32_CODEPOINTS[digits])
    return codepoints.view(f"<U{precision}").reshape(codes.shape)


def decode_box(cell: str) -> Box:
    """The lat/lon box of a geohash cell, in degrees.

    >>> decode_box("ezs42")
    Box(lat_min=42.5830078125, lat_max=42.626953125, lon_min=-5.625, lon_max=-5.5810546875)
    """
    row, col, precision = cell_row_col(cell)
    height_deg, width_deg = cell_size_deg(precision)
    return Box(
        lat_min=-90.0 + row * height_deg,
        lat_max=-90.0 + (row + 1) * height_deg,
        lon_min=-180.0 + col * width_deg,
        lon_max=-180.0 + (col + 1) * width_deg,
    )


def decode_boxes(cells: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lat_min, lat_max, lon_min, lon_max) arrays of many geohash cells at once, the same
    as ``decode_box`` of each; the cells may be of different precisions. ValueError names
    the first cell that is not a geohash.

    >>> [v.tolist() for v in decode_boxes(["ezs42", "s"])]
    [[42.5830078125, 0.0], [42.626953125, 45.0], [-5.625, 0.0], [-5.5810546875, 45.0]]
    """
    out = tuple(np.empty(len(cells)) for _ in range(4))
    lengths = np.fromiter((len(c) if isinstance(c, str) else 0 for c in cells), dtype=np.int64,
                          count=len(cells))
    for precision in np.unique(lengths).tolist():
        at = np.flatnonzero(lengths == precision)
        chosen = [cells[i] for i in at.tolist()]
        if not 1 <= precision <= MAX_PRECISION:
            cell_row_col(chosen[0])                # raises, naming the cell
        points = np.array(chosen, dtype=f"<U{precision}").view(np.uint32)
        digits = _DIGIT_OF_CODEPOINT[np.minimum(points, 127)].reshape(-1, precision)
        bad = (digits < 0).any(axis=1) | (points.reshape(-1, precision) > 127).any(axis=1)
        if bad.any():
            cell_row_col(chosen[int(np.argmax(bad))])
        codes = np.zeros(len(chosen), dtype=np.uint64)
        for k in range(precision):
            codes = (codes << np.uint64(5)) | digits[:, k].astype(np.uint64)
        rows, cols = rows_cols_from_codes(codes, precision)
        height_deg, width_deg = cell_size_deg(precision)
        for target, values in zip(out, (-90.0 + rows * height_deg, -90.0 + (rows + 1) * height_deg,
                                        -180.0 + cols * width_deg,
                                        -180.0 + (cols + 1) * width_deg), strict=True):
            target[at] = values
    return out  # type: ignore[return-value]


def rows_cols_from_codes(codes: np.ndarray, precision: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) as float64 of uint64 geohash codes: ``codes_from_rows_cols`` undone.

    >>> [v.tolist() for v in rows_cols_from_codes(np.array([31], dtype=np.uint64), 1)]
    [[3.0], [7.0]]
    """
    codes = np.asarray(codes, dtype=np.uint64)
    if (5 * precision) % 2:
        cols, rows = _gather_bits(codes), _gather_bits(codes >> np.uint64(1))
    else:
        cols, rows = _gather_bits(codes >> np.uint64(1)), _gather_bits(codes)
    return rows.astype(np.float64), cols.astype(np.float64)


def _gather_bits(values: np.ndarray) -> np.ndarray:
    """Bits 0, 2, 4, ... of each value packed together: ``_spread_bits`` undone."""
    packed = values & np.uint64(0x5555555555555555)
    for shift, mask in ((1, 0x3333333333333333), (2, 0x0F0F0F0F0F0F0F0F),
                        (4, 0x00FF00FF00FF00FF), (8, 0x0000FFFF0000FFFF),
                        (16, 0x00000000FFFFFFFF)):
        packed = (packed | (packed >> np.uint64(shift))) & np.uint64(mask)
    return packed


def decode(cell: str) -> tuple[float, float]:
    """(lat, lon) of the centre of a geohash cell, in degrees.

    >>> decode("ezs42")
    (42.60498046875, -5.60302734375)
    """
    return decode_box(cell).centre


def cell_row_col(cell: str) -> tuple[int, int, int]:
    """(row, col, precision) of a geohash cell; ValueError if ``cell`` is not a geohash.

    >>> cell_row_col("s")
    (2, 4, 1)
    >>> cell_row_col("u4pa")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: geohash may only contain characters of '0123...xyz', got 'u4pa'
    """
    if not isinstance(cell, str) or not 1 <= len(cell) <= MAX_PRECISION:
        raise ValueError(f"geohash must be a string of 1..{MAX_PRECISION} characters, got {cell!r}")
    if any(char not in _DIGIT for char in cell):
        raise ValueError(f"geohash may only contain characters of {BASE32!r}, got {cell!r}")
    bits = "".join(f"{_DIGIT[char]:05b}" for char in cell)
    row, col = int(bits[1::2], 2), int(bits[0::2], 2)  # the first bit is a longitude bit
    return row, col, len(cell)


def neighbours(cell: str) -> list[str]:
    """The cells of the same precision that share an edge or a corner with ``cell``.

    Order: north, NE, east, SE, south, SW, west, NW, skipping the missing ones. Columns wrap
    across the antimeridian; there is no row north of the top row or south of the bottom row,
    so a cell at a pole has five neighbours.

    >>> neighbours("ezs42")
    ['ezs48', 'ezs49', 'ezs43', 'ezs41', 'ezs40', 'ezefp', 'ezefr', 'ezefx']
    >>> len(neighbours("zzz"))
    5
    """
    row, col, precision = cell_row_col(cell)
    lat_bits, lon_bits = grid_bits(precision)
    steps = np.array(_NEIGHBOUR_STEPS)
    rows = row + steps[:, 0]
    cols = (col + steps[:, 1]) % 2**lon_bits
    inside = (rows >= 0) & (rows < 2**lat_bits)
    codes = codes_from_rows_cols(rows[inside], cols[inside], precision)
    found = cells_from_codes(codes, precision).tolist()
    return [other for other in dict.fromkeys(found) if other != cell]
