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

from astrodb.gaia_names import GAIA_NAMES, store_catalog  # stcal's Gaia names, as the store resolves them

from .catalogs import read_table, reference_sources
from .errors import CatalogError, ParameterError

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
    #: [[file, sha256], ...] the catalog was made of, when the recording store cannot tell (a
    #: catalog read through an astrodb service); None: the recording store reads them.
    files: list | None = None

    def checksum(self) -> str:
        """sha256 of the rows used: source ids (when known), positions at the epoch and weights."""
        h = hashlib.sha256()
        if "source_id" in self.table.colnames:
            h.update(np.ascontiguousarray(self.table["source_id"], dtype="<i8").tobytes())
        for a in (self.ra, self.dec, self.weight):
            h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
        return h.hexdigest()


def is_store_name(abs_refcat) -> bool:
    """True for the Gaia release names (GAIADR1/2/3, GAIAREFCAT, GAIADR3_S3)."""
    return isinstance(abs_refcat, str) and store_catalog(abs_refcat) is not None


def from_store(abs_refcat) -> bool:
    """True if ``abs_refcat`` names a store catalog: a Gaia release name, or a string that is
    not an existing file and not a path (no '/'): a catalog of that name in the store."""
    if not isinstance(abs_refcat, str) or not abs_refcat.strip():
        return False
    return is_store_name(abs_refcat) or not (os.path.exists(abs_refcat) or "/" in abs_refcat
                                             or os.sep in abs_refcat)


def resolve(abs_refcat, *, center: tuple[float, float], radius: float, epoch: float | None,
            observer: np.ndarray | None, store=None,
            centroid_error_mas: float = DEFAULT_CENTROID_ERROR_MAS) -> Reference:
    """Resolve ``abs_refcat`` to positions at ``epoch`` over the cone (``center``, ``radius`` deg).

    A string is, in this order: a Gaia release name, an existing file, a catalog of the store.
    """
    if is_store_name(abs_refcat):
        return _from_store(store_catalog(abs_refcat), abs_refcat.strip().upper(), center, radius,
                           epoch, observer, store, centroid_error_mas)
    if from_store(abs_refcat):
        return _from_store(abs_refcat.strip(), None, center, radius, epoch, observer, store, centroid_error_mas)
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
    what = f"reference catalog {source}"
    ra, dec, w = reference_sources(table, what, weights=False)
    w = _table_weights(table, what, centroid_error_mas)
    return Reference(table, ra, dec, w, source, {"kind": source if source == "table" else "file"})


def error_weights(e_ra: np.ndarray, e_dec: np.ndarray, centroid_error_mas: float) -> np.ndarray:
    """Relative weights of reference stars from their position errors (mas): 1 for stars known
    much better than the image centroids (``centroid_error_mas``), (c/sigma)^2 for those known
    worse (e.g. 2-parameter sources years from the catalog epoch); 1 where unknown."""
    sig2 = np.nan_to_num((np.asarray(e_ra, float) ** 2 + np.asarray(e_dec, float) ** 2) / 2.0, nan=0.0)
    return 1.0 / (1.0 + sig2 / centroid_error_mas ** 2)


def _table_weights(table: Table, what: str, centroid_error_mas: float) -> np.ndarray:
    """A file's or Table's weights: its ``weight`` column where given; where it is masked or
    NaN (a store query's rows of catalogs without weights), from the position errors at the
    epoch (``ra_epoch_error``/``dec_epoch_error``, else ``ra_error``/``dec_error``, mas), else 1."""
    n = len(table)
    if "weight" in table.colnames:
        col = table["weight"]
        given = np.ma.filled(np.ma.asarray(col, dtype=float), np.nan).astype(float)
        missing = np.isnan(given)
        bad = ~missing & ~(np.isfinite(given) & (given > 0))
        if bad.any():
            rows = np.nonzero(bad)[0][:5].tolist()
            raise CatalogError(f"{what}: column 'weight' must be > 0 and finite, or masked/NaN for weights from "
                               f"the position errors (rows {rows}, 0-based)")
    else:
        given, missing = np.ones(n), np.zeros(n, bool)
    if missing.any():
        cols = next(((a, b) for a, b in (("ra_epoch_error", "dec_epoch_error"), ("ra_error", "dec_error"))
                     if a in table.colnames and b in table.colnames), None)
        if cols is None:
            derived = np.ones(n)
        else:
            e = [np.ma.filled(np.ma.asarray(table[c], dtype=float), np.nan).astype(float) for c in cols]
            for k, c in enumerate(cols):
                unit = getattr(table[c], "unit", None)
                if unit is not None and str(unit) not in ("mas", ""):
                    e[k] = (e[k] * unit).to_value("mas")
            derived = error_weights(e[0], e[1], centroid_error_mas)
        given = np.where(missing, derived, given)
    return given


