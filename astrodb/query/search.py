"""Region searches: an index pre-filter in the database (one query per region), then the exact
cut in numpy on positions propagated to the requested epoch.

The pre-filter radius is the region's bounding cap widened by the largest displacement any of
the catalog's sources can have between its reference epoch and the requested one
(:func:`astrodb.epoch.displacement_bound` from the catalog's motion statistics), so fast movers
are never missed; the exact cut then keeps precisely what a brute-force selection would.

Both backends pre-filter with nested HEALPix order-29 ranges on the (catalog_id, hpx29) index,
one range scan each: PostgreSQL with the exact cover its SQL function ``astrodb._hpx_ranges``
computes (the one the SQL ``astrodb.cone`` reads), SQLite with :func:`astrodb.query.healpix.cone_ranges`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from astropy.table import Table

from .. import epoch as epochs
from .. import limits
from ..errors import QueryError
from ..store.schema import SOURCE_FLOAT_COLUMNS
from .columns import OUTPUT_COLUMNS, SourceColumns
from .healpix import cone_ranges
from .regions import separation_deg

# Float slack between the database's and numpy's distances; the exact cut happens in numpy.
_PAD_DEG = 1e-7

_DB_COLUMNS = ("source_id", *SOURCE_FLOAT_COLUMNS)
# Fetched for the position errors at the query epoch, not returned (NULL outside Gaia catalogs).
_FETCHED = (*_DB_COLUMNS, "ra_pmra_corr", "dec_pmdec_corr")
#: The columns a pre-filter fetches, in the order of :func:`fetched_columns`'s rows.
FETCHED_COLUMNS = _FETCHED


@dataclass(frozen=True)
class CatalogStats:
    """What a search needs to know of a catalog."""

    id: int
    name: str
    pm_max: float
    radial_rate_max: float
    parallax_max: float
    epoch_min: float | None
    epoch_max: float | None
    #: Loaded for a region (:mod:`astrodb.query.region_limits`): queries are checked against it.
    limited: bool = False
    #: Sharded (:mod:`astrodb.shard`): its map's version; None: its rows are on this server.
    shard_version: int | None = None


def query_epoch(epoch, what: str = "epoch") -> float | None:
    """A query's ``epoch`` (Julian year, 'J2030', ISO time, astropy Time or None) as a Julian
    year within the store's epochs (:func:`astrodb.limits.epoch_problem`); QueryError naming
    ``what`` otherwise."""
    if epoch is None:
        return None
    try:
        jy = float(epochs.to_julian_year(epoch))
    except (ValueError, TypeError):
        raise QueryError(f"{what} must be a Julian year (2030.0), 'J2030' or an ISO time, got {epoch!r}") from None
    problem = limits.epoch_problem(jy)
    if problem:
        raise QueryError(f"{what} {problem}")
    return jy


def prefilter_radius(stats: CatalogStats, radius_deg: float, epoch: float | None,
                     observer: np.ndarray | None) -> float:
    """Cap radius widened by the largest displacement of any source of the catalog at ``epoch``."""
    widen = 0.0
    if epoch is not None and stats.epoch_min is not None:
        dt = max(abs(epoch - stats.epoch_min), abs(epoch - stats.epoch_max))
        obs = 0.0 if observer is None else float(np.linalg.norm(observer))
        widen = epochs.displacement_bound(stats.pm_max, stats.radial_rate_max, dt,
                                          parallax_max=stats.parallax_max, observer_distance=obs)
    return min(radius_deg + widen + _PAD_DEG, 180.0)


# The pre-filter runs as plain driver SQL: SQLAlchemy's statement compilation cost more than
# the query itself (measured on 1 M rows in SQLite: 0.06 ms query, ~3 ms compile + fetch).
_SELECT = ", ".join(_FETCHED)


def _sqlite_cap_sql(nranges: int) -> str:
    # A CTE, since SQLite has no VALUES column aliases; the planner loops over the ranges and
    # seeks the (catalog_id, hpx29) index once per range.
    values = ", ".join(["(?, ?)"] * nranges)
    return (f"WITH r(lo, hi) AS (VALUES {values}) SELECT {_SELECT} FROM r JOIN sources "
            "ON sources.catalog_id = ? AND sources.hpx29 BETWEEN r.lo AND r.hi")


# PostgreSQL: the server packs the rows into fixed-width binary records (int8send/float8send,
# NULL -> NaN) concatenated by string_agg, so the client gets a few bytea values and reads them
# as one numpy structured array. Measured on 75k rows (32 images x 10k sources' reference):
# 113 ms wall and 9 ms of client CPU, against 285 ms and 282 ms of client CPU for binary COPY
# (psycopg reads a COPY one row message at a time, in Python, holding the GIL that the aligner's
# other thread needs) and more for fetchall + tuples; 51 rows 0.27 ms (COPY 0.40). The records
# are grouped by order-8 HEALPix cell (hpx29 >> 42, 0.05 deg^2): each bytea stays far below
# PostgreSQL's 1 GB limit even at Gaia's densest (~60k rows, 8 MB a cell), at ~20 % more server
# time than one group. tests/astrodb/query/test_search.py checks every value.
_PG_RECORD = ("int8send(source_id) || "
              + " || ".join(f"float8send(COALESCE({c}, 'NaN'::float8))" for c in _FETCHED[1:]))


def _pg_cap_records_sql(catalog: str) -> str:
    # LATERAL: one index range scan per HEALPix range whatever the statistics say (measured: a
    # plain join on a Gaia partition not yet analyzed read all of it, 1.7 s instead of ~1 ms).
    # The catalog goes to the cover too: its density map sets the cover's order (astrodb._cover_order).
    return (f"SELECT string_agg({_PG_RECORD}, ''::bytea) FROM astrodb._hpx_ranges(%s, %s, %s, {catalog}) r "
            f"CROSS JOIN LATERAL (SELECT * FROM sources WHERE sources.catalog_id = {catalog} "
            "AND sources.hpx29 BETWEEN r.lo AND r.hi OFFSET 0) sources GROUP BY sources.hpx29 >> 42")


_PG_CAP_RECORDS_SQL = _pg_cap_records_sql("%s")
# The catalog by name: one round trip less where its statistics are not needed (the service).
# A catalog limited to a region (CatalogStats.limited) gives no rows here: its queries take the
# checked way.
_PG_CAP_RECORDS_BY_NAME_SQL = _pg_cap_records_sql(
    "(SELECT id FROM catalogs WHERE name = %s AND (NOT EXISTS (SELECT 1 FROM catalog_regions r "
    "WHERE r.catalog_id = catalogs.id) OR EXISTS (SELECT 1 FROM catalog_regions r WHERE r.catalog_id = "
    "catalogs.id AND r.full_sky AND r.complete)))")
_PG_RECORD_DTYPE = np.dtype([("source_id", ">i8")] + [(name, ">f8") for name in _FETCHED[1:]])


#: The binary record of one row of ``sources`` (alias ``sources``), for ``string_agg``; see
#: :func:`record_columns`.
PG_RECORD_SQL = _PG_RECORD


def fetch_records(dbapi_conn, sql: str, params: tuple) -> bytes:
    """Run a query of ``string_agg``-ed :data:`PG_RECORD_SQL` records; its bytes, concatenated."""
    cur = dbapi_conn.cursor(binary=True)
    try:
        cur.execute(sql, params)
        return b"".join(bytes(part) for (part,) in cur.fetchall() if part is not None)
    finally:
        cur.close()


def _pg_record_columns(dbapi_conn, params: tuple, sql: str = _PG_CAP_RECORDS_SQL) -> dict[str, np.ndarray]:
    """Run the PostgreSQL cap query as binary records; its rows as numpy columns."""
    return record_columns(fetch_records(dbapi_conn, sql, params))


def record_columns(data: bytes) -> dict[str, np.ndarray]:
    """Concatenated :data:`PG_RECORD_SQL` records as numpy columns."""
    if len(data) % _PG_RECORD_DTYPE.itemsize:
        raise QueryError(f"unexpected binary records from PostgreSQL ({len(data)} bytes, not a multiple of "
                         f"{_PG_RECORD_DTYPE.itemsize})")
    rows = np.frombuffer(data, dtype=_PG_RECORD_DTYPE)
    return {name: rows[name].astype(np.int64 if name == "source_id" else float) for name in _FETCHED}


def fetch_cap(conn: sa.Connection, stats: CatalogStats, ra: float, dec: float, radius: float) -> dict[str, np.ndarray]:
    """Return the catalog's rows whose stored position is within ``radius`` deg of (ra, dec),
    possibly with a few more (the index cells' margins), as numpy columns."""
    if conn.dialect.name == "postgresql":
        return _pg_record_columns(conn.connection.dbapi_connection, (ra, dec, radius, stats.id, stats.id))
    ranges = cone_ranges(ra, dec, radius)
    sql, params = _sqlite_cap_sql(len(ranges)), (*ranges.ravel().tolist(), stats.id)
    # The DBAPI cursor gives plain tuples: numpy converts SQLAlchemy Row objects ~25x slower
    # (measured: 3 000 rows, 105 ms as Rows, 4 ms as tuples).
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql, params)
        rows = cur.fetchall()
    finally:
        cur.close()
    return fetched_columns(rows)


