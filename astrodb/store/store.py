"""The :class:`Store`: one object for initializing, loading and querying a catalog store."""
from __future__ import annotations

import difflib
import functools
import os

import numpy as np
import sqlalchemy as sa
from astropy.table import Table

from .. import epoch as epochs
from .. import limits
from ..config import ENV_URL
from ..errors import CatalogNotFoundError, ConfigError, IngestError, QueryError
from ..query.regions import Cone, make_region
from ..query.columns import SourceColumns
from ..query.search import CatalogStats, query_epoch, search_columns, search_columns_by_name
from . import migrate, partitions
from .catalog_info import CatalogInfo
from .engine import create_store_engine
from .schema import DENSITY_ORDER, catalog_density, catalog_regions, catalogs, source_files, sources


# ``limited``: loaded for a region, and not (yet) for the whole sky (astrodb.store.catalog_regions).
# ``shard_version``: the sharded catalog's map version (NULL: its rows are on this server).
_STATS_SQL = ("SELECT id, name, pm_max, radial_rate_max, parallax_max, epoch_min, epoch_max, "
              "(SELECT max(m.version) FROM shard_ranges m WHERE m.catalog_id = catalogs.id), "
              "EXISTS (SELECT 1 FROM catalog_regions r WHERE r.catalog_id = catalogs.id) AND NOT EXISTS "
              "(SELECT 1 FROM catalog_regions r WHERE r.catalog_id = catalogs.id AND r.full_sky AND r.complete) "
              "FROM catalogs WHERE name = ")


