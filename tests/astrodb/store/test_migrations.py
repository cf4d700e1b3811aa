"""Schema creation through Alembic on both backends."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import astrodb
from astrodb.store import migrate
from astrodb import provenance
from astrodb.store.schema import metadata, PG_SCHEMA, prov_images, prov_runs


def test_init_creates_schema_at_head(db_factory):
    store = db_factory.store(init=False)
    with pytest.raises(astrodb.ConfigError, match="not initialized"):
        store.catalogs()
    rev = store.init()
    assert rev == migrate.head_revision() == migrate.current_revision(store.engine)
    assert store.init() == rev  # idempotent
    assert store.catalogs() == []
    store.close()


def test_migrations_match_the_query_layer_schema(store):
    """The tables the migrations build are the tables astrodb.store.schema describes."""
    with store.engine.connect() as conn:
        pg = conn.dialect.name == "postgresql"
        ctx = MigrationContext.configure(conn, opts={
            "version_table_schema": PG_SCHEMA if pg else None,
            "include_object": lambda obj, name, type_, reflected, compare_to:
                not (type_ == "table" and (name in ("spatial_ref_sys", "alembic_version")
                                               or name.startswith(("sources_c", "sharded_sources"))))  # catalog partitions
                # PostgreSQL drops the per-row foreign-key checks of sources (migration 0006).
                and not (pg and type_ == "foreign_key_constraint" and obj.parent.name == "sources"),
        })
        diff = compare_metadata(ctx, metadata)
    assert diff == []


def _geography(conn) -> tuple[int, list[str]]:
    """(how many sources tables have a geog column, the GiST indexes of the astrodb schema)."""
    cols = conn.execute(sa.text("SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'astrodb' "
                                "AND c.relkind IN ('r', 'p') AND a.attname = 'geog' AND NOT a.attisdropped")).scalar()
    gist = conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE schemaname = 'astrodb' "
                                "AND indexdef ILIKE '%USING gist%' ORDER BY 1")).scalars().all()
    return cols, gist


def test_migration_0012_drops_the_geography_column_and_its_gist_and_goes_down_and_up(db_factory, tmp_path):
    """At head no sources table has a geography point or a GiST; down to 0011 they come back
    (computed from ra/dec, indexed on the parent and each partition); cones agree throughout."""
    from tests.support.synth import gaia_like

    store = db_factory.store()
    if store.backend != "postgresql":
        pytest.skip("PostgreSQL only (migration 0012)")
    gaia_like(3000, 45.0, 10.0, 2.0, seed=3).write(tmp_path / "c.ecsv")
    store.ingest_catalog(tmp_path / "c.ecsv", "c")
    want = sorted(store.cone(45.0, 10.0, 0.5, catalog="c")["source_id"])
    assert len(want) > 50
    with store.engine.connect() as conn:
        assert _geography(conn) == (0, [])
    _downgrade(store.engine, "0011")
    with store.engine.connect() as conn:
        cols, gist = _geography(conn)
        tree = conn.execute(sa.text("SELECT count(*) FROM pg_partition_tree('astrodb.sources')")).scalar()
        assert cols == tree >= 2 and "ix_sources_geog" in gist and len(gist) == tree
        near = conn.execute(sa.text(
            "SELECT count(*) FROM astrodb.sources WHERE ST_DWithin(geog, ST_MakePoint(45.0 - 180.0, 10.0)::geography, "
            "0.5 * pi() / 180 * 6371008.7714, false)")).scalar()
    assert near == len(want)
    assert store.init() == migrate.head_revision()
    with store.engine.connect() as conn:
        assert _geography(conn) == (0, [])
    assert sorted(store.cone(45.0, 10.0, 0.5, catalog="c")["source_id"]) == want
    store.close()


def test_unreachable_store_is_a_clear_error(tmp_path):
    store = astrodb.connect("postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    with pytest.raises(astrodb.ConfigError, match="cannot"):
        store.init()


def test_postgresql_sources_have_no_per_row_foreign_key_checks(store):
    if store.backend != "postgresql":
        pytest.skip("PostgreSQL only (migration 0006)")
    with store.engine.connect() as conn:
        assert sa.inspect(conn).get_foreign_keys("sources", schema=PG_SCHEMA) == []


def test_postgresql_provenance_npz_columns_are_not_compressed_again(store):
    if store.backend != "postgresql":
        pytest.skip("PostgreSQL only (migration 0007)")
    with store.engine.connect() as conn:
        rows = dict(conn.execute(sa.text(
            "SELECT attrelid::regclass::text || '.' || attname, attstorage FROM pg_attribute WHERE attrelid IN "
            "('astrodb.prov_images'::regclass, 'astrodb.prov_runs'::regclass) AND attname IN "
            "('catalog_data', 'matches', 'ref_data', 'input_wcs', 'output_wcs')")).all())
    assert {k.split(".")[-1]: v for k, v in rows.items()} == {
        "catalog_data": "e", "matches": "e", "ref_data": "e", "input_wcs": "x", "output_wcs": "x"}


def _downgrade(engine, revision: str) -> None:
    cfg = migrate._config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def _prov_shape(store) -> tuple[set, set]:
    with store.engine.connect() as conn:
        insp = sa.inspect(conn)
        schema = PG_SCHEMA if conn.dialect.name == "postgresql" else None
        columns = {c["name"] for c in insp.get_columns("prov_runs", schema=schema)}
        return set(insp.get_table_names(schema=schema)), columns


def test_migration_0009_chains_the_runs_before_it_and_goes_down_and_up(db_factory):
    """Runs recorded before revision 0009 are chained by it, oldest first; down to 0008 removes
    the chain, the server's columns and the triggers; up again chains them anew."""
    store = db_factory.store(init=False)
    migrate.upgrade(store.engine, "0008")
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    ids = [f"0009{k:04d}-0000-4000-8000-000000000000" for k in range(3)]
    with store.engine.begin() as conn:  # inserted out of time order
        for rid, hours in zip(ids, (2, 0, 1)):
            conn.execute(prov_runs.insert().values(run_id=rid, step="relative", started_at=t0 + timedelta(hours=hours),
                                                   finished_at=t0 + timedelta(hours=hours), status="success",
                                                   n_images=1, n_aligned=1))
            conn.execute(prov_images.insert().values(run_id=rid, image_index=0, name="img", status="SUCCESS",
                                                     input_wcs=rid.encode()))
    in_time_order = [ids[1], ids[2], ids[0]]
    for late in (1, 2):
        assert store.init() == migrate.head_revision()
        tables, columns = _prov_shape(store)
        assert "prov_chain" in tables and {"db_role", "db_session_role", "server_time"} <= columns
        with store.engine.connect() as conn:
            links = conn.execute(sa.text("SELECT run_id, db_role, server_time FROM prov_chain ORDER BY seq")).all()
        assert [link[0] for link in links] == in_time_order
        if store.backend == "postgresql":  # chained by the migrating role, at its time
            assert {link[1] for link in links} == {store.engine.url.username} and links[0][2] is not None
        report = provenance.verify_chain(store)
        assert report.ok and report.n_runs == 3, str(report)
        assert provenance.show_run(store, ids[0])["db_role"] is None  # the database did not see them inserted

        _downgrade(store.engine, "0008")
        store._checked = False
        assert migrate.current_revision(store.engine) == "0008"
        tables, columns = _prov_shape(store)
        assert "prov_chain" not in tables and not {"db_role", "db_session_role", "server_time"} & columns
        with store.engine.begin() as conn:  # no closed runs at 0008: an image goes in
            conn.execute(prov_images.insert().values(run_id=ids[0], image_index=late, name="late", status="SUCCESS"))
    store.close()


def test_migration_0010_fills_the_density_maps_of_the_catalogs_already_stored(db_factory, tmp_path):
    """Down to 0009 (no maps), then up: every stored catalog gets the map of the rows it holds."""
    from tests.support.synth import gaia_like

    store = db_factory.store()
    for k in range(2):
        t = gaia_like(400, 120.0 * k, -30.0 + 40 * k, 5.0, seed=k)
        t.write(tmp_path / f"c{k}.ecsv")
        store.ingest_catalog(tmp_path / f"c{k}.ecsv", f"c{k}")
    before = {f"c{k}": store.density(f"c{k}") for k in range(2)}
    _downgrade(store.engine, "0009")
    assert "catalog_density" not in sa.inspect(store.engine).get_table_names(
        schema=PG_SCHEMA if store.backend == "postgresql" else None)
    assert store.init() == migrate.head_revision()
    for name, m in before.items():
        again = store.density(name)
        assert list(again["pixel"]) == list(m["pixel"]) and list(again["count"]) == list(m["count"])
        assert sum(again["count"]) == 400
    store.close()
