"""SQLAlchemy Core description of the store's tables, used to build queries.

The migrations in ``migrations/versions`` are the only source of the DDL; this module mirrors
them for the query layer and a test checks that the two agree (Alembic's autogenerate compare).

On PostgreSQL every table lives in the ``astrodb`` schema (the connection's search_path puts it
first). Both backends find a region's rows by HEALPix ranges of ``sources.hpx29`` (a btree).
"""
from __future__ import annotations

from sqlalchemy import (JSON, BigInteger, Boolean, Column, DateTime, Double, ForeignKey, Integer, LargeBinary,
                        MetaData, SmallInteger, String, Table, Text, UniqueConstraint, Index, false)

#: Order of the nested HEALPix index stored with every source (as in HATS' ``_healpix_29``).
HEALPIX_ORDER = 29

#: Catalog kinds the store knows.
CATALOG_KINDS = ("gaia_dr1", "gaia_dr2", "gaia_edr3", "gaia_dr3", "user")

#: PostgreSQL schema holding the store's tables and SQL functions.
PG_SCHEMA = "astrodb"

metadata = MetaData()

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
_Id = BigInteger().with_variant(Integer, "sqlite")

catalogs = Table(
    "catalogs", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),
    Column("ref_epoch", Double, comment="Julian year of the positions, when one for the catalog"),
    Column("description", Text),
    Column("row_count", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Catalog-wide motion statistics: a query at another epoch widens its pre-filter by the
    # largest displacement these allow (astrodb.epoch.displacement_bound), so fast movers are kept.
    Column("pm_max", Double, nullable=False, server_default="0", comment="max total proper motion, mas/yr"),
    Column("radial_rate_max", Double, nullable=False, server_default="0", comment="max |v_r|/distance, 1/yr"),
    Column("parallax_max", Double, nullable=False, server_default="0", comment="max parallax, mas"),
    Column("epoch_min", Double, comment="earliest per-source reference epoch, Julian year"),
    Column("epoch_max", Double, comment="latest per-source reference epoch, Julian year"),
)

