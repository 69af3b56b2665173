"""A static spatial index over many points, for "everything within r km of here" queries.

Points are sorted by the geohash grid cell they fall in, row by row (south to north) and
within a row by column (west to east). The part of any grid row under a circle's bounding
box is then one contiguous run, found by binary search: a query costs a few searches per
row it spans and an exact distance check on the points in those runs. Rows keep the work
small at the poles too, where a circle spans whole rows of very narrow cells.
"""
from __future__ import annotations

import math

import numpy as np

from geo.checks import checked_point, checked_points, checked_precision, checked_radius_km
from geo.covering import SLACK_KM, grid_ranges, precision_for_radius
from geo.distance import (
    EARTH_RADIUS_KM,
    bounding_boxes,
    haversine_km,
    middle_point,
    unit_vectors,
)
from geo.geohash import grid_bits, grid_rows_cols

# Most grid rows a query searches one by one; beyond this it reads them as one run.
_MAX_ROW_RUNS = 4096
SHARE_SAMPLE = 512   # points of a group that estimate each circle's share of it


class PointIndex:
    """Radius queries over a fixed set of points given as parallel lat and lon arrays (degrees).

    ``cell_precision`` sets the grid the points are sorted by: finer cells mean fewer points
    checked per query but more rows searched, and between the two the cost is flat over a
    wide range. If not given it is ``precision_for_radius(query_radius_km)``, precision 5
    (cells about 4.9 km tall) for radii of 1.3 to 9.7 km. Any radius works with any precision.

    >>> index = PointIndex(np.array([52.52, 52.53, 48.14]), np.array([13.40, 13.41, 11.58]),
    ...                    query_radius_km=5.0)
    >>> index.cell_precision, len(index)
    (5, 3)
    >>> index.query(52.52, 13.40, 5.0)
    array([0, 1])
    """

    def __init__(self, lat: np.ndarray, lon: np.ndarray, *, query_radius_km: float = 5.0,
                 cell_precision: int | None = None) -> None:
        lat_deg, lon_deg = checked_points(lat, lon)
        if lat_deg.ndim != 1:
            raise ValueError(f"lat and lon must be one-dimensional, got shape {lat_deg.shape}")
        if cell_precision is None:
            self.cell_precision = precision_for_radius(query_radius_km)
        else:
            self.cell_precision = checked_precision(cell_precision)
        self._columns = 2 ** grid_bits(self.cell_precision)[1]
        rows, cols = grid_rows_cols(lat_deg, lon_deg, self.cell_precision)
        keys = rows.astype(np.int64) * self._columns + cols.astype(np.int64)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._order = order.astype(np.int64)
        self._lat = lat_deg[order]
        self._lon = lon_deg[order]
        # the unit vectors' coordinates, each contiguous (a gather of one is then contiguous)
        self._x, self._y, self._z = np.ascontiguousarray(unit_vectors(self._lat, self._lon).T)

    def __len__(self) -> int:
        return len(self._keys)

    def query(self, lat: float, lon: float, radius_km: float) -> np.ndarray:
        """Indices (into the arrays the index was built from) of every point within
        ``radius_km`` of (lat, lon), boundary included, in ascending index order (int64).

        >>> PointIndex(np.array([0.0]), np.array([0.0])).query(0.0, 0.1, 5.0)
        array([], dtype=int64)
        """
        positions, _ = self._within(lat, lon, radius_km, distances=False)
        return np.sort(self._order[positions])

    def query_with_distance(self, lat: float, lon: float,
                            radius_km: float) -> tuple[np.ndarray, np.ndarray]:
        """(indices, distances in km) of every point within ``radius_km`` of (lat, lon),
        nearest first; equal distances come in ascending index order.

        >>> index = PointIndex(np.array([0.0, 0.0, 0.0]), np.array([0.02, 0.01, 1.0]))
        >>> indices, distances_km = index.query_with_distance(0.0, 0.0, 5.0)
        >>> indices, distances_km.round(3)
        (array([1, 0]), array([1.112, 2.224]))
        """
        positions, distances_km = self._within(lat, lon, radius_km)
        indices = self._order[positions]
        nearest_first = np.lexsort((indices, distances_km))
        return indices[nearest_first], distances_km[nearest_first]

    def _within(self, lat: float, lon: float, radius_km: float,
                distances: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Positions in the sorted arrays of the points within the radius, and their distances
        (without ``distances``: an empty array, and the haversine runs only near the edge)."""
        lat, lon = checked_point(lat, lon)
        radius_km = checked_radius_km(radius_km)
        positions, cos_angle = self._near(lat, lon, radius_km)
        if not distances:
            inside = self._inside(lat, lon, radius_km, positions, cos_angle)
            return positions[inside], np.empty(0)
        distances_km = haversine_km(lat, lon, self._lat[positions], self._lon[positions])
        near = distances_km <= radius_km
        return positions[near], distances_km[near]

    def _near(self, lat: float, lon: float, radius_km: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions of every point within the radius and some a little beyond it (a cheap,
        slightly generous dot-product test: the haversine, which decides, need only run on
        the points near the edge), and each one's cosine to the centre."""
        boxes = bounding_boxes(lat, lon, radius_km + SLACK_KM)
        runs = [self._positions_in(*cells) for cells in grid_ranges(boxes, self.cell_precision)]
        # The two halves of a circle over the antimeridian can share columns of wide cells.
        positions = runs[0] if len(runs) == 1 else np.unique(np.concatenate(runs))
        min_cos = math.cos(min((radius_km + SLACK_KM) / EARTH_RADIUS_KM, math.pi)) - 1e-12
        cos_angle = self._cosines(unit_vectors(lat, lon)[None, :], positions)[0]
        maybe = cos_angle >= min_cos
        return positions[maybe], cos_angle[maybe]

    def best_within(self, lat: np.ndarray, lon: np.ndarray, radius_km: np.ndarray,
                    scores: np.ndarray, length: int) -> np.ndarray:
        """For each circle (``lat``, ``lon``, ``radius_km``: one entry per circle), the
        indices of its ``length`` points with the highest score in each row of ``scores``
        (rows, points), best first, as one int64 array (circles, rows, length); a circle
        with fewer points inside has its every point, and -1 after them (the same number in
        every row). The same as taking each row's best ``length`` among ``query(...)`` of the
        circle, at a fraction of the cost when circles are many and dense; points of equal
        score come in either order.

        Circles are grouped by the index's grid cell of their centre. The points within
        reach of a group are read once and cut to each row's best ``shortlist``; within
        that, the first ``length`` points inside each circle are its answer, unless the cut
        hid some (fewer than ``length`` inside, more points beyond the cut), when the group
        is read again with a longer shortlist.

        >>> index = PointIndex(np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.01, 0.02]))
        >>> index.best_within(np.array([0.0]), np.array([0.0]), np.array([1.5]),
        ...                   np.array([[0.1, 0.9, 0.5]]), 3).tolist()
        [[[1, 0, -1]]]
        """
        lat, lon = checked_points(np.atleast_1d(lat), np.atleast_1d(lon))
        radius = np.broadcast_to(np.asarray(radius_km, dtype=np.float64), lat.shape)
        if np.any(~(radius >= 0)):
            raise ValueError("radius_km must be non-negative")
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != len(self):
            raise ValueError(f"scores must have shape (rows, {len(self)}), got {scores.shape}")
        if length < 1:
            raise ValueError("length must be at least 1")
        out = np.full((len(lat), len(scores), length), -1, dtype=np.int64)
        if not len(lat):
            return out
        by_position = np.ascontiguousarray(   # a group's points: runs of this
            np.take(np.ascontiguousarray(scores), self._order, axis=1))
        rows, cols = grid_rows_cols(lat, lon, self.cell_precision)
        group_of = rows.astype(np.int64) * self._columns + cols.astype(np.int64)
        centres = unit_vectors(lat, lon)
        by_group = np.argsort(group_of, kind="stable")
        for members in np.split(by_group, np.flatnonzero(np.diff(group_of[by_group])) + 1):
            out[members] = self._best_in_group(lat[members], lon[members], radius[members],
                                               centres[members], by_position, length)
        return out

    def _best_in_group(self, lat: np.ndarray, lon: np.ndarray, radius: np.ndarray,
                       centres: np.ndarray, by_position: np.ndarray,
                       length: int) -> np.ndarray:
        """``best_within`` for circles whose centres share a grid cell (``centres``: their
        unit vectors)."""
        m_lat, m_lon = middle_point(centres)
        spread_km = haversine_km(m_lat, m_lon, lat, lon) + radius
        positions, _ = self._near(m_lat, m_lon, float(spread_km.max()) + 1e-6)
        n = len(positions)
        if not n:
            return np.full((len(lat), len(by_position), length), -1, dtype=np.int64)
        group = np.take(by_position, positions, axis=1)     # (rows, n)
        # the share of the group's points the sparsest circle holds, from a sample, sets how
        # far down each row's order to look (the cosine alone is near enough for a share)
        sample = np.linspace(0, n - 1, min(n, SHARE_SAMPLE)).astype(np.int64)
        share = (self._cosines(centres, positions[sample])
                 >= np.cos(np.minimum(radius / EARTH_RADIUS_KM, math.pi))[:, None])
        shortlist = first_shortlist(share.mean(axis=1).min(), length)
        while True:
            shortlist = min(shortlist, n)
            if shortlist < n:
                top = np.argpartition(-group, shortlist - 1, axis=1)[:, :shortlist]
            else:
                top = np.broadcast_to(np.arange(n), group.shape)
            # (equal scores in either order: an unstable sort is several times faster)
            ranked = np.argsort(-np.take_along_axis(group, top, axis=1), axis=1)
            top = np.take_along_axis(top, ranked, axis=1)          # (rows, shortlist)
            seen, slot = _distinct(top, n)
            inside = self._inside(lat[:, None], lon[:, None], radius[:, None],
                                  positions[seen][None, :],
                                  self._cosines(centres, positions[seen]))
            hits = inside[:, slot.reshape(top.shape)]              # (circles, rows, shortlist)
            rank = np.cumsum(hits, axis=2, dtype=np.int32)
            full = bool((rank[:, :, -1] >= length).all())
            if full or shortlist == n:
                break
            shortlist *= 2
        picked = self._order[positions[seen][slot.reshape(top.shape)]]  # each entry's index
        kept = hits & (rank <= length)
        if full:      # every row of every circle keeps ``length``: they are the kept, in order
            entries = np.flatnonzero(kept) % (len(group) * shortlist)
            return picked.ravel()[entries].reshape(len(lat), len(group), length)
        circle, row, entry = np.nonzero(kept)
        best = np.full((len(lat), len(group), length), -1, dtype=np.int64)
        best[circle, row, rank[circle, row, entry] - 1] = picked[row, entry]
        return best

    def _inside(self, lat: float | np.ndarray, lon: float | np.ndarray,
                radius_km: float | np.ndarray, positions: np.ndarray,
                cos_angle: np.ndarray) -> np.ndarray:
        """Which of the points at ``positions`` (their cosines to the centre given, any
        broadcastable shape) lie within ``radius_km``. Well inside the circle (1e-9 in
        cosine, metres at these radii, against a rounding error near 1e-15) the dot product
        decides alone; the haversine checks only the points near the edge, and the answer
        is the same as the haversine's everywhere."""
        sure = cos_angle >= np.cos(np.minimum(radius_km / EARTH_RADIUS_KM, math.pi)) + 1e-9
        # a cheap, slightly generous test first: the haversine runs only near the edge
        near = cos_angle >= np.cos(np.minimum((radius_km + SLACK_KM) / EARTH_RADIUS_KM,
                                              math.pi)) - 1e-12
        edge = np.nonzero(near & ~sure)
        lat, lon, radius_km = (np.broadcast_to(v, sure.shape)[edge]
                               for v in (lat, lon, radius_km))
        spots = np.broadcast_to(positions, sure.shape)[edge]
        sure[edge] = haversine_km(lat, lon, self._lat[spots], self._lon[spots]) <= radius_km
        return sure

    def _cosines(self, centres: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """(centres, points at ``positions``) cosines of the angles between unit vectors,
        without BLAS: its threads cost more than they save here, and fight the other worker
        processes for cores."""
        out = np.multiply.outer(centres[:, 0], self._x[positions])
        out += np.multiply.outer(centres[:, 1], self._y[positions])
        out += np.multiply.outer(centres[:, 2], self._z[positions])
        return out

    def _positions_in(self, row_lo: int, row_hi: int, col_lo: int, col_hi: int) -> np.ndarray:
        """Positions in the sorted arrays of the points in a block of grid cells (inclusive)."""
        if row_hi - row_lo < _MAX_ROW_RUNS:
            row_keys = np.arange(row_lo, row_hi + 1, dtype=np.int64) * self._columns
            first_keys, end_keys = row_keys + col_lo, row_keys + col_hi + 1
        else:  # a huge circle on a fine grid: one run over the whole block, more points to check
            first_keys = np.array([row_lo * self._columns + col_lo], dtype=np.int64)
            end_keys = np.array([row_hi * self._columns + col_hi + 1], dtype=np.int64)
        return _concatenated_ranges(np.searchsorted(self._keys, first_keys),
                                    np.searchsorted(self._keys, end_keys))


def first_shortlist(least_share: float, length: int) -> int:
    """How far down each row's order a group looks first, when its sparsest circle holds
    ``least_share`` of the group's points: about 1.3 x the expected need, so that a second
    look is rare (a sample's share is off by some per cent)."""
    return int(length * 1.3 / max(least_share, 1e-6)) + 64


def _distinct(values: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for non-negative integers below ``bound``,
    by marking them in a table of ``bound`` rather than sorting them (``bound`` is a group's
    point count, a few times the values' count).

    >>> seen, slot = _distinct(np.array([[4, 1], [1, 6]]), 8)
    >>> seen.tolist(), slot.tolist()
    ([1, 4, 6], [[1, 0], [0, 2]])
    """
    mark = np.zeros(bound, dtype=bool)
    mark[values] = True
    seen = np.flatnonzero(mark)
    lookup = np.empty(bound, dtype=np.int64)
    lookup[seen] = np.arange(len(seen))
    return seen, lookup[values]


def _concatenated_ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])`` without the loop.

    >>> _concatenated_ranges(np.array([2, 7]), np.array([4, 9]))
    array([2, 3, 7, 8])
    """
    lengths = ends - starts
    run_offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - run_offsets, lengths) + np.arange(lengths.sum(), dtype=np.int64)
