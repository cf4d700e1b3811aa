"""The service's errors and how database faults map to them.

Every error a client can cause or see is a :class:`ServiceError` with an HTTP status and, for
bad input, the parameter it is about; each protocol renders it its own way (a VOTable with
``INFO name="Error"`` for SCS, a CSV for GSSS, JSON for the API).
"""
from __future__ import annotations

import logging
import re
import sqlite3

import sqlalchemy as sa

from ..errors import CatalogNotFoundError, ConfigError, QueryError, ShardUnavailableError, one_line

log = logging.getLogger("astrodb.service")

try:  # psycopg is a dependency, but keep the SQLite-only path importable without it
    import psycopg
    _PG_UNAVAILABLE: tuple[type[BaseException], ...] = (psycopg.OperationalError, psycopg.InterfaceError)
except ImportError:  # pragma: no cover
    psycopg = None
    _PG_UNAVAILABLE = ()


class ServiceError(Exception):
    """An error response: HTTP ``status``, a one-line ``message`` and the ``parameter`` at fault."""

    status = 500

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter

    def __reduce__(self):
        # Pickled as it is (from the heavy lane's process), whatever its class's __init__ takes.
        return _restore, (type(self), self.message, self.parameter)


def _restore(cls: type, message: str, parameter: str | None) -> ServiceError:
    exc = cls.__new__(cls)
    ServiceError.__init__(exc, message, parameter)
    return exc


class BadParameter(ServiceError):
    """400: a parameter is missing, not a number, or out of range."""

    status = 400

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}", parameter)


class NotFound(ServiceError):
    """404: unknown catalog or run."""

    status = 404


class Unavailable(ServiceError):
    """503: the database cannot be reached (down, restarting, too slow); retry later."""

    status = 503


class TooSlow(Unavailable):
    """503: the request's work passed the service's time limit (``request_timeout``) and was stopped."""

    def __init__(self, limit: float | None, stage: str) -> None:
        within = "its time limit" if limit is None else f"its time limit of {limit:g} s"
        super().__init__(f"this service stopped the request while {stage}: it passed {within}; "
                         "ask for a smaller region or fewer rows (limit, MAXREC)")


class Busy(Unavailable):
    """503: too many large requests are already held by this worker; retry later."""

    def __init__(self, queue: int) -> None:
        super().__init__(f"this service is busy with {queue} large requests (regions wider than its heavy_radius, "
                         "GET /health); retry later")


class BodyTooLarge(ServiceError):
    """413: the request body is larger than the service's ``max_body`` bytes."""

    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"body: larger than this service's limit of {limit} bytes", "body")


def _was_stopped(exc: BaseException) -> bool:
    """A query stopped by the service's own limit: PostgreSQL's statement_timeout, or the SQLite
    progress handler of the request's deadline (``interrupted``)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if psycopg is not None and isinstance(exc, psycopg.errors.QueryCanceled):
        return True
    return isinstance(exc, sqlite3.OperationalError) and str(exc) == "interrupted"


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, (sa.exc.TimeoutError, sa.exc.InterfaceError)):
        return True
    if _PG_UNAVAILABLE and isinstance(exc, _PG_UNAVAILABLE):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return True  # locked, unreadable file
    return isinstance(exc, sa.exc.OperationalError)


# libpq names the server ('connection to server at "host" (addr), port 5432 failed: ') and quotes
# hosts, sockets, users and databases ('for user "reader"'): none of it is the clients' business.
_SERVER = re.compile(r'connection to server (?:at|on socket) "[^"]*"(?: \([^)]*\))?(?:, port \d+)? failed: ')
_QUOTED = re.compile(r'"[^"]*"')


def public_reason(text: str) -> str:
    """``text`` (one line of a database error) without the server's address, user or database names.

    Parameters
    ----------
    text : str
        A database driver's message.

    Returns
    -------
    str
        The message with every quoted name replaced by ``"…"``.
    """
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return _QUOTED.sub('"…"', _SERVER.sub("", first)).replace("FATAL:  ", "")


def unavailable_message(exc: BaseException) -> str:
    """The client's 503 message: why the database is unavailable, without where it is or who connects."""
    return f"the catalog database is unavailable ({public_reason(one_line(exc))}); retry later"


def call_store(store, fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` (a Store call), mapping store and database errors to
    :class:`ServiceError`.

    A connection broken by a database restart fails once: the pool is then emptied and the call
    retried once on a fresh connection, so the service recovers by itself when the database is
    back; if the database is still down the retry fails fast (connection refused) and the
    client gets 503.
    """
    for attempt in (1, 2):
        try:
            return fn(*args, **kwargs)
        except CatalogNotFoundError as exc:
            raise NotFound(str(exc)) from None
        except ShardUnavailableError as exc:  # the shard by name, not its address
            log.warning("%s", exc)
            raise Unavailable(f"shard {exc.shard!r} of the catalog database is unavailable; retry later") from None
        except ConfigError as exc:  # cannot open the store, or it is not initialized / upgraded
            raise Unavailable(public_reason(str(exc).replace(store.url, "the catalog database"))) from None
        except QueryError as exc:
            raise BadParameter(_query_error_parameter(str(exc)), str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - classified below
            if _was_stopped(exc):     # the same query again would be stopped again
                raise TooSlow(None, "running the query") from None
            if not _is_unavailable(exc):
                raise
            store.engine.dispose()  # drop every pooled connection: they died with the server
            if attempt == 2:
                log.warning("database unavailable: %s", one_line(exc))
                raise Unavailable(unavailable_message(exc)) from None


# What SQLAlchemy's pool logs, with a full traceback, for each connection a database restart killed.
_POOL_FAULTS = ("Exception during reset", "Exception closing connection", "Exception terminating connection",
                "Error closing cursor")


class PoolFaultFilter(logging.Filter):
    """Turns the connection pool's traceback about a dead connection into one warning line.

    After a database restart every pooled connection fails its reset (the rollback when it is
    returned to the pool) or its close; SQLAlchemy then discards it, which is all that is needed,
    but logs each as an ERROR with a traceback. This filter rewrites such a record in place:
    level WARNING, message ``"<what failed>: <exception type>: <first line>; the connection is
    discarded"``, no traceback. Every other record passes unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a pool fault record; keep every record.

        Parameters
        ----------
        record : logging.LogRecord
            A record of the pool's logger.

        Returns
        -------
        bool
            Always True (the record is logged, maybe rewritten).
        """
        if not (record.exc_info and isinstance(record.msg, str) and record.msg.startswith(_POOL_FAULTS)):
            return True
        exc = record.exc_info[1]
        what = record.msg.replace(" %r", "")      # the connection's repr names the server: left out
        record.msg = "%s: %s: %s; the connection is discarded"
        record.args = (what, type(exc).__name__, one_line(exc) if exc is not None else "")
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


def quiet_pool_faults(engine: sa.Engine) -> logging.Logger:
    """Install :class:`PoolFaultFilter` on the logger of ``engine``'s pool (once per logger).

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The store's engine.

    Returns
    -------
    logging.Logger
        The pool's logger (shared by every pool of the same class in the process).
    """
    logger = engine.pool.logger
    logger = getattr(logger, "logger", logger)   # a pool created with echo wraps its Logger
    if not any(isinstance(f, PoolFaultFilter) for f in logger.filters):
        logger.addFilter(PoolFaultFilter())
    return logger


def _query_error_parameter(message: str) -> str:
    if "column" in message[:30]:
        return "columns"
    for name in ("epoch", "radius", "ra", "dec", "pm_prior", "observer", "polygon", "since", "until"):
        if message.startswith(name):
            return name
    return "query"
