"""Which sources and reference stars take part: the brightest image sources, a magnitude range
and the brightest stars of the reference (jwst users' request: magnitude filtering of the
reference catalog, spacetelescope/jwst#7124).

Defaults select everything, so calls that do not ask for a selection are unchanged.
"""
from __future__ import annotations

import math

import numpy as np
from astropy.table import Table

from .catalogs import find_column
from .errors import CatalogError, ParameterError


def check(brightest, flux_column, abs_brightest=None, abs_mag_min=None, abs_mag_max=None,
          abs_mag_column="mag") -> None:
    """Raise :class:`~aligner.errors.ParameterError` for a selection parameter out of range."""
    for name, n in (("brightest", brightest), ("abs_brightest", abs_brightest)):
        if n is not None and not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1):
            raise ParameterError(f"{name} must be None (every source) or an integer >= 1, got {n!r}")
    for name, col in (("flux_column", flux_column), ("abs_mag_column", abs_mag_column)):
        if not (isinstance(col, str) and col.strip()):
            raise ParameterError(f"{name} must be a column name, got {col!r}")
    for name, m in (("abs_mag_min", abs_mag_min), ("abs_mag_max", abs_mag_max)):
        ok = m is None or (isinstance(m, (int, float, np.integer, np.floating)) and not isinstance(m, bool)
                           and math.isfinite(m))
        if not ok:
            raise ParameterError(f"{name} must be None (no limit) or a finite magnitude, got {m!r}")
    if abs_mag_min is not None and abs_mag_max is not None and abs_mag_min > abs_mag_max:
        raise ParameterError(f"abs_mag_min ({abs_mag_min}) must not exceed abs_mag_max ({abs_mag_max}): "
                             "magnitudes, the brightest limit first")


def brightest_sources(catalog: Table, rows: np.ndarray, n: int | None, flux_column: str, what: str) -> np.ndarray:
    """Of ``rows`` of an image ``catalog``, those of the ``n`` largest ``flux_column`` values
    (all with ``n`` None; sources without a finite flux count as faintest), in their order."""
    if n is None or len(rows) <= n:
        return rows
    flux = _values(catalog, flux_column, rows, f"{what}: brightest={n} needs a flux column {flux_column!r} "
                   "(flux_column=)")
    return _first(rows, -flux, n)


def _values(table: Table, name: str, rows: np.ndarray, missing: str) -> np.ndarray:
    """Column ``name`` (any case) of ``table`` at ``rows`` as floats (masked: NaN); the error
    ``missing`` (with the columns there) when there is none."""
    col = find_column(table, name)
    if col is None:
        raise CatalogError(f"{missing}; has {table.colnames}")
    return np.ma.filled(np.ma.asarray(table[col], dtype=float), np.nan).astype(float)[rows]


def _first(idx: np.ndarray, key: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` of ``idx`` with the smallest ``key`` (non-finite last), in their order."""
    key = np.where(np.isfinite(key), key, np.inf)
    return np.sort(idx[np.argsort(key, kind="stable")[:n]])


def reference_stars(table: Table, idx: np.ndarray, *, mag_min: float | None, mag_max: float | None,
                    brightest: int | None, mag_column: str, what: str) -> np.ndarray:
    """Of the reference rows ``idx``, those with ``mag_min <= mag <= mag_max`` (stars without a
    magnitude are left out by a limit), then the ``brightest`` of them, in their order."""
    if mag_min is None and mag_max is None and (brightest is None or len(idx) <= brightest):
        return idx
    mag = _values(table, mag_column, idx, f"{what}: a magnitude selection (abs_mag_min/abs_mag_max/"
                  f"abs_brightest) needs the column {mag_column!r} (abs_mag_column=)")
    keep = np.ones(len(idx), bool)
    if mag_min is not None:
        keep &= mag >= mag_min
    if mag_max is not None:
        keep &= mag <= mag_max
    idx, mag = idx[keep], mag[keep]
    if brightest is not None and len(idx) > brightest:
        idx = _first(idx, mag, brightest)
    return idx