source_files = Table(
    "source_files", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("catalog_id", _Id, ForeignKey("catalogs.id", ondelete="CASCADE"), nullable=False),
    Column("path", Text, nullable=False),
    Column("size", BigInteger),
    Column("sha256", String(64), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("ingested_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("catalog_id", "sha256", name="uq_source_files_catalog_sha256"),
)

#: Columns of ``sources`` that hold measured values (all float64, NULL where unknown), in COPY order.
SOURCE_FLOAT_COLUMNS = (
    "ra", "dec", "ra_error", "dec_error",
    "pmra", "pmra_error", "pmdec", "pmdec_error",
    "parallax", "parallax_error", "radial_velocity", "radial_velocity_error",
    "ref_epoch", "mag", "weight",
)

#: Gaia's astrometric correlation coefficients, kept per source (migration 0003).
GAIA_CORRELATIONS = ("ra_dec_corr", "ra_parallax_corr", "ra_pmra_corr", "ra_pmdec_corr",
                     "dec_parallax_corr", "dec_pmra_corr", "dec_pmdec_corr", "parallax_pmra_corr",
                     "parallax_pmdec_corr", "pmra_pmdec_corr")

sources = Table(
    "sources", metadata,
    Column("catalog_id", _Id, ForeignKey("catalogs.id", ondelete="CASCADE"), nullable=False),
    Column("source_id", BigInteger, nullable=False),
    Column("file_id", _Id, ForeignKey("source_files.id", ondelete="CASCADE")),
    Column("ra", Double, nullable=False, comment="deg, ICRS, at ref_epoch"),
    Column("dec", Double, nullable=False, comment="deg, ICRS, at ref_epoch"),
    Column("ra_error", Double, comment="mas, includes cos(dec)"),
    Column("dec_error", Double, comment="mas"),
    Column("pmra", Double, comment="mas/yr, includes cos(dec)"),
    Column("pmra_error", Double, comment="mas/yr"),
    Column("pmdec", Double, comment="mas/yr"),
    Column("pmdec_error", Double, comment="mas/yr"),
    Column("parallax", Double, comment="mas"),
    Column("parallax_error", Double, comment="mas"),
    Column("radial_velocity", Double, comment="km/s"),
    Column("radial_velocity_error", Double, comment="km/s"),
    Column("ref_epoch", Double, nullable=False, comment="Julian year"),
    Column("mag", Double),
    Column("weight", Double),
    Column("hpx29", BigInteger, nullable=False, comment="nested HEALPix order-29 pixel of (ra, dec)"),
    *(Column(name, Double) for name in GAIA_CORRELATIONS),
    Column("astrometric_params_solved", SmallInteger,
           comment="Gaia: 3 = ra, dec; 31 = + parallax, pm (5-p); 95 = + pseudocolour (6-p); DR1 2/5"),
    UniqueConstraint("catalog_id", "source_id", name="uq_sources_catalog_source"),
    Index("ix_sources_catalog_hpx29", "catalog_id", "hpx29"),
)

# --- provenance (migration 0004): append-only records of alignment fits -----------------------

# Python None -> SQL NULL (not the JSON literal null), so "IS NULL" finds what is missing.
_JSON = JSON(none_as_null=True)

#: HEALPix order (nested) of every catalog's density map (migration 0010): 196,608 pixels of 0.21 deg².
DENSITY_ORDER = 7

# Migration 0010: rows per HEALPix pixel of each catalog, kept by every load (astrodb.ingest.density).
catalog_density = Table(
    "catalog_density", metadata,
    Column("catalog_id", _Id, ForeignKey("catalogs.id", ondelete="CASCADE"), primary_key=True),
    Column("norder", SmallInteger, primary_key=True, comment="HEALPix order, nested scheme"),
    Column("pixel", BigInteger, primary_key=True),
    Column("count", BigInteger, nullable=False, comment="sources whose ra/dec fall in the pixel"),
)

# Migration 0015: catalogs sharded by HEALPix range over several PostgreSQL servers (astrodb.shard).
shards = Table(
    "shards", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(40), nullable=False, unique=True),
    Column("host", Text, nullable=False),
    Column("port", Integer, nullable=False),
    Column("dbname", Text, nullable=False),
    Column("server", String(63), nullable=False, comment="the coordinator's postgres_fdw foreign server"),
    Column("added_at", DateTime(timezone=True), nullable=False),
)

shard_ranges = Table(
    "shard_ranges", metadata,
    Column("catalog_id", _Id, ForeignKey("catalogs.id", ondelete="CASCADE"), primary_key=True),
    Column("lo", BigInteger, primary_key=True, comment="first order-29 nested HEALPix index"),
    Column("hi", BigInteger, nullable=False, comment="last order-29 nested HEALPix index (inclusive)"),
    Column("shard_id", _Id, ForeignKey("shards.id"), nullable=False),
    Column("version", BigInteger, nullable=False, comment="the catalog's map version that set it"),
)

shard_moves = Table(
    "shard_moves", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("catalog_id", _Id, ForeignKey("catalogs.id", ondelete="CASCADE"), nullable=False),
    Column("lo", BigInteger, nullable=False),
    Column("hi", BigInteger, nullable=False),
    Column("source_id", _Id, ForeignKey("shards.id"), nullable=False),
    Column("target_id", _Id, ForeignKey("shards.id"), nullable=False),
    Column("step", String(20), nullable=False, comment="copying, switched, done"),
    Column("rows", BigInteger),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

# Migration 0013: the regions a catalog was loaded for (astrodb.store.catalog_regions). A catalog
# without rows here, or with a complete full-sky one, is unlimited; otherwise queries must stay
# inside the union of its complete rows' ``claimed`` cells at their epochs.
catalog_regions = Table(
    "catalog_regions", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("catalog_id", _Id, ForeignKey("catalogs.id", ondelete="CASCADE"), nullable=False),
    Column("cut_key", String(64), nullable=False,
           comment="sha256 of the cut (cells, epochs); a file loaded with it is recorded as sha256(file sha256:cut_key)"),
    Column("description", Text, nullable=False, comment="the region as asked for, e.g. --cone 10 20 1 deg"),
    Column("full_sky", Boolean, nullable=False, server_default=false(), comment="a load without a region"),
    Column("epoch_lo", Double, comment="Julian year: queries are exact from"),
    Column("epoch_hi", Double, comment="Julian year: queries are exact to"),
    Column("ref_epoch", Double, comment="the release's reference epoch, Julian year"),
    Column("pad_deg", Double, comment="the region's widening: the largest displacement over the epochs"),
    Column("pm_max", Double, comment="the displacement bound's proper motion, mas/yr"),
    Column("radial_rate_max", Double, comment="the displacement bound's |v_r|/distance, 1/yr"),
    Column("parallax_max", Double, comment="the displacement bound's parallax, mas"),
    Column("norder", SmallInteger, comment="HEALPix order (nested) of cells and claimed"),
    Column("cells", LargeBinary, comment="the cut, the rows kept: [lo, hi) cell ranges, little-endian int64 pairs"),
    Column("claimed", LargeBinary, comment="the part of the cut all of whose rows are loaded (same encoding)"),
    Column("complete", Boolean, nullable=False, server_default=false(),
           comment="every file of a load with this cut was loaded: claimed counts"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    UniqueConstraint("catalog_id", "cut_key", name="uq_catalog_regions_catalog_cut"),
)

prov_runs = Table(
    "prov_runs", metadata,
    Column("run_id", String(36), primary_key=True, comment="UUID"),
    Column("step", String(16), nullable=False, comment="relative or absolute"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("user_name", String(200)),
    Column("host", String(200)),
    Column("software", _JSON, comment="package versions"),
    Column("parameters", _JSON, comment="every parameter, defaults explicit"),
    Column("status", String(20), nullable=False, comment="success, partial or failed"),
    Column("message", Text),
    Column("n_images", Integer, nullable=False),
    Column("n_aligned", Integer, nullable=False),
    Column("ref_kind", String(10), comment="store, file, table or none"),
    Column("ref_source", Text, comment="store:<catalog>, a file path, or table"),
    Column("ref_catalog", String(200), comment="store catalog name"),
    Column("ref_query", _JSON, comment="cone, epoch, observer, ... of the reference query"),
    Column("ref_files", _JSON, comment="the store catalog's ingested files (path, sha256) then"),
    Column("ref_rows", Integer),
    Column("ref_sha256", String(64), comment="hash of the rows used: ids, positions, weights"),
    Column("ref_data", LargeBinary, comment="the rows used (npz), for file and table references"),
    # Migration 0009: set by the database itself on PostgreSQL (NULL on SQLite).
    Column("db_role", String(200), comment="current_user when inserted, set by the database (PostgreSQL)"),
    Column("db_session_role", String(200), comment="session_user when inserted, set by the database (PostgreSQL)"),
    Column("server_time", DateTime(timezone=True), comment="the database server's transaction time (PostgreSQL)"),
    Index("ix_prov_runs_started_at", "started_at"),
    Index("ix_prov_runs_ref_catalog", "ref_catalog"),
)

# Migration 0017: batch alignment's tasks (aligner align-batch), one row per recorded attempt.
prov_batch_tasks = Table(
    "prov_batch_tasks", metadata,
    Column("task_key", String(64), primary_key=True,
           comment="sha256 of the manifest, its inputs' sha256, the parameters and the software versions"),
    Column("attempt", Integer, primary_key=True, comment="0 first; a rerun of a failed or forced task adds one"),
    Column("association", Text, nullable=False),
    Column("manifest", Text, nullable=False, comment="the manifest file, or table#association"),
    Column("manifest_sha256", String(64), nullable=False),
    Column("status", String(20), nullable=False, comment="success, partial or failed"),
    Column("message", Text),
    Column("run_ids", _JSON, nullable=False, comment="the prov_runs rows of the task, in order"),
    Column("n_images", Integer, nullable=False),
    Column("n_aligned", Integer, nullable=False),
    Column("rmse", Double, comment="arcsec, the images' final fits, root mean square"),
    Column("seconds", Double, comment="the task's time on its worker"),
    Column("worker", Text, comment="where it ran"),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

prov_images = Table(
    "prov_images", metadata,
    Column("run_id", String(36), ForeignKey("prov_runs.run_id"), primary_key=True),
    Column("image_index", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("group_id", Text),
    Column("epoch", Double, comment="observation epoch, Julian year"),
    Column("catalog_source", Text, comment="catalog file path, or table"),
    Column("catalog_sha256", String(64), comment="of the file, or of the rows for a table"),
    Column("catalog_rows", Integer),
    Column("rows_used", Integer),
    Column("catalog_data", LargeBinary, comment="rows used: row, x, y, weight (npz)"),
    Column("wcs_kind", String(8), comment="fits or gwcs"),
    Column("wcsinfo", _JSON),
    Column("input_wcs", LargeBinary, comment="FITS header text or ASDF"),
    # Either column may hold a correction of another recorded WCS (astrodb.provenance.corrections).
    Column("output_wcs", LargeBinary, comment="as input_wcs; NULL when not aligned"),
    Column("status", String(300), nullable=False),
    Column("message", Text),
    Column("fitgeometry", String(10)),
    Column("matrix", _JSON),
    Column("shift", _JSON, comment="arcsec, in the fit's tangent plane"),
    Column("rotation", Double, comment="deg"),
    Column("scale", Double),
    Column("skew", Double, comment="deg"),
    Column("rmse", Double, comment="arcsec"),
    Column("mae", Double, comment="arcsec"),
    Column("nmatches", Integer),
    Column("nref", Integer),
    Column("nclipped", Integer),
    Column("matches", LargeBinary, comment="matched pairs used by the fit (npz): input rows, partner rows, partner images"),
    Index("ix_prov_images_name", "name"),
)

# Migration 0009: one link per run of a hash chain over the records (astrodb.provenance.chain).
prov_chain = Table(
    "prov_chain", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("run_id", String(36), ForeignKey("prov_runs.run_id"), nullable=False),
    Column("prev_digest", String(64), nullable=False, comment="the digest of link seq - 1"),
    Column("digest", String(64), nullable=False, comment="sha256: astrodb.provenance.chain"),
    Column("db_role", String(200), comment="the role that inserted the run (PostgreSQL)"),
    Column("server_time", DateTime(timezone=True), comment="the server's time (PostgreSQL)"),
    UniqueConstraint("run_id", name="uq_prov_chain_run_id"),
)
