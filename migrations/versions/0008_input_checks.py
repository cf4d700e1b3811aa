"""Refuse input no record or star can hold, in the database itself.

PostgreSQL: ``astrodb.propagate`` raises (SQLSTATE 22023, naming the argument) for a declination
outside [-90, 90] deg or a non-finite position, instead of answering (190, 85) for (10, 95) or
(0, 90) for NaN; ``astrodb.footprint`` refuses a polygon with no area (vertices on one great
circle: it failed with a syntax error in its generated SQL) or with crossing edges, as the Python
API does. The bodies are otherwise revision 0002's.

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

#: Inserted into astrodb._footprint after the gnomonic vertices (px, py) are known: the same
#: refusals as astrodb.query.regions.Polygon (a line or a bow tie is no region).
_SIMPLE = """  DECLARE
    ar float8 := 0; sp float8; ep float8; a int; b int; a2 int; b2 int;
    d1 float8; d2 float8; d3 float8; d4 float8;
  BEGIN
    sp := greatest((SELECT max(v) - min(v) FROM unnest(px) v), (SELECT max(v) - min(v) FROM unnest(py) v), 1e-300);
    ep := 1e-12 * sp * sp;
    FOR a IN 1..n - 2 LOOP
      a2 := a + 1;
      FOR b IN a + 2..n LOOP
        CONTINUE WHEN a = 1 AND b = n;
        b2 := CASE WHEN b = n THEN 1 ELSE b + 1 END;
        d1 := (px[a2] - px[a]) * (py[b] - py[a]) - (py[a2] - py[a]) * (px[b] - px[a]);
        d2 := (px[a2] - px[a]) * (py[b2] - py[a]) - (py[a2] - py[a]) * (px[b2] - px[a]);
        d3 := (px[b2] - px[b]) * (py[a] - py[b]) - (py[b2] - py[b]) * (px[a] - px[b]);
        d4 := (px[b2] - px[b]) * (py[a2] - py[b]) - (py[b2] - py[b]) * (px[a2] - px[b]);
        IF ((d1 > ep AND d2 < -ep) OR (d1 < -ep AND d2 > ep)) AND ((d3 > ep AND d4 < -ep) OR (d3 < -ep AND d4 > ep)) THEN
          RAISE EXCEPTION 'astrodb.footprint: polygon edges cross each other: give the vertices in order around the region'
            USING ERRCODE = 'invalid_parameter_value';
        END IF;
      END LOOP;
    END LOOP;
    FOR a IN 1..n LOOP
      a2 := CASE WHEN a = n THEN 1 ELSE a + 1 END;
      ar := ar + px[a] * py[a2] - py[a] * px[a2];
    END LOOP;
    IF abs(ar) / 2 <= ep THEN
      RAISE EXCEPTION 'astrodb.footprint: polygon has no area: its vertices lie on one great circle'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
  END;
"""
_SIMPLE_AT = "  -- Bounding cap: centre c, radius the largest vertex distance"

#: SQLite tables of the provenance and the columns of their keys.
_KEYS = {"prov_runs": ("run_id",), "prov_images": ("run_id", "image_index")}


def _r0002():
    """Revision 0002's module: its SQL, which this revision amends (migrations keep their own)."""
    spec = importlib.util.spec_from_file_location("_astrodb_0002", Path(__file__).with_name("0002_sql_functions.py"))
    m0002 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m0002)
    return m0002


def _propagate_sql(checked: bool) -> str:
    sql = _r0002()._propagate_plpgsql()
    sql = sql.replace("CREATE FUNCTION astrodb.propagate", "CREATE OR REPLACE FUNCTION astrodb.propagate", 1)
    return sql.replace("BEGIN\n", _CHECK, 1) if checked else sql


def _footprint_sql(checked: bool) -> str:
    sql = _r0002()._footprint_impl()
    if _SIMPLE_AT not in sql or "CREATE FUNCTION astrodb._footprint" not in sql:
        raise RuntimeError("revision 0002's astrodb._footprint is not as expected")
    sql = sql.replace("CREATE FUNCTION astrodb._footprint", "CREATE OR REPLACE FUNCTION astrodb._footprint", 1)
    return sql.replace(_SIMPLE_AT, _SIMPLE + _SIMPLE_AT, 1) if checked else sql


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_propagate_sql(True))
        op.execute(_footprint_sql(True))
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
        op.execute(_footprint_sql(False))
    elif dialect == "sqlite":
        for table in _KEYS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
