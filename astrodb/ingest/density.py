"""Each catalog's HEALPix density map: rows per pixel at :data:`~astrodb.store.schema.DENSITY_ORDER`.

Kept in ``catalog_density`` by the load that adds the rows, in its transaction (a user catalog
at once, a Gaia file or HATS partition each in its own), so the map always counts exactly the
rows the catalog holds: for sky maps and for planners that need to know how many rows a region
holds before asking for them. The pixels come from the rows' ``hpx29`` (nested order 29, from
ra/dec): a pixel of order k is ``hpx29 >> 2 (29 - k)``.
"""
from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from ..store.schema import DENSITY_ORDER, HEALPIX_ORDER

__all__ = ["pixel_counts", "add_counts"]


def pixel_counts(hpx29: np.ndarray, order: int = DENSITY_ORDER) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, counts) of order ``order``, pixels ascending, for rows at these order-29 pixels."""
    pix = np.asarray(hpx29, np.int64) >> (2 * (HEALPIX_ORDER - order))
    return np.unique(pix, return_counts=True)


def add_counts(conn: sa.Connection, catalog_id: int, hpx29: np.ndarray) -> None:
    """Add rows at these order-29 pixels to catalog ``catalog_id``'s map (caller's transaction).

    Pixels are written in ascending order, so concurrent loads of one catalog lock the rows they
    share in the same order (they wait for each other, they do not deadlock).
    """
    pixels, counts = pixel_counts(hpx29)
    if not len(pixels):
        return
    raw = conn.connection.driver_connection
    upsert = ("ON CONFLICT (catalog_id, norder, pixel) DO UPDATE SET count = catalog_density.count + "
              "excluded.count")
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur:  # one statement whatever the number of pixels
            cur.execute("INSERT INTO catalog_density (catalog_id, norder, pixel, count) "
                        "SELECT %s, %s, p, c FROM unnest(%s::bigint[], %s::bigint[]) AS t(p, c) " + upsert,
                        (int(catalog_id), DENSITY_ORDER, pixels.tolist(), counts.tolist()))
    else:
        cur = raw.cursor()
        try:
            cur.executemany("INSERT INTO catalog_density (catalog_id, norder, pixel, count) VALUES (?, ?, ?, ?) "
                            + upsert, zip([int(catalog_id)] * len(pixels), [DENSITY_ORDER] * len(pixels),
                                          pixels.tolist(), counts.tolist()))
        finally:
            cur.close()
