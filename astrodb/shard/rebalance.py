"""Moving one range of a sharded catalog to another shard (rebalancing), losslessly and
resumably.

A move is journalled in ``shard_moves`` and goes in three steps, each safe to interrupt:

1. *copying*: the map's row for the range is locked (loads into the catalog wait; loads in
   flight finish first), the range's table is copied to the target shard (a new table, row
   counts checked on both sides); the map still names the source, so readers are unaffected.
2. *switched*: in one coordinator transaction, the map names the target (a new version) and the
   coordinator's foreign partition reads the target's table; loads resume with the new map.
3. *done*: the source's table is dropped. A reader that still held the old map finds it gone
   and retries with the new one (:class:`astrodb.shard.routing.MapChanged`), never fewer rows.

Run again after an interruption, a move resumes from its journalled step (a copy starts over).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import sqlalchemy as sa

from ..errors import CatalogNotFoundError, ConfigError
from ..store.schema import catalogs, shard_moves, shard_ranges
from .connections import ShardConnections
from .loading import GID_PREFIX, recover
from .placement import attach_foreign, create_range_table
from .shard_map import CatalogMap, range_table, read_map, read_shards

_COLUMNS_SQL = ("SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped")


@dataclass(frozen=True)
class MoveReport:
    """What a move did."""

    catalog: str
    lo: int
    hi: int
    source: str
    target: str
    rows: int
    seconds: float

    def __str__(self) -> str:
        return (f"catalog {self.catalog!r}: range {self.lo}..{self.hi} moved from shard {self.source!r} to "
                f"{self.target!r} ({self.rows} rows, {self.seconds:.1f} s)")


def _catalog_id(conn: sa.Connection, name: str) -> int:
    cid = conn.execute(sa.select(catalogs.c.id).where(catalogs.c.name == name)).scalar()
    if cid is None:
        raise CatalogNotFoundError(f"no catalog {name!r} in the store")
    return int(cid)


def _range_index(cmap: CatalogMap, name: str, lo: int) -> int:
    i = int(np.searchsorted(cmap.lo, lo, side="right")) - 1
    if i < 0 or cmap.lo[i] != lo:
        raise ConfigError(f"catalog {name!r} has no range starting at {lo}: its ranges start at "
                          f"{', '.join(str(int(x)) for x in cmap.lo[:6])}{', ...' if len(cmap.lo) > 6 else ''} "
                          "(astrodb shard map)")
    return i


def _copy(conns: ShardConnections, cmap: CatalogMap, i: int, target) -> int:
    """Copy range ``i``'s table to ``target`` (replacing a partial copy); the rows copied."""
    source, table = cmap.shard_of(i), cmap.table(i)
    with conns.connect(source, autocommit=False) as src, conns.connect(target, autocommit=False) as dst:
        dst.execute(f"DROP TABLE IF EXISTS astrodb.{table}")
        create_range_table(dst, cmap.catalog_id, int(cmap.lo[i]), int(cmap.hi[i]))
        cols = src.execute(_COLUMNS_SQL, (f"astrodb.{table}",)).fetchone()[0]
        with src.cursor() as scur, dst.cursor() as dcur:
            with scur.copy(f"COPY (SELECT {cols} FROM astrodb.{table} ORDER BY hpx29) TO STDOUT (FORMAT BINARY)") as out, \
                    dcur.copy(f"COPY astrodb.{table} ({cols}) FROM STDIN (FORMAT BINARY)") as into:
                for block in out:
                    into.write(block)
        n_src = src.execute(f"SELECT count(*) FROM astrodb.{table}").fetchone()[0]
        n_dst = dst.execute(f"SELECT count(*) FROM astrodb.{table}").fetchone()[0]
        if n_src != n_dst:
            raise ConfigError(f"copy of {table} to shard {target.name!r} holds {n_dst} rows, the source {n_src}")
        dst.commit()
        src.rollback()
    with conns.connect(target) as dst:
        dst.execute(f"ANALYZE astrodb.{table}")
    return int(n_src)


