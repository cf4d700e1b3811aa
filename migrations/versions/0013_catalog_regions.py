"""The regions a catalog was loaded for (``catalog_regions``): region-limited Gaia loads.

One row per cut a catalog was loaded with: the region as asked for, the epochs its queries are
exact for, the displacement bound behind the widening, the cells whose rows were kept (``cells``)
and the part of them every row of which is loaded (``claimed``, counting once ``complete``). A
load without a region into a catalog that has rows here adds a ``full_sky`` row. A catalog with
no row, or a complete full-sky one, is unlimited (every catalog loaded before this revision).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "catalog_regions",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("catalog_id", _Id, sa.ForeignKey("catalogs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("cut_key", sa.String(64), nullable=False,
                  comment="sha256 of the cut (cells, epochs); a file loaded with it is recorded as "
                  "sha256(file sha256:cut_key)"),
        sa.Column("description", sa.Text, nullable=False, comment="the region as asked for, e.g. --cone 10 20 1 deg"),
        sa.Column("full_sky", sa.Boolean, nullable=False, server_default=sa.false(), comment="a load without a region"),
        sa.Column("epoch_lo", sa.Double, comment="Julian year: queries are exact from"),
        sa.Column("epoch_hi", sa.Double, comment="Julian year: queries are exact to"),
        sa.Column("ref_epoch", sa.Double, comment="the release's reference epoch, Julian year"),
        sa.Column("pad_deg", sa.Double, comment="the region's widening: the largest displacement over the epochs"),
        sa.Column("pm_max", sa.Double, comment="the displacement bound's proper motion, mas/yr"),
        sa.Column("radial_rate_max", sa.Double, comment="the displacement bound's |v_r|/distance, 1/yr"),
        sa.Column("parallax_max", sa.Double, comment="the displacement bound's parallax, mas"),
        sa.Column("norder", sa.SmallInteger, comment="HEALPix order (nested) of cells and claimed"),
        sa.Column("cells", sa.LargeBinary,
                  comment="the cut, the rows kept: [lo, hi) cell ranges, little-endian int64 pairs"),
        sa.Column("claimed", sa.LargeBinary, comment="the part of the cut all of whose rows are loaded (same encoding)"),
        sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.false(),
                  comment="every file of a load with this cut was loaded: claimed counts"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("catalog_id", "cut_key", name="uq_catalog_regions_catalog_cut"),
    )


def downgrade() -> None:
    op.drop_table("catalog_regions")
