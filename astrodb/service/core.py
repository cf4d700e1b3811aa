"""The service's side of the store: a read-only Store, and the limited queries every protocol
runs (in a worker thread: the Store API is synchronous; which thread and for how long: ``lanes``)."""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy import event

from .. import __version__, connect
from ..config import resolve_url
from . import lanes
from .errors import BadParameter, call_store, one_line, quiet_pool_faults
from ..query.columns import SourceColumns
from ..query.regions import Cone
from .settings import Settings

log = logging.getLogger("astrodb.service")


def open_read_only_store(settings: Settings):
    """Open the store for serving: every connection is read-only (PostgreSQL
    ``default_transaction_read_only``, SQLite ``query_only``), PostgreSQL statements time out
    after ``statement_timeout`` and connection attempts after 5 s, SQLite statements stop at
    their request's deadline (:func:`lanes.expired`)."""
    url = sa.engine.make_url(resolve_url(settings.store_url))
    if url.drivername.startswith("postgresql") and "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": "5"})
    store = connect(url.render_as_string(hide_password=False))
    quiet_pool_faults(store.engine)
    timeout_ms = max(1, int(settings.statement_timeout * 1000))

    if store.backend == "postgresql":
        @event.listens_for(store.engine, "connect")
        def _pg_read_only(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("SET default_transaction_read_only = on")
            cur.execute(f"SET statement_timeout = {timeout_ms}")
            cur.close()
            dbapi_conn.commit()
    else:
        @event.listens_for(store.engine, "connect")
        def _sqlite_read_only(dbapi_conn, _record):
            dbapi_conn.execute("PRAGMA query_only = ON")
            # SQLite has no statement timeout: every 10^5 VM steps (~ms) the request's deadline is read.
            dbapi_conn.set_progress_handler(lanes.expired, 100_000)
    return store


@functools.cache
def _schema_revision() -> str:
    """The schema revision a served store is at (the store checks it equals this package's newest)."""
    from ..store import migrate
    return migrate.head_revision()


@dataclass
class Result:
    rows: SourceColumns
    truncated: bool
    limit: int


@dataclass
class Service:
    """What the routes share: the read-only store and the limits."""

    settings: Settings
    store: object = field(default=None)
    role_can_write: bool | None = None   # PostgreSQL: can the service's role write? (None: not known yet)
    limiter: object = field(default=None)
    heavy: lanes.HeavyLane | None = None

    @classmethod
    def open(cls, settings: Settings) -> "Service":
        store = open_read_only_store(settings)
        # At most as many queries at a time as the pool keeps connections: more would open and
        # close overflow connections on every request (a PostgreSQL backend start each).
        threads = min(settings.threads, max(1, store.engine.pool.size()))
        return cls(settings, store, limiter=anyio.CapacityLimiter(threads),
                   heavy=lanes.HeavyLane(settings, cls.open))

    async def run(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` in a worker thread (the Store is synchronous)."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.limiter)

    async def query(self, radius: float, fn, *args):
        """``fn(service, *args)``, a query of a region of bounding ``radius`` deg and the rendering
        of its rows, in the lane its size calls for and within the request's time limit.

        Parameters
        ----------
        radius : float
            The region's bounding radius, deg: above ``heavy_radius`` the heavy lane's process
            runs it (with its own Service), so ``fn`` and ``args`` must be picklable.
        fn : callable
            The work, a module-level function; :func:`lanes.deadline` gives it the deadline inside.
        *args
            Passed to ``fn`` after the Service.
        """
        limit = self.settings.request_timeout
        until = time.monotonic() + limit
        if radius > self.settings.heavy_radius:
            return await self.heavy.run(fn, limit, until, *args)
        return await self.run(lanes.bounded, fn, limit, until, self, *args)

    def close(self) -> None:
        if self.heavy is not None:
            self.heavy.close()
        self.store.close()

    def row_limit(self, name: str, requested: int | None) -> int:
        if requested is None:
            return self.settings.max_rows
        if requested < 0:
            raise BadParameter(name, f"must be >= 0, got {requested}")
        return min(requested, self.settings.max_rows)

    # -- queries (run these in a worker thread) --------------------------------------------
    @staticmethod
    def check_name(name: str, parameter: str = "catalog") -> str:
        if not name or len(name) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise BadParameter(parameter, f"not a catalog name: {name[:40]!r}")
        return name

    def cone(self, catalog: str, ra: float, dec: float, radius: float, *, epoch: float | None,
             columns=None, limit: int, pm_prior: float | None = None, observer=None) -> Result:
        self.check_name(catalog)
        kw = {} if pm_prior is None else {"pm_prior": pm_prior}
        rows = call_store(self.store, self.store.search, Cone.create(ra, dec, radius), catalog=catalog, epoch=epoch,
                          columns=columns, observer=observer, **kw)
        return self._limit(rows, limit)

    def footprint(self, catalog: str, region, *, epoch: float | None, columns=None, limit: int,
                  pm_prior: float | None = None) -> Result:
        self.check_name(catalog)
        kw = {} if pm_prior is None else {"pm_prior": pm_prior}
        rows = call_store(self.store, self.store.search, region, catalog=catalog, epoch=epoch, columns=columns, **kw)
        return self._limit(rows, limit)

    @staticmethod
    def _limit(rows: SourceColumns, limit: int) -> Result:
        if len(rows) > limit:
            return Result(rows.head(limit), True, limit)   # sorted by distance: the nearest are kept
        return Result(rows, False, limit)

    def catalogs(self):
        return call_store(self.store, self.store.catalogs)

    def catalog(self, name: str):
        self.check_name(name, "name")
        return call_store(self.store, self.store.catalog, name)

    def health(self) -> dict:
        """Store reachable and at the current schema; on PostgreSQL, whether the role can write.

        Returns
        -------
        dict
            status, service version, schema revision, backend name, number of catalogs, the
            read-only safeguards and the limits; no URL, host, user or file name.
        """
        def probe():
            self.store._require_schema()
            with self.store.engine.connect() as conn:
                n = conn.exec_driver_sql("SELECT count(*) FROM catalogs").scalar_one()
                if self.store.backend == "postgresql":
                    self.role_can_write = bool(conn.exec_driver_sql(
                        "SELECT has_table_privilege('astrodb.catalogs', 'INSERT, UPDATE, DELETE, TRUNCATE') "
                        "OR has_schema_privilege('astrodb', 'CREATE')").scalar_one())
            return int(n)
        n = call_store(self.store, probe)
        # Where the database is and who connects stay out: /health is for anyone who can reach the port.
        return {"status": "ok", "version": __version__, "schema_revision": _schema_revision(),
                "backend": self.store.backend, "catalogs": n, "read_only_session": True,
                "role_can_write": self.role_can_write, "max_radius_deg": self.settings.max_radius,
                "max_rows": self.settings.max_rows, "max_body_bytes": self.settings.max_body,
                "request_timeout_s": self.settings.request_timeout, "heavy_radius_deg": self.settings.heavy_radius}

    def check_role(self) -> None:
        """Log a warning when the PostgreSQL role could write (the service never does, but a
        read-only role is the safeguard; see docs/service.md). Silent when the store is down."""
        try:
            self.health()
        except Exception as exc:  # noqa: BLE001 - startup must not fail on a down database
            log.warning("store not reachable at startup (%s); serving 503 until it is", one_line(exc))
            return
        if self.role_can_write:
            log.warning("the service's PostgreSQL role can write to the store; it never writes (every "
                        "session is read-only), but connect it as a read-only role: see docs/service.md")
