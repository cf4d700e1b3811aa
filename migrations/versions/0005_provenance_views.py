"""Views for one-query provenance audits in psql / sqlite3 (see docs/provenance.md).

* ``prov_reference_files``: one row per file a run's reference came from (``prov_runs.ref_files``
  unnested: the store catalog's ingested files then, or the reference file), with its path and
  sha256. JSON functions differ: ``json_array_elements`` on PostgreSQL, ``json_each`` on SQLite.
* ``prov_reference_changes``: for every run against a store catalog, what differs between the
  catalog's files then (recorded) and now (``source_files``): 'catalog dropped', 'file no longer
  in the catalog', 'file ingested since'. A run with a row here may have used reference rows that
  have since changed (``astrodb audit verify`` re-runs the query to tell).
* ``prov_image_history``: ``prov_fits`` with the run's end time and the fitted shift as numbers
  (``shift_x``, ``shift_y`` arcsec), for the history of one image's WCS.

Views only: astrodb.store.schema mirrors tables, not views.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

VIEWS = ("prov_image_history", "prov_reference_changes", "prov_reference_files")

_RUN_COLUMNS = "r.run_id, r.step, r.started_at, r.status AS run_status, r.ref_kind, r.ref_catalog, r.ref_source"

REFERENCE_FILES = {
    "postgresql": f"""
CREATE VIEW prov_reference_files AS
SELECT {_RUN_COLUMNS},
       CAST(f.ordinality AS INTEGER) AS file_index, f.value ->> 0 AS path, f.value ->> 1 AS sha256
FROM prov_runs r
CROSS JOIN LATERAL json_array_elements(CASE WHEN json_typeof(r.ref_files) = 'array' THEN r.ref_files
                                            ELSE CAST('[]' AS json) END) WITH ORDINALITY AS f(value, ordinality)
""",
    "sqlite": f"""
CREATE VIEW prov_reference_files AS
SELECT {_RUN_COLUMNS},
       CAST(f.key AS INTEGER) + 1 AS file_index, json_extract(f.value, '$[0]') AS path,
       json_extract(f.value, '$[1]') AS sha256
FROM prov_runs r, json_each(CASE WHEN json_type(r.ref_files) = 'array' THEN r.ref_files ELSE '[]' END) AS f
""",
}

# Portable SQL over prov_reference_files, catalogs and source_files.
REFERENCE_CHANGES = """
CREATE VIEW prov_reference_changes AS
SELECT r.run_id, r.step, r.started_at, r.ref_catalog, 'catalog dropped' AS change,
       CAST(NULL AS TEXT) AS path, CAST(NULL AS TEXT) AS sha256
FROM prov_runs r
WHERE r.ref_kind = 'store' AND NOT EXISTS (SELECT 1 FROM catalogs c WHERE c.name = r.ref_catalog)
UNION ALL
SELECT f.run_id, f.step, f.started_at, f.ref_catalog, 'file no longer in the catalog', f.path, f.sha256
FROM prov_reference_files f JOIN catalogs c ON c.name = f.ref_catalog
WHERE f.ref_kind = 'store'
  AND NOT EXISTS (SELECT 1 FROM source_files s WHERE s.catalog_id = c.id AND s.sha256 = f.sha256)
UNION ALL
SELECT r.run_id, r.step, r.started_at, r.ref_catalog, 'file ingested since', s.path, s.sha256
FROM prov_runs r JOIN catalogs c ON c.name = r.ref_catalog JOIN source_files s ON s.catalog_id = c.id
WHERE r.ref_kind = 'store'
  AND NOT EXISTS (SELECT 1 FROM prov_reference_files f WHERE f.run_id = r.run_id AND f.sha256 = s.sha256)
"""

_SHIFT = {
    "postgresql": ("CAST(i.shift ->> 0 AS DOUBLE PRECISION)", "CAST(i.shift ->> 1 AS DOUBLE PRECISION)"),
    "sqlite": ("json_extract(i.shift, '$[0]')", "json_extract(i.shift, '$[1]')"),
}


def _image_history(dialect: str) -> str:
    sx, sy = _SHIFT[dialect]
    return f"""
CREATE VIEW prov_image_history AS
SELECT i.name AS image, r.started_at, r.finished_at, r.run_id, r.step, r.status AS run_status,
       r.user_name, r.ref_kind, r.ref_catalog, r.ref_source,
       i.image_index, i.group_id, i.epoch, i.catalog_source, i.catalog_sha256, i.wcs_kind,
       i.status, i.message, i.fitgeometry, {sx} AS shift_x, {sy} AS shift_y,
       i.rotation, i.scale, i.skew, i.rmse * 1000.0 AS rmse_mas, i.nmatches, i.nref, i.nclipped
FROM prov_runs r JOIN prov_images i ON i.run_id = r.run_id
"""


def upgrade() -> None:
    dialect = "postgresql" if op.get_bind().dialect.name == "postgresql" else "sqlite"
    op.execute(REFERENCE_FILES[dialect])
    op.execute(REFERENCE_CHANGES)
    op.execute(_image_history(dialect))


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW {name}")
