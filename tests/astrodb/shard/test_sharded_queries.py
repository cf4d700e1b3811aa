"""A catalog sharded over two servers answers exactly what one server holding all of it answers:
Store.cone/footprint routed straight to the shards, the SQL functions through the coordinator's
foreign partitions; a shard that is down fails the queries that need it, by name, and is used
again once it is back."""
from __future__ import annotations

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from astropy_healpix import HEALPix
from fastapi.testclient import TestClient

from astrodb.errors import ShardUnavailableError
from astrodb.service import Settings, create_app
from astrodb.shard.shard_map import HPX29_END, read_map

EPOCHS = (None, 1990.0, 2030.0, 2100.0)


def _same(a, b) -> None:
    assert a["source_id"].tolist() == b["source_id"].tolist()
    for col in ("ra", "dec", "distance"):
        np.testing.assert_array_equal(np.asarray(a[col]), np.asarray(b[col]))


def test_cones_equal_one_server_anywhere_at_any_epoch(sharded):
    rng = np.random.default_rng(7)
    centres = [(0.0, 0.0), (359.95, 0.3), (0.02, 0.3), (123.0, 89.7), (300.0, -89.8), (0.0, 90.0), (45.0, -90.0)]
    centres += list(zip(rng.uniform(0, 360, 12), np.degrees(np.arcsin(rng.uniform(-1, 1, 12)))))
    compared = 0
    for ra, dec in centres:
        for radius in (0.05, 0.7, 5.0, 40.0):
            for epoch in EPOCHS:
                got = sharded.coordinator.cone(ra, dec, radius, catalog="sky", epoch=epoch)
                _same(got, sharded.one.cone(ra, dec, radius, catalog="sky", epoch=epoch))
                compared += len(got)
    assert compared > 50_000


def test_footprints_equal_one_server(sharded):
    polygons = [[(359.0, -1.0), (1.0, -1.0), (1.0, 1.5), (359.0, 1.5)],        # across RA 0/360
                [(0.0, 88.0), (120.0, 88.0), (240.0, 88.0)],                    # around the north pole
                [(10.0, -30.0), (80.0, -30.0), (80.0, 20.0), (10.0, 20.0)]]     # over several ranges
    for poly in polygons:
        for epoch in EPOCHS:
            _same(sharded.coordinator.footprint(np.array(poly), catalog="sky", epoch=epoch),
                  sharded.one.footprint(np.array(poly), catalog="sky", epoch=epoch))


def test_sql_functions_on_the_coordinator_equal_one_server(sharded):
    queries = [("SELECT source_id, ra, dec FROM astrodb.cone('sky', 359.95, 0.3, 0.5)", ()),
               ("SELECT source_id, ra, dec FROM astrodb.cone('sky', 123.0, 89.7, 2.0, 2100.0)", ()),
               ("SELECT source_id, ra, dec FROM astrodb.cone('sky', 30.0, -10.0, 25.0, 1990.0)", ()),
               ("SELECT source_id, ra, dec FROM astrodb.cone('sky', 45.0, 0.0, 1.5)", ()),   # order-1 corner
               ("SELECT source_id, ra, dec FROM astrodb.footprint('sky', ARRAY[[359.0, -1.0], [1.0, -1.0], "
                "[1.0, 1.5], [359.0, 1.5]]::float8[], 2030.0)", ()),
               ("SELECT source_id, ra, dec FROM astrodb.footprint('sky', ARRAY[[10.0, -30.0], [80.0, -30.0], "
                "[80.0, 20.0], [10.0, 20.0]]::float8[])", ())]
    for sql, params in queries:
        with sharded.coordinator.engine.connect() as a, sharded.one.engine.connect() as b:
            got, want = a.exec_driver_sql(sql, params).all(), b.exec_driver_sql(sql, params).all()
        assert got == want and len(want) > 0


