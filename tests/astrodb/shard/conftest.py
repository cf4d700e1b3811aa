"""A sharded store for the shard tests: a coordinator database on the suite's PostgreSQL server,
two shards on throwaway servers of their own (tests.support.pg_clusters), and a one-server store
holding the same rows to compare with. PostgreSQL only: SQLite stores are one file."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import psycopg
import pytest

import astrodb
from tests.conftest import PG_ADMIN, _pg_url
from tests.support import pg_clusters
from tests.support.synth import sky_table

if "postgresql" not in os.environ.get("ASTRODB_TEST_BACKENDS", "postgresql,sqlite"):
    pytest.skip("sharding is PostgreSQL only (ASTRODB_TEST_BACKENDS)", allow_module_level=True)


@dataclass
class Sharded:
    coordinator: astrodb.Store
    one: astrodb.Store                 # a single server holding the same catalogs
    clusters: dict[str, pg_clusters.Cluster]
    shard_urls: dict[str, str]
    databases: list[str]

    def new_database(self) -> str:
        name = f"astrodb_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return _pg_url(name)


@pytest.fixture(scope="session")
def sharded(tmp_path_factory):
    clusters = {name: pg_clusters.start_cluster(f"shard-{name}") for name in ("a", "b")}
    env = Sharded(None, None, clusters, {}, [])
    try:
        env.shard_urls = {name: c.create_database("astrodb_shard") for name, c in clusters.items()}
        env.coordinator = astrodb.connect(env.new_database())
        env.coordinator.init()
        env.one = astrodb.connect(env.new_database())
        env.one.init()
        for name, url in env.shard_urls.items():
            env.coordinator.add_shard(name, url)
        table = sky_table(6000, seed=3)
        for store in (env.coordinator, env.one):
            store.ingest_catalog(table, "sky", epoch=2016.0)
        yield env
    finally:
        for store in (env.coordinator, env.one):
            if store is not None:
                store.close()
        for c in clusters.values():
            pg_clusters.remove_cluster(c)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in env.databases:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
