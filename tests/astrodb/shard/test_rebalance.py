"""Moving a range to another shard loses nothing, keeps every query exact (a reader holding the
old map included), and a move interrupted by a shard going down finishes when run again."""
from __future__ import annotations

import psycopg
import pytest

import astrodb
from astrodb.errors import ShardUnavailableError
from astrodb.shard.rebalance import move_range
from astrodb.shard.shard_map import read_map
from tests.support.synth import sky_table

CONES = ((0.0, 0.0, 60.0), (359.95, 0.3, 0.5), (123.0, 89.7, 2.0), (200.0, -40.0, 30.0))


def _map(store, name):
    with store.engine.connect() as conn:
        return read_map(conn, conn.exec_driver_sql("SELECT id FROM astrodb.catalogs WHERE name = %s", (name,)).scalar())


def _equal(sharded, name) -> None:
    for ra, dec, r in CONES:
        for epoch in (None, 2030.0):
            assert sharded.coordinator.cone(ra, dec, r, catalog=name, epoch=epoch)["source_id"].tolist() == \
                sharded.one.cone(ra, dec, r, catalog=name, epoch=epoch)["source_id"].tolist()
    with sharded.coordinator.engine.connect() as a, sharded.one.engine.connect() as b:
        sql = f"SELECT source_id FROM astrodb.cone('{name}', 0.0, 0.0, 60.0, 2030.0)"
        assert a.exec_driver_sql(sql).all() == b.exec_driver_sql(sql).all()


def test_moving_ranges_back_and_forth_keeps_every_row_and_readers_with_the_old_map_exact(sharded, catalog_name):
    table = sky_table(2000, seed=41)
    sharded.coordinator.ingest_catalog(table, catalog_name, epoch=2016.0)
    sharded.one.ingest_catalog(table, catalog_name, epoch=2016.0)
    reader = astrodb.connect(sharded.coordinator.engine.url.render_as_string(hide_password=False))
    try:
        reader.cone(0.0, 0.0, 60.0, catalog=catalog_name)          # the reader caches the map now
        before = _map(sharded.coordinator, catalog_name)
        moved = [int(before.lo[i]) for i in range(len(before.lo)) if before.shard_of(i).name == "a"][:3]
        conns = sharded.coordinator.shard_connections()
        for lo in moved:
            rep = move_range(sharded.coordinator.engine, conns, catalog_name, lo, "b")
            assert (rep.source, rep.target) == ("a", "b")
        after = _map(sharded.coordinator, catalog_name)
        assert after.version > before.version
        assert all(after.shard_of(int(i)).name == "b" for i in range(len(after.lo)) if int(after.lo[i]) in moved)
        _equal(sharded, catalog_name)
        # The old map names tables that are gone now: the reader notices, re-reads it, stays exact.
        assert reader.cone(0.0, 0.0, 60.0, catalog=catalog_name)["source_id"].tolist() == \
            sharded.one.cone(0.0, 0.0, 60.0, catalog=catalog_name)["source_id"].tolist()
        assert move_range(sharded.coordinator.engine, conns, catalog_name, moved[0], "b").rows == 0   # no-op
        move_range(sharded.coordinator.engine, conns, catalog_name, moved[0], "a")                    # and back
        _equal(sharded, catalog_name)
    finally:
        reader.close()
        sharded.coordinator.drop_catalog(catalog_name)
        sharded.one.drop_catalog(catalog_name)


def test_a_move_cut_short_by_its_target_going_down_changes_nothing_and_finishes_when_run_again(
        sharded, catalog_name):
    table = sky_table(1500, seed=42)
    sharded.coordinator.ingest_catalog(table, catalog_name, epoch=2016.0)
    sharded.one.ingest_catalog(table, catalog_name, epoch=2016.0)
    store, b = sharded.coordinator, sharded.clusters["b"]
    cmap = _map(store, catalog_name)
    i = next(i for i in range(len(cmap.lo)) if cmap.shard_of(i).name == "a")
    lo = int(cmap.lo[i])
    b.stop("immediate")
    try:
        with pytest.raises(ShardUnavailableError, match="shard 'b'"):
            move_range(store.engine, store.shard_connections(), catalog_name, lo, "b")
    finally:
        b.start()
    assert _map(store, catalog_name).version == cmap.version          # the map never changed
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT step FROM astrodb.shard_moves WHERE lo = %s AND catalog_id = %s",
                                    (lo, cmap.catalog_id)).scalar() == "copying"
    _equal(sharded, catalog_name)
    rep = move_range(store.engine, store.shard_connections(), catalog_name, lo, "b")    # resumes
    assert rep.target == "b"
    _equal(sharded, catalog_name)
    with psycopg.connect(sharded.shard_urls["a"]) as conn:                               # the source's copy went
        assert conn.execute("SELECT to_regclass(%s)", (f"astrodb.{cmap.table(i)}",)).fetchone()[0] is None
    store.drop_catalog(catalog_name)
    sharded.one.drop_catalog(catalog_name)