def fetch_cap_by_name(conn: sa.Connection, catalog: str, ra: float, dec: float, radius: float) -> dict[str, np.ndarray]:
    """:func:`fetch_cap` on PostgreSQL with the catalog given by name (no rows for an unknown
    name), for a query whose radius does not depend on the catalog's motion statistics: one
    round trip instead of two (the catalog lookup and the pre-filter in one statement)."""
    return _pg_record_columns(conn.connection.dbapi_connection, (ra, dec, radius, catalog, catalog),
                              _PG_CAP_RECORDS_BY_NAME_SQL)


def fetched_columns(rows: list[tuple]) -> dict[str, np.ndarray]:
    """The DBAPI rows of a cap query (columns ``_FETCHED``) as numpy columns."""
    if not rows:
        return {name: np.empty(0, np.int64 if name == "source_id" else float) for name in _FETCHED}
    values = np.array(rows, dtype=float)  # None -> NaN
    out = {"source_id": np.fromiter((r[0] for r in rows), np.int64, len(rows))}  # exact int64 ids
    for j, name in enumerate(_FETCHED[1:], start=1):
        out[name] = values[:, j]
    return out


def select(data: dict[str, np.ndarray], region, *, epoch: float | None, observer: np.ndarray | None,
           columns=None, pm_prior: float = epochs.DEFAULT_PM_PRIOR) -> tuple[list[str], dict[str, np.ndarray]]:
    """The pre-filtered rows ``data`` (from :func:`fetch_cap`) moved to ``epoch``, cut exactly to
    ``region`` and sorted by distance from its centre: (column names, columns).

    With an epoch, ``ra_epoch_error``/``dec_epoch_error`` are the position errors then
    (:func:`astrodb.epoch.position_errors`). The one place this logic lives: :func:`search`
    makes a Table of it, the HTTP service (``astrodb.service.rows``) plain arrays.
    """
    cra, cdec, _ = region.cap
    ra, dec, moved = _positions(data, epoch, observer)
    keep = region.contains(ra, dec)
    dist = separation_deg(cra, cdec, ra[keep], dec[keep])
    order = np.argsort(dist, kind="stable")
    sel = np.nonzero(keep)[0][order]
    values = _epoch_values({name: data[name][sel] for name in _FETCHED}, ra[sel], dec[sel],
                           None if moved is None else moved[sel], epoch, pm_prior)
    values["distance"] = dist[order]
    names = [n for n in OUTPUT_COLUMNS if n in values]
    if columns is not None:
        wanted = list(columns)
        unknown = [c for c in wanted if c not in values]
        if unknown:
            raise QueryError(f"unknown column(s) {unknown}; available: {names}")
        names = wanted + (["distance"] if "distance" not in wanted else [])
    return names, {n: values[n] for n in names}


