"""Query results as plain numpy columns, and the service's cone search without astropy Tables.

:func:`cone_rows` is ``Store.cone`` — the same pre-filter query (``search.fetch_cap`` with
``prefilter_radius``), propagation, exact cut, ordering and epoch errors, step for step as
``astrodb.query.search.search`` — minus the astropy Table, which costs more than everything
else for a small cone (about half of ``Store.cone`` at 6′). The tests compare the two on both
backends. Footprints go through ``Store.footprint`` and :meth:`Rows.from_table`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from .. import epoch as epochs
from ..errors import QueryError
from ..query.regions import Cone, separation_deg
from ..query.search import (_DB_COLUMNS, _FETCHED, _PG_CAP_SQL, OUTPUT_COLUMNS, POSTGIS_SPHERE_RADIUS_M,
                            CatalogStats, fetch_cap, prefilter_radius)

# PostgreSQL, no epoch: the pre-filter needs the catalog's id only (its radius does not depend
# on the motion statistics), so one statement finds both and a round trip is saved. Empty
# when search.py's statement changes shape (then the two-statement path is used).
_PG_BY_NAME_SQL = _PG_CAP_SQL.replace("catalog_id = %s", "catalog_id = (SELECT id FROM catalogs WHERE name = %s)")
if _PG_BY_NAME_SQL == _PG_CAP_SQL or _PG_CAP_SQL.count("%s") != 4:
    _PG_BY_NAME_SQL = ""
_STATIC = CatalogStats(0, "", 0.0, 0.0, 0.0, None, None)   # a catalog whose sources never move


@dataclass
class Rows:
    """Named columns (NaN where a float is missing), sorted by distance."""

    names: list[str]
    data: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.data[self.names[0]]) if self.names else 0

    def head(self, n: int) -> "Rows":
        return Rows(self.names, {k: v[:n] for k, v in self.data.items()})

    def unit(self, name: str) -> str | None:
        unit = OUTPUT_COLUMNS.get(name, (None, ""))[0]
        return None if unit is None else unit.to_string()

    def description(self, name: str) -> str:
        return OUTPUT_COLUMNS.get(name, (None, ""))[1]

    @classmethod
    def from_table(cls, table: Table) -> "Rows":
        data = {}
        for n in table.colnames:
            c = table[n]
            v = np.ma.getdata(c)
            if np.ma.is_masked(c) and v.dtype.kind == "f":
                v = np.where(np.ma.getmaskarray(c), np.nan, v)
            data[n] = np.asarray(v)
        return cls(list(table.colnames), data)

    def to_table(self, meta: dict | None = None) -> Table:
        """As ``Store.cone`` returns it: units, descriptions, masked where missing."""
        arrays = []
        for n in self.names:
            v = self.data[n]
            missing = np.isnan(v) if v.dtype.kind == "f" else None
            arrays.append(np.ma.MaskedArray(v, mask=missing) if missing is not None and missing.any() else v)
        return Table(arrays, names=self.names, units=[OUTPUT_COLUMNS[n][0] for n in self.names],
                     descriptions=[OUTPUT_COLUMNS[n][1] for n in self.names], meta=meta or {})


def cone_rows(store, catalog: str, ra: float, dec: float, radius: float, *, epoch: float | None,
              columns=None, pm_prior: float = epochs.DEFAULT_PM_PRIOR) -> Rows:
    """``store.cone(ra, dec, radius, catalog=catalog, epoch=epoch, columns=columns,
    pm_prior=pm_prior)`` as :class:`Rows` (``epoch``: a Julian year or None)."""
    store._require_schema()
    region = Cone.create(ra, dec, radius)
    cra, cdec, crad = region.cap
    with store._reader.connect() as conn:
        if epoch is None and _PG_BY_NAME_SQL and conn.dialect.name == "postgresql":
            data = _fetch_cap_by_name(conn, catalog, cra, cdec, prefilter_radius(_STATIC, crad, None, None))
            if data is None:              # no row: an empty cone, or no such catalog?
                store._stats(conn, catalog)    # CatalogNotFoundError for the latter
                data = {name: np.empty(0, np.int64 if name == "source_id" else float) for name in _FETCHED}
        else:
            stats = store._stats(conn, catalog)
            data = fetch_cap(conn, stats, cra, cdec, prefilter_radius(stats, crad, epoch, None))
    ra_, dec_ = data["ra"], data["dec"]
    moved = np.zeros(len(ra_), dtype=bool)
    if epoch is not None:
        p = epochs.propagate(ra_, dec_, data["pmra"], data["pmdec"], data["parallax"],
                             data["radial_velocity"], data["ref_epoch"], epoch, observer=None)
        ra_, dec_, moved = p.ra, p.dec, p.moved
    keep = region.contains(ra_, dec_)
    dist = separation_deg(cra, cdec, ra_[keep], dec_[keep])
    order = np.argsort(dist, kind="stable")
    sel = np.nonzero(keep)[0][order]
    values = {name: data[name][sel] for name in _DB_COLUMNS}
    values["ra"], values["dec"], values["distance"] = ra_[sel], dec_[sel], dist[order]
    if epoch is not None:
        values["ra_ref"], values["dec_ref"], values["propagated"] = data["ra"][sel], data["dec"][sel], moved[sel]
        has_pm = ~(np.isnan(values["pmra"]) | np.isnan(values["pmdec"]))
        values["ra_epoch_error"], values["dec_epoch_error"] = epochs.position_errors(
            values["ra_error"], values["dec_error"], values["pmra_error"], values["pmdec_error"],
            epoch - values["ref_epoch"], has_pm=has_pm, ra_pmra_corr=data["ra_pmra_corr"][sel],
            dec_pmdec_corr=data["dec_pmdec_corr"][sel], pm_prior=pm_prior)
    names = [n for n in OUTPUT_COLUMNS if n in values]
    if columns is not None:
        wanted = list(columns)
        unknown = [c for c in wanted if c not in values]
        if unknown:
            raise QueryError(f"unknown column(s) {unknown}; available: {names}")
        names = wanted + (["distance"] if "distance" not in wanted else [])
    return Rows(names, {n: values[n] for n in names})


def _fetch_cap_by_name(conn, catalog: str, ra: float, dec: float, radius: float):
    """``search.fetch_cap`` on PostgreSQL with the catalog given by name; None when no row."""
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(_PG_BY_NAME_SQL, (catalog, ra - 180.0, dec, math.radians(radius) * POSTGIS_SPHERE_RADIUS_M))
        rows = cur.fetchall()
    finally:
        cur.close()
    if not rows:
        return None
    values = np.array(rows, dtype=float)  # None -> NaN
    out = {"source_id": np.fromiter((r[0] for r in rows), np.int64, len(rows))}
    for j, name in enumerate(_FETCHED[1:], start=1):
        out[name] = values[:, j]
    return out
