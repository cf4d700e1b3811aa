"""Cone and footprint pre-filters of a sharded catalog, sent straight to the shards that own
the region's HEALPix ranges (several at once when it spans them) and merged.

The shards a region needs are those whose ranges its cover (:func:`astrodb.query.healpix.cone_ranges`)
meets; each gets one statement that computes the cone's HEALPix cover itself (``astrodb._hpx_cover``
at the order the coordinator's density map chose) and reads, in each of its range tables the
cover meets, the cover's ranges (one index range scan each), packed as the single-server query
packs them (:data:`astrodb.query.search.PG_RECORD_SQL`). The union over the shards is exactly
the rows a single server's pre-filter gives, since the ranges do not overlap. A shard that
cannot be reached fails the whole query (:class:`~astrodb.errors.ShardUnavailableError`).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psycopg

from ..query.healpix import cone_ranges
from ..query.search import PG_RECORD_SQL, fetch_records, record_columns
from .connections import ShardConnections
from .shard_map import CatalogMap

_POOL: ThreadPoolExecutor | None = None


class MapChanged(Exception):
    """A range table the map named is gone: the map moved on (a rebalance); read it again."""


def _executor() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="astrodb-shard")
    return _POOL


def _shard_sql(tables: list[tuple[str, int, int]]) -> str:
    # The cover is computed on the shard, at the order the coordinator's density map chose
    # (astrodb._cover_order), as a single server's cone does; each range table is probed only
    # with the cover's ranges that meet its own.
    parts = [f"SELECT * FROM astrodb.{t} t WHERE r.lo <= {hi} AND r.hi >= {lo} AND t.hpx29 BETWEEN r.lo AND r.hi"
             for t, lo, hi in tables]
    return (f"SELECT string_agg({PG_RECORD_SQL}, ''::bytea) FROM astrodb._hpx_cover(%s, %s, %s, %s) r "
            f"CROSS JOIN LATERAL ({' UNION ALL '.join(parts)} OFFSET 0) sources GROUP BY sources.hpx29 >> 42")


def _query(conns: ShardConnections, cmap: CatalogMap, shard_id: int, pieces, cap: tuple) -> bytes:
    sql = _shard_sql([(cmap.table(i), int(cmap.lo[i]), int(cmap.hi[i])) for i, _, _ in pieces])

    def work(conn: psycopg.Connection) -> bytes:
        try:
            return fetch_records(conn, sql, cap)
        except psycopg.errors.UndefinedTable:
            raise MapChanged() from None

    return conns.run(cmap.shards[shard_id], work)


def fetch_cap(conns: ShardConnections, cmap: CatalogMap, order: int, ra: float, dec: float,
              radius: float) -> dict[str, np.ndarray]:
    """The sharded catalog's rows whose stored position is within ``radius`` deg of (ra, dec),
    possibly with a few more, as numpy columns (what :func:`astrodb.query.search.fetch_cap`
    gives for a catalog on one server). ``order``: the HEALPix order of the cover the shards
    read (the coordinator's ``astrodb._cover_order`` for the catalog and cone).

    Raises
    ------
    MapChanged
        The map is older than the shards' tables: read it again and retry.
    ShardUnavailableError
        A shard the region needs cannot be reached.
    """
    by_shard = cmap.clip(cone_ranges(ra, dec, radius))   # which shards: any range the cap may meet
    cap = (ra, dec, radius, int(order))
    if len(by_shard) <= 1:  # the common case: one shard, no thread hand-off
        parts = [_query(conns, cmap, sid, pieces, cap) for sid, pieces in by_shard.items()]
    else:
        futures = [_executor().submit(_query, conns, cmap, sid, pieces, cap) for sid, pieces in by_shard.items()]
        parts = [f.result() for f in futures]   # every shard or an error: never a partial result
    return record_columns(b"".join(parts))