def _positions(data: dict[str, np.ndarray], epoch: float | None,
               observer: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(ra, dec, moved) of fetched rows at ``epoch``; the stored positions and None without one."""
    if epoch is None:
        return data["ra"], data["dec"], None
    p = epochs.propagate(data["ra"], data["dec"], data["pmra"], data["pmdec"], data["parallax"],
                         data["radial_velocity"], data["ref_epoch"], epoch, observer=observer)
    return p.ra, p.dec, p.moved


def _epoch_values(data: dict[str, np.ndarray], ra: np.ndarray, dec: np.ndarray, moved: np.ndarray | None,
                  epoch: float | None, pm_prior: float) -> dict[str, np.ndarray]:
    """The output columns (all but ``distance``) of fetched rows whose positions at ``epoch`` are
    (ra, dec): the stored ones become ``ra_ref``/``dec_ref``, the errors those at ``epoch``."""
    values = {name: data[name] for name in _DB_COLUMNS}
    values["ra"], values["dec"] = ra, dec
    if epoch is not None:
        values["ra_ref"], values["dec_ref"], values["propagated"] = data["ra"], data["dec"], moved
        has_pm = ~(np.isnan(values["pmra"]) | np.isnan(values["pmdec"]))
        values["ra_epoch_error"], values["dec_epoch_error"] = epochs.position_errors(
            values["ra_error"], values["dec_error"], values["pmra_error"], values["pmdec_error"],
            epoch - values["ref_epoch"], has_pm=has_pm, ra_pmra_corr=data["ra_pmra_corr"],
            dec_pmdec_corr=data["dec_pmdec_corr"], pm_prior=pm_prior)
    return values


def at_epoch(data: dict[str, np.ndarray], epoch: float | None, *,
             pm_prior: float = epochs.DEFAULT_PM_PRIOR) -> dict[str, np.ndarray]:
    """Fetched rows (from :func:`fetch_cap` or :func:`record_columns`) at ``epoch``, in their order,
    with no cut: every output column of :func:`select` but ``distance``.

    Parameters
    ----------
    data : dict of str to numpy.ndarray
        The fetched columns.
    epoch : float or None
        Julian year (None: the stored positions).
    pm_prior : float
        As for :func:`select`.
    """
    ra, dec, moved = _positions(data, epoch, None)
    return _epoch_values(data, ra, dec, moved, epoch, pm_prior)


def search_columns(conn: sa.Connection, stats: CatalogStats, region, *, epoch: float | None = None,
                   observer: np.ndarray | None = None, columns=None,
                   pm_prior: float = epochs.DEFAULT_PM_PRIOR, fetch=None) -> SourceColumns:
    """Return the catalog's sources inside ``region`` at ``epoch`` as columns sorted by distance.

    ``region`` has ``cap`` (ra, dec, radius) and ``contains(ra, dec)``; see
    :mod:`astrodb.query.regions`. ``epoch`` is a Julian year (None: each source at its
    reference epoch, as stored). ``observer`` is the observer's barycentric position (AU) for
    the annual-parallax shift. ``columns`` selects output columns (default: all). With an
    epoch, ``ra_epoch_error``/``dec_epoch_error`` are the position errors at that epoch
    (:func:`astrodb.epoch.position_errors`; ``pm_prior`` mas/yr for sources without a proper motion).
    ``fetch(ra, dec, radius)``: the pre-filter, when not :func:`fetch_cap` on ``conn`` (a sharded
    catalog's, :func:`astrodb.shard.routing.fetch_cap`).
    """
    cra, cdec, crad = region.cap
    radius = prefilter_radius(stats, crad, epoch, observer)
    data = fetch_cap(conn, stats, cra, cdec, radius) if fetch is None else fetch(cra, cdec, radius)
    return _result(data, stats.name, region, epoch, observer, columns, pm_prior)


def search_columns_by_name(conn: sa.Connection, catalog: str, region, *, columns=None,
                           pm_prior: float = epochs.DEFAULT_PM_PRIOR) -> SourceColumns:
    """:func:`search_columns` at the catalog's own epochs on PostgreSQL, the catalog given by
    name: its statistics are not needed then, so the lookup and the pre-filter are one statement.

    An empty result is an empty region, an unknown catalog or one with region rows
    (:mod:`astrodb.store.catalog_regions`): the caller tells them apart.
    """
    cra, cdec, crad = region.cap
    data = fetch_cap_by_name(conn, catalog, cra, cdec, min(crad + _PAD_DEG, 180.0))
    return _result(data, catalog, region, None, None, columns, pm_prior)


def _result(data, catalog: str, region, epoch, observer, columns, pm_prior) -> SourceColumns:
    names, values = select(data, region, epoch=epoch, observer=observer, columns=columns, pm_prior=pm_prior)
    cra, cdec, crad = region.cap
    return SourceColumns(names, values, {"catalog": catalog, "epoch": epoch, "cap_ra": cra, "cap_dec": cdec,
                                         "cap_radius": crad})


def search(conn: sa.Connection, stats: CatalogStats, region, *, epoch: float | None = None,
           observer: np.ndarray | None = None, columns=None,
           pm_prior: float = epochs.DEFAULT_PM_PRIOR) -> Table:
    """:func:`search_columns` as an astropy Table (units, descriptions, masked where missing)."""
    return search_columns(conn, stats, region, epoch=epoch, observer=observer, columns=columns,
                          pm_prior=pm_prior).to_table()
