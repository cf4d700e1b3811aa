"""The service's errors and how database faults map to them.

Every error a client can cause or see is a :class:`ServiceError` with an HTTP status and, for
bad input, the parameter it is about; each protocol renders it its own way (a VOTable with
``INFO name="Error"`` for SCS, a CSV for GSSS, JSON for the API).
"""
from __future__ import annotations

import logging
import sqlite3

import sqlalchemy as sa

from ..errors import CatalogNotFoundError, ConfigError, QueryError

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


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, (sa.exc.TimeoutError, sa.exc.InterfaceError)):
        return True
    if _PG_UNAVAILABLE and isinstance(exc, _PG_UNAVAILABLE):
        return True
    if psycopg is not None and isinstance(exc, psycopg.errors.QueryCanceled):
        return True  # statement_timeout
    if isinstance(exc, sqlite3.OperationalError):
        return True  # locked, unreadable file
    return isinstance(exc, sa.exc.OperationalError)


def unavailable_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return f"the catalog database is unavailable ({first}); retry later"


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
        except ConfigError as exc:  # cannot open the store, or it is not initialized / upgraded
            raise Unavailable(str(exc).replace(store.url, "the catalog database")) from None
        except QueryError as exc:
            raise BadParameter(_query_error_parameter(str(exc)), str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - classified below
            if not _is_unavailable(exc):
                raise
            store.engine.dispose()  # drop every pooled connection: they died with the server
            if attempt == 2:
                log.warning("database unavailable: %s", exc)
                raise Unavailable(unavailable_message(exc)) from None


def _query_error_parameter(message: str) -> str:
    if "column" in message[:30]:
        return "columns"
    for name in ("epoch", "radius", "ra", "dec", "pm_prior", "observer", "polygon"):
        if message.startswith(name):
            return name
    return "query"
