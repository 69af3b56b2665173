"""The packed value of one cell's feed: everything serving needs, in one Redis string that
decodes without a Python object per ad."""
from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack
import numpy as np
import orjson

FORMAT_VERSION = 6


@dataclass(frozen=True)
class StringTable:
    """Many byte strings and their lengths, so that a subset packs with one join and one
    cumulative sum (measured faster than gathering bytes with index arrays)."""

    items: list[bytes]
    lengths: np.ndarray      # int64

    @classmethod
    def of(cls, strings: Sequence[str | bytes]) -> StringTable:
        """
        >>> StringTable.of(["ab", "c", "def"]).gather(np.array([2, 0])).blob
        b'defab'
        """
        items = [s.encode() if isinstance(s, str) else bytes(s) for s in strings]
        return cls(items, np.fromiter(map(len, items), dtype=np.int64, count=len(items)))

    @classmethod
    def slices(cls, buffer: bytes, starts: np.ndarray, lengths: np.ndarray) -> StringTable:
        """The strings buffer[start:start + length].

        >>> StringTable.slices(b"xxabyc", np.array([2, 5]), np.array([2, 1])).items
        [b'ab', b'c']
        """
        ends = (starts + lengths).tolist()
        return cls([buffer[a:b] for a, b in zip(starts.tolist(), ends, strict=True)],
                   np.asarray(lengths, dtype=np.int64))

    def gather(self, positions: np.ndarray) -> PackedStrings:
        """The strings at ``positions``, packed together."""
        offsets = np.zeros(len(positions) + 1, dtype=np.int32)
        np.cumsum(self.lengths[positions], out=offsets[1:])
        if len(positions) == 0:
            return PackedStrings(b"", offsets)
        picked = operator.itemgetter(*positions.tolist())(self.items)
        return PackedStrings(picked if len(positions) == 1 else b"".join(picked), offsets)


@dataclass(frozen=True)
class PackedStrings:
    """Strings concatenated in ``blob``; string i is blob[offsets[i]:offsets[i + 1]]."""

    blob: bytes
    offsets: np.ndarray      # int32 (n + 1)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.raw(i).decode()

    def raw(self, i: int) -> bytes:
        return self.blob[self.offsets[i]:self.offsets[i + 1]]

    def take(self, positions: Sequence[int] | np.ndarray) -> list[str]:
        return [self[int(i)] for i in positions]

    def all(self) -> list[str]:
        return self.take(range(len(self)))


def ad_card(ad_id: str, title: str, company: str) -> bytes:
    """The part of a feed entry that is the ad's own, as a JSON object left open for the
    entry's position and distance: rendered once when the ad is written, not per request.

    >>> orjson.loads(ad_card("a1", 'Barista "day"', "Café") + b', "position": 1}')
    {'ad_id': 'a1', 'title': 'Barista "day"', 'company': 'Café', 'position': 1}
    """
    return orjson.dumps({"ad_id": ad_id, "title": title, "company": company})[:-1]


@dataclass(frozen=True)
class CellFeed:
    """A cell's precomputed feed: the ads it can show, the orders kept over them
    (``bandit.order_sources``), what the screened strategies sort each screen by, and the
    probability each strategy is served with."""

    cell: str
    generated_at: float
    ad_ids: PackedStrings
    cards: PackedStrings     # ad_card of each ad
    xyz: np.ndarray          # float64 (n, 3): unit vectors, for distances at serve time
    expires_at: np.ndarray   # float64 (n)
    strategies: tuple[str, ...]
    probabilities: np.ndarray  # float64, one per strategy
    orders: dict[str, np.ndarray]  # strategy -> int32 (rows, L): positions into the ads
    keys: dict[str, np.ndarray]    # screened strategy -> float64 (n): its sort key per ad

    def __len__(self) -> int:
        return len(self.ad_ids)

    def pack(self) -> bytes:
        def strings(p: PackedStrings) -> list:
            return [p.blob, p.offsets.astype("<i4").tobytes()]
        return msgpack.packb({
            "v": FORMAT_VERSION, "cell": self.cell, "gen": self.generated_at,
            "ids": strings(self.ad_ids), "cards": strings(self.cards),
            "xyz": self.xyz.astype("<f8").tobytes(),
            "exp": self.expires_at.astype("<f8").tobytes(),
            "strategies": list(self.strategies),
            "probs": np.asarray(self.probabilities, dtype="<f8").tobytes(),
            "orders": {k: [int(v.shape[0]), v.astype("<i4").tobytes()]
                       for k, v in self.orders.items()},
            "keys": {k: np.asarray(v, dtype="<f8").tobytes() for k, v in self.keys.items()},
        }, use_bin_type=True)

    @classmethod
    def unpack(cls, raw: bytes) -> CellFeed:
        d = msgpack.unpackb(raw, raw=False)
        if d.get("v") != FORMAT_VERSION:
            raise ValueError(f"unknown feed format version {d.get('v')!r}")

        def strings(pair: list) -> PackedStrings:
            return PackedStrings(pair[0], np.frombuffer(pair[1], dtype="<i4"))
        return cls(cell=d["cell"], generated_at=d["gen"], ad_ids=strings(d["ids"]),
                   cards=strings(d["cards"]),
                   xyz=np.frombuffer(d["xyz"], dtype="<f8").reshape(-1, 3),
                   expires_at=np.frombuffer(d["exp"], dtype="<f8"),
                   strategies=tuple(d["strategies"]),
                   probabilities=np.frombuffer(d["probs"], dtype="<f8"),
                   orders={k: np.frombuffer(v, dtype="<i4").reshape(rows, -1)
                           for k, (rows, v) in d["orders"].items()},
                   keys={k: np.frombuffer(v, dtype="<f8") for k, v in d["keys"].items()})
