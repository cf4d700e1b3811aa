"""The shards of a store: adding one (a PostgreSQL database that becomes a store of its own and a
``postgres_fdw`` foreign server of the coordinator), listing them, migrating them all."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from ..errors import ConfigError, ShardUnavailableError
from ..store import migrate
from ..store.engine import create_store_engine
from ..store.schema import shards
from .connections import CONNECT_TIMEOUT, TCP_USER_TIMEOUT_MS, ShardConnections
from .shard_map import Shard, read_shards

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _upgrade(url: URL) -> int:
    """Migrate the store database at ``url`` to the newest schema; its ``max_prepared_transactions``.

    Raises sqlalchemy's OperationalError when it cannot be reached."""
    engine = create_store_engine(url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SHOW max_prepared_transactions").scalar())
    finally:
        engine.dispose()


def server_name(name: str) -> str:
    """The coordinator's foreign server for shard ``name`` (errors through it name the shard)."""
    return f"shard_{name}"


def add_shard(engine: sa.Engine, name: str, url: str) -> Shard:
    """Add the PostgreSQL database at ``url`` as shard ``name`` of the store behind ``engine``.

    The database is migrated to the store's schema (it needs PostGIS, like any store), checked
    for two-phase commit (``max_prepared_transactions`` > 0) and made a foreign server of the
    coordinator (``CREATE EXTENSION postgres_fdw`` there: a superuser's step). The user and
    password in ``url`` go into the server's user mapping, which roles without USAGE on the
    server (the read-only role) cannot read. Existing catalogs stay where they are; catalogs
    created from now on are spread over every shard (see :mod:`astrodb.shard.shard_map`), and
    ``astrodb shard move`` moves ranges onto the new one.

    Raises
    ------
    ConfigError
        A bad name, an unreachable or unsuitable database, a name or address already used.
    """
    if engine.dialect.name != "postgresql":
        raise ConfigError("sharding needs a PostgreSQL coordinator; an SQLite store is one file")
    if not _NAME.match(name or ""):
        raise ConfigError(f"shard name {name!r}: expected 1-40 lower-case letters, digits or _, starting with a letter")
    try:
        target = make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"shard URL {url!r}: expected postgresql://user[:password]@host[:port]/dbname") from None
    if not target.drivername.startswith("postgresql") or not target.database:
        raise ConfigError(f"shard URL {url!r}: expected postgresql://user[:password]@host[:port]/dbname")
    host, port, dbname = target.host or "localhost", int(target.port or 5432), target.database
    with engine.connect() as conn:
        for s in read_shards(conn).values():
            if s.name == name:
                raise ConfigError(f"the store already has a shard {name!r} ({s.address})")
            if (s.host, s.port, s.dbname) == (host, port, dbname):
                raise ConfigError(f"{host}:{port}/{dbname} is already shard {s.name!r}")
    try:
        prepared = _upgrade(target)
    except sa.exc.OperationalError as exc:
        raise ConfigError(f"cannot reach shard {name!r} at {host}:{port}/{dbname}: {str(exc.orig).splitlines()[0]}") from None
    if prepared < 1:
        raise ConfigError(f"shard {name!r} ({host}:{port}/{dbname}) has max_prepared_transactions = 0: loads "
                          "commit on every shard at once (two-phase commit); set it to at least the number of "
                          "load workers (e.g. 16) and restart that server")
    server = server_name(name)
    opts = {"host": host, "port": str(port), "dbname": dbname, "async_capable": "true",
            "connect_timeout": str(CONNECT_TIMEOUT), "keepalives": "1", "keepalives_idle": "2",
            "keepalives_interval": "1", "keepalives_count": "3", "tcp_user_timeout": str(TCP_USER_TIMEOUT_MS),
            "fetch_size": "10000", "application_name": "astrodb-coordinator"}
    mapping = {"user": target.username or "postgres"}
    if target.password:
        mapping["password"] = target.password
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
        conn.exec_driver_sql(f"CREATE SERVER {server} FOREIGN DATA WRAPPER postgres_fdw OPTIONS ("
                             + ", ".join(f"{k} {_literal(v)}" for k, v in opts.items()) + ")")
        if not target.password:
            # No password to give (trust or peer authentication on the shard): a superuser may
            # let the mapping connect without one.
            mapping["password_required"] = "false"
        conn.exec_driver_sql(f"CREATE USER MAPPING FOR PUBLIC SERVER {server} OPTIONS ("
                             + ", ".join(f"{k} {_literal(v)}" for k, v in mapping.items()) + ")")
        sid = conn.execute(shards.insert().values(name=name, host=host, port=port, dbname=dbname, server=server,
                                                  added_at=datetime.now(timezone.utc)).returning(shards.c.id)).scalar_one()
    return Shard(int(sid), name, host, port, dbname, server)


def list_shards(engine: sa.Engine) -> list[Shard]:
    """The store's shards (none for a store on one server, or SQLite)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        return list(read_shards(conn).values())


@dataclass(frozen=True)
class ShardStatus:
    """What a shard answered (or why it did not)."""

    shard: Shard
    up: bool
    revision: str | None
    prepared: int          # loads' prepared transactions waiting there
    error: str | None


def status(engine: sa.Engine, conns: ShardConnections) -> list[ShardStatus]:
    """Each shard: reachable, its schema revision, prepared transactions waiting."""
    out = []
    for shard in list_shards(engine):
        try:
            with conns.connect(shard) as conn:
                rev = conn.execute("SELECT version_num FROM astrodb.alembic_version").fetchone()
                waiting = conn.execute("SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database() "
                                       "AND gid LIKE 'astrodb:%'").fetchone()[0]
            out.append(ShardStatus(shard, True, rev[0] if rev else None, int(waiting), None))
        except (ShardUnavailableError, psycopg.Error) as exc:
            out.append(ShardStatus(shard, False, None, 0, str(exc).splitlines()[0]))
    return out


def migrate_shards(engine: sa.Engine, conns: ShardConnections) -> list[str]:
    """Migrate every shard to the newest schema (``astrodb init``); the shards' names."""
    done = []
    for shard in list_shards(engine):
        try:
            _upgrade(conns.url(shard))
        except sa.exc.OperationalError as exc:
            raise ShardUnavailableError(f"shard {shard.name!r} ({shard.address}) is unavailable: "
                                        f"{str(exc.orig).splitlines()[0]}", shard.name) from None
        done.append(shard.name)
    return done
