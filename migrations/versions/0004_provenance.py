"""Provenance of alignment fits: one row per run (parameters, software, reference catalog) and
one per input image (catalog checksum and rows, input and output WCS, the fit), append-only.

Append-only on both backends: triggers reject UPDATE and DELETE (and TRUNCATE on PostgreSQL).
The view ``prov_fits`` joins the two for one-query audits. Nothing references ``catalogs`` by
key: a fit's record outlives the catalog it used (the name, files and hashes are kept).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("prov_runs", "prov_images")

VIEW = """
CREATE VIEW prov_fits AS
SELECT r.run_id, r.step, r.started_at, r.user_name, r.host, r.status AS run_status,
       r.ref_kind, r.ref_catalog, r.ref_source, r.ref_sha256,
       i.image_index, i.name AS image, i.group_id, i.epoch, i.catalog_source, i.catalog_sha256,
       i.status, i.message, i.fitgeometry, i.rotation, i.scale, i.skew,
       i.rmse * 1000.0 AS rmse_mas, i.mae * 1000.0 AS mae_mas, i.nmatches, i.nref, i.nclipped
FROM prov_runs r JOIN prov_images i ON i.run_id = r.run_id
"""


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "prov_runs",
        sa.Column("run_id", sa.String(36), primary_key=True, comment="UUID"),
        sa.Column("step", sa.String(16), nullable=False, comment="relative or absolute"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_name", sa.String(200)),
        sa.Column("host", sa.String(200)),
        sa.Column("software", sa.JSON, comment="package versions"),
        sa.Column("parameters", sa.JSON, comment="every parameter, defaults explicit"),
        sa.Column("status", sa.String(20), nullable=False, comment="success, partial or failed"),
        sa.Column("message", sa.Text),
        sa.Column("n_images", sa.Integer, nullable=False),
        sa.Column("n_aligned", sa.Integer, nullable=False),
        sa.Column("ref_kind", sa.String(10), comment="store, file, table or none"),
        sa.Column("ref_source", sa.Text, comment="store:<catalog>, a file path, or table"),
        sa.Column("ref_catalog", sa.String(200), comment="store catalog name"),
        sa.Column("ref_query", sa.JSON, comment="cone, epoch, observer, ... of the reference query"),
        sa.Column("ref_files", sa.JSON, comment="the store catalog's ingested files (path, sha256) then"),
        sa.Column("ref_rows", sa.Integer),
        sa.Column("ref_sha256", sa.String(64), comment="hash of the rows used: ids, positions, weights"),
        sa.Column("ref_data", sa.LargeBinary, comment="the rows used (npz), for file and table references"),
    )
    op.create_index("ix_prov_runs_started_at", "prov_runs", ["started_at"])
    op.create_index("ix_prov_runs_ref_catalog", "prov_runs", ["ref_catalog"])
    op.create_table(
        "prov_images",
        sa.Column("run_id", sa.String(36), sa.ForeignKey("prov_runs.run_id"), primary_key=True),
        sa.Column("image_index", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("group_id", sa.Text),
        sa.Column("epoch", sa.Double, comment="observation epoch, Julian year"),
        sa.Column("catalog_source", sa.Text, comment="catalog file path, or table"),
        sa.Column("catalog_sha256", sa.String(64), comment="of the file, or of the rows for a table"),
        sa.Column("catalog_rows", sa.Integer),
        sa.Column("rows_used", sa.Integer),
        sa.Column("catalog_data", sa.LargeBinary, comment="rows used: row, x, y, weight (npz)"),
        sa.Column("wcs_kind", sa.String(8), comment="fits or gwcs"),
        sa.Column("wcsinfo", sa.JSON),
        sa.Column("input_wcs", sa.LargeBinary, comment="FITS header text or ASDF"),
        sa.Column("output_wcs", sa.LargeBinary, comment="as input_wcs; NULL when not aligned"),
        sa.Column("status", sa.String(300), nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("fitgeometry", sa.String(10)),
        sa.Column("matrix", sa.JSON),
        sa.Column("shift", sa.JSON, comment="arcsec, in the fit's tangent plane"),
        sa.Column("rotation", sa.Double, comment="deg"),
        sa.Column("scale", sa.Double),
        sa.Column("skew", sa.Double, comment="deg"),
        sa.Column("rmse", sa.Double, comment="arcsec"),
        sa.Column("mae", sa.Double, comment="arcsec"),
        sa.Column("nmatches", sa.Integer),
        sa.Column("nref", sa.Integer),
        sa.Column("nclipped", sa.Integer),
        sa.Column("matches", sa.LargeBinary, comment="matched pairs used by the fit (npz): input rows, partner rows, partner images"),
    )
    op.create_index("ix_prov_images_name", "prov_images", ["name"])
    op.execute(VIEW)
    if bind.dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION prov_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'provenance is append-only: % on % rejected', TG_OP, TG_TABLE_NAME
                    USING ERRCODE = 'insufficient_privilege';
            END $$""")
        for t in TABLES:
            op.execute(f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                       "FOR EACH ROW EXECUTE FUNCTION prov_append_only()")
            op.execute(f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION prov_append_only()")
    else:
        for t in TABLES:
            for op_name in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {t}_no_{op_name.lower()} BEFORE {op_name} ON {t} BEGIN "
                           f"SELECT RAISE(ABORT, 'provenance is append-only: {op_name} on {t} rejected'); END")


def downgrade() -> None:
    bind = op.get_bind()
    op.execute("DROP VIEW prov_fits")
    if bind.dialect.name == "postgresql":
        for t in TABLES:
            op.execute(f"DROP TRIGGER {t}_append_only ON {t}")
            op.execute(f"DROP TRIGGER {t}_no_truncate ON {t}")
        op.execute("DROP FUNCTION prov_append_only()")
    op.drop_table("prov_images")
    op.drop_table("prov_runs")
