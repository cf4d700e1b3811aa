"""Schema creation through Alembic on both backends."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import astrodb
from astrodb.store import migrate
from astrodb.store.schema import metadata, PG_SCHEMA


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
                not (type_ == "column" and name == "geog") and not (type_ == "index" and name == "ix_sources_geog")
                and not (type_ == "table" and (name in ("spatial_ref_sys", "alembic_version")
                                               or name.startswith("sources_c")))  # catalog partitions
                # PostgreSQL drops the per-row foreign-key checks of sources (migration 0006).
                and not (pg and type_ == "foreign_key_constraint" and obj.parent.name == "sources"),
        })
        diff = compare_metadata(ctx, metadata)
    assert diff == []


def test_postgis_point_and_gist_index(store):
    if store.backend != "postgresql":
        pytest.skip("PostGIS objects exist on PostgreSQL only")
    with store.engine.connect() as conn:
        idx = conn.execute(sa.text(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'astrodb' AND indexname = 'ix_sources_geog'")).scalar()
        assert "gist" in idx.lower()
        kind = conn.execute(sa.text(
            "SELECT attgenerated FROM pg_attribute WHERE attrelid = 'astrodb.sources'::regclass "
            "AND attname = 'geog'")).scalar()
        assert kind == "s"  # generated from ra/dec: cannot disagree with them


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
