"""Faults and security: the documented read-only role (PostgreSQL), and a database that goes down
and comes back (a private PostgreSQL cluster this test starts and stops itself)."""
from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest

import astrodb
from service_fixtures import PG_ADMIN, make_client
from tests.support.synth import gaia_like


DOCS = Path(__file__).resolve().parents[3] / "docs" / "service.md"
PG_BIN = Path(os.environ.get("ASTRODB_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
CONE = {"catalog": "mine", "ra": 10.0, "dec": -30.0, "radius": 0.1}


def documented_role_sql() -> str:
    m = re.search(r"```sql\n(-- read-only role for astrodb serve\n.*?)```", DOCS.read_text(), re.S)
    assert m, "docs/service.md lost its read-only role block"
    return m.group(1)


def test_documented_read_only_role_serves_and_cannot_write(db_factory, backend):
    if backend != "postgresql":
        pytest.skip("roles are PostgreSQL's; SQLite sessions are query_only (test_api)")
    store = db_factory.store()
    store.ingest_catalog(gaia_like(200, 10.0, -30.0, 0.2, seed=5), "mine", epoch=2016.0)
    dbname = store.engine.url.database
    role, password = f"astrodb_reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    sql = (documented_role_sql().replace("astrodb_reader", role).replace("'change-me'", f"'{password}'")
           .replace("DATABASE astro TO", f'DATABASE "{dbname}" TO'))
    admin = PG_ADMIN.rsplit("/", 1)[0] + "/" + dbname
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql)
    try:
        reader = store.engine.url.set(username=role, password=password).render_as_string(hide_password=False)
        with make_client(reader) as c:
            h = c.get("/health").json()
            assert h["status"] == "ok" and h["role_can_write"] is False
            assert c.get("/v1/cone", params=CONE).status_code == 200
            assert c.get("/v1/runs").status_code == 200
            # a catalog ingested after the grants is readable too
            store.ingest_catalog(gaia_like(50, 40.0, 10.0, 0.1, seed=9), "later", epoch=2016.0)
            r = c.get("/scs/later", params={"RA": 40, "DEC": 10, "SR": 0.1})
            assert r.status_code == 200 and r.text.count("<TR>") > 0
        # the role itself cannot write, even outside the service's read-only sessions
        with psycopg.connect(reader.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")
            for stmt in ("DELETE FROM astrodb.catalogs", "INSERT INTO astrodb.prov_runs (run_id) VALUES ('x')",
                         "CREATE TABLE astrodb.evil (x int)", "DROP TABLE astrodb.sources"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(stmt)
    finally:
        store.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


# -- a database that goes down and comes back ---------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """A throwaway cluster of Debian's PostgreSQL binaries (as user postgres when run as root)."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            pytest.skip(f"no PostgreSQL binaries in {PG_BIN} (set ASTRODB_TEST_PG_BIN)")
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                pytest.skip("running as root without runuser: cannot start a private PostgreSQL")
            try:
                import pwd
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to run a private PostgreSQL")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="astrodb_pg_"))
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self.port = _free_port()
        self.data = self.dir / "data"
        res = self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        if res.returncode != 0:
            self.cleanup()
            pytest.skip(f"initdb failed: {res.stderr.strip()[-300:]}")

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, str(PG_BIN / tool), *args], capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        res = self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")
        assert res.returncode == 0, res.stderr + (self.dir / "log").read_text()[-2000:]

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def cleanup(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def private_pg(backend):
    if backend != "postgresql":
        pytest.skip("the database server is PostgreSQL")
    pg = PrivatePostgres()
    try:
        pg.start()
        with psycopg.connect(pg.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("CREATE DATABASE svc")
        store = astrodb.connect(pg.url("svc"))
        store.init()
        store.ingest_catalog(gaia_like(200, 10.0, -30.0, 0.2, seed=5), "mine", epoch=2016.0)
        store.close()
        yield pg
    finally:
        pg.cleanup()


def test_database_down_gives_503_and_the_service_recovers_by_itself(private_pg, caplog):
    pg = private_pg
    caplog.set_level(logging.WARNING)
    with make_client(pg.url("svc")) as c:
        for _ in range(3):                      # fill the pool with connections that will die
            assert c.get("/v1/cone", params=CONE).status_code == 200
        pg.stop()
        r = c.get("/v1/cone", params=CONE)
        assert r.status_code == 503 and "unavailable" in r.json()["error"]["message"]
        assert c.get("/health").status_code == 503
        r = c.get("/scs/mine", params={"RA": 10, "DEC": -30, "SR": 0.1})
        assert r.status_code == 503 and 'name="Error"' in r.text
        r = c.get("/vo/CatalogSearch.aspx", params={"RA": 10, "DEC": -30, "SR": 0.1, "CAT": "GAIADR3"})
        assert r.status_code == 503 and r.text.startswith("#ERROR: ")
        pg.start()
        # back: the very first request succeeds (stale connections are dropped and retried)
        assert c.get("/v1/cone", params=CONE).status_code == 200
        assert c.get("/health").json()["status"] == "ok"

    # a service started while the database is down serves 503, then recovers
    pg.stop()
    try:
        with make_client(pg.url("svc")) as c:
            assert c.get("/health").status_code == 503
            assert c.get("/v1/catalogs").status_code == 503
            pg.start()
            t = time.monotonic()
            assert c.get("/v1/catalogs").status_code == 200 and time.monotonic() - t < 5
    finally:
        if not (pg.data / "postmaster.pid").exists():
            pg.start()
    # the log: one line per event, no traceback (the pool's dead connections included)
    assert any("Exception during reset" in r.getMessage() for r in caplog.records)
    for r in caplog.records:
        if r.name.startswith(("sqlalchemy", "astrodb")):
            assert r.exc_info is None and "\n" not in r.getMessage() and r.levelno <= logging.WARNING, r.getMessage()
