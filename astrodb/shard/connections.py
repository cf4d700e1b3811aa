"""Connections from a client (or a loader) straight to the shards, bypassing the coordinator.

A client reaches each shard as the role it reaches the coordinator with (the coordinator URL's
user and password; without a password, libpq's own sources: ``PGPASSFILE``, ``~/.pgpass``), at the
host, port and database the ``shards`` table names. Connections are pooled per shard.

A dead shard is told in seconds, not TCP's minutes: connecting gives up after
:data:`CONNECT_TIMEOUT` s, and an open connection whose server stops answering is dropped by the
kernel after :data:`TCP_USER_TIMEOUT_MS` of unacknowledged data (keepalives find it when idle).
A pooled connection that fails is retried once on a new one (the shard may have restarted);
failing again, the whole query fails with :class:`~astrodb.errors.ShardUnavailableError`
naming the shard.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg
from sqlalchemy.engine import URL

from ..errors import ShardUnavailableError
from ..store.schema import PG_SCHEMA
from .shard_map import Shard

#: Seconds a connection attempt to a shard may take.
CONNECT_TIMEOUT = 3
#: Milliseconds sent data may stay unacknowledged before the connection counts as dead.
TCP_USER_TIMEOUT_MS = 5000

T = TypeVar("T")

# As the coordinator's own sessions (astrodb.store.engine): short queries, no JIT, no workers.
_OPTIONS = f"-c search_path={PG_SCHEMA},public -c jit=off -c max_parallel_workers_per_gather=0"


class ShardConnections:
    """Pooled psycopg connections to each shard, made with the coordinator URL's credentials."""

    def __init__(self, coordinator: URL, pool_size: int = 8) -> None:
        self._user = coordinator.username
        self._password = coordinator.password
        self._pool_size = pool_size
        self._pools: dict[tuple, queue.LifoQueue] = {}
        self._lock = threading.Lock()

    def conninfo(self, shard: Shard) -> dict:
        """libpq parameters reaching ``shard``."""
        params = {"host": shard.host, "port": shard.port, "dbname": shard.dbname, "options": _OPTIONS,
                  "connect_timeout": CONNECT_TIMEOUT, "keepalives": 1, "keepalives_idle": 2,
                  "keepalives_interval": 1, "keepalives_count": 3, "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
                  "application_name": "astrodb"}
        if self._user:
            params["user"] = self._user
        if self._password:
            params["password"] = self._password
        return params

    def url(self, shard: Shard) -> URL:
        """The SQLAlchemy URL reaching ``shard`` as these connections do (password included)."""
        return URL.create("postgresql+psycopg", username=self._user, password=self._password, host=shard.host,
                          port=shard.port, database=shard.dbname)

    def connect(self, shard: Shard, autocommit: bool = True) -> psycopg.Connection:
        """A new connection to ``shard`` (not pooled); ShardUnavailableError when it cannot be made."""
        try:
            return psycopg.connect(autocommit=autocommit, **self.conninfo(shard))
        except psycopg.OperationalError as exc:
            raise unavailable(shard, exc) from None

    def _pool(self, shard: Shard) -> queue.LifoQueue:
        key = (shard.id, shard.host, shard.port, shard.dbname)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = queue.LifoQueue()
            return pool

    def run(self, shard: Shard, work: Callable[[psycopg.Connection], T]) -> T:
        """``work(connection)`` on a pooled autocommit connection to ``shard``.

        A connection broken under ``work`` is replaced and ``work`` run once more; errors of the
        query itself (a missing table, a bad value) pass through unchanged.
        """
        pool = self._pool(shard)
        for attempt in (0, 1):
            try:
                conn = pool.get_nowait()
                fresh = False
            except queue.Empty:
                conn, fresh = self.connect(shard), True
            try:
                result = work(conn)
            except psycopg.OperationalError as exc:
                conn.close()
                if fresh or attempt:
                    raise unavailable(shard, exc) from None
                continue  # a pooled connection the server dropped (restart): once more, new
            except BaseException:
                if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.close()
                elif pool.qsize() < self._pool_size:
                    pool.put(conn)
                raise
            if pool.qsize() < self._pool_size:
                pool.put(conn)
            else:
                conn.close()
            return result
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            while True:
                try:
                    pool.get_nowait().close()
                except queue.Empty:
                    break


def unavailable(shard: Shard, exc: BaseException) -> ShardUnavailableError:
    """The error a query needing an unreachable ``shard`` fails with."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ShardUnavailableError(f"shard {shard.name!r} ({shard.address}) is unavailable: {text}", shard.name)
