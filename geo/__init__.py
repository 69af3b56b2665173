"""Geo maths for the recommender: geohash cells, great-circle distances, circle coverings and a
static point index, as pure functions over numpy arrays.

Imports numpy, math and the standard library only; no I/O. Degrees in, km out.
"""
from geo.covering import (
    MAX_COVERING_CELLS,
    cell_half_diagonal_km,
    cell_half_diagonals_km,
    cells_covering,
    covering_precision,
    precision_for_radius,
)
from geo.distance import (
    EARTH_RADIUS_KM,
    Box,
    bounding_boxes,
    destination_point,
    distance_from_box_km,
    distance_to_boxes_km,
    dot_km,
    dot_to_km,
    dots,
    haversine_km,
    km_to_dot,
    middle_point,
    unit_vector,
    unit_vectors,
)
from geo.geohash import (
    BASE32,
    decode,
    decode_box,
    decode_boxes,
    encode,
    encode_many,
    neighbours,
)
from geo.index import PointIndex

__all__ = [
    "BASE32",
    "EARTH_RADIUS_KM",
    "MAX_COVERING_CELLS",
    "Box",
    "PointIndex",
    "bounding_boxes",
    "cell_half_diagonal_km",
    "cell_half_diagonals_km",
    "cells_covering",
    "covering_precision",
    "decode",
    "decode_box",
    "decode_boxes",
    "destination_point",
    "distance_from_box_km",
    "distance_to_boxes_km",
    "dot_km",
    "dot_to_km",
    "dots",
    "encode",
    "encode_many",
    "haversine_km",
    "km_to_dot",
    "middle_point",
    "neighbours",
    "precision_for_radius",
    "unit_vector",
    "unit_vectors",
]
