"""A search's result as plain numpy columns: what :meth:`astrodb.Store.search` returns, what
``Store.cone`` / ``Store.footprint`` turn into an astropy Table and the HTTP service renders
as text without one (a Table costs more than the rest of a small cone)."""
from __future__ import annotations

from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.table import Table

#: Output columns, their units and descriptions, in order.
OUTPUT_COLUMNS: dict[str, tuple[u.UnitBase | None, str]] = {
    "source_id": (None, "source identifier"),
    "ra": (u.deg, "right ascension (ICRS) at the query epoch"),
    "dec": (u.deg, "declination (ICRS) at the query epoch"),
    "distance": (u.deg, "angular distance from the cone centre / footprint centre"),
    "ra_error": (u.mas, "RA uncertainty times cos(dec) at ref_epoch"),
    "dec_error": (u.mas, "Dec uncertainty at ref_epoch"),
    "pmra": (u.mas / u.yr, "proper motion in RA times cos(dec)"),
    "pmra_error": (u.mas / u.yr, ""),
    "pmdec": (u.mas / u.yr, "proper motion in Dec"),
    "pmdec_error": (u.mas / u.yr, ""),
    "parallax": (u.mas, ""),
    "parallax_error": (u.mas, ""),
    "radial_velocity": (u.km / u.s, ""),
    "radial_velocity_error": (u.km / u.s, ""),
    "ref_epoch": (u.yr, "Julian year of the catalog position"),
    "mag": (u.mag, ""),
    "weight": (None, ""),
    "ra_epoch_error": (u.mas, "RA uncertainty times cos(dec) at the query epoch (pm errors, or the pm prior)"),
    "dec_epoch_error": (u.mas, "Dec uncertainty at the query epoch (pm errors, or the pm prior)"),
    "ra_ref": (u.deg, "right ascension at ref_epoch"),
    "dec_ref": (u.deg, "declination at ref_epoch"),
    "propagated": (None, "position moved to the query epoch (False: no proper motion known)"),
}


@dataclass
class SourceColumns:
    """Named columns of sources, sorted by distance; NaN where a float is missing.

    Attributes
    ----------
    names : list of str
        Column names in output order (units and descriptions: :data:`OUTPUT_COLUMNS`).
    data : dict of str to numpy.ndarray
        The columns, equal lengths.
    meta : dict
        What the search was (catalog, epoch, bounding cap), kept as the Table's ``meta``.
    """

    names: list[str]
    data: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.data[self.names[0]]) if self.names else 0

    def head(self, n: int) -> "SourceColumns":
        """The first (nearest) ``n`` rows."""
        return SourceColumns(self.names, {k: v[:n] for k, v in self.data.items()}, dict(self.meta))

    def unit(self, name: str) -> str | None:
        """The unit of column ``name`` as text (None: dimensionless or unknown)."""
        unit = OUTPUT_COLUMNS.get(name, (None, ""))[0]
        return None if unit is None else unit.to_string()

    def description(self, name: str) -> str:
        """The description of column ``name`` ('' if none)."""
        return OUTPUT_COLUMNS.get(name, (None, ""))[1]

    @classmethod
    def from_table(cls, table: Table) -> "SourceColumns":
        """The columns of a Table as ``Store.cone`` returns it (masked values become NaN)."""
        data = {}
        for n in table.colnames:
            c = table[n]
            v = np.ma.getdata(c)
            if np.ma.is_masked(c) and v.dtype.kind == "f":
                v = np.where(np.ma.getmaskarray(c), np.nan, v)
            data[n] = np.asarray(v)
        return cls(list(table.colnames), data, dict(table.meta))

    def to_table(self, meta: dict | None = None) -> Table:
        """An astropy Table with units and descriptions, masked where a value is missing.

        Parameters
        ----------
        meta : dict, optional
            The Table's ``meta`` (default: this result's).
        """
        arrays = []
        for n in self.names:
            v = self.data[n]
            missing = np.isnan(v) if v.dtype.kind == "f" else None
            # Masked only where something is missing (becomes a MaskedColumn).
            arrays.append(np.ma.MaskedArray(v, mask=missing) if missing is not None and missing.any() else v)
        # One Table call with names/units/descriptions: cheaper than building Columns first.
        return Table(arrays, names=self.names, units=[OUTPUT_COLUMNS[n][0] for n in self.names],
                     descriptions=[OUTPUT_COLUMNS[n][1] for n in self.names], copy=False,
                     meta=dict(self.meta) if meta is None else meta)
