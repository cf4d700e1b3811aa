"""A sharded catalog's map: which shard holds which order-29 HEALPix range, in which table.

The map is data in the coordinator (``shards``, ``shard_ranges``, migration 0015). Each range's
rows are one table on its shard, ``sources_c{catalog}_h{lo:016x}``, holding exactly that range:
a move copies the table to another shard, switches the map, then drops the old copy. A reader
holding an older map finds that table gone (an error it retries on, with the new map), never a
table with rows missing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from ..errors import ConfigError
from ..store.schema import HEALPIX_ORDER, shard_ranges, shards

#: HEALPix order of a new catalog's ranges: its 48 order-1 pixels (~860 deg² each), dealt to the
#: shards in turn, so that the dense Galactic plane is spread over all of them.
MAP_ORDER = 1
#: One past the last order-29 nested index.
HPX29_END = 12 * 4 ** HEALPIX_ORDER


@dataclass(frozen=True)
class Shard:
    """One server holding rows of sharded catalogs (a store database of its own)."""

    id: int
    name: str
    host: str
    port: int
    dbname: str
    #: The coordinator's postgres_fdw foreign server reaching it.
    server: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"


def range_table(catalog_id: int, lo: int) -> str:
    """The table holding catalog ``catalog_id``'s rows of the range starting at ``lo`` (on its
    shard; on the coordinator, the foreign table reading it)."""
    return f"sources_c{int(catalog_id)}_h{int(lo):016x}"


def coordinator_partition(catalog_id: int) -> str:
    """The coordinator's partition of ``sharded_sources`` for catalog ``catalog_id``."""
    return f"sharded_sources_c{int(catalog_id)}"


@dataclass(frozen=True)
class CatalogMap:
    """A sharded catalog's ranges (sorted, inclusive, covering the sphere) and their shards."""

    catalog_id: int
    version: int
    lo: np.ndarray
    hi: np.ndarray
    shard_ids: np.ndarray
    shards: dict[int, Shard]

    def table(self, i: int) -> str:
        return range_table(self.catalog_id, int(self.lo[i]))

    def shard_of(self, i: int) -> Shard:
        return self.shards[int(self.shard_ids[i])]

    def slices(self, pix: np.ndarray) -> list[tuple[int, int, int]]:
        """``pix`` (sorted order-29 indexes) cut by range: (range index, start, stop) per range
        holding any of them."""
        starts = np.searchsorted(pix, self.lo, side="left")
        stops = np.searchsorted(pix, self.hi, side="right")
        return [(int(i), int(starts[i]), int(stops[i])) for i in np.nonzero(stops > starts)[0]]

    def clip(self, ranges: np.ndarray) -> dict[int, list[tuple[int, np.ndarray, np.ndarray]]]:
        """Inclusive (n, 2) order-29 ranges cut along the map: per shard id, (range index, lo,
        hi) of the pieces falling in each of its ranges."""
        out: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        if len(ranges) == 0:
            return out
        first = np.searchsorted(self.hi, ranges[:, 0], side="left")   # map range holding each lo
        last = np.searchsorted(self.hi, ranges[:, 1], side="left")    # ... and each hi
        for i in np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last)])):
            sel = (first <= i) & (last >= i)
            lo = np.maximum(ranges[sel, 0], self.lo[i])
            hi = np.minimum(ranges[sel, 1], self.hi[i])
            out.setdefault(int(self.shard_ids[i]), []).append((int(i), lo, hi))
        return out


def initial_ranges(shard_ids: list[int], order: int = MAP_ORDER) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A new catalog's map: the order-``order`` pixels as ranges, dealt to ``shard_ids`` in turn."""
    if not shard_ids:
        raise ConfigError("the store has no shards")
    npix = 12 * 4 ** order
    width = HPX29_END // npix
    lo = np.arange(npix, dtype=np.int64) * width
    hi = lo + width - 1
    owner = np.array([shard_ids[i % len(shard_ids)] for i in range(npix)], np.int64)
    return lo, hi, owner


def read_shards(conn: sa.Connection) -> dict[int, Shard]:
    """Every shard the coordinator knows, by id."""
    rows = conn.execute(sa.select(shards.c.id, shards.c.name, shards.c.host, shards.c.port, shards.c.dbname,
                                  shards.c.server).order_by(shards.c.id)).all()
    return {int(r.id): Shard(int(r.id), r.name, r.host, int(r.port), r.dbname, r.server) for r in rows}


def read_map(conn: sa.Connection, catalog_id: int, *, share: bool = False) -> CatalogMap | None:
    """Catalog ``catalog_id``'s map, or None when it is not sharded. ``share``: hold the map
    until ``conn``'s transaction ends (a load writing by it; a move waits for that)."""
    query = (sa.select(shard_ranges.c.lo, shard_ranges.c.hi, shard_ranges.c.shard_id, shard_ranges.c.version)
             .where(shard_ranges.c.catalog_id == catalog_id).order_by(shard_ranges.c.lo))
    rows = conn.execute(query.with_for_update(read=True) if share else query).all()
    if not rows:
        return None
    arr = np.array([tuple(r) for r in rows], np.int64)
    return CatalogMap(int(catalog_id), int(arr[:, 3].max()), arr[:, 0].copy(), arr[:, 1].copy(),
                      arr[:, 2].copy(), read_shards(conn))
