"""PostgreSQL: store the provenance's npz columns without TOAST compression.

``prov_images.catalog_data``, ``prov_images.matches`` and ``prov_runs.ref_data`` hold npz files
the aligner has already deflated; PostgreSQL's default storage (EXTENDED) tries to compress
them again with pglz, which gains nothing: the record of a 32-image x 10k-source FITS run took
0.25 s to write with it, 0.18 s without (``Recorder.write`` timed on the same run). EXTERNAL
keeps them out of line, uncompressed. The WCS columns (header text, ASDF YAML) compress well
and keep the default. SQLite has no such setting.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_COLUMNS = (("prov_images", "catalog_data"), ("prov_images", "matches"), ("prov_runs", "ref_data"))


def _set(storage: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.execute(f"ALTER TABLE astrodb.{table} ALTER COLUMN {column} SET STORAGE {storage}")


def upgrade() -> None:
    _set("EXTERNAL")


def downgrade() -> None:
    _set("EXTENDED")
