"""Refuse input no record or star can hold, in the database itself.

PostgreSQL: ``astrodb.propagate`` raises (SQLSTATE 22023, naming the argument) for a declination
outside [-90, 90] deg or a non-finite position, instead of answering (190, 85) for (10, 95) or
(0, 90) for NaN; the body is otherwise revision 0002's.

SQLite: the provenance tables also refuse ``INSERT OR REPLACE`` / ``REPLACE INTO`` and
``INSERT ... ON CONFLICT DO UPDATE``: REPLACE deletes the conflicting row without firing the
DELETE trigger (unless recursive triggers are on), so a record could be rewritten. A BEFORE
INSERT trigger that finds the key already there aborts first, whatever the conflict clause.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
import importlib.util
from pathlib import Path

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_CHECK = """BEGIN
  IF "dec" IS NOT NULL AND (NOT ("dec" BETWEEN -90.0 AND 90.0) OR "dec" = 'NaN'::float8) THEN
    RAISE EXCEPTION 'astrodb.propagate: dec must be a finite declination within [-90, 90] deg, got %', "dec"
      USING ERRCODE = '22023';
  END IF;
  IF ra IS NOT NULL AND (ra = 'NaN'::float8 OR ra IN ('Infinity'::float8, '-Infinity'::float8)) THEN
    RAISE EXCEPTION 'astrodb.propagate: ra must be a finite right ascension (deg), got %', ra
      USING ERRCODE = '22023';
  END IF;
"""

#: SQLite tables of the provenance and the columns of their keys.
_KEYS = {"prov_runs": ("run_id",), "prov_images": ("run_id", "image_index")}


def _propagate_sql(checked: bool) -> str:
    # The function's body as revision 0002 made it (migrations keep their own SQL).
    spec = importlib.util.spec_from_file_location("_astrodb_0002", Path(__file__).with_name("0002_sql_functions.py"))
    m0002 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m0002)
    base = m0002._propagate_plpgsql()
    sql = base.replace("CREATE FUNCTION astrodb.propagate", "CREATE OR REPLACE FUNCTION astrodb.propagate", 1)
    return sql.replace("BEGIN\n", _CHECK, 1) if checked else sql


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_propagate_sql(True))
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
        op.execute(_propagate_sql(False))
    elif dialect == "sqlite":
        for table in _KEYS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
