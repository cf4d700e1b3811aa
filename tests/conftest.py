"""Shared fixtures: a store on each backend (PostgreSQL+PostGIS and SQLite).

PostgreSQL: a uniquely named database is created on the server named by ``ASTRODB_TEST_PG``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``) and dropped afterwards. Set
``ASTRODB_TEST_BACKENDS=sqlite`` to run without a server (CI never does).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest

import astrodb

PG_ADMIN = os.environ.get("ASTRODB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = [b.strip() for b in os.environ.get("ASTRODB_TEST_BACKENDS", "postgresql,sqlite").split(",")]


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+psycopg://", 1) + "/" + dbname


class DatabaseFactory:
    """Creates empty databases for one backend and removes them at the end."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend, self.tmp, self.created = backend, tmp, []

    def url(self) -> str:
        name = f"astrodb_test_{uuid.uuid4().hex[:12]}"
        if self.backend == "sqlite":
            return f"sqlite:///{self.tmp / (name + '.sqlite')}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return _pg_url(name)

    def store(self, init: bool = True) -> astrodb.Store:
        store = astrodb.connect(self.url())
        if init:
            store.init()
        return store

    def cleanup(self) -> None:
        if not self.created:
            return
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def db_factory(backend, tmp_path_factory):
    factory = DatabaseFactory(backend, tmp_path_factory.mktemp(backend))
    yield factory
    factory.cleanup()


@pytest.fixture(scope="session")
def store(db_factory) -> astrodb.Store:
    """An initialized store shared by a session's tests on one backend: use unique catalog names."""
    s = db_factory.store()
    yield s
    s.close()


@pytest.fixture
def catalog_name() -> str:
    return f"cat_{uuid.uuid4().hex[:10]}"
