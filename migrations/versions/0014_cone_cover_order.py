"""PostgreSQL: the SQL cone's HEALPix cover at an order chosen by the catalog's density, inlined.

``astrodb.cone`` read the ranges of a cover at a fixed order (pixels about a quarter of the
radius across, ~65 of them for any cone) through two nested plpgsql calls. The cover now takes
its order from the rows expected in the cone (``astrodb._cover_order``: the catalog's order-7
density map under the centre), from ~8 pixels where the sky is empty to ~100 where it is dense,
and is a plain SQL function (``astrodb._hpx_cover`` over ``astrodb._hpx_pixels``) that the cones'
static queries plan in. Same rows, exact cut unchanged. ``astrodb.hpx_disc`` keeps its
signature and results; ``astrodb._hpx_ranges`` takes an optional catalog. The SQL is frozen in
``0014_cone_cover_order.upgrade.sql``; down, ``.downgrade.sql`` drops the functions this revision
added and revision 0011's own frozen SQL restores the rest. SQLite: nothing.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""
from pathlib import Path

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _sql(name: str) -> str:
    return Path(__file__).with_name(f"{name}.sql").read_text()


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_sql("0014_cone_cover_order.upgrade"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_sql("0014_cone_cover_order.downgrade"))
        op.execute(_sql("0011_healpix_cone.upgrade"))
