"""PostgreSQL: ``sources`` loses its generated PostGIS geography point and the GiST on it.

Cones and footprints read HEALPix ranges of the ``(catalog_id, hpx29)`` btree since revision
0011, so the geography column and its GiST index serve no query; maintaining the GiST cost
~9 CPU-µs of the ~14.5 a Gaia row costs the server to load, and the two together ~120 B of the
~410 B a row took on disk. Dropping both is a catalog change only (no row is rewritten): the
dropped column's bytes stay in the existing rows until they are rewritten (``VACUUM FULL`` of a
partition returns them). PostGIS stays installed for users' own spatial SQL. SQLite: nothing.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_sources_geog")  # the partitioned index and every partition's
        op.execute("ALTER TABLE sources DROP COLUMN IF EXISTS geog")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Rewrites every partition (a generated column is computed for each stored row).
        op.execute("ALTER TABLE sources ADD COLUMN geog public.geography(Point, 4326) GENERATED ALWAYS AS "
                   "(public.ST_SetSRID(public.ST_MakePoint(ra - 180.0, dec), 4326)::public.geography) STORED")
        op.execute("CREATE INDEX ix_sources_geog ON sources USING gist (geog)")
