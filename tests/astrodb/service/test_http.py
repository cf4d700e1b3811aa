"""HTTP-level behaviour on both backends: the request body bound (413 before reading), HEAD on
every GET route, what /health tells (nothing about where the database is or who connects), and
the one-line log of a connection that died with the database."""
from __future__ import annotations

import json
import logging
import re
import socket
import time

import numpy as np
import pytest
import sqlalchemy as sa

from service_fixtures import RUN_IDS, make_client

POLY = [[149.95, 1.95], [150.05, 1.95], [150.05, 2.05], [149.95, 2.05]]
LIMIT = 4096


@pytest.fixture(scope="module")
def small(served):
    """A client of a service that accepts request bodies of at most LIMIT bytes."""
    with make_client(served[0], max_body=LIMIT) as c:
        yield c


def _body(n: int) -> bytes:
    """A footprint request of exactly ``n`` bytes (JSON padded with spaces)."""
    doc = json.dumps({"catalog": "gaia_dr3", "polygon": POLY, "columns": ["source_id"]}).encode()
    assert len(doc) <= n
    return doc[:-1] + b" " * (n - len(doc)) + b"}"


def _too_large(r) -> None:
    assert r.status_code == 413, r.text
    assert r.json() == {"error": {"status": 413, "parameter": "body",
                                  "message": f"body: larger than this service's limit of {LIMIT} bytes"}}


def test_a_body_within_the_limit_is_served_and_one_byte_more_is_413(small):
    r = small.post("/v1/footprint", content=_body(LIMIT), headers={"content-type": "application/json"})
    assert r.status_code == 200 and len(r.json()["rows"]) > 10
    _too_large(small.post("/v1/footprint", content=_body(LIMIT + 1), headers={"content-type": "application/json"}))


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(small):
    # The body sent is small and valid; only the header says it is large: 413 means the
    # header alone decided (parsing the body would have answered 200).
    r = small.post("/v1/footprint", content=_body(200),
                   headers={"content-type": "application/json", "content-length": str(LIMIT + 1)})
    _too_large(r)
    assert r.headers["connection"] == "close"


