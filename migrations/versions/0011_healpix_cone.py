"""PostgreSQL: the SQL cone and footprint read HEALPix ranges of the (catalog_id, hpx29) btree.

``astrodb.hpx_disc(k, ra, dec, radius)`` (new) gives the nested HEALPix pixels of order k that
meet a disc, computed in SQL ring by ring; ``astrodb._hpx_ranges`` turns them into merged
order-29 ranges. ``astrodb.cone`` and ``astrodb.footprint`` pre-filter with those ranges (one
index range scan each) instead of PostGIS ``ST_DWithin`` on the geography GiST: the same rows,
exact cut unchanged, and no spatial index needed, which is what a Gaia-scale ingest cannot
afford. The SQL is frozen in ``0011_healpix_cone.upgrade.sql``; ``.downgrade.sql`` restores the
functions revisions 0002 and 0008 left. SQLite: nothing (its cones use the same ranges,
computed in Python).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""
from pathlib import Path

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _sql(direction: str) -> str:
    return Path(__file__).with_name(f"0011_healpix_cone.{direction}.sql").read_text()


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_sql("upgrade"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_sql("downgrade"))
