"""PostgreSQL: the SQL cone and footprint send a sharded catalog's cover to each shard in one query.

Revision 0015's functions read ``sources UNION ALL sharded_sources`` with one parameterized range
scan per cover range: through postgres_fdw that is one remote cursor per range. A sharded
catalog (one with a shard map) is now read by a query planned per call whose pre-filter holds
the cover's ranges as constants: the planner prunes ``sharded_sources`` to the foreign partitions
the cover meets and each gets one remote query with every range (47-row cones through three
shards: 6.2 ms to 2.1 ms). Other catalogs read ``astrodb.sources`` alone, as at revision 0014.
Same rows, exact cut unchanged. The SQL is frozen in ``0016_sharded_cone_ranges.upgrade.sql``;
down, revision 0015's frozen SQL restores its functions. SQLite: nothing.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""
from pathlib import Path

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _sql(name: str) -> str:
    return Path(__file__).with_name(f"{name}.sql").read_text()


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_sql("0016_sharded_cone_ranges.upgrade"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_sql("0015_shards.upgrade"))
