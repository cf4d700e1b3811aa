"""PostgreSQL: no per-row foreign-key checks on ``sources``.

Measured (bench/bench_gaia.py, 1.6 M DR3 rows): the two foreign keys of the catalog partitions
(catalog_id -> catalogs, file_id -> source_files) cost 10.7 CPU-µs per inserted row in the
backend, a third of a Gaia ingest's server time (raw COPY 27 k rows/s with them, 49 k without).
They protect nothing the store does not already guarantee on PostgreSQL: rows only enter a
catalog's own partition in the transaction that records their catalog and file, and a catalog
is deleted by dropping its partition (``Store.drop_catalog``), never row by row. SQLite keeps
them (cheap there, and its catalog deletion relies on them).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _fks(bind) -> list[str]:
    return [fk["name"] for fk in sa.inspect(bind).get_foreign_keys("sources", schema="astrodb")]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for name in _fks(bind):
        op.execute(f'ALTER TABLE astrodb.sources DROP CONSTRAINT "{name}"')


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE astrodb.sources ADD FOREIGN KEY (catalog_id) REFERENCES astrodb.catalogs(id) "
               "ON DELETE CASCADE")
    op.execute("ALTER TABLE astrodb.sources ADD FOREIGN KEY (file_id) REFERENCES astrodb.source_files(id) "
               "ON DELETE CASCADE")
