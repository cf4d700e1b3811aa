"""The suite's throwaway PostgreSQL servers (tests.support.pg_clusters): several start side by
side from the machine's binaries, each with PostGIS, one can go down and come back, and nothing
is left behind."""
from __future__ import annotations

import os

import psycopg
import pytest

from tests.support import pg_clusters

pytestmark = pytest.mark.skipif("postgresql" not in os.environ.get("ASTRODB_TEST_BACKENDS", "postgresql,sqlite"),
                                reason="PostgreSQL tests are off (ASTRODB_TEST_BACKENDS)")


def test_two_clusters_run_side_by_side_go_down_and_come_back():
    a, b = pg_clusters.start_cluster("shard-a"), pg_clusters.start_cluster("shard-b")
    try:
        assert a.port != b.port
        urls = [c.create_database("astrodb_shard") for c in (a, b)]
        for i, url in enumerate(urls):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE TABLE t (x int)")
                conn.execute("INSERT INTO t VALUES (%s)", (i,))
                assert conn.execute("SELECT public.postgis_lib_version()").fetchone()[0]
                assert conn.execute("SELECT x FROM t").fetchall() == [(i,)]   # each server its own data

        b.stop("immediate")                      # as if it crashed
        assert not b.running()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(urls[1], connect_timeout=2).close()
        with psycopg.connect(urls[0]) as conn:   # the other one is unaffected
            assert conn.execute("SELECT x FROM t").fetchall() == [(0,)]
        b.start()                                # back, with its data
        with psycopg.connect(urls[1]) as conn:
            assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    finally:
        for c in (a, b):
            pg_clusters.remove_cluster(c)
    assert not a.root.exists() and not b.root.exists()
