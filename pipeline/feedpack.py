"""The packed value of one cell's feed: what serving needs to choose and filter, in one
Redis string that decodes without a Python object per ad.

Display fields (title, company) are not packed: serving reads them for the few ads it
returns in the same round trip that logs the served feed, so they are always current and
a cell's value stays small.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgpack
import numpy as np

FORMAT_VERSION = 2


@dataclass(frozen=True)
class IdTable:
    """Many string ids as one byte buffer and offsets, so that any subset can be cut out
    with array operations instead of a Python object per id."""

    buffer: np.ndarray       # uint8: every id's bytes, concatenated
    offsets: np.ndarray      # int64 (n + 1)

    @classmethod
    def of(cls, ids: Sequence[str]) -> IdTable:
        """
        >>> IdTable.of(["ab", "c", "def"]).gather(np.array([2, 0]))[0]
        b'defab'
        """
        encoded = [a.encode() for a in ids]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets)

    def gather(self, positions: np.ndarray) -> tuple[bytes, np.ndarray]:
        """The ids at ``positions``, concatenated, with their int32 offsets."""
        starts = self.offsets[positions]
        lengths = self.offsets[positions + 1] - starts
        offsets = np.zeros(len(positions) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        source = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return self.buffer[source].tobytes(), offsets.astype(np.int32)


@dataclass(frozen=True)
class CellFeed:
    """A cell's precomputed feed: the ads it can show and K Thompson orders over them."""

    cell: str
    generated_at: float
    ids_blob: bytes          # the ad ids, concatenated
    id_offsets: np.ndarray   # int32 (n + 1): ad i is ids_blob[off[i]:off[i + 1]]
    lat: np.ndarray          # float64 (n)
    lon: np.ndarray
    expires_at: np.ndarray
    variants: np.ndarray     # int32 (K, L): positions into the ad arrays, best first

    @classmethod
    def build(cls, cell: str, generated_at: float, ids: IdTable, positions: np.ndarray,
              lat: np.ndarray, lon: np.ndarray, expires_at: np.ndarray,
              variants: np.ndarray) -> CellFeed:
        """A feed over the ads at ``positions`` of ``ids`` (their coordinates given in the
        same order); ``variants`` index into ``positions``."""
        blob, offsets = ids.gather(positions)
        return cls(cell, generated_at, blob, offsets, lat, lon, expires_at,
                   variants.astype(np.int32))

    def __len__(self) -> int:
        return len(self.id_offsets) - 1

    def ad_id(self, i: int) -> str:
        return self.ids_blob[self.id_offsets[i]:self.id_offsets[i + 1]].decode()

    def ad_ids(self, positions: Sequence[int] | np.ndarray | None = None) -> list[str]:
        positions = range(len(self)) if positions is None else positions
        return [self.ad_id(int(i)) for i in positions]

    def pack(self) -> bytes:
        return msgpack.packb({
            "v": FORMAT_VERSION, "cell": self.cell, "gen": self.generated_at,
            "ids": self.ids_blob, "off": self.id_offsets.astype("<i4").tobytes(),
            "lat": self.lat.astype("<f8").tobytes(), "lon": self.lon.astype("<f8").tobytes(),
            "exp": self.expires_at.astype("<f8").tobytes(),
            "k": int(self.variants.shape[0]), "var": self.variants.astype("<i4").tobytes(),
        }, use_bin_type=True)

    @classmethod
    def unpack(cls, raw: bytes) -> CellFeed:
        d = msgpack.unpackb(raw, raw=False)
        if d.get("v") != FORMAT_VERSION:
            raise ValueError(f"unknown feed format version {d.get('v')!r}")
        k = d["k"]
        variants = np.frombuffer(d["var"], dtype="<i4")
        return cls(cell=d["cell"], generated_at=d["gen"], ids_blob=d["ids"],
                   id_offsets=np.frombuffer(d["off"], dtype="<i4"),
                   lat=np.frombuffer(d["lat"], dtype="<f8"),
                   lon=np.frombuffer(d["lon"], dtype="<f8"),
                   expires_at=np.frombuffer(d["exp"], dtype="<f8"),
                   variants=variants.reshape(k, -1) if k else variants.reshape(0, 0))
