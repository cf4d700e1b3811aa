"""Catalog store: catalogs, their source files and the HEALPix-indexed sources table.

On PostgreSQL also the PostGIS extension, a generated geography point per source (longitude
ra - 180 so the whole sky fits PostGIS' [-180, 180] range) and its GiST index; ``sources`` is
partitioned by catalog there.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    is_pg = op.get_bind().dialect.name == "postgresql"
    if is_pg:
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis WITH SCHEMA public")

    op.create_table(
        "catalogs",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("ref_epoch", sa.Double, comment="Julian year of the positions, when one for the catalog"),
        sa.Column("description", sa.Text),
        sa.Column("row_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pm_max", sa.Double, nullable=False, server_default="0", comment="max total proper motion, mas/yr"),
        sa.Column("radial_rate_max", sa.Double, nullable=False, server_default="0", comment="max |v_r|/distance, 1/yr"),
        sa.Column("parallax_max", sa.Double, nullable=False, server_default="0", comment="max parallax, mas"),
        sa.Column("epoch_min", sa.Double, comment="earliest per-source reference epoch, Julian year"),
        sa.Column("epoch_max", sa.Double, comment="latest per-source reference epoch, Julian year"),
        sa.CheckConstraint(
            "kind IN ('gaia_dr1', 'gaia_dr2', 'gaia_edr3', 'gaia_dr3', 'user')", name="ck_catalogs_kind"),
    )
    op.create_table(
        "source_files",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("catalog_id", _Id, sa.ForeignKey("catalogs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("catalog_id", "sha256", name="uq_source_files_catalog_sha256"),
    )
    op.create_table(
        "sources",
        sa.Column("catalog_id", _Id, sa.ForeignKey("catalogs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source_id", sa.BigInteger, nullable=False),
        sa.Column("file_id", _Id, sa.ForeignKey("source_files.id", ondelete="CASCADE")),
        sa.Column("ra", sa.Double, nullable=False, comment="deg, ICRS, at ref_epoch"),
        sa.Column("dec", sa.Double, nullable=False, comment="deg, ICRS, at ref_epoch"),
        sa.Column("ra_error", sa.Double, comment="mas, includes cos(dec)"),
        sa.Column("dec_error", sa.Double, comment="mas"),
        sa.Column("pmra", sa.Double, comment="mas/yr, includes cos(dec)"),
        sa.Column("pmra_error", sa.Double, comment="mas/yr"),
        sa.Column("pmdec", sa.Double, comment="mas/yr"),
        sa.Column("pmdec_error", sa.Double, comment="mas/yr"),
        sa.Column("parallax", sa.Double, comment="mas"),
        sa.Column("parallax_error", sa.Double, comment="mas"),
        sa.Column("radial_velocity", sa.Double, comment="km/s"),
        sa.Column("radial_velocity_error", sa.Double, comment="km/s"),
        sa.Column("ref_epoch", sa.Double, nullable=False, comment="Julian year"),
        sa.Column("mag", sa.Double),
        sa.Column("weight", sa.Double),
        sa.Column("hpx29", sa.BigInteger, nullable=False, comment="nested HEALPix order-29 pixel of (ra, dec)"),
        sa.UniqueConstraint("catalog_id", "source_id", name="uq_sources_catalog_source"),
        sa.CheckConstraint("dec BETWEEN -90 AND 90 AND ra >= 0 AND ra < 360", name="ck_sources_position"),
        # One partition per catalog on PostgreSQL (astrodb.store.partitions): a catalog is loaded
        # into a bare table, indexed once, then attached; a cone scans only its catalog's index.
        postgresql_partition_by="LIST (catalog_id)",
    )
    op.create_index("ix_sources_catalog_hpx29", "sources", ["catalog_id", "hpx29"])
    if is_pg:
        op.execute(
            "ALTER TABLE sources ADD COLUMN geog public.geography(Point, 4326) GENERATED ALWAYS AS "
            "(public.ST_SetSRID(public.ST_MakePoint(ra - 180.0, dec), 4326)::public.geography) STORED")
        op.execute("CREATE INDEX ix_sources_geog ON sources USING gist (geog)")


def downgrade() -> None:
    op.drop_table("sources")
    op.drop_table("source_files")
    op.drop_table("catalogs")