def missing_catalog(store, catalog: str, name: str | None, what: str) -> str:
    """Why ``catalog`` cannot be the reference: a Gaia release (asked for as ``name``) not
    loaded, or a name that is no release, file or catalog of ``store``; with the catalogs
    there. ``what``: how the caller calls the parameter."""
    have = ", ".join(c.name for c in store.catalogs()) or "none"
    if name is not None:
        return (f"{what} {name} needs the catalog {catalog!r} in the store {store.url} (load it with "
                f"`astrodb ingest gaia --release {catalog[5:]} FILES`); catalogs there: {have}")
    return (f"{what} {catalog!r} is not a Gaia release name ({', '.join(GAIA_NAMES)}), not an existing file, "
            f"and not a catalog in the store {store.url} (catalogs there: {have})")


def _from_store(catalog: str, name: str | None, center, radius, epoch, observer, store,
                centroid_error_mas) -> Reference:
    """The store's ``catalog`` over the cone at ``epoch`` (``name``: the Gaia name it was asked
    by, or None for a catalog named directly)."""
    import astrodb

    if not (np.isfinite(centroid_error_mas) and centroid_error_mas > 0):
        raise ParameterError(f"centroid_error must be > 0 mas, got {centroid_error_mas!r}")
    if store is None or isinstance(store, str):
        store = astrodb.connect(store)
    try:
        info = store.catalog(catalog)
    except astrodb.CatalogNotFoundError:
        raise CatalogError(missing_catalog(store, catalog, name, "abs_refcat")) from None
    t = store.cone(center[0], center[1], radius, catalog=catalog, epoch=epoch, observer=observer)
    ra, dec = np.asarray(t["ra"], float), np.asarray(t["dec"], float)
    if epoch is not None:
        e_ra, e_dec = (np.ma.filled(t[c], np.nan).astype(float) for c in ("ra_epoch_error", "dec_epoch_error"))
    else:
        e_ra, e_dec = (np.ma.filled(t[c], np.nan).astype(float) for c in ("ra_error", "dec_error"))
    w = error_weights(e_ra, e_dec, centroid_error_mas)
    if name is None and "weight" in t.colnames:
        # A user catalog's own weights where it has them.
        given = np.ma.filled(np.ma.asarray(t["weight"], dtype=float), np.nan).astype(float)
        w = np.where(np.isfinite(given) & (given > 0), given, w)
    sig = np.sqrt(np.nan_to_num((e_ra ** 2 + e_dec ** 2) / 2.0, nan=0.0))
    table = Table({"RA": ra, "DEC": dec, "weight": w, "source_id": t["source_id"],
                   "ra_error_at_epoch": sig, "mag": t["mag"], "propagated": t["propagated"]
                   if "propagated" in t.colnames else np.zeros(len(t), bool)},
                  meta={"catalog": catalog, "epoch": epoch, "store": str(store.url)})
    table["RA"].unit = table["DEC"].unit = "deg"
    table["ra_error_at_epoch"].unit = "mas"
    query = {"kind": "store", "store": str(store.url), "catalog": catalog, "name": name or catalog,
             "ra": float(center[0]), "dec": float(center[1]), "radius_deg": float(radius), "epoch": epoch,
             "observer_au": None if observer is None else [float(v) for v in observer],
             "rows": len(t), "catalog_rows": info.row_count, "centroid_error_mas": centroid_error_mas}
    files = None
    if getattr(store, "backend", None) == "http":  # the records go to another database
        files = [[f["path"], f["sha256"]] for f in info.files]
    return Reference(table, ra, dec, w, f"store:{catalog}", query, files)
