"""Bulk insert keeps values, NULLs and row order on both backends."""
from __future__ import annotations

import uuid

import numpy as np
import pytest

from astrodb.ingest.bulk import insert_columns


@pytest.mark.parametrize("n", [0, 1, 1000, 300_000])  # 300k spans two COPY chunks
def test_values_nulls_and_order_survive(store, n):
    rng = np.random.default_rng(n)
    f = [rng.normal(size=n) for _ in range(4)]
    f[1][rng.random(n) < 0.3] = np.nan
    f[2][:] = np.nan
    f[3][rng.random(n) < 0.9] = np.nan
    ids = rng.integers(-2**62, 2**62, n)
    seq = np.arange(n, dtype=np.int64)
    name = f"bulk_{uuid.uuid4().hex[:8]}"
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {name} (seq BIGINT, id BIGINT, a DOUBLE PRECISION, "
                             "b DOUBLE PRECISION, c DOUBLE PRECISION, d DOUBLE PRECISION)")
        assert insert_columns(conn, name, ["seq", "id", "a", "b", "c", "d"], [seq, ids, *f]) == n
        physical = "ctid" if store.backend == "postgresql" else "rowid"
        rows = conn.exec_driver_sql(f"SELECT seq, id, a, b, c, d FROM {name} ORDER BY {physical}").fetchall()
        conn.exec_driver_sql(f"DROP TABLE {name}")
    assert len(rows) == n
    if n == 0:
        return
    assert [r[0] for r in rows] == list(range(n))  # stored in input order (spatial order on ingest)
    assert [r[1] for r in rows] == ids.tolist()
    got = np.array([r[2:] for r in rows], dtype=float)
    np.testing.assert_array_equal(got, np.stack(f, axis=1))  # NaN where NULL, bit-exact elsewhere
    assert all(r[4] is None for r in rows)
