"""Run the Alembic migrations (the only source of the schema) on a store's engine."""
from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from .schema import PG_SCHEMA


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("astrodb._migrations")))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision`` (default: the newest)."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """Return the database's migration revision, or None when it was never initialized."""
    with engine.connect() as conn:
        opts = {"version_table_schema": PG_SCHEMA} if conn.dialect.name == "postgresql" else {}
        return MigrationContext.configure(conn, opts=opts).get_current_revision()


def head_revision() -> str:
    """Return the newest revision the package knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()
