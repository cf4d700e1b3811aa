"""Catalogs sharded by HEALPix range over several PostgreSQL servers.

``shards``: the servers holding sharded catalogs' rows (each a store database of its own; the
coordinator reaches it through a ``postgres_fdw`` foreign server whose user mapping holds the
credentials). ``shard_ranges``: a sharded catalog's map, inclusive order-29 HEALPix ranges, each on
one shard in a table of its own. ``shard_moves``: the journal of range moves (rebalance), so an
interrupted move resumes. ``sharded_sources`` (PostgreSQL): the sharded catalogs' rows as seen
from the coordinator, one list partition per catalog, range-partitioned into foreign tables; the
SQL cone and footprint read it beside ``sources`` (their SQL is frozen in
``0015_shards.upgrade.sql``; down, revision 0014's frozen SQL restores them).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""
from pathlib import Path

from alembic import op
import sqlalchemy as sa

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _sql(name: str) -> str:
    return Path(__file__).with_name(f"{name}.sql").read_text()


def upgrade() -> None:
    op.create_table(
        "shards",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(40), nullable=False, unique=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("dbname", sa.Text, nullable=False),
        sa.Column("server", sa.String(63), nullable=False, comment="the coordinator's postgres_fdw foreign server"),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "shard_ranges",
        sa.Column("catalog_id", _Id, sa.ForeignKey("catalogs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("lo", sa.BigInteger, primary_key=True, comment="first order-29 nested HEALPix index"),
        sa.Column("hi", sa.BigInteger, nullable=False, comment="last order-29 nested HEALPix index (inclusive)"),
        sa.Column("shard_id", _Id, sa.ForeignKey("shards.id"), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, comment="the catalog's map version that set it"),
    )
    op.create_table(
        "shard_moves",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("catalog_id", _Id, sa.ForeignKey("catalogs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("lo", sa.BigInteger, nullable=False),
        sa.Column("hi", sa.BigInteger, nullable=False),
        sa.Column("source_id", _Id, sa.ForeignKey("shards.id"), nullable=False),
        sa.Column("target_id", _Id, sa.ForeignKey("shards.id"), nullable=False),
        sa.Column("step", sa.String(20), nullable=False, comment="copying, switched, done"),
        sa.Column("rows", sa.BigInteger),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    if op.get_bind().dialect.name == "postgresql":
        # No unique index: partitions that are foreign tables cannot have one (each shard's
        # tables keep source_id unique within their range).
        op.execute("CREATE TABLE astrodb.sharded_sources (LIKE astrodb.sources INCLUDING DEFAULTS "
                   "INCLUDING CONSTRAINTS) PARTITION BY LIST (catalog_id)")
        op.execute(_sql("0015_shards.upgrade"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_sql("0014_cone_cover_order.upgrade"))
        op.execute("DROP TABLE astrodb.sharded_sources CASCADE")
    op.drop_table("shard_moves")
    op.drop_table("shard_ranges")
    op.drop_table("shards")