def test_a_chunked_body_over_the_limit_is_413(small):
    chunks = [_body(LIMIT)[:1000]] + [b" " * 1000] * 10      # no Content-Length: Transfer-Encoding chunked
    r = small.post("/v1/footprint", content=iter(chunks), headers={"content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    _too_large(r)


def test_the_default_limit_takes_the_largest_polygon(client):
    # 1000 vertices, the most a polygon may have, with full-precision coordinates: far below 1 MB.
    a = np.linspace(0, 2 * np.pi, 1000, endpoint=False)
    poly = np.c_[150.0 + 0.05 * np.cos(a) / np.cos(np.radians(2.0)), 2.0 + 0.05 * np.sin(a)].tolist()
    body = json.dumps({"catalog": "gaia_dr3", "polygon": poly}).encode()
    assert 30_000 < len(body) < 50_000
    t = time.monotonic()
    r = client.post("/v1/footprint", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200 and len(r.json()["rows"]) > 10 and time.monotonic() - t < 10
    assert client.get("/health").json()["max_body_bytes"] == 1_048_576


def test_max_body_setting_and_environment(monkeypatch):
    from astrodb.errors import ConfigError
    from astrodb.service import Settings
    from astrodb.service.settings import ENV_MAX_BODY
    monkeypatch.delenv(ENV_MAX_BODY, raising=False)
    assert Settings().max_body == 1_048_576
    monkeypatch.setenv(ENV_MAX_BODY, "5000")
    assert Settings().max_body == 5000 and Settings.from_env().max_body == 5000
    assert Settings(max_body=7).to_env()[ENV_MAX_BODY] == "7"
    with pytest.raises(ConfigError, match="max body must be >= 1 byte"):
        Settings(max_body=0)
    monkeypatch.setenv(ENV_MAX_BODY, "lots")
    with pytest.raises(ConfigError, match=f"{ENV_MAX_BODY} must be an integer, got 'lots'"):
        Settings.from_env()


# -- HEAD ------------------------------------------------------------------------------------
EXAMPLES = {
    "/health": "/health",
    "/v1/catalogs": "/v1/catalogs",
    "/v1/catalogs/{name}": "/v1/catalogs/mine",
    "/v1/cone": "/v1/cone?catalog=gaia_dr3&ra=150&dec=2&radius=0.1&limit=5",
    "/scs/{catalog}": "/scs/gaia_dr3?RA=150&DEC=2&SR=0.05",
    "/vo/CatalogSearch.aspx": "/vo/CatalogSearch.aspx?RA=150&DEC=2&SR=0.05",
    "/webservices/vo/CatalogSearch.aspx": "/webservices/vo/CatalogSearch.aspx?RA=150&DEC=2&SR=0.05&FORMAT=VOTABLE",
    "/v1/runs": "/v1/runs",
    "/v1/runs/{run_id}": f"/v1/runs/{RUN_IDS[0]}",
    "/v1/runs/{run_id}/prov": f"/v1/runs/{RUN_IDS[1]}/prov",
    "/openapi.json": "/openapi.json",
    "/docs": "/docs",
    "/docs/oauth2-redirect": "/docs/oauth2-redirect",
    "/": "/",
    "/pages/catalogs/{name}/sky.png": "/pages/catalogs/mine/sky.png",
    "/pages/cone": "/pages/cone?catalog=gaia_dr3&ra=150&dec=2&radius=0.05",
    "/pages/runs": "/pages/runs",
    "/pages/runs/{run_id}": f"/pages/runs/{RUN_IDS[0]}",
    "/pages/runs/{run_id}/residuals.png": f"/pages/runs/{RUN_IDS[0]}/residuals.png",
    "/pages/image": "/pages/image?name=img1",
}
_SAME = ("content-type", "content-length", "x-truncated")


def test_head_answers_every_get_route_with_the_get_headers_and_no_body(client):
    gets = {r.path for r in client.app.routes if "GET" in (getattr(r, "methods", None) or ())}
    assert gets <= set(EXAMPLES), f"give these routes an example: {gets - set(EXAMPLES)}"
    for path in sorted(gets):
        g, h = client.get(EXAMPLES[path]), client.head(EXAMPLES[path])
        assert g.status_code == 200 and len(g.content) > 0, path
        assert h.status_code == 200 and h.content == b"", path
        assert {k: h.headers.get(k) for k in _SAME} == {k: g.headers.get(k) for k in _SAME}, path
        assert int(h.headers["content-length"]) == len(g.content), path


def test_head_of_errors_and_of_post_only_routes(client):
    h = client.head("/v1/catalogs/nope")
    assert h.status_code == 404 and h.content == b"" and h.headers["content-type"] == "application/json"
    h = client.head("/scs/gaia_dr3?RA=150&DEC=95&SR=0.1")
    assert h.status_code == 400 and h.content == b"" and int(h.headers["content-length"]) > 0
    h = client.head("/v1/footprint")
    assert h.status_code == 405 and h.headers["allow"] == "POST"


# -- /health ---------------------------------------------------------------------------------
def _secrets(url: str) -> list[str]:
    """What /health must not show of ``url``: the URL, its host, port, user, database or file."""
    u = sa.engine.make_url(url)
    found = [url, u.render_as_string(hide_password=True), "://"]
    for part in (u.host, u.username, u.password, str(u.port) if u.port else None, u.database):
        if part:
            found.append(part)
    if u.database and "/" in u.database:
        found.append(u.database.rsplit("/", 1)[1])
    return found


def _shows(text: str, secret: str) -> bool:
    """Whether ``secret`` is in ``text`` as a word of its own (user 'postgres' is not in 'postgresql')."""
    return re.search(rf"(?<![\w.]){re.escape(secret)}(?![\w])", text) is not None


def test_health_shows_the_database_is_up_not_where_it_is_or_who_connects(client, served):
    from astrodb import __version__
    r = client.get("/health")
    doc = r.json()
    assert r.status_code == 200 and doc["status"] == "ok"
    assert doc["version"] == __version__ and len(doc["schema_revision"]) >= 4
    assert "store" not in doc
    for secret in _secrets(served[0]) + ["localhost", "127.0.0.1"]:
        assert not _shows(r.text, secret), secret


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_of_an_unreachable_database_names_neither_host_nor_user(backend, tmp_path):
    if backend == "postgresql":
        url = f"postgresql+psycopg://secret_reader:pw@127.0.0.1:{_free_port()}/secret_db"
    else:
        url = f"sqlite:///{tmp_path / 'secret_dir' / 'nowhere' / 'secret_store.sqlite'}"
    with make_client(url) as c:
        r = c.get("/health")
        assert r.status_code == 503 and "\n" not in r.json()["error"]["message"], r.text
        for secret in _secrets(url):
            assert not _shows(r.text, secret), secret
        assert "secret" not in r.text


def test_unavailable_messages_leave_out_the_server_and_the_role():
    import psycopg
    from astrodb.service.errors import unavailable_message
    port = _free_port()
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(f"postgresql://secret_reader@127.0.0.1:{port}/secret_db", connect_timeout=3)
    assert "127.0.0.1" in str(caught.value)                   # libpq says where it tried
    msg = unavailable_message(caught.value)
    assert msg.startswith("the catalog database is unavailable (") and "\n" not in msg
    assert all(s not in msg for s in ("127.0.0.1", str(port), "secret"))
    with pytest.raises(psycopg.OperationalError) as caught:    # a server that refuses the role
        psycopg.connect("postgresql://secret_role_that_is_not@127.0.0.1:5432/postgres", connect_timeout=3)
    msg = unavailable_message(caught.value)
    assert "secret" not in msg and "127.0.0.1" not in msg and "5432" not in msg, msg


# -- the pool's log when connections die --------------------------------------------------------
class Records(logging.Handler):
    """Keeps the records it is given, formatted as a plain log file would show them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


def _kill(engine: sa.Engine, raw, writer) -> None:
    """End the server process behind ``raw`` as a database restart does."""
    if engine.dialect.name == "postgresql":
        pid = raw.dbapi_connection.info.backend_pid
        with writer.engine.connect() as conn:      # the superuser store: ends the service's connection
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar_one()
    else:
        raw.dbapi_connection.close()


def test_a_connection_killed_under_the_pool_is_logged_in_one_warning_line(served):
    url, writer = served
    with make_client(url) as c:
        engine = c.app.state.service.store.engine
        logger = logging.getLogger(engine.pool.logger.name)
        handler = Records()
        logger.addHandler(handler)
        try:
            raw = engine.raw_connection()
            if engine.dialect.name == "postgresql":      # a transaction open, as a query leaves it
                raw.dbapi_connection.execute("SELECT 1")
            _kill(engine, raw, writer)
            raw.close()                                   # back to the pool: its reset fails
            assert c.get("/v1/cone", params={"catalog": "mine", "ra": 10, "dec": -30, "radius": 0.1}
                         ).status_code == 200              # the pool goes on with fresh connections
        finally:
            logger.removeHandler(handler)
    faults = [r for r in handler.records if r.levelno >= logging.WARNING]
    assert faults, "the reset of a dead connection was not logged"
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in faults)
    for line in handler.lines:
        assert "\n" not in line and "Traceback" not in line, line
    assert any(line.startswith("WARNING sqlalchemy.pool") and "Exception during reset or similar: " in line
               and line.endswith("; the connection is discarded") for line in handler.lines), handler.lines


def test_pool_fault_filter_rewrites_only_pool_faults():
    from astrodb.service.errors import PoolFaultFilter
    logger = logging.getLogger("astrodb.test.pool")
    logger.propagate = False
    handler, fault_filter = Records(), PoolFaultFilter()
    logger.addHandler(handler)
    logger.addFilter(fault_filter)
    try:
        import sqlite3
        conn = sqlite3.connect(":memory:")
        conn.close()
        try:
            conn.rollback()
        except sqlite3.ProgrammingError:
            logger.error("Exception during reset or similar", exc_info=True)
            logger.error("Exception closing connection %r", conn, exc_info=True)
            logger.error("something else", exc_info=True)
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(fault_filter)
    reset, closing, other = handler.records
    assert handler.lines[0] == ("WARNING astrodb.test.pool Exception during reset or similar: ProgrammingError: "
                                "Cannot operate on a closed database.; the connection is discarded")
    assert closing.levelno == logging.WARNING and "Exception closing connection: ProgrammingError" in handler.lines[1]
    assert other.levelno == logging.ERROR and other.exc_info is not None and "Traceback" in handler.lines[2]
