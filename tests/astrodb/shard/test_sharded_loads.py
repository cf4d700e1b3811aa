"""Loads into a sharded store: rows routed to their shards by position, each file on every shard
or on none (two-phase commit), a load killed in the middle resolved by the next, a shard down
failing the load without leaving anything."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import psycopg
import pytest

from astrodb.errors import ShardUnavailableError
from astrodb.shard.loading import ShardLoad, recover
from astrodb.shard.shard_map import read_map
from astrodb.store.schema import source_files
from tests.support.gaia_fixtures import gaia_rows, relocated, write_bulk_by_pixels

from tests.support.synth import sky_table


def _prepared(sharded) -> dict[str, int]:
    out = {}
    for name, url in sharded.shard_urls.items():
        with psycopg.connect(url) as conn:
            out[name] = conn.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'astrodb:%'").fetchone()[0]
    return out


def _tables(sharded, catalog_id: int) -> int:
    n = 0
    for url in sharded.shard_urls.values():
        with psycopg.connect(url) as conn:
            n += conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE %s",
                              (f"sources\\_c{catalog_id}\\_h%",)).fetchone()[0]
    return n


def _advisory_locks(store) -> int:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                    "AND classid = 23063").scalar()   # astrodb.shard.loading's lock class


def _next_catalog_id(store) -> int:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT last_value + 1 FROM astrodb.catalogs_id_seq").scalar()


def test_a_load_with_a_shard_down_fails_by_name_and_leaves_nothing(sharded, catalog_name):
    store, b = sharded.coordinator, sharded.clusters["b"]
    table = sky_table(800, seed=11)
    cid = _next_catalog_id(store)
    b.stop("immediate")
    try:
        with pytest.raises(ShardUnavailableError, match="shard 'b'"):
            store.ingest_catalog(table, catalog_name, epoch=2016.0)
        assert catalog_name not in {c.name for c in store.catalogs()}
    finally:
        b.start()
    assert _tables(sharded, cid) == 0 and _prepared(sharded) == {"a": 0, "b": 0}
    store.ingest_catalog(table, catalog_name, epoch=2016.0)        # back: loads
    sharded.one.ingest_catalog(table, catalog_name, epoch=2016.0)
    for ra, dec in ((0.0, 0.0), (359.95, 0.3), (123.0, 89.7)):
        assert store.cone(ra, dec, 30.0, catalog=catalog_name)["source_id"].tolist() == \
            sharded.one.cone(ra, dec, 30.0, catalog=catalog_name)["source_id"].tolist()
    store.drop_catalog(catalog_name)
    sharded.one.drop_catalog(catalog_name)
    assert _tables(sharded, cid) == 0


_LOADER = """
import sys, numpy as np, astrodb
from tests.support.synth import sky_table
astrodb.connect(sys.argv[1]).ingest_catalog(sky_table(3000, seed=12), sys.argv[2], epoch=2016.0)
"""


def test_a_loader_killed_after_the_shards_prepared_leaves_the_file_nowhere_and_a_rerun_loads_it(
        sharded, catalog_name):
    store = sharded.coordinator
    url = store.engine.url.render_as_string(hide_password=False)
    cid = _next_catalog_id(store)
    # Hold the loader after every shard has prepared its rows, before the coordinator records the
    # file (the density map is written last), and kill it there.
    with store.engine.connect() as blocker:
        blocker.exec_driver_sql("BEGIN")
        blocker.exec_driver_sql("LOCK TABLE astrodb.catalog_density IN SHARE MODE")
        proc = subprocess.Popen([sys.executable, "-c", _LOADER, url, catalog_name], cwd=os.getcwd(),
                                env={**os.environ, "PYTHONPATH": os.getcwd()})
        try:
            deadline = time.monotonic() + 120
            while _prepared(sharded) != {"a": 1, "b": 1}:
                assert proc.poll() is None, "the loader ended before preparing"
                assert time.monotonic() < deadline, "the shards never prepared"
                time.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
            blocker.exec_driver_sql("ROLLBACK")
    # The killed loader's server session ends once it finds its client gone; until then its
    # load counts as in flight and recover() leaves it alone.
    deadline = time.monotonic() + 60
    while _advisory_locks(store):
        assert time.monotonic() < deadline, "the killed loader's session never ended"
        time.sleep(0.1)
    assert catalog_name not in {c.name for c in store.catalogs()}       # the coordinator decided: no
    assert _prepared(sharded) == {"a": 1, "b": 1}                       # rows invisible, waiting
    assert recover(store.engine, store.shard_connections()) == {"committed": 0, "rolled_back": 2, "unreachable": 0}
    assert _prepared(sharded) == {"a": 0, "b": 0} and _tables(sharded, cid) == 0
    store.ingest_catalog(sky_table(3000, seed=12), catalog_name, epoch=2016.0)   # the rerun
    assert len(store.cone(0.0, 0.0, 180.0, catalog=catalog_name)) == len(sky_table(3000, seed=12))
    store.drop_catalog(catalog_name)


def _gaia_files(tmp_path, n: int, seed: int, files: int):
    rows = gaia_rows("dr3", n, seed)
    rng = np.random.default_rng(seed)
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    # Ids made where each star was ~1 deg away: files by id pixel, rows routed by position.
    moved = relocated("dr3", rows, ra, dec, seed, id_ra=ra + 1.0, id_dec=np.clip(dec + 0.5, -90, 90))
    return write_bulk_by_pixels(tmp_path, "dr3", moved, files)


def test_gaia_files_load_in_parallel_onto_the_shards_and_equal_one_server(sharded, tmp_path):
    paths = _gaia_files(tmp_path, 4000, seed=21, files=5)
    rep = sharded.coordinator.ingest_gaia(paths[:-1], catalog="gaia_sh", jobs=2)
    assert rep.ok and rep.count("loaded") == 4
    rep = sharded.coordinator.ingest_gaia(paths, catalog="gaia_sh", jobs=2)      # resumes: the last one
    assert rep.ok and rep.count("loaded") == 1 and rep.count("skipped") == 4
    sharded.one.ingest_gaia(paths, catalog="gaia_sh", jobs=2)
    for ra, dec, r, epoch in ((0.0, 0.0, 40.0, None), (359.9, -0.2, 3.0, 2030.0), (10.0, 89.0, 10.0, 1990.0),
                              (250.0, -60.0, 25.0, 2016.0)):
        got = sharded.coordinator.cone(ra, dec, r, catalog="gaia_sh", epoch=epoch)
        assert got["source_id"].tolist() == sharded.one.cone(ra, dec, r, catalog="gaia_sh", epoch=epoch)["source_id"].tolist()
    assert len(sharded.coordinator.cone(0.0, 0.0, 180.0, catalog="gaia_sh")) == 4000


def test_a_file_recorded_by_the_coordinator_is_committed_on_the_shards_by_recover(sharded, tmp_path):
    """A loader killed between the coordinator's commit and the shards' (the decision is yes)."""
    from astrodb.ingest.gaia import prepare_file

    store = sharded.coordinator
    path = _gaia_files(tmp_path, 1500, seed=31, files=1)[0]
    (tmp_path / "first").mkdir()
    store.ingest_gaia(_gaia_files(tmp_path / "first", 10, seed=32, files=1), catalog="gaia_rec")
    prepared = prepare_file(str(path), "dr3")
    with store.engine.connect() as conn:
        cid = conn.exec_driver_sql("SELECT id FROM astrodb.catalogs WHERE name = 'gaia_rec'").scalar()
    with store.engine.begin() as conn:
        file_id = conn.execute(source_files.insert().values(
            catalog_id=cid, path=str(path), size=prepared.size, sha256=prepared.sha256, rows=len(prepared),
            ingested_at=sa_now()).returning(source_files.c.id)).scalar_one()
        cols = dict(prepared.columns)
        n = len(prepared)
        cols.update(catalog_id=np.full(n, cid, np.int64), file_id=np.full(n, file_id, np.int64))
        cols.setdefault("weight", np.full(n, np.nan))
        names = [c for c in cols if c in ("catalog_id", "source_id", "file_id", "hpx29") or c in prepared.columns]
        load = ShardLoad(store.shard_connections(), read_map(conn, cid), conn, prepared.sha256)
        load.copy(names, [cols[c] for c in names])
    # ... and the loader dies here, before load.commit().
    before = store.cone(0.0, 0.0, 180.0, catalog="gaia_rec")
    assert len(before) == 10 and _prepared(sharded) == {"a": 1, "b": 1}
    assert recover(store.engine, store.shard_connections())["committed"] == 2
    assert len(store.cone(0.0, 0.0, 180.0, catalog="gaia_rec")) == 10 + n
    assert _prepared(sharded) == {"a": 0, "b": 0}


def sa_now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
