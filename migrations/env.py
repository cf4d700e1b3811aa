"""Alembic environment: migrates the connection handed over by ``astrodb.store.migrate``.

Run programmatically (``Store.init()`` / ``astrodb init``); ``alembic`` on the command line works
too with ``-x url=...`` or ``ASTRODB_URL``.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import text

from astrodb.store.schema import PG_SCHEMA, metadata


def _run(connection) -> None:
    is_pg = connection.dialect.name == "postgresql"
    if is_pg:
        # The version table lives with the store's tables, so the schema must exist first.
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}"))
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=PG_SCHEMA if is_pg else None,
        render_as_batch=not is_pg,  # SQLite alters tables by copy-and-move
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from astrodb.store.engine import create_store_engine
    url = context.get_x_argument(as_dictionary=True).get("url")
    engine = create_store_engine(url)
    with engine.begin() as conn:
        _run(conn)


main()