def _wait_for_loads(engine: sa.Engine, conns: ShardConnections, cmap: CatalogMap, i: int, timeout: float = 600) -> None:
    """Until no load of the catalog waits prepared on the range's shard (their rows must be copied)."""
    pattern = f"{GID_PREFIX}{cmap.catalog_id}:%"
    deadline = time.monotonic() + timeout
    while True:
        with conns.connect(cmap.shard_of(i)) as conn:
            waiting = conn.execute("SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database() "
                                   "AND gid LIKE %s", (pattern,)).fetchone()[0]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise ConfigError(f"loads of catalog {cmap.catalog_id} stay prepared on shard {cmap.shard_of(i).name!r}: "
                              "run astrodb shard recover, then the move again")
        recover(engine, conns)
        time.sleep(0.2)


def move_range(engine: sa.Engine, conns: ShardConnections, catalog: str, lo: int, target: str) -> MoveReport:
    """Move catalog ``catalog``'s range starting at ``lo`` to shard ``target``; resumes an
    interrupted move of that range. See the module's description for the steps.

    Raises
    ------
    CatalogNotFoundError, ConfigError
        No such catalog, range or shard; the catalog is not sharded; another move of the range
        to another shard is unfinished.
    ShardUnavailableError
        The source or the target cannot be reached (the move can be run again).
    """
    t0 = time.monotonic()
    with engine.connect() as conn:
        cid = _catalog_id(conn, catalog)
        by_id = read_shards(conn)
        shards_ = {s.name: s for s in by_id.values()}
        cmap = read_map(conn, cid)
        if cmap is None:
            raise ConfigError(f"catalog {catalog!r} is not sharded")
        if target not in shards_:
            raise ConfigError(f"no shard {target!r} (shards: {', '.join(shards_) or 'none'})")
        i = _range_index(cmap, catalog, int(lo))
        pending = conn.execute(sa.select(shard_moves).where(
            shard_moves.c.catalog_id == cid, shard_moves.c.lo == int(lo), shard_moves.c.step != "done")).first()
    dest = shards_[target]
    hi = int(cmap.hi[i])
    if pending is not None and int(pending.target_id) != dest.id:
        raise ConfigError(f"an unfinished move of this range to shard id {pending.target_id} is journalled: "
                          "run that move again to finish it first")
    if pending is None and cmap.shard_of(i).id == dest.id:
        return MoveReport(catalog, int(lo), hi, target, target, 0, 0.0)
    if pending is None:
        with engine.begin() as conn:
            move_id = conn.execute(shard_moves.insert().values(
                catalog_id=cid, lo=int(lo), hi=hi, source_id=cmap.shard_of(i).id, target_id=dest.id, step="copying",
                started_at=datetime.now(timezone.utc)).returning(shard_moves.c.id)).scalar_one()
        step, source_id = "copying", cmap.shard_of(i).id
    else:
        move_id, step, source_id = int(pending.id), pending.step, int(pending.source_id)
    source = by_id[source_id]
    rows = 0 if pending is None or pending.rows is None else int(pending.rows)
    if step == "copying":
        with engine.begin() as conn:
            # The map's row for the range, locked: loads into the catalog wait until the switch.
            conn.execute(sa.select(shard_ranges.c.lo).where(shard_ranges.c.catalog_id == cid,
                                                            shard_ranges.c.lo == int(lo)).with_for_update())
            _wait_for_loads(engine, conns, cmap, i)
            rows = _copy(conns, cmap, i, dest)
            version = conn.execute(sa.select(sa.func.max(shard_ranges.c.version))
                                   .where(shard_ranges.c.catalog_id == cid)).scalar_one() + 1
            conn.execute(shard_ranges.update().where(shard_ranges.c.catalog_id == cid, shard_ranges.c.lo == int(lo))
                         .values(shard_id=dest.id, version=version))
            conn.exec_driver_sql(f"DROP FOREIGN TABLE IF EXISTS astrodb.{range_table(cid, int(lo))}")
            attach_foreign(conn, cid, int(lo), hi, dest)
            conn.execute(shard_moves.update().where(shard_moves.c.id == move_id).values(step="switched", rows=rows))
        step = "switched"
    if step == "switched":
        with conns.connect(source) as conn:
            conn.execute(f"DROP TABLE IF EXISTS astrodb.{range_table(cid, int(lo))}")
        with engine.begin() as conn:
            conn.execute(shard_moves.update().where(shard_moves.c.id == move_id).values(
                step="done", finished_at=datetime.now(timezone.utc)))
    return MoveReport(catalog, int(lo), hi, source.name, target, rows, time.monotonic() - t0)

