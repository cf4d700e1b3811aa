"""Each catalog's HEALPix density map (``catalog_density``), filled from the rows already stored.

Rows per nested HEALPix pixel of order 7 (``astrodb.store.schema.DENSITY_ORDER``), from each
row's ``hpx29``; every later load adds its rows in its own transaction
(:mod:`astrodb.ingest.density`). The backfill reads every row once (one aggregate over
``sources``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")
ORDER = 7  # frozen here: a later order is a later revision


def upgrade() -> None:
    op.create_table(
        "catalog_density",
        sa.Column("catalog_id", _Id, sa.ForeignKey("catalogs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("norder", sa.SmallInteger, primary_key=True, comment="HEALPix order, nested scheme"),
        sa.Column("pixel", sa.BigInteger, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False, comment="sources whose ra/dec fall in the pixel"),
    )
    shift = 2 * (29 - ORDER)
    op.execute(f"INSERT INTO catalog_density (catalog_id, norder, pixel, count) "
               f"SELECT catalog_id, {ORDER}, hpx29 >> {shift}, count(*) FROM sources "
               f"GROUP BY catalog_id, hpx29 >> {shift}")


def downgrade() -> None:
    op.drop_table("catalog_density")
