"""astrodb.query.search.fetch_cap: the pre-filter's rows as numpy columns, exactly as stored."""
from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from astropy.table import Table

from astrodb.query.search import _FETCHED, fetch_cap, fetch_cap_by_name
from astrodb.store.schema import sources


def test_fetch_cap_returns_the_stored_values_with_nulls_as_nan(db_factory):
    """On PostgreSQL the rows come as binary records (string_agg of int8send/float8send) parsed
    by numpy: every value (int64 ids beyond 2**53, NULL -> NaN, full float64) equals what a
    plain SELECT returns."""
    rng = np.random.default_rng(5)
    n = 500
    pm = rng.normal(0, 20, n)
    pm[::3] = np.nan                        # 2-parameter sources: no motion, no parallax
    t = Table({"source_id": (2 ** 62 + np.arange(n) * 7919).astype(np.int64),
               "ra": (359.99 + rng.uniform(0, 0.02, n)) % 360.0, "dec": rng.uniform(-0.01, 0.01, n),
               "ra_error": rng.uniform(0.01, 1, n), "dec_error": rng.uniform(0.01, 1, n),
               "pmra": pm, "pmdec": pm * 0.5, "parallax": np.where(np.isnan(pm), np.nan, 1.0 / 3.0),
               "mag": rng.uniform(10, 20, n)})
    store = db_factory.store()
    try:
        store.ingest_catalog(t, name="fetch", epoch=2016.0)
        with store.engine.connect() as conn:
            stats = store._stats(conn, "fetch")
            got = fetch_cap(conn, stats, 0.0, 0.0, 0.05)
            empty = fetch_cap(conn, stats, 180.0, 0.0, 0.05)
            if conn.dialect.name == "postgresql":  # the service's one-statement form
                by_name = fetch_cap_by_name(conn, "fetch", 0.0, 0.0, 0.05)
                a, b = np.argsort(by_name["source_id"]), np.argsort(got["source_id"])
                for name in _FETCHED:
                    np.testing.assert_array_equal(by_name[name][a], got[name][b], err_msg=name)
                for none in (fetch_cap_by_name(conn, "fetch", 180.0, 0.0, 0.05),
                             fetch_cap_by_name(conn, "no such catalog", 0.0, 0.0, 0.05)):
                    assert set(none) == set(_FETCHED) and all(len(v) == 0 for v in none.values())
            cols = [sources.c[name] for name in _FETCHED]
            rows = conn.execute(sa.select(*cols).where(sources.c.catalog_id == stats.id)).all()
        assert set(got) == set(_FETCHED) and all(len(v) == 0 for v in empty.values())
        assert got["source_id"].dtype == np.int64 and got["ra"].dtype == np.float64
        order = np.argsort(got["source_id"])
        want = {name: np.array([r[k] for r in sorted(rows, key=lambda r: r[0])],
                               dtype=np.int64 if name == "source_id" else float)
                for k, name in enumerate(_FETCHED)}
        assert len(got["source_id"]) == n
        for name in _FETCHED:
            np.testing.assert_array_equal(got[name][order], want[name], err_msg=name)
        assert np.isnan(got["pmra"]).sum() == np.isnan(pm).sum() and np.isnan(got["radial_velocity"]).all()
    finally:
        store.close()


def test_postgresql_cap_reads_one_index_range_per_healpix_range_without_statistics(db_factory, tmp_path):
    """A partition the planner has no statistics for (a Gaia load in progress) is still read
    through the (catalog_id, hpx29) btree, range by range, never in full."""
    from astrodb.query import search

    store = db_factory.store()
    if store.backend != "postgresql":
        pytest.skip("PostgreSQL plans only")
    n = 20_000
    rng = np.random.default_rng(5)
    Table({"source_id": np.arange(n), "ra": rng.uniform(10, 12, n), "dec": rng.uniform(-1, 1, n)}).write(
        tmp_path / "c.ecsv")
    store.ingest_catalog(tmp_path / "c.ecsv", "c", epoch=2016.0)
    with store.engine.begin() as conn:
        cat_id = conn.exec_driver_sql("SELECT id FROM catalogs WHERE name = 'c'").scalar_one()
        part = f"sources_c{cat_id}"
        conn.exec_driver_sql(f"DELETE FROM pg_statistic WHERE starelid = '{part}'::regclass")
        conn.exec_driver_sql(f"UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = '{part}'::regclass")
        cur = conn.connection.dbapi_connection.cursor()
        cur.execute("EXPLAIN " + search._PG_CAP_RECORDS_SQL, (11.0, 0.0, 0.1, cat_id, cat_id))
        plan = "\n".join(r[0] for r in cur.fetchall())
        got = search._pg_record_columns(conn.connection.dbapi_connection, (11.0, 0.0, 0.1, cat_id, cat_id))
    index_conds = [line for line in plan.splitlines() if "Index Cond" in line]
    assert any("hpx29 >= r.lo" in line for line in index_conds) and "Seq Scan" not in plan, plan
    rows = store.cone(11.0, 0.0, 0.1, catalog="c")
    assert set(rows["source_id"]) <= set(got["source_id"]) and len(rows) > 10
    store.close()
