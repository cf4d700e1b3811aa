"""A store with Gaia-like catalogs and recorded runs, served by the app (TestClient), per backend."""
from __future__ import annotations

import pytest

import astrodb
from service_fixtures import gaia_table, make_client, record_runs
from tests.support.synth import gaia_like


@pytest.fixture(scope="session")
def served(db_factory):
    """(url, writer store) of a store holding gaia_dr3, 'mine' (a small user catalog) and two runs;
    shared by every service test of a backend: tests must not change it."""
    url = db_factory.url()
    store = astrodb.connect(url)
    store.init()
    store.ingest_catalog(gaia_table(), "gaia_dr3", epoch=2016.0)
    store.ingest_catalog(gaia_like(200, 10.0, -30.0, 0.2, seed=5), "mine", epoch=2016.0)
    record_runs(store)
    yield url, store
    store.close()


@pytest.fixture(scope="module")
def client(served):
    with make_client(served[0], max_rows=1000) as c:
        yield c


@pytest.fixture(scope="module")
def store(served):  # noqa: F811 - the module's writer store (not the session-wide one)
    return served[1]