def test_rows_live_on_the_shards_by_their_position(sharded):
    store = sharded.coordinator
    with store.engine.connect() as conn:
        cat = conn.exec_driver_sql("SELECT id, row_count FROM astrodb.catalogs WHERE name = 'sky'").one()
        cmap = read_map(conn, cat.id)
        assert conn.exec_driver_sql("SELECT count(*) FROM ONLY astrodb.sources").scalar() == 0
    assert cmap.lo[0] == 0 and cmap.hi[-1] == HPX29_END - 1 and np.all(cmap.lo[1:] == cmap.hi[:-1] + 1)
    assert set(s.name for s in cmap.shards.values()) == {"a", "b"}
    total = 0
    for i in range(len(cmap.lo)):
        with psycopg.connect(sharded.shard_urls[cmap.shard_of(i).name]) as conn:
            n, lo, hi = conn.execute(f"SELECT count(*), min(hpx29), max(hpx29) FROM astrodb.{cmap.table(i)}").fetchone()
        total += n
        if n:
            assert cmap.lo[i] <= lo and hi <= cmap.hi[i]
    assert total == cat.row_count


def test_a_shard_down_fails_the_queries_needing_it_by_name_and_is_used_again_when_back(sharded):
    store, b = sharded.coordinator, sharded.clusters["b"]
    with store.engine.connect() as conn:
        cmap = read_map(conn, conn.exec_driver_sql("SELECT id FROM astrodb.catalogs WHERE name = 'sky'").scalar())
    # The centres of order-1 pixels held by shard a and by shard b: a small cone there needs that shard only.
    first = {cmap.shard_of(i).name: i for i in reversed(range(len(cmap.lo)))}
    lon, lat = HEALPix(nside=2, order="nested").healpix_to_lonlat([int(cmap.lo[first[n]] >> 56) for n in "ab"])
    (ra_a, ra_b), (dec_a, dec_b) = lon.deg.tolist(), lat.deg.tolist()
    want_a = store.cone(ra_a, dec_a, 2.0, catalog="sky")
    app = create_app(Settings(store_url=store.engine.url.render_as_string(hide_password=False), max_rows=100_000))
    with TestClient(app, raise_server_exceptions=False) as client:
        b.stop("immediate")
        try:
            _same(store.cone(ra_a, dec_a, 2.0, catalog="sky"), want_a)   # shard a alone: still served
            with pytest.raises(ShardUnavailableError, match="shard 'b'") as err:
                store.cone(0.0, 0.0, 60.0, catalog="sky")                  # needs both
            assert err.value.shard == "b"
            r = client.get("/v1/cone", params={"catalog": "sky", "ra": ra_b, "dec": dec_b, "radius": 1.0})
            assert r.status_code == 503 and "shard 'b'" in r.text, r.text
            assert client.get("/v1/cone", params={"catalog": "sky", "ra": ra_a, "dec": dec_a,
                                                   "radius": 1.0}).status_code == 200
            with pytest.raises(sa.exc.OperationalError, match="shard_b"):    # psql users: the server named
                with store.engine.connect() as conn:
                    conn.exec_driver_sql("SELECT count(*) FROM astrodb.cone('sky', 0.0, 0.0, 60.0)").scalar()
        finally:
            b.start()
        _same(store.cone(0.0, 0.0, 60.0, catalog="sky"), sharded.one.cone(0.0, 0.0, 60.0, catalog="sky"))
        assert client.get("/v1/cone", params={"catalog": "sky", "ra": ra_b, "dec": dec_b,
                                               "radius": 1.0}).status_code == 200
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM astrodb.cone('sky', 0.0, 0.0, 60.0)").scalar() == \
            len(sharded.one.cone(0.0, 0.0, 60.0, catalog="sky"))


def test_a_read_only_role_queries_the_shards_but_cannot_read_their_credentials(sharded):
    store = sharded.coordinator
    role = "ro_" + store.engine.url.database[-8:]
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} NOLOGIN")
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA astrodb TO {role}")
        conn.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA astrodb TO {role}")
    try:
        with store.engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT bool_and(umoptions IS NOT NULL) FROM pg_user_mappings "
                                        "WHERE srvname LIKE 'shard_%%'").scalar()      # the owner sees them
            conn.exec_driver_sql(f"SET LOCAL ROLE {role}")
            assert conn.exec_driver_sql("SELECT count(*) FROM pg_user_mappings WHERE srvname LIKE 'shard_%%' "
                                        "AND umoptions IS NOT NULL").scalar() == 0
            n = conn.exec_driver_sql("SELECT count(*) FROM astrodb.cone('sky', 359.95, 0.3, 0.5)").scalar()
        assert n == len(sharded.one.cone(359.95, 0.3, 0.5, catalog="sky")) > 0
    finally:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
