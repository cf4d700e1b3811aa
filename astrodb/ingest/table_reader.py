"""Read a user catalog (any format astropy.table.Table.read knows, or a Table) into the store's
column set: validated float64/int64 numpy arrays in the store's units.

Column names are matched case-insensitively against the aliases below; units present in the
table are honoured (converted), bare numbers are taken in the documented store units.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time

from .. import epoch as epochs
from .. import limits
from ..errors import IngestError

#: store column -> (unit, accepted input names, lower case, in order of preference)
ALIASES: dict[str, tuple[u.UnitBase, tuple[str, ...]]] = {
    "ra": (u.deg, ("ra", "ra_icrs", "raj2000", "ra_deg", "radeg")),
    "dec": (u.deg, ("dec", "de", "dec_icrs", "dej2000", "dec_deg", "dedeg")),
    "ra_error": (u.mas, ("ra_error", "e_ra", "ra_err", "era")),
    "dec_error": (u.mas, ("dec_error", "e_dec", "e_de", "dec_err", "edec")),
    "pmra": (u.mas / u.yr, ("pmra", "pm_ra", "pmra_cosdec", "pmrac")),
    "pmra_error": (u.mas / u.yr, ("pmra_error", "e_pmra", "pmra_err")),
    "pmdec": (u.mas / u.yr, ("pmdec", "pm_dec", "pmde")),
    "pmdec_error": (u.mas / u.yr, ("pmdec_error", "e_pmdec", "e_pmde", "pmdec_err")),
    "parallax": (u.mas, ("parallax", "plx")),
    "parallax_error": (u.mas, ("parallax_error", "e_plx", "plx_error", "parallax_err")),
    "radial_velocity": (u.km / u.s, ("radial_velocity", "rv", "rvel")),
    "radial_velocity_error": (u.km / u.s, ("radial_velocity_error", "e_rv", "rv_error")),
    "mag": (u.dimensionless_unscaled, ("mag", "phot_g_mean_mag", "gmag", "hpmag", "vmag")),
    "weight": (u.dimensionless_unscaled, ("weight",)),
}
EPOCH_NAMES = ("ref_epoch", "epoch")
ID_NAMES = ("source_id", "id", "objid", "hip")
ERROR_COLUMNS = ("ra_error", "dec_error", "pmra_error", "pmdec_error", "parallax_error",
                 "radial_velocity_error")


@dataclass
class CatalogRows:
    """A catalog ready for the store: one array per store column, plus where it came from."""

    source: str                      # file path, or "<table>"
    sha256: str                      # of the file's bytes, or of the normalized columns
    size: int | None                 # file size in bytes
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    ref_epoch: float | None = None   # the catalog's single epoch, when it has one

    def __len__(self) -> int:
        return len(self.columns["ra"])


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_columns(columns: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(columns):
        h.update(name.encode())
        h.update(np.ascontiguousarray(columns[name]).tobytes())
    return h.hexdigest()


def _find(table: Table, names: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in table.colnames}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def _bad_rows(mask: np.ndarray) -> np.ndarray:
    return np.nonzero(mask)[0]


def _as_float(table: Table, name: str, unit: u.UnitBase, source: str) -> np.ndarray:
    """Column ``name`` as float64 in ``unit`` with NaN where masked."""
    col = table[name]
    if col.dtype.kind not in "fiub":
        raise IngestError(f"expected numbers, found {col.dtype} values", source=source, column=name)
    col_unit = getattr(col, "unit", None)
    values = np.array(np.ma.getdata(col), dtype=np.float64)  # plain ndarray, unit dropped
    mask = np.ma.getmaskarray(col)
    if isinstance(col_unit, u.UnrecognizedUnit):
        raise IngestError(f"unit {col_unit.name!r} is not a unit astropy knows (expected {unit} or one "
                          "convertible to it)", source=source, column=name)
    if col_unit is not None and unit is not u.dimensionless_unscaled and col_unit != u.dimensionless_unscaled:
        try:
            values = (values * col_unit).to_value(unit)
        except (u.UnitConversionError, ValueError, TypeError):
            raise IngestError(f"unit {col_unit} cannot be converted to {unit}", source=source, column=name) from None
    values[mask] = np.nan
    return values


def _epochs(table: Table, epoch, source: str) -> tuple[np.ndarray, float | None]:
    n = len(table)
    name = _find(table, EPOCH_NAMES)
    if name is not None:
        col = table[name]
        if isinstance(col, Time):
            values = np.asarray(epochs.to_julian_year(col), float).reshape(-1)
        else:
            values = _as_float(table, name, u.yr, source)
        bad = ~np.isfinite(values)
        if bad.any():
            if epoch is None:
                raise IngestError("missing epoch (and no catalog epoch given)", source=source,
                                  column=name, rows=_bad_rows(bad))
            values[bad] = _julian_year(epoch, source)
        wrong = limits.bad_epochs(values)
        if wrong.any():
            lo, hi = limits.EPOCH_RANGE
            raise IngestError(f"epoch outside {lo:g}-{hi:g} (Julian years)", source=source, column=name,
                              rows=_bad_rows(wrong))
        single = float(values[0]) if n and np.all(values == values[0]) else None
        return values, single
    if epoch is None:
        raise IngestError("no epoch: give the catalog's epoch (--epoch 2016.0 / epoch=...) or an "
                          f"epoch column named one of {EPOCH_NAMES}", source=source)
    e = _julian_year(epoch, source)
    return np.full(n, e), e


def _julian_year(epoch, source: str) -> float:
    """The catalog epoch as a Julian year, parsed as query epochs are (astrodb.epoch.to_julian_year)."""
    try:
        out = float(epochs.to_julian_year(epoch))
    except (TypeError, ValueError):
        raise IngestError(f"epoch {epoch!r} is neither a Julian year (2016.0, J2016) nor an ISO time",
                          source=source) from None
    problem = limits.epoch_problem(out)
    if problem:
        raise IngestError(f"epoch {problem}", source=source)
    return out


def _ids(table: Table, id_column: str | None, source: str) -> np.ndarray:
    n = len(table)
    name = id_column if id_column is not None else _find(table, ID_NAMES)
    if id_column is not None and id_column not in table.colnames:
        raise IngestError(f"id column {id_column!r} not found; columns are {table.colnames}", source=source)
    if name is None:
        return np.arange(1, n + 1, dtype=np.int64)  # row numbers, 1-based
    col = table[name]
    if col.dtype.kind not in "iu":
        raise IngestError(f"source ids must be integers, found {col.dtype}", source=source, column=name)
    masked = np.ma.getmaskarray(col)
    if masked.any():
        raise IngestError("missing source id", source=source, column=name, rows=_bad_rows(masked))
    ids = np.array(np.ma.getdata(col), dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    dup = np.zeros(n, bool)
    same = ids[order][1:] == ids[order][:-1]
    dup[order[1:][same]] = True
    dup[order[:-1][same]] = True  # report every row sharing the id, not only the later ones
    if dup.any():
        raise IngestError("duplicate source id", source=source, column=name, rows=_bad_rows(dup))
    return ids


def read_catalog(source, *, epoch=None, id_column: str | None = None, format: str | None = None) -> CatalogRows:
    """Read and validate a user catalog.

    Parameters
    ----------
    source : str, os.PathLike or astropy.table.Table
        A file astropy's ``Table.read`` understands (ECSV, FITS, VOTable, CSV, ...) or a Table.
    epoch : float, str or astropy.time.Time, optional
        The catalog's epoch (Julian year, e.g. 2016.0 or "J2016.0", or a time). Required unless
        the table has a ``ref_epoch``/``epoch`` column; fills that column's missing values.
    id_column : str, optional
        Integer column holding unique source ids; default the first of source_id, id, objid,
        hip (any case), else 1-based row numbers.
    format : str, optional
        Passed to ``Table.read`` when the file's extension does not tell.

    Returns
    -------
    CatalogRows

    Raises
    ------
    IngestError
        Naming the file, column and rows: unreadable file, no position columns, non-numeric or
        missing positions, |dec| > 90, negative errors, non-positive weights, duplicate ids.
    """
    if isinstance(source, Table):
        table, name, size, sha = source, "<table>", None, None
    else:
        path = Path(os.fspath(source))
        name = str(path)
        if not path.is_file():
            raise IngestError("no such file", source=name)
        try:
            table = Table.read(path, format=format) if format else Table.read(path)
        except Exception as exc:  # noqa: BLE001 - astropy raises many kinds; all mean "cannot read this"
            # First line only: astropy appends a table of every format it knows (56 lines).
            first = (str(exc).strip().splitlines() or [""])[0].rstrip(":. ")
            hint = "; give the format (--format, e.g. ascii.csv)" if "format" in first.lower() else ""
            raise IngestError(f"cannot read as a table ({type(exc).__name__}: {first}{hint})", source=name) from None
        size, sha = path.stat().st_size, sha256_file(path)
    if len(table) == 0:
        raise IngestError(f"no rows (only a header; columns {table.colnames}): nothing to ingest", source=name)

    cols: dict[str, np.ndarray] = {}
    ra_name, dec_name = _find(table, ALIASES["ra"][1]), _find(table, ALIASES["dec"][1])
    sky_name = next((c for c in table.colnames if isinstance(table[c], SkyCoord)), None)
    if ra_name and dec_name:
        cols["ra"] = _as_float(table, ra_name, u.deg, name)
        cols["dec"] = _as_float(table, dec_name, u.deg, name)
    elif sky_name:
        icrs = table[sky_name].icrs
        ra_name = dec_name = sky_name
        cols["ra"] = np.asarray(icrs.ra.deg, float)
        cols["dec"] = np.asarray(icrs.dec.deg, float)
    else:
        raise IngestError(
            f"no position columns: expected RA/DEC in degrees (any case; also {ALIASES['ra'][1]} / "
            f"{ALIASES['dec'][1]}) or a SkyCoord column such as sky_centroid; columns are {table.colnames}",
            source=name)
    for key, col in (("ra", ra_name), ("dec", dec_name)):
        bad = ~np.isfinite(cols[key])
        if bad.any():
            raise IngestError("missing or non-finite position", source=name, column=col, rows=_bad_rows(bad))
    bad = np.abs(cols["dec"]) > 90.0
    if bad.any():
        raise IngestError("declination outside [-90, 90] deg", source=name, column=dec_name, rows=_bad_rows(bad))
    bad = limits.bad_ra(cols["ra"])
    if bad.any():
        lo, hi = limits.RA_RANGE
        raise IngestError(f"right ascension outside [{lo:g}, {hi:g}] deg (values in between are wrapped into "
                          "[0, 360)): not degrees?", source=name, column=ra_name, rows=_bad_rows(bad))
    cols["ra"] = limits.wrap_ra(cols["ra"])

    for key, (unit, names) in ALIASES.items():
        if key in ("ra", "dec"):
            continue
        col = _find(table, names)
        cols[key] = _as_float(table, col, unit, name) if col else np.full(len(table), np.nan)
        if col and key in ERROR_COLUMNS:
            bad = cols[key] < 0
            if bad.any():
                raise IngestError("negative uncertainty", source=name, column=col, rows=_bad_rows(bad))
        if col and key == "weight":
            bad = ~(cols[key] > 0) & ~np.isnan(cols[key])
            if bad.any():
                raise IngestError("weights must be positive", source=name, column=col, rows=_bad_rows(bad))
        if col and key in ("pmra", "pmdec"):
            bad = np.abs(cols[key]) > limits.MAX_PM
            if bad.any():
                raise IngestError(f"proper motion above {limits.MAX_PM / 1000:g}\"/yr (ten times Barnard's star): "
                                  "not mas/yr?", source=name, column=col, rows=_bad_rows(bad))
        if col and key == "parallax":
            bad = cols[key] > limits.MAX_PARALLAX
            if bad.any():
                raise IngestError(f"parallax above {limits.MAX_PARALLAX / 1000:g}\" (no star is that near): "
                                  "not mas?", source=name, column=col, rows=_bad_rows(bad))
    cols["ref_epoch"], single = _epochs(table, epoch, name)
    cols["source_id"] = _ids(table, id_column, name)
    if sha is None:
        sha = _sha256_columns(cols)
    return CatalogRows(source=name, sha256=sha, size=size, columns=cols, ref_epoch=single)
