"""The absolute step's reference catalog: a Gaia release from the local store, a file or a Table.

Names (stcal's): GAIADR1/GAIADR2/GAIADR3 -> the store's ``gaia_dr1``/``gaia_dr2``/``gaia_dr3``
catalogs; GAIAREFCAT and GAIADR3_S3 -> ``gaia_dr3``. The store is queried once, with a cone
around the images' combined footprint, at the observation epoch with the annual parallax seen
from the Earth's barycentric position then (or a given observer); every star is kept, those
without proper motion with position errors widened by the store's ``pm_prior``, so they weigh
less instead of being dropped (stcal's GAIADR3_S3 drops them).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from .catalogs import read_table, reference_sources
from .errors import CatalogError, ParameterError

GAIA_NAMES = {"GAIADR1": "gaia_dr1", "GAIADR2": "gaia_dr2", "GAIADR3": "gaia_dr3",
              "GAIAREFCAT": "gaia_dr3", "GAIADR3_S3": "gaia_dr3"}

#: Default typical image centroid error (mas) against which reference-star errors are weighed.
DEFAULT_CENTROID_ERROR_MAS = 5.0


@dataclass
class Reference:
    """A resolved reference catalog: positions (deg) at the epoch and relative weights."""

    table: Table                 # what was used (RA, DEC, weight, and the store's columns)
    ra: np.ndarray
    dec: np.ndarray
    weight: np.ndarray
    source: str                  # 'store:<catalog>', a path, or 'table'
    query: dict                  # how it was obtained (for provenance)

    def checksum(self) -> str:
        """sha256 of the rows used: source ids (when known), positions at the epoch and weights."""
        h = hashlib.sha256()
        if "source_id" in self.table.colnames:
            h.update(np.ascontiguousarray(self.table["source_id"], dtype="<i8").tobytes())
        for a in (self.ra, self.dec, self.weight):
            h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
        return h.hexdigest()


def is_store_name(abs_refcat) -> bool:
    return isinstance(abs_refcat, str) and abs_refcat.strip().upper() in GAIA_NAMES


def resolve(abs_refcat, *, center: tuple[float, float], radius: float, epoch: float | None,
            observer: np.ndarray | None, store=None,
            centroid_error_mas: float = DEFAULT_CENTROID_ERROR_MAS) -> Reference:
    """Resolve ``abs_refcat`` to positions at ``epoch`` over the cone (``center``, ``radius`` deg)."""
    if is_store_name(abs_refcat):
        return _from_store(abs_refcat.strip().upper(), center, radius, epoch, observer, store, centroid_error_mas)
    if isinstance(abs_refcat, Table):
        table, source = abs_refcat, "table"
    elif isinstance(abs_refcat, (str, os.PathLike)):
        if not os.path.exists(os.fspath(abs_refcat)):
            raise ParameterError(f"abs_refcat {os.fspath(abs_refcat)!r} is neither a known catalog name "
                                 f"({', '.join(GAIA_NAMES)}) nor an existing file")
        table, source = read_table(abs_refcat, "reference catalog"), os.fspath(abs_refcat)
    else:
        raise ParameterError(f"abs_refcat must be a catalog name, a file path or a Table, got "
                             f"{type(abs_refcat).__name__}")
    ra, dec, w = reference_sources(table, f"reference catalog {source}")
    return Reference(table, ra, dec, w, source, {"kind": source if source == "table" else "file"})


def _from_store(name: str, center, radius, epoch, observer, store, centroid_error_mas) -> Reference:
    import astrodb

    if not (np.isfinite(centroid_error_mas) and centroid_error_mas > 0):
        raise ParameterError(f"centroid_error must be > 0 mas, got {centroid_error_mas!r}")
    if store is None or isinstance(store, str):
        store = astrodb.connect(store)
    catalog = GAIA_NAMES[name]
    try:
        info = store.catalog(catalog)
    except astrodb.CatalogNotFoundError:
        have = ", ".join(c.name for c in store.catalogs()) or "none"
        raise CatalogError(f"abs_refcat {name} needs the catalog {catalog!r} in the store {store.url} "
                           f"(load it with `astrodb ingest gaia --release {catalog[5:]} FILES`); "
                           f"catalogs there: {have}") from None
    t = store.cone(center[0], center[1], radius, catalog=catalog, epoch=epoch, observer=observer)
    ra, dec = np.asarray(t["ra"], float), np.asarray(t["dec"], float)
    if epoch is not None:
        e_ra, e_dec = (np.ma.filled(t[c], np.nan).astype(float) for c in ("ra_epoch_error", "dec_epoch_error"))
    else:
        e_ra, e_dec = (np.ma.filled(t[c], np.nan).astype(float) for c in ("ra_error", "dec_error"))
    sig2 = np.nan_to_num((e_ra ** 2 + e_dec ** 2) / 2.0, nan=0.0)
    # Relative weight: 1 for stars known much better than the image centroids, (c/sigma)^2 for
    # stars known worse (2-parameter sources years away from the catalog epoch).
    w = 1.0 / (1.0 + sig2 / centroid_error_mas ** 2)
    table = Table({"RA": ra, "DEC": dec, "weight": w, "source_id": t["source_id"],
                   "ra_error_at_epoch": np.sqrt(sig2), "mag": t["mag"], "propagated": t["propagated"]
                   if "propagated" in t.colnames else np.zeros(len(t), bool)},
                  meta={"catalog": catalog, "epoch": epoch, "store": str(store.url)})
    table["RA"].unit = table["DEC"].unit = "deg"
    table["ra_error_at_epoch"].unit = "mas"
    query = {"kind": "store", "store": str(store.url), "catalog": catalog, "name": name,
             "ra": float(center[0]), "dec": float(center[1]), "radius_deg": float(radius), "epoch": epoch,
             "observer_au": None if observer is None else [float(v) for v in observer],
             "rows": len(t), "catalog_rows": info.row_count, "centroid_error_mas": centroid_error_mas}
    return Reference(table, ra, dec, w, f"store:{catalog}", query)
