"""Source and reference catalogs: reading, column conventions, bounding-box filtering."""
from __future__ import annotations

import os

import numpy as np
from astropy.table import Table

from .errors import CatalogError


def read_table(value, what: str) -> Table:
    """A Table, or a file any ``astropy.table.Table.read`` format can read."""
    if isinstance(value, Table):
        return value
    if isinstance(value, (str, os.PathLike)):
        try:
            return Table.read(os.fspath(value))
        except FileNotFoundError:
            raise CatalogError(f"{what} {os.fspath(value)!r}: no such file") from None
        except Exception as exc:  # noqa: BLE001 - astropy raises many kinds for unreadable files
            raise CatalogError(f"{what} {os.fspath(value)!r}: cannot read it ({exc})") from None
    raise CatalogError(f"{what} must be an astropy Table or a file path, got {type(value).__name__}")


def find_column(t: Table, name: str) -> str | None:
    """The column of ``t`` called ``name``, in that case or else in any case (None if absent)."""
    if name in t.colnames:
        return name
    return next((c for c in t.colnames if c.lower() == name.lower()), None)


def _column(t: Table, names: tuple[str, ...]):
    """The first of ``names`` in ``t``: upper-case (stcal's RA/DEC) first, then any case."""
    for n in names:
        if n.upper() in t.colnames:
            return n.upper()
    lower = {}
    for c in t.colnames:
        lower.setdefault(c.lower(), c)
    for n in names:
        if n in lower:
            return lower[n]
    return None


def _floats(t: Table, col: str, what: str) -> np.ndarray:
    try:
        v = np.ma.filled(np.ma.asarray(t[col], dtype=float), np.nan)
    except (TypeError, ValueError):
        sample = next((str(x) for x in np.asarray(t[col]).ravel()[:100] if not _is_number(x)), "?")
        raise CatalogError(f"{what}: column {col!r} must hold numbers, found {sample[:40]!r} "
                           f"(type {t[col].dtype})") from None
    return np.asarray(v, float)


def _is_number(x) -> bool:
    try:
        float(x)
    except (TypeError, ValueError):
        return False
    return True


def image_sources(catalog: Table, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, weight) of an image catalog: ``x``/``y`` or ``xcentroid``/``ycentroid`` (0-based
    pixels), optional ``weight`` (1 when absent). Rows with a non-finite position are dropped
    by the caller (see :func:`valid_rows`)."""
    xc = "x" if "x" in catalog.colnames else ("xcentroid" if "xcentroid" in catalog.colnames else None)
    yc = "y" if "y" in catalog.colnames else ("ycentroid" if "ycentroid" in catalog.colnames else None)
    if xc is None or yc is None:
        raise CatalogError(f"{what}: needs columns 'x' and 'y' or 'xcentroid' and 'ycentroid' "
                           f"(0-based pixels); has {catalog.colnames}")
    x, y = _floats(catalog, xc, what), _floats(catalog, yc, what)
    w = _weights(catalog, what)
    return x, y, w


def _weights(t: Table, what: str) -> np.ndarray:
    if "weight" not in t.colnames:
        return np.ones(len(t))
    w = _floats(t, "weight", what)
    bad = ~(np.isfinite(w) & (w > 0))
    if bad.any():
        rows = np.nonzero(bad)[0][:5].tolist()
        raise CatalogError(f"{what}: column 'weight' must be finite and > 0 (rows {rows}, 0-based)")
    return w


def reference_sources(catalog: Table, what: str, weights: bool = True
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(ra, dec, weight) of a reference catalog: ``RA``/``DEC`` in degrees (any case; a
    ``sky_centroid`` SkyCoord column also works), optional ``weight`` (None if not ``weights``)."""
    if "sky_centroid" in catalog.colnames and _column(catalog, ("ra",)) is None:
        sc = catalog["sky_centroid"].icrs
        ra, dec = np.asarray(sc.ra.deg, float), np.asarray(sc.dec.deg, float)
    else:
        rc, dc = _column(catalog, ("ra",)), _column(catalog, ("dec",))
        if rc is None or dc is None:
            raise CatalogError(f"{what}: needs columns 'RA' and 'DEC' (degrees); has {catalog.colnames}")
        ra, dec = _floats(catalog, rc, what), _floats(catalog, dc, what)
        for col, v in ((rc, ra), (dc, dec)):
            unit = getattr(catalog[col], "unit", None)
            if unit is not None and str(unit) not in ("deg", "degree", ""):
                v[:] = (v * unit).to_value("deg")
    bad = ~(np.isfinite(ra) & np.isfinite(dec)) | (np.abs(dec) > 90)
    if bad.any():
        rows = np.nonzero(bad)[0][:5].tolist()
        raise CatalogError(f"{what}: RA/DEC missing or out of range in rows {rows} (0-based)")
    return ra % 360.0, dec, (_weights(catalog, what) if weights else None)


def filter_catalog_by_bounding_box(catalog: Table, bounding_box) -> Table:
    """Return the rows of ``catalog`` whose (x, y) fall strictly inside ``bounding_box``.

    Parameters
    ----------
    catalog : Table
        With ``x``/``y`` (or ``xcentroid``/``ycentroid``) columns, 0-based pixels.
    bounding_box : ((xmin, xmax), (ymin, ymax)) or None
        None returns the catalog unchanged (as stcal).
    """
    if bounding_box is None:
        return catalog
    (xmin, xmax), (ymin, ymax) = bounding_box
    x, y, _ = image_sources(catalog, "catalog")
    return catalog[(x > xmin) & (x < xmax) & (y > ymin) & (y < ymax)]
