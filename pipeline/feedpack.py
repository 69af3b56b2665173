"""The packed value of one cell's feed: everything serving needs, in one Redis string."""
from __future__ import annotations

from dataclasses import dataclass

import msgpack
import numpy as np

FORMAT_VERSION = 1


@dataclass(frozen=True)
class CellFeed:
    """A cell's precomputed feed: the ads it can show and K Thompson orders over them."""

    cell: str
    generated_at: float
    ad_ids: list[str]
    titles: list[str]
    companies: list[str]
    lat: np.ndarray          # float64, one per ad
    lon: np.ndarray
    expires_at: np.ndarray
    variants: np.ndarray     # int32 (K, L): positions into the ad arrays, best first

    def pack(self) -> bytes:
        return msgpack.packb({
            "v": FORMAT_VERSION, "cell": self.cell, "gen": self.generated_at,
            "ids": self.ad_ids, "ti": self.titles, "co": self.companies,
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
        return cls(cell=d["cell"], generated_at=d["gen"], ad_ids=d["ids"], titles=d["ti"],
                   companies=d["co"], lat=np.frombuffer(d["lat"], dtype="<f8"),
                   lon=np.frombuffer(d["lon"], dtype="<f8"),
                   expires_at=np.frombuffer(d["exp"], dtype="<f8"),
                   variants=variants.reshape(k, -1) if k else variants.reshape(0, 0))
