"""Gaia astrometry kept per source: the ten astrometric correlation coefficients and
astrometric_params_solved (2, 3, 5, 6, 31, 95: which parameters the solution has).

Nullable, so user catalogs need none of them. On PostgreSQL the columns reach every catalog
partition through the partitioned parent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CORRELATIONS = ("ra_dec_corr", "ra_parallax_corr", "ra_pmra_corr", "ra_pmdec_corr",
                "dec_parallax_corr", "dec_pmra_corr", "dec_pmdec_corr", "parallax_pmra_corr",
                "parallax_pmdec_corr", "pmra_pmdec_corr")


def upgrade() -> None:
    for name in CORRELATIONS:
        op.add_column("sources", sa.Column(name, sa.Double))
    op.add_column("sources", sa.Column(
        "astrometric_params_solved", sa.SmallInteger,
        comment="Gaia: 3 = ra, dec; 31 = + parallax, pm (5-p); 95 = + pseudocolour (6-p); DR1 2/5"))


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("astrometric_params_solved")
        for name in reversed(CORRELATIONS):
            batch.drop_column(name)
