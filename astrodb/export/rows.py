"""A whole catalog read in chunks of rows, positions moved to an epoch: what exports write.

The chunks follow the catalog's density map (:mod:`astrodb.ingest.density`): consecutive
order-7 pixels, in nested order, summed until a chunk would pass ``chunk_rows``; each chunk is one
range scan of the ``(catalog_id, hpx29)`` index. Every row is read once (its stored position's
pixel is in exactly one chunk), in one snapshot on PostgreSQL, and the rows read must add up to
the catalog's row count.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from .. import epoch as epochs
from ..errors import QueryError
from ..query.search import (FETCHED_COLUMNS, PG_RECORD_SQL, at_epoch, fetch_records, fetched_columns,
                            query_epoch, record_columns)
from ..store.schema import DENSITY_ORDER, HEALPIX_ORDER, catalog_density, catalogs

__all__ = ["CatalogRows", "chunk_ranges", "catalog_rows"]

_SHIFT = 2 * (HEALPIX_ORDER - DENSITY_ORDER)


@dataclass(frozen=True)
class CatalogRows:
    """What :func:`catalog_rows` reads: the catalog, its row count and the epoch of the positions."""

    name: str
    kind: str
    description: str | None
    ref_epoch: float | None
    row_count: int
    epoch: float | None
    #: Loaded for a region only (:mod:`astrodb.store.catalog_regions`): rows elsewhere are missing.
    region_limited: bool
    sharded: bool


def chunk_ranges(pixels: np.ndarray, counts: np.ndarray, chunk_rows: int) -> np.ndarray:
    """Order-29 ranges ``(n, 2)`` (inclusive) covering these order-7 pixels in chunks of about
    ``chunk_rows`` rows (fewer than ``chunk_rows`` plus one pixel's rows).

    Parameters
    ----------
    pixels, counts : numpy.ndarray
        The density map: nested order-7 pixels, ascending, and their rows.
    chunk_rows : int
        Rows a chunk should hold.
    """
    pixels = np.asarray(pixels, np.int64)
    counts = np.asarray(counts, np.int64)
    if not len(pixels):
        return np.empty((0, 2), np.int64)
    # A chunk starts at each pixel whose preceding rows cross the next multiple of chunk_rows.
    before = np.concatenate([[0], np.cumsum(counts)[:-1]])
    group = before // max(int(chunk_rows), 1)
    starts = np.concatenate([[0], np.nonzero(np.diff(group))[0] + 1])
    ends = np.concatenate([starts[1:], [len(pixels)]]) - 1
    lo = pixels[starts] << _SHIFT
    hi = ((pixels[ends] + 1) << _SHIFT) - 1
    return np.stack([lo, hi], axis=1)


def _fetch_range(conn: sa.Connection, table: str, catalog_id: int, lo: int, hi: int) -> dict[str, np.ndarray]:
    if conn.dialect.name == "postgresql":
        # Binary records, as the cone's pre-filter reads them (astrodb.query.search).
        sql = (f"SELECT string_agg({PG_RECORD_SQL}, ''::bytea) FROM {table} sources "
               "WHERE catalog_id = %s AND hpx29 BETWEEN %s AND %s GROUP BY hpx29 >> 42")
        return record_columns(fetch_records(conn.connection.dbapi_connection, sql, (catalog_id, lo, hi)))
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(f"SELECT {', '.join(FETCHED_COLUMNS)} FROM {table} "
                    "WHERE catalog_id = ? AND hpx29 BETWEEN ? AND ?", (catalog_id, lo, hi))
        return fetched_columns(cur.fetchall())
    finally:
        cur.close()


@contextmanager
def catalog_rows(store, name: str, *, epoch=None, chunk_rows: int = 500_000,
                 pm_prior: float = epochs.DEFAULT_PM_PRIOR) -> Iterator[tuple[CatalogRows, Iterator[dict]]]:
    """Every row of catalog ``name``, positions at ``epoch``, in chunks (a context manager).

    Parameters
    ----------
    store : astrodb.Store
        The store.
    name : str
        The catalog.
    epoch : float, str, astropy.time.Time or None
        Epoch of the positions (None: each row's own ``ref_epoch``).
    chunk_rows : int
        Rows a chunk should not pass (a single order-7 pixel holding more is one chunk).
    pm_prior : float
        With ``epoch``: the prior (mas/yr) widening the errors of rows without a proper motion.

    Yields
    ------
    (CatalogRows, iterator of dict)
        What is read, and the chunks: the output columns of a cone but ``distance`` (see
        :data:`astrodb.query.columns.OUTPUT_COLUMNS`) plus ``ra_pmra_corr``/``dec_pmdec_corr``.
        The iterator raises :class:`~astrodb.errors.QueryError` at its end if the rows read do
        not add up to the catalog's row count.
    """
    jy = query_epoch(epoch)
    store._require_schema()
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one snapshot: the count, the map and every chunk
            conn.execution_options(isolation_level="REPEATABLE READ")
        stats = store._stats(conn, name)  # CatalogNotFoundError for an unknown name
        row = conn.execute(sa.select(catalogs.c.kind, catalogs.c.description, catalogs.c.ref_epoch,
                                     catalogs.c.row_count).where(catalogs.c.id == stats.id)).one()
        density = conn.execute(sa.select(catalog_density.c.pixel, catalog_density.c.count)
                               .where(catalog_density.c.catalog_id == stats.id,
                                      catalog_density.c.norder == DENSITY_ORDER)
                               .order_by(catalog_density.c.pixel)).all()
        info = CatalogRows(name, row.kind, row.description, row.ref_epoch, int(row.row_count), jy,
                           stats.limited, stats.shard_version is not None)
        density = np.array(density, np.int64).reshape(-1, 2)
        ranges = chunk_ranges(density[:, 0], density[:, 1], chunk_rows)
        # A sharded catalog's rows are the coordinator's foreign partitions (astrodb.shard).
        table = "astrodb.sharded_sources" if info.sharded else "sources"

        def chunks() -> Iterator[dict[str, np.ndarray]]:
            seen = 0
            for lo, hi in ranges.tolist():
                data = _fetch_range(conn, table, stats.id, lo, hi)
                seen += len(data["source_id"])
                if len(data["source_id"]):
                    values = at_epoch(data, jy, pm_prior=pm_prior)
                    values["ra_pmra_corr"], values["dec_pmdec_corr"] = data["ra_pmra_corr"], data["dec_pmdec_corr"]
                    yield values
            if seen != info.row_count:
                raise QueryError(f"catalog {name!r}: read {seen} rows, the catalog holds {info.row_count} "
                                 "(was it loaded into meanwhile?)")

        yield info, chunks()
