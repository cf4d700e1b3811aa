"""Where a sharded catalog's rows live: the range tables on the shards, the map and the
coordinator's foreign partitions that let the SQL functions read them."""
from __future__ import annotations

import numpy as np
import psycopg
import sqlalchemy as sa

from ..store.schema import shard_ranges
from .shard_map import CatalogMap, Shard, coordinator_partition, range_table


def create_range_table(conn: psycopg.Connection, catalog_id: int, lo: int, hi: int) -> str:
    """Create, on a shard, the indexed table of catalog ``catalog_id``'s rows in [lo, hi]."""
    name = range_table(catalog_id, lo)
    conn.execute(f"CREATE TABLE astrodb.{name} (LIKE astrodb.sources INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    conn.execute(f"ALTER TABLE astrodb.{name} ADD CONSTRAINT {name}_range "
                 f"CHECK (catalog_id = {int(catalog_id)} AND hpx29 BETWEEN {int(lo)} AND {int(hi)})")
    conn.execute(f"ALTER TABLE astrodb.{name} ADD CONSTRAINT {name}_uq UNIQUE (source_id)")
    conn.execute(f"CREATE INDEX {name}_hpx29 ON astrodb.{name} (hpx29)")
    return name


def create_map(conn: sa.Connection, catalog_id: int, lo, hi, owners, version: int = 1) -> None:
    """Record the map and create the coordinator's foreign partitions for it (coordinator)."""
    conn.execute(shard_ranges.insert(), [
        {"catalog_id": catalog_id, "lo": int(a), "hi": int(b), "shard_id": int(s), "version": version}
        for a, b, s in zip(lo, hi, owners)])
    parent = coordinator_partition(catalog_id)
    conn.exec_driver_sql(f"CREATE TABLE astrodb.{parent} PARTITION OF astrodb.sharded_sources "
                         f"FOR VALUES IN ({int(catalog_id)}) PARTITION BY RANGE (hpx29)")


def attach_foreign(conn: sa.Connection, catalog_id: int, lo: int, hi: int, shard: Shard) -> None:
    """The coordinator's foreign table reading range [lo, hi] on ``shard``, as a partition."""
    name = range_table(catalog_id, lo)
    conn.exec_driver_sql(
        f"CREATE FOREIGN TABLE astrodb.{name} PARTITION OF astrodb.{coordinator_partition(catalog_id)} "
        f"FOR VALUES FROM ({int(lo)}) TO ({int(hi) + 1}) SERVER {shard.server} "
        f"OPTIONS (schema_name 'astrodb', table_name '{name}')")


def attach_all(conn: sa.Connection, cmap: CatalogMap) -> None:
    """Every range of ``cmap`` as a foreign partition on the coordinator."""
    for i in range(len(cmap.lo)):
        attach_foreign(conn, cmap.catalog_id, int(cmap.lo[i]), int(cmap.hi[i]), cmap.shard_of(i))


def drop_coordinator_side(conn: sa.Connection, catalog_id: int) -> None:
    """Drop the coordinator's foreign partitions of the catalog and its map."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS astrodb.{coordinator_partition(catalog_id)} CASCADE")
    conn.execute(shard_ranges.delete().where(shard_ranges.c.catalog_id == catalog_id))


def drop_shard_tables(conn: psycopg.Connection, catalog_id: int) -> int:
    """Drop every range table of catalog ``catalog_id`` on a shard; how many there were."""
    names = [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'astrodb' AND c.relkind = 'r' AND c.relname LIKE %s",
        (f"sources_c{int(catalog_id)}_h".replace("_", "\\_") + "%",)).fetchall()]
    for name in names:
        conn.execute(f"DROP TABLE IF EXISTS astrodb.{name}")
    return len(names)


def new_catalog_map(conn: sa.Connection, catalog_id: int) -> CatalogMap:
    """Spread a new catalog over every shard (coordinator side: the map and the foreign
    partitions, in ``conn``'s transaction); the shards' tables are the caller's to create."""
    from .shard_map import initial_ranges, read_shards

    all_shards = read_shards(conn)
    lo, hi, owners = initial_ranges(list(all_shards))
    create_map(conn, catalog_id, lo, hi, owners)
    cmap = CatalogMap(int(catalog_id), 1, lo, hi, owners, all_shards)
    attach_all(conn, cmap)
    return cmap


def create_shard_tables(conns, cmap: CatalogMap) -> None:
    """Create every range table of ``cmap`` on its shard (one committed transaction a shard)."""
    for sid in np.unique(cmap.shard_ids).tolist():
        with conns.connect(cmap.shards[sid], autocommit=False) as conn:
            for i in np.nonzero(cmap.shard_ids == sid)[0]:
                create_range_table(conn, cmap.catalog_id, int(cmap.lo[i]), int(cmap.hi[i]))
            conn.commit()


def analyze(conns, cmap: CatalogMap) -> None:
    """Fresh planner statistics for every range table of ``cmap`` (after a load)."""
    for sid in np.unique(cmap.shard_ids).tolist():
        with conns.connect(cmap.shards[sid]) as conn:
            for i in np.nonzero(cmap.shard_ids == sid)[0]:
                conn.execute(f"ANALYZE astrodb.{cmap.table(int(i))}")


def drop_everywhere(conns, catalog_id: int, shard_list) -> list[str]:
    """Drop the catalog's range tables on every shard; the shards that could not be reached."""
    from ..errors import ShardUnavailableError

    missed = []
    for shard in shard_list:
        try:
            with conns.connect(shard) as conn:
                drop_shard_tables(conn, catalog_id)
        except ShardUnavailableError:
            missed.append(shard.name)
    return missed
