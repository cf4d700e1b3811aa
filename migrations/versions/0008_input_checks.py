"""Refuse input no record or star can hold, in the database itself.

PostgreSQL: ``astrodb.propagate`` raises (SQLSTATE 22023, naming the argument) for a declination
outside [-90, 90] deg or a non-finite position, instead of answering (190, 85) for (10, 95) or
(0, 90) for NaN; ``astrodb.footprint`` refuses a polygon with no area (vertices on one great
circle: it failed with a syntax error in its generated SQL) or with crossing edges, as the Python
API does. The bodies are otherwise revision 0002's. The SQL this revision runs is frozen in
``0008_input_checks.upgrade.sql`` (and ``.downgrade.sql``: revision 0002's two functions).

SQLite: the provenance tables also refuse ``INSERT OR REPLACE`` / ``REPLACE INTO`` and
``INSERT ... ON CONFLICT DO UPDATE``: REPLACE deletes the conflicting row without firing the
DELETE trigger (unless recursive triggers are on), so a record could be rewritten. A BEFORE
INSERT trigger that finds the key already there aborts first, whatever the conflict clause.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
from pathlib import Path

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: SQLite tables of the provenance and the columns of their keys.
_KEYS = {"prov_runs": ("run_id",), "prov_images": ("run_id", "image_index")}


def _sql(direction: str) -> str:
    return Path(__file__).with_name(f"0008_input_checks.{direction}.sql").read_text()


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_sql("upgrade"))
    elif dialect == "sqlite":
        for table, keys in _KEYS.items():
            same = " AND ".join(f"{k} = NEW.{k}" for k in keys)
            op.execute(f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
                       f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {same}) BEGIN "
                       f"SELECT RAISE(ABORT, 'provenance is append-only: a second INSERT of a {table} key "
                       f"(REPLACE or UPSERT) rejected'); END")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_sql("downgrade"))
    elif dialect == "sqlite":
        for table in _KEYS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