class Store:
    """A catalog store on PostgreSQL+PostGIS or SQLite.

    Use :func:`astrodb.connect` to open one. All queries are exact: they return what a
    brute-force angular selection over the whole catalog, at the requested epoch, would.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        # Queries are single read-only statements: autocommit spares the BEGIN/ROLLBACK round trips.
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._checked = False
        self._shard_conns = None
        self._maps: dict = {}             # sharded catalogs' maps, by catalog id
        self._sharded_names: set[str] = set()

    @property
    def url(self) -> str:
        """The store's URL, password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def backend(self) -> str:
        """``"postgresql"`` or ``"sqlite"``."""
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the store's database connections."""
        if self._shard_conns is not None:
            self._shard_conns.close()
        self.engine.dispose()

    # -- schema ---------------------------------------------------------------------------
    def init(self) -> str:
        """Create or upgrade the schema to the newest migration; return the revision."""
        try:
            migrate.upgrade(self.engine)
        except sa.exc.OperationalError as exc:
            raise ConfigError(f"cannot initialize the store at {self.url}: {exc.orig}") from None
        self._checked = True
        if self.shards():
            from ..shard.loading import recover
            from ..shard.servers import migrate_shards

            migrate_shards(self.engine, self.shard_connections())
            recover(self.engine, self.shard_connections())
        return migrate.head_revision()

    # -- shards ---------------------------------------------------------------------------
    def shards(self) -> list:
        """The servers holding this store's sharded catalogs (:class:`astrodb.shard.Shard`);
        empty for a store on one server."""
        from ..shard.servers import list_shards

        return list_shards(self.engine)

    def add_shard(self, name: str, url: str):
        """Add the PostgreSQL database at ``url`` as shard ``name``; catalogs created from now on
        are spread over every shard. See :func:`astrodb.shard.servers.add_shard`.

        Returns
        -------
        astrodb.shard.Shard
        """
        from ..shard.servers import add_shard

        self._require_schema()
        return add_shard(self.engine, name, url)

    def shard_connections(self):
        """The store's pooled connections to its shards (:class:`astrodb.shard.ShardConnections`)."""
        if self._shard_conns is None:
            from ..shard.connections import ShardConnections

            self._shard_conns = ShardConnections(self.engine.url)
        return self._shard_conns

    def _catalog_map(self, conn: sa.Connection, stats: CatalogStats, fresh: bool = False):
        from ..shard.shard_map import read_map

        cmap = self._maps.get(stats.id)
        if fresh or cmap is None or cmap.version != stats.shard_version:
            cmap = read_map(conn, stats.id)
            self._maps[stats.id] = cmap
        return cmap

    def _require_schema(self) -> None:
        if self._checked:
            return
        try:
            rev = migrate.current_revision(self.engine)
        except sa.exc.OperationalError as exc:
            raise ConfigError(f"cannot open the store at {self.url}: {exc.orig}") from None
        if rev is None:
            raise ConfigError(f"the store at {self.url} is not initialized: run `astrodb init` (Store.init())")
        if rev != migrate.head_revision():
            raise ConfigError(f"the store at {self.url} is at schema revision {rev}, this astrodb needs "
                              f"{migrate.head_revision()}: run `astrodb init` to upgrade it")
        self._checked = True

    # -- catalogs -------------------------------------------------------------------------
    def catalogs(self) -> list[CatalogInfo]:
        """Return every catalog with its kind, epoch, row count and ingested files."""
        self._require_schema()
        with self.engine.connect() as conn:
            cats = conn.execute(sa.select(catalogs).order_by(catalogs.c.name)).mappings().all()
            files = conn.execute(sa.select(source_files).order_by(source_files.c.id)).mappings().all()
        by_cat: dict[int, list[dict]] = {}
        for f in files:
            by_cat.setdefault(f["catalog_id"], []).append(
                {k: f[k] for k in ("path", "size", "sha256", "rows", "ingested_at")})
        return [CatalogInfo(c["name"], c["kind"], c["ref_epoch"], c["description"], int(c["row_count"]),
                            c["created_at"], tuple(by_cat.get(c["id"], ()))) for c in cats]

    def catalog(self, name: str) -> CatalogInfo:
        """Return the catalog called ``name``."""
        for info in self.catalogs():
            if info.name == name:
                return info
        raise CatalogNotFoundError(self._not_found(name))

    def _not_found(self, name: str) -> str:
        problem = limits.catalog_name_problem(name)
        if problem:
            return problem
        with self.engine.connect() as conn:
            names = conn.execute(sa.select(catalogs.c.name).order_by(catalogs.c.name)).scalars().all()
        # A short message whatever the store holds: the nearest names, or the first few.
        near = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        shown = near or list(names[:10])
        more = f" and {len(names) - len(shown)} more (astrodb catalogs)" if len(names) > len(shown) else ""
        label = "did you mean" if near else "catalogs"
        return f"no catalog {name!r} in the store ({label}: {', '.join(shown) or 'none'}{more})"

    def _stats(self, conn: sa.Connection, name: str) -> CatalogStats:
        problem = limits.catalog_name_problem(name)
        if problem:  # before any SQL: a 10-MB "name" is no query parameter
            raise CatalogNotFoundError(problem)
        mark = "%s" if conn.dialect.name == "postgresql" else "?"
        row = conn.exec_driver_sql(_STATS_SQL + mark, (name,)).first()  # hot path: no SQL compilation
        if row is None:
            raise CatalogNotFoundError(self._not_found(name))
        shard_version = row[7]
        return CatalogStats(*row[:7], limited=bool(row[8]),
                            shard_version=None if shard_version is None else int(shard_version))

    def density(self, name: str, order: int = DENSITY_ORDER) -> Table:
        """Catalog ``name``'s rows per HEALPix pixel (nested), as every load keeps them.

        Parameters
        ----------
        name : str
            The catalog.
        order : int
            HEALPix order, 0 to :data:`~astrodb.store.schema.DENSITY_ORDER` (the map's own;
            coarser orders sum its pixels).

        Returns
        -------
        astropy.table.Table
            ``pixel`` (nested, ascending) and ``count`` for the pixels that hold rows; ``meta``:
            ``healpix_order``, ``nested`` (True), ``catalog``, ``rows`` (the catalog's row count,
            which the counts sum to).

        Raises
        ------
        CatalogNotFoundError
            No such catalog.
        QueryError
            ``order`` outside 0 to :data:`~astrodb.store.schema.DENSITY_ORDER`.
        """
        self._require_schema()
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= DENSITY_ORDER:
            raise QueryError(f"order must be an integer from 0 to {DENSITY_ORDER} (the density map's own "
                             f"HEALPix order), got {order!r}")
        with self.engine.connect() as conn:
            stats = self._stats(conn, name)
            rows = conn.execute(sa.select(catalog_density.c.pixel, catalog_density.c.count)
                                .where(catalog_density.c.catalog_id == stats.id,
                                       catalog_density.c.norder == DENSITY_ORDER)
                                .order_by(catalog_density.c.pixel)).all()
            total = conn.execute(sa.select(catalogs.c.row_count).where(catalogs.c.id == stats.id)).scalar_one()
        pix = np.array([r[0] for r in rows], np.int64) >> (2 * (DENSITY_ORDER - int(order)))
        counts = np.array([r[1] for r in rows], np.int64)
        pixels, first = np.unique(pix, return_index=True)
        summed = np.add.reduceat(counts, first) if len(counts) else counts
        return Table({"pixel": pixels, "count": summed},
                     meta={"healpix_order": int(order), "nested": True, "catalog": name, "rows": int(total)})

    def drop_catalog(self, name: str) -> int:
        """Delete catalog ``name`` with its files and sources; return the number of sources."""
        self._require_schema()
        with self.engine.begin() as conn:
            stats = self._stats(conn, name)
            n = conn.execute(sa.select(catalogs.c.row_count).where(catalogs.c.id == stats.id)).scalar_one()
            if stats.shard_version is not None:
                from ..shard.placement import drop_coordinator_side

                drop_coordinator_side(conn, stats.id)
            if conn.dialect.name == "postgresql":
                partitions.drop(conn, stats.id)
            else:
                conn.execute(sources.delete().where(sources.c.catalog_id == stats.id))
            conn.execute(source_files.delete().where(source_files.c.catalog_id == stats.id))
            conn.execute(catalog_density.delete().where(catalog_density.c.catalog_id == stats.id))
            conn.execute(catalog_regions.delete().where(catalog_regions.c.catalog_id == stats.id))
            conn.execute(catalogs.delete().where(catalogs.c.id == stats.id))
        if stats.shard_version is not None:
            from ..shard.placement import drop_everywhere

            # After the coordinator forgot the catalog: a shard down now keeps orphan tables
            # that no map names, never a catalog with rows missing.
            drop_everywhere(self.shard_connections(), stats.id, self.shards())
            self._maps.pop(stats.id, None)
        return int(n)

    # -- ingest ---------------------------------------------------------------------------
    def ingest_catalog(self, source, name: str, *, epoch=None, id_column: str | None = None,
                       format: str | None = None, description: str | None = None):
        """Ingest a user catalog as a new catalog ``name``, atomically.

        Parameters
        ----------
        source : str, os.PathLike or astropy.table.Table
            Any file ``astropy.table.Table.read`` reads (ECSV, FITS, VOTable, CSV, ...), or a
            Table. Positions: RA/DEC in degrees (any case) or a SkyCoord column (e.g.
            ``sky_centroid``); optional weight, pmra (mas/yr, times cos dec), pmdec, parallax
            (mas), radial_velocity (km/s), their errors, mag, an epoch column. Units in the
            table are honoured.
        name : str
            Catalog name (unique in the store).
        epoch : float, str or astropy.time.Time, optional
            The catalog's epoch (Julian year) when it has no epoch column.
        id_column : str, optional
            Integer column of unique source ids (default: source_id/id/objid/hip, else row numbers).
        format : str, optional
            ``Table.read`` format, when the extension does not tell.
        description : str, optional
            Free text kept with the catalog.

        Returns
        -------
        astrodb.ingest.catalog.IngestResult
            ``status`` is "unchanged" when the identical file is already that catalog.

        Raises
        ------
        IngestError
            Bad input, naming file, column and rows. The store is left exactly as before.
        CatalogExistsError
            ``name`` already holds other data.
        """
        from ..ingest.catalog import ingest_rows
        from ..ingest.table_reader import read_catalog

        problem = limits.catalog_name_problem(name)
        if problem:
            raise IngestError(problem)
        self._require_schema()
        rows = read_catalog(source, epoch=epoch, id_column=id_column, format=format)
        if not self.shards():
            with self.engine.begin() as conn:
                return ingest_rows(conn, rows, name, description=description)
        from ..shard.loading import recover

        recover(self.engine, self.shard_connections())
        pending: list = []   # the shards' prepared shares: committed once the coordinator has
        try:
            with self.engine.begin() as conn:
                result = ingest_rows(conn, rows, name, description=description,
                                     shards=(self.shard_connections(), pending))
        except BaseException:
            for load in pending:
                load.rollback()
            raise
        for load in pending:
            load.commit()
        return result

    def ingest_gaia(self, paths, release: str | None = None, *, catalog: str | None = None, jobs: int = 1,
                    progress: bool | None = None, region=None, epochs=None):
        """Load Gaia archive bulk partition files (DR1, DR2, EDR3, DR3) or a HATS catalog of Gaia
        rows into a release catalog.

        Parameters
        ----------
        paths : str, os.PathLike or sequence of them
            Files (``GaiaSource_*.csv.gz``, ``TgasSource_*.csv.gz``), directories holding them,
            or glob patterns. ``_MD5SUM.txt`` beside the files is checked when present. A HATS
            catalog (a directory or fsspec URL with ``hats.properties``/``properties`` and
            ``partition_info.csv``, or a HATS collection naming one) loads its
            ``dataset/Norder=K/Dir=D/Npix=N.parquet`` partitions, each one a unit like a CSV file
            (remote ones are fetched once, hashed, parsed in memory).
        release : {"dr1", "dr2", "edr3", "dr3"}, optional
            Inferred from the first file when not given.
        catalog : str, optional
            Catalog name; default ``gaia_<release>``.
        jobs : int
            Worker processes reading files while the main process loads (2 on 2 cores).
        progress : bool, optional
            Progress line on stderr; default: only when stderr is a terminal.
        region : optional
            Load only the stars of a region: a :class:`~astrodb.query.regions.Cone` (or
            ``LoadRegion.from_cone(ra, dec, radius)``, degrees or angles), a polygon (``(n, 2)``
            vertices in degrees, SkyCoord, :class:`~astrodb.query.regions.Polygon`), a MOC (a
            ``mocpy.MOC`` or a MOC FITS file), or images: a FITS file, ``(wcs, (ny, nx))``, a
            WCSFootprint, or a list of them (their footprints' union). Only the files that can
            hold its stars are read (bulk files by the HEALPix ranges in their names, HATS
            partitions by their pixels), and of them only the rows within the region widened by
            the farthest any star of the release moves over ``epochs``. The catalog records the
            region: a later query reaching outside it, or at an epoch outside ``epochs``, raises
            :class:`~astrodb.errors.OutsideRegionError`; later loads add their regions, a load
            without a region makes the catalog unlimited.
        epochs : (lo, hi), optional
            With ``region``: the epochs (Julian years, ``'J2030'``, ISO times) queries will be
            made at; default :data:`~astrodb.ingest.region_select.DEFAULT_EPOCHS` (1990, 2040).

        Returns
        -------
        astrodb.ingest.gaia.GaiaIngestReport
            Per file: loaded, skipped (already loaded: a rerun resumes) or failed (with why).
            Each file is one transaction, so a failed or interrupted file leaves nothing behind.
            For a region load, ``region`` says which files were not read and what was recorded.

        Raises
        ------
        IngestError
            No such file, unknown release, a bad ``region`` or ``epochs`` (named).
        """
        from ..ingest.gaia import ingest_gaia

        problem = None if catalog is None else limits.catalog_name_problem(catalog)
        if problem:
            raise IngestError(problem)
        self._require_schema()
        if isinstance(paths, (str, bytes)) or not hasattr(paths, "__iter__"):
            paths = [paths]
        return ingest_gaia(self.engine, paths, release, catalog=catalog, jobs=jobs, progress=progress,
                           region=region, epochs=epochs)

    # -- queries --------------------------------------------------------------------------
    def cone(self, ra, dec, radius, *, catalog: str, epoch=None, observer=None, columns=None,
             pm_prior: float = epochs.DEFAULT_PM_PRIOR) -> Table:
        """Return the sources of ``catalog`` within ``radius`` of (``ra``, ``dec``).

        Parameters
        ----------
        ra, dec, radius : float (degrees), Angle or angular Quantity
            Cone centre (ICRS) and radius, 0 < radius <= 180 deg.
        catalog : str
            Catalog name.
        epoch : float, str or astropy.time.Time, optional
            Julian year (or time) of the returned positions; the selection is made on the
            propagated positions. None: each source at its catalog reference epoch.
        observer : array-like (3,), optional
            Observer's barycentric ICRS position in AU (e.g.
            ``astrodb.epoch.earth_barycentric_position(t)``), to add annual parallax.
        columns : sequence of str, optional
            Output columns (default all); ``distance`` is always included.
        pm_prior : float
            With ``epoch``: 1-sigma prior (mas/yr per axis) on the unknown motion of sources
            without a proper motion (Gaia 2-parameter solutions), which widens their
            ``ra_epoch_error``/``dec_epoch_error``; see :func:`astrodb.epoch.position_errors`.

        Returns
        -------
        astropy.table.Table
            Sorted by ``distance`` (deg), with units; missing values masked. With ``epoch``
            also ``ra_epoch_error``, ``dec_epoch_error`` (uncertainties at ``epoch``), ``ra_ref``,
            ``dec_ref`` (stored positions) and ``propagated`` (False: no proper motion, kept
            at its catalogued position).
        """
        return self.search(Cone.create(ra, dec, radius), catalog=catalog, epoch=epoch, observer=observer,
                           columns=columns, pm_prior=pm_prior).to_table()

    def footprint(self, region, *, catalog: str, epoch=None, observer=None, columns=None,
                  pm_prior: float = epochs.DEFAULT_PM_PRIOR) -> Table:
        """Return the sources of ``catalog`` inside a sky region.

        Parameters
        ----------
        region : (n, 2) array of (ra, dec) degrees, SkyCoord, Polygon, or (wcs, shape)
            Vertices of a spherical polygon with great-circle edges (smaller side, within a
            hemisphere; crossing RA 0 or holding a pole is fine), or an image's WCS (astropy or
            gwcs) with its (ny, nx) shape: then exactly the sources falling on the pixels.
        catalog, epoch, observer, columns, pm_prior
            As for :meth:`cone`. ``distance`` is measured from the region's centre.
        """
        return self.search(region, catalog=catalog, epoch=epoch, observer=observer, columns=columns,
                           pm_prior=pm_prior).to_table()

    def search(self, region, *, catalog: str, epoch=None, observer=None, columns=None,
               pm_prior: float = epochs.DEFAULT_PM_PRIOR) -> SourceColumns:
        """The search behind :meth:`cone` and :meth:`footprint`, as numpy columns (no Table).

        Parameters
        ----------
        region : Cone, Polygon, WCSFootprint, or what :meth:`footprint` accepts
            The sky region (:mod:`astrodb.query.regions`).
        catalog, epoch, observer, columns, pm_prior
            As for :meth:`cone`.

        Returns
        -------
        SourceColumns
            The columns sorted by distance from the region's centre, NaN where a value is
            missing; ``to_table()`` gives what :meth:`cone` returns.
        """
        if not hasattr(region, "cap"):
            region = make_region(region)
        self._require_schema()
        jy = query_epoch(epoch)
        if not (isinstance(pm_prior, (int, float, np.floating, np.integer)) and np.isfinite(pm_prior)
                and pm_prior >= 0):
            raise QueryError(f"pm_prior must be a finite number >= 0 (mas/yr), got {pm_prior!r}")
        obs = None
        if observer is not None:
            obs = np.asarray(observer, float).reshape(3)
            if not np.all(np.isfinite(obs)):
                raise QueryError(f"observer must be a finite barycentric position in AU, got {observer!r}")
        with self._reader.connect() as conn:
            if jy is None and obs is None and conn.dialect.name == "postgresql" and catalog not in self._sharded_names:
                # At the catalog's own epochs the motion statistics are not needed: one round trip.
                found = search_columns_by_name(conn, catalog, region, columns=columns, pm_prior=pm_prior)
                if len(found):
                    return found
                stats = self._stats(conn, catalog)     # an empty region, or CatalogNotFoundError
                if not stats.limited and stats.shard_version is None:
                    return found
            else:
                stats = self._stats(conn, catalog)   # CatalogNotFoundError for an unknown name
            if stats.limited:
                self._check_region(conn, stats, region, jy, obs)
            if stats.shard_version is None:
                self._sharded_names.discard(catalog)
                return search_columns(conn, stats, region, epoch=jy, observer=obs, columns=columns,
                                      pm_prior=pm_prior)
            self._sharded_names.add(catalog)
            return self._search_shards(conn, stats, region, jy, obs, columns, pm_prior)

    def _search_shards(self, conn: sa.Connection, stats: CatalogStats, region, epoch, observer, columns,
                       pm_prior) -> SourceColumns:
        """A sharded catalog's search, its pre-filter sent straight to the owning shards."""
        from ..shard.routing import MapChanged, fetch_cap

        conns = self.shard_connections()

        def fetch(cmap, ra, dec, radius):
            # The cover's order from the catalog's density map, as a single server's cone takes it.
            order = conn.exec_driver_sql("SELECT astrodb._cover_order(%s, %s, %s, %s)",
                                         (stats.id, ra, dec, radius)).scalar()
            return fetch_cap(conns, cmap, order, ra, dec, radius)

        for attempt in range(5):
            cmap = self._catalog_map(conn, stats, fresh=attempt > 0)
            try:
                return search_columns(conn, stats, region, epoch=epoch, observer=observer, columns=columns,
                                      pm_prior=pm_prior, fetch=functools.partial(fetch, cmap))
            except MapChanged:  # a range moved meanwhile: the new map names its new table
                continue
        raise QueryError(f"catalog {stats.name!r}: its shard map kept changing during the query; try again")

    @staticmethod
    def _check_region(conn: sa.Connection, stats: CatalogStats, region, epoch: float | None,
                      observer: np.ndarray | None) -> None:
        """OutsideRegionError unless the query is exact on a catalog loaded for a region."""
        from ..query.region_limits import check
        from .catalog_regions import read_limits

        limits_ = read_limits(conn, stats.id, stats.name)
        if limits_ is not None:
            distance = 0.0 if observer is None or epoch is None else float(np.linalg.norm(observer))
            check(limits_, region, epoch, distance)


def connect(url: str | None = None) -> Store:
    """Open the store at ``url``.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL (``postgresql+psycopg://user@host/db`` or ``sqlite:///path``) or a file
        path (SQLite). Default: ``$ASTRODB_URL``, else the embedded SQLite file
        ``~/.local/share/astrodb/astrodb.sqlite`` (``$XDG_DATA_HOME`` honoured).

    Returns
    -------
    Store or ServiceStore
        Call :meth:`Store.init` once on a new database. An ``http(s)://`` URL (here or in
        ``$ASTRODB_URL``) is an ``astrodb serve``: a read-only
        :class:`~astrodb.store.remote.ServiceStore` that queries it over HTTP.
    """
    from .remote import ServiceStore, is_service_url

    given = url or os.environ.get(ENV_URL)
    if is_service_url(given):
        return ServiceStore(given)
    return Store(create_store_engine(url))
