"""A process's copy of the catalogue's summaries (ads:summary), kept current from the
catalogue's change log (catalog:changes), so that a regeneration reads only what changed
since its last run instead of every ad it needs.

Every write of ads:summary (``CatalogueStore``: put, delete, reindex, and the expiry script)
notes the ids it wrote or removed in catalog:changes, in the same transaction, and whether
it bumped catalog:epoch. A copy remembers the newest entry it has applied; bringing it up to
date reads the entries from that one on and the current summaries of the ids they name. It
reads everything again when it cannot trust that path:

- on its first use, and after a refresh that failed half-way;
- when the log no longer holds the copy's own last entry (trimmed, the server flushed, or a
  write it had applied lost by a restart), or Redis's run id changed (a restart or failover);
- when an entry says "*" (a write too large to list, such as an import), or more changed
  than CHANGES_READ entries or RELOAD_SHARE of the ads;
- when the summary hash holds another number of ads than the copy, or the epoch moved more
  often than the entries say (a writer that does not log, such as an older version);
- and at least every MAX_AGE_S, which bounds how long a change such a writer made without
  either can go unseen.

Selecting the ads near some circles is then arithmetic on the copy's unit vectors, with
no GEOSEARCH: the distance is the true great-circle one, so a circle holds at least every
ad Redis's (slightly larger sphere) search would return within the circle's radius.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import redis

import geo
from store.keys import SUMMARY, SUMMARY_CHUNK, Keys
from store.rows import Summaries, _s, summary_rows

log = logging.getLogger(__name__)

RELOAD_SHARE = 0.25   # more changed ids than this share of the copy: read everything again
CHANGES_READ = 1000   # log entries one refresh reads at most (more: read everything again)
MAX_AGE_S = 3600.0    # a copy is read whole again at least this often


def _entry_key(entry_id: bytes | str) -> tuple[int, int]:
    """A stream entry id ("ms-seq") as a pair that orders like the ids."""
    ms, _, seq = _s(entry_id).partition("-")
    return int(ms), int(seq or 0)


def _pairs(reply: dict | list) -> dict:
    """A hash as a dict: a cluster's transactions hand back the server's flat list."""
    return reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2],
                                                          strict=True))


def _stream_rows(rows: list) -> list[tuple[bytes, dict]]:
    """Stream entries as (id, fields dict), however the client parsed them."""
    return [(entry_id, _pairs(fields)) for entry_id, fields in rows]


def _ids_of(fields: dict[bytes, bytes]) -> bytes:
    """The ids a change log entry lists ("*": too many to list, or an entry of another
    shape)."""
    return fields.get(b"ids", b"*")


def _objects(ids: list[bytes]) -> np.ndarray:
    """Ids as a one-dimensional array of objects (for gathering many at once)."""
    out = np.empty(len(ids), dtype=object)
    out[:] = ids
    return out


@dataclass
class CopyStats:
    """What keeping a copy has cost so far (for logs and benchmarks)."""

    reloads: int = 0          # times every summary was read
    updates: int = 0          # times only the changes were read
    changed_ads: int = 0      # summaries read by updates


class CatalogueCopy:
    """Every indexed ad's summary as of the last ``refresh``, with its unit vector."""

    def __init__(self, client: redis.Redis, keys: type[Keys] = Keys) -> None:
        self.r = client
        self.k = keys
        self.stats = CopyStats()
        self._last: tuple[int, int] | None = None   # the newest change applied; None: empty
        self._slot: dict[bytes, int] = {}           # id -> row
        self._ids = np.empty(0, dtype=object)
        self._rows = np.empty(0, dtype=SUMMARY)
        self._xyz = np.empty((3, 0))                 # unit vectors, a row per coordinate
        self._used = np.zeros(0, dtype=bool)        # rows holding an ad (others: removed)
        self._read_at = -np.inf                     # when it was last read whole (monotonic)
        self._epoch = "0"                           # the catalogue epoch the copy is at
        self._server: str | None = None             # the Redis run id it was read from
        self._lock = threading.Lock()               # threads of one process take turns

    def __len__(self) -> int:
        return len(self._slot)

    # -- keeping current -----------------------------------------------------------------
    def refresh(self) -> str:
        """Bring the copy up to date and return the catalogue epoch read before it (a feed
        built from the copy is written only while the epoch is still that one)."""
        with self._lock:
            try:
                return self._refresh()
            except BaseException:
                self._last = None        # half done: the next refresh reads everything
                raise

    def _refresh(self) -> str:
        server = self._server_id()
        last = self._last
        with self.r.pipeline(transaction=True) as p:
            p.get(self.k.catalog_epoch)
            p.xrevrange(self.k.catalog_changes, count=1)
            if last is not None:      # from the copy's own entry on, which must still be there
                p.xrange(self.k.catalog_changes, min=f"{last[0]}-{last[1]}", count=CHANGES_READ)
            p.hlen(self.k.ads_summary)
            epoch, newest, *after, indexed = p.execute()
        epoch = _s(epoch) or "0"
        newest = _stream_rows(newest)
        read = _stream_rows(after[0]) if after else []
        entries = read[1:] if read and _entry_key(read[0][0]) == last else read
        why = self._why_reload(server, epoch, newest, read, entries)
        if why:
            self._reload(why, server)
            return self._epoch
        changed = list(dict.fromkeys(a for _, fields in entries
                                     for a in _ids_of(fields).split()))
        if changed:
            self._apply(changed)
            self._last = _entry_key(entries[-1][0])
        self._epoch = epoch
        if len(self._slot) != int(indexed):
            # a writer that does not log, or an ad the log named removed between the two
            # reads: rare either way
            self._reload("the summary hash holds another number of ads than the copy", server)
            return self._epoch
        return epoch

    def _server_id(self) -> str | None:
        """The Redis server's run id: another one (a restart, a failover) may have lost
        writes the copy holds. None where the server does not say (fakeredis)."""
        try:
            return str(self.r.info("server").get("run_id"))
        except redis.ResponseError:
            return None

    def _why_reload(self, server: str | None, epoch: str, newest: list, read: list,
                    entries: list) -> str | None:
        """Why the copy must be read again rather than brought up to date from ``entries``
        (the log's entries after the copy's; ``read``: from the copy's own on), or None."""
        if self._last is None:
            return "first use"
        if time.monotonic() - self._read_at > MAX_AGE_S:
            return f"read whole more than {MAX_AGE_S:g} s ago"
        if server != self._server:
            return "another Redis server (restarted, or failed over): writes may be lost"
        if not newest:
            return None if self._last == (0, 0) else "the change log is gone"
        if self._last == (0, 0):
            return "the change log began after the copy was read"
        if not read or _entry_key(read[0][0]) != self._last:
            return "the change log no longer holds the copy's last entry"
        if len(read) >= CHANGES_READ:
            return f"more than {CHANGES_READ:,} writes since the copy's last read"
        if any(_ids_of(fields) == b"*" for _, fields in entries):
            return "a write too large to list"
        listed = sum(_ids_of(fields).count(b" ") + 1 for _, fields in entries)
        if listed > max(1000, RELOAD_SHARE * len(self._slot)):
            return f"{listed:,} ads changed"
        bumps = sum(fields.get(b"voids") == b"1" for _, fields in entries)
        if int(epoch) - int(self._epoch) != bumps:
            return "the catalogue epoch moved without a logged write (an older writer)"
        return None

    def _reload(self, why: str, server: str | None) -> None:
        with self.r.pipeline(transaction=True) as p:
            p.get(self.k.catalog_epoch)
            p.xrevrange(self.k.catalog_changes, count=1)
            p.hgetall(self.k.ads_summary)
            epoch, newest, raw = p.execute()
        newest, raw = _stream_rows(newest), _pairs(raw)
        ids = list(raw)
        rows = summary_rows(list(raw.values()))
        xyz = geo.unit_vectors(rows["lat"], rows["lon"]).reshape(-1, 3)
        # every field at once, after everything is read: a failure leaves the old copy
        self._ids, self._rows, self._xyz = _objects(ids), np.array(rows, dtype=SUMMARY), \
            np.ascontiguousarray(xyz.T)
        self._used = np.ones(len(ids), dtype=bool)
        self._slot = {a: i for i, a in enumerate(ids)}
        self._epoch = _s(epoch) or "0"
        self._server = server
        self._last = _entry_key(newest[0][0]) if newest else (0, 0)
        self._read_at = time.monotonic()
        self.stats.reloads += 1
        log.info("read the whole catalogue (%d ads) into this process's copy: %s", len(ids), why)

    def _apply(self, changed: list[bytes]) -> None:
        """Read the current summaries of ``changed`` and put them in (or take them out)."""
        values: list[bytes | None] = []
        for i in range(0, len(changed), SUMMARY_CHUNK):     # bounded commands
            values += self.r.hmget(self.k.ads_summary, changed[i:i + SUMMARY_CHUNK])
        gone = [a for a, v in zip(changed, values, strict=True) if v is None]
        for a in gone:
            row = self._slot.pop(a, None)
            if row is not None:
                self._used[row] = False
        present = [(a, v) for a, v in zip(changed, values, strict=True) if v is not None]
        if present:
            rows = summary_rows([v for _, v in present])
            xyz = geo.unit_vectors(rows["lat"], rows["lon"]).reshape(-1, 3).T
            at = np.array([self._slot.get(a, -1) for a, _ in present])
            new = at < 0
            start = len(self._ids)
            fresh = [a for (a, _), n in zip(present, new.tolist(), strict=True) if n]
            at[new] = np.arange(start, start + len(fresh))
            if fresh:
                self._ids = np.concatenate([self._ids, _objects(fresh)])
                self._rows = np.concatenate([self._rows, np.zeros(len(fresh), dtype=SUMMARY)])
                self._xyz = np.concatenate([self._xyz, np.zeros((3, len(fresh)))], axis=1)
                self._used = np.concatenate([self._used, np.zeros(len(fresh), dtype=bool)])
                self._slot.update({a: start + i for i, a in enumerate(fresh)})
            self._rows[at], self._xyz[:, at], self._used[at] = rows, xyz, True
        self.stats.updates += 1
        self.stats.changed_ads += len(changed)
        if len(self._used) > 1000 and len(self._slot) < len(self._used) // 2:
            self._compact()

    def _compact(self) -> None:
        """Drop the rows of removed ads."""
        keep = np.flatnonzero(self._used)
        self._ids, self._rows, self._xyz = self._ids[keep], self._rows[keep], self._xyz[:, keep]
        self._used = np.ones(len(keep), dtype=bool)
        self._slot = {a: i for i, a in enumerate(self._ids.tolist())}

    # -- reading -------------------------------------------------------------------------
    def summaries(self) -> Summaries:
        """Every ad of the copy."""
        with self._lock:
            return self._of(np.flatnonzero(self._used))

    def within(self, circles: Sequence[tuple[float, float, float]]) -> Summaries:
        """The ads of the copy within any of the ``circles`` (lat, lon, radius_km)."""
        with self._lock:
            near = np.zeros(len(self._used), dtype=bool)
            x, y, z = self._xyz
            for lat, lon, radius_km in circles:
                cx, cy, cz = geo.unit_vector(lat, lon)
                # element by element, not a BLAS product: its threads would fight the other
                # worker processes for the cores
                near |= x * cx + y * cy + z * cz >= geo.km_to_dot(radius_km)
            return self._of(np.flatnonzero(near & self._used))

    def _of(self, rows: np.ndarray) -> Summaries:
        return Summaries(self._ids[rows].tolist(), self._rows[rows])
