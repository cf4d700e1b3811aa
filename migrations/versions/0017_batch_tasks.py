"""Batch alignment: one row per association task whose runs a batch recorded.

``prov_batch_tasks``: an association aligned by ``aligner align-batch``, keyed by the sha256 of its
manifest, its inputs, its parameters and the software's versions, with the attempt number and the
runs (``prov_runs``) the task recorded in the same transaction. The key makes a retried or rerun
task's records one set: a rerun skips the keys already recorded without failure. Append-only,
like the other provenance tables.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prov_batch_tasks",
        sa.Column("task_key", sa.String(64), primary_key=True,
                  comment="sha256 of the manifest, its inputs' sha256, the parameters and the software versions"),
        sa.Column("attempt", sa.Integer, primary_key=True, comment="0 first; a rerun of a failed or forced task adds one"),
        sa.Column("association", sa.Text, nullable=False),
        sa.Column("manifest", sa.Text, nullable=False, comment="the manifest file, or table#association"),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, comment="success, partial or failed"),
        sa.Column("message", sa.Text),
        sa.Column("run_ids", sa.JSON, nullable=False, comment="the prov_runs rows of the task, in order"),
        sa.Column("n_images", sa.Integer, nullable=False),
        sa.Column("n_aligned", sa.Integer, nullable=False),
        sa.Column("rmse", sa.Double, comment="arcsec, the images' final fits, root mean square"),
        sa.Column("seconds", sa.Double, comment="the task's time on its worker"),
        sa.Column("worker", sa.Text, comment="where it ran"),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE TRIGGER prov_batch_tasks_append_only BEFORE UPDATE OR DELETE ON prov_batch_tasks "
                   "FOR EACH ROW EXECUTE FUNCTION prov_append_only()")
        op.execute("CREATE TRIGGER prov_batch_tasks_no_truncate BEFORE TRUNCATE ON prov_batch_tasks "
                   "FOR EACH STATEMENT EXECUTE FUNCTION prov_append_only()")
    else:
        for name in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER prov_batch_tasks_no_{name.lower()} BEFORE {name} ON prov_batch_tasks "
                       f"BEGIN SELECT RAISE(ABORT, 'provenance is append-only: {name} on prov_batch_tasks rejected'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER prov_batch_tasks_append_only ON prov_batch_tasks")
        op.execute("DROP TRIGGER prov_batch_tasks_no_truncate ON prov_batch_tasks")
    op.drop_table("prov_batch_tasks")
