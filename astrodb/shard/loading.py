"""Loading a file's rows into a sharded catalog, atomically across the shards.

The rows (sorted by ``hpx29``) are cut along the catalog's map and each shard gets its share on
its own connection, in parallel, in one transaction that is then PREPAREd (two-phase commit:
``max_prepared_transactions`` > 0 on every shard). The coordinator's transaction, which records
the file, decides: once it commits, every shard's prepared transaction is committed; if it
does not, they are rolled back. A loader killed in between leaves prepared transactions that
:func:`recover` resolves by that same decision (is the file recorded?), at the start of the next
load, by ``astrodb init`` or ``astrodb shard recover``: a file is loaded on every shard or on
none, never on some. While a prepared transaction waits, its rows are invisible.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psycopg
import sqlalchemy as sa

from ..errors import IngestError, ShardUnavailableError
from ..ingest.bulk import binary_copy_chunks
from ..store.schema import source_files
from .connections import ShardConnections, unavailable
from .placement import create_range_table
from .shard_map import CatalogMap, Shard, read_shards

#: Prefix of the prepared transactions' ids: ``astrodb:{catalog id}:{file sha256}``.
GID_PREFIX = "astrodb:"
# Advisory lock class held by the coordinator's transaction while a file's shards are prepared,
# so that recover() never decides a load still in flight.
_LOCK_CLASS = 0x5A17


def gid(catalog_id: int, sha256: str) -> str:
    """The prepared transactions' id of file ``sha256`` of catalog ``catalog_id``."""
    return f"{GID_PREFIX}{int(catalog_id)}:{sha256}"


def _lock(conn: sa.Connection, gid_: str, wait: bool = True) -> bool:
    fn = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    got = conn.exec_driver_sql(f"SELECT {fn}({_LOCK_CLASS}, hashtext(%s))", (gid_,)).scalar()
    return True if wait else bool(got)


class ShardLoad:
    """One file's share on each shard, prepared, then committed or rolled back as a whole.

    Use with the coordinator's transaction ``conn``::

        load = ShardLoad(conns, cmap, conn, sha256)
        load.copy(names, columns)          # inside the coordinator's transaction: prepares
        ... commit the coordinator's transaction ...
        load.commit()                      # or load.rollback() when it did not commit
    """

    def __init__(self, conns: ShardConnections, cmap: CatalogMap, conn: sa.Connection, sha256: str) -> None:
        self.conns, self.cmap, self.gid = conns, cmap, gid(cmap.catalog_id, sha256)
        _lock(conn, self.gid)
        self.prepared: list[Shard] = []

    def copy(self, names: Sequence[str], columns: Sequence[np.ndarray], *, create_tables: bool = False) -> int:
        """Send each shard its rows (``columns`` sorted by the ``hpx29`` column) and prepare.

        ``create_tables``: create the shards' range tables in the same transactions (a new
        catalog). Every shard of the map takes part (an empty share too), so that all of them are
        up or the load fails before anything is decided.
        """
        pix = columns[list(names).index("hpx29")]
        by_shard: dict[int, list[tuple[int, int, int]]] = {sid: [] for sid in np.unique(self.cmap.shard_ids).tolist()}
        for i, start, stop in self.cmap.slices(pix):
            by_shard[int(self.cmap.shard_ids[i])].append((i, start, stop))
        cols = ", ".join(names)

        def one(sid: int) -> Shard:
            shard = self.cmap.shards[sid]
            conn = self.conns.connect(shard, autocommit=False)
            try:
                if create_tables:
                    for i in np.nonzero(self.cmap.shard_ids == sid)[0]:
                        create_range_table(conn, self.cmap.catalog_id, int(self.cmap.lo[i]), int(self.cmap.hi[i]))
                with conn.cursor() as cur:
                    for i, start, stop in by_shard[sid]:
                        part = [c[start:stop] for c in columns]
                        with cur.copy(f"COPY astrodb.{self.cmap.table(i)} ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
                            for chunk in binary_copy_chunks(part):
                                cp.write(chunk)
                    cur.execute(f"PREPARE TRANSACTION '{self.gid}'")
                return shard
            except psycopg.errors.IntegrityError as exc:
                raise IngestError(f"rejected by shard {shard.name!r}: {str(exc).splitlines()[0]}") from None
            except psycopg.errors.ObjectNotInPrerequisiteState as exc:  # max_prepared_transactions = 0
                raise IngestError(f"shard {shard.name!r} cannot take part in an atomic load: "
                                  f"{str(exc).splitlines()[0]} (set max_prepared_transactions > 0 there)") from None
            except psycopg.OperationalError as exc:
                raise unavailable(shard, exc) from None
            finally:
                conn.close()

        with ThreadPoolExecutor(max_workers=max(1, len(by_shard))) as pool:
            futures = [pool.submit(one, sid) for sid in by_shard]
            errors = []
            for f in futures:
                try:
                    self.prepared.append(f.result())
                except Exception as exc:  # noqa: BLE001 - every shard's outcome is needed first
                    errors.append(exc)
        if errors:
            self.rollback()
            raise errors[0]
        return len(pix)

    def _finish(self, verb: str) -> list[str]:
        failed = []
        for shard in self.prepared:
            try:
                with self.conns.connect(shard) as conn:
                    conn.execute(f"{verb} PREPARED '{self.gid}'")
            except psycopg.errors.UndefinedObject:
                pass  # recover() resolved it meanwhile, by the same decision
            except ShardUnavailableError:
                failed.append(shard.name)  # recover() finishes it when the shard is back
        self.prepared = []
        return failed

    def commit(self) -> list[str]:
        """Commit every shard's prepared share (the coordinator has recorded the file); the
        shards that could not be reached now (their share is committed by :func:`recover`)."""
        return self._finish("COMMIT")

    def rollback(self) -> list[str]:
        """Roll back every shard's prepared share (the coordinator did not record the file)."""
        return self._finish("ROLLBACK")


def recover(engine: sa.Engine, conns: ShardConnections) -> dict[str, int]:
    """Resolve the prepared transactions loads left on the shards: commit those whose file the
    coordinator recorded, roll back the others; loads still in flight are left alone.

    Returns
    -------
    dict
        ``committed``, ``rolled_back``; ``unreachable``: shards that could not be asked.
    """
    out = {"committed": 0, "rolled_back": 0, "unreachable": 0}
    with engine.connect() as conn:
        shards = read_shards(conn)
    for shard in shards.values():
        try:
            with conns.connect(shard) as sconn:
                gids = [r[0] for r in sconn.execute(
                    "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE %s",
                    (GID_PREFIX + "%",)).fetchall()]
                for g in gids:
                    _, cat, sha = g.split(":", 2)
                    with engine.begin() as conn:
                        if not _lock(conn, g, wait=False):
                            continue  # its loader holds it: in flight
                        recorded = conn.execute(sa.select(source_files.c.id).where(
                            source_files.c.catalog_id == int(cat), source_files.c.sha256 == sha)).first()
                        verb = "COMMIT" if recorded is not None else "ROLLBACK"
                        try:
                            sconn.execute(f"{verb} PREPARED '{g}'")
                        except psycopg.errors.UndefinedObject:
                            continue  # resolved meanwhile
                        out["committed" if recorded is not None else "rolled_back"] += 1
        except ShardUnavailableError:
            out["unreachable"] += 1
    return out
