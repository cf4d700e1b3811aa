"""A real server (``astrodb serve`` under uvicorn, in a subprocess on a free port) queried by
pyvo's Simple Cone Search client and by stcal's get_catalog with ASTROMETRIC_CATALOG_URL set
before stcal is imported, as a pipeline run would."""
from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
import warnings

import httpx
import numpy as np
import pytest

from service_fixtures import CENTER
from tests.support.live_server import live_server

pyvo = pytest.importorskip("pyvo", reason="pyvo (test extra) not installed")


@pytest.fixture(scope="module")
def server(served, backend):
    workers = 2 if backend == "postgresql" else 1     # both ways of serving
    with live_server(served[0], workers=workers) as (base, proc):
        yield base, proc


def test_pyvo_cone_search(server, store):
    from astropy.coordinates import SkyCoord
    server = server[0]
    pos = SkyCoord(CENTER[0], CENTER[1], unit="deg")
    from astropy.io.votable.exceptions import VOWarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = pyvo.dal.SCSService(server + "/scs/gaia_dr3").search(pos=pos, radius=0.1)
        full = pyvo.dal.conesearch(server + "/scs/gaia_dr3", pos, radius=0.05, verbosity=3)
    assert not [str(w.message) for w in caught if issubclass(w.category, VOWarning)]   # e.g. no W06 on ID_MAIN
    ref = store.cone(*CENTER, 0.1, catalog="gaia_dr3")
    assert len(res) == len(ref) > 50
    assert [int(r.id) for r in res] == list(ref["source_id"])
    assert np.allclose([r.pos.ra.deg for r in res], ref["ra"], rtol=0, atol=1e-12)
    assert len(full.fieldnames) >= 17 and len(full) == len(store.cone(*CENTER, 0.05, catalog="gaia_dr3"))
    with pytest.raises(pyvo.dal.DALQueryError, match="no catalog 'nosuch'"):
        pyvo.dal.SCSService(server + "/scs/nosuch").search(pos=pos, radius=0.1)
    with pytest.raises(pyvo.dal.DALQueryError, match="SR: must be <= 1"):
        pyvo.dal.SCSService(server + "/scs/gaia_dr3").search(pos=pos, radius=2.0)


def _raw(base: str) -> socket.socket:
    host, port = base.rsplit("/", 1)[1].split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _response(sock: socket.socket) -> bytes:
    """What the server sent until it closed the connection (or 10 s passed)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def test_a_declared_body_over_the_limit_is_413_without_waiting_for_it(server):
    # Content-Length says 1 GB, 2 bytes follow: a server that read the body would wait for the rest.
    t = time.monotonic()
    with _raw(server[0]) as sock:
        sock.sendall(b"POST /v1/footprint HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n{}")
        data = _response(sock)
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
    assert time.monotonic() - t < 5
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["parameter"] == "body" and "1048576 bytes" in body["error"]["message"]


def test_a_chunked_body_is_cut_off_once_past_the_limit(server):
    chunk = b" " * 65536
    sent = 0
    with _raw(server[0]) as sock:
        sock.sendall(b"POST /v1/footprint HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        while sent < 256 * 2 ** 20 and not select.select([sock], [], [], 0)[0]:   # until the server answers
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            sent += len(chunk)
        data = _response(sock)
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
    assert sent < 8 * 2 ** 20        # answered soon after the first MB, not after the 256 MB offered


def test_head_on_the_real_server(server):
    base = server[0]
    for path in ("/health", "/scs/gaia_dr3?RA=150&DEC=2&SR=0.05", "/v1/catalogs", "/openapi.json"):
        g, h = httpx.get(base + path, timeout=10), httpx.head(base + path, timeout=10)
        assert h.status_code == g.status_code == 200 and h.content == b"", path
        assert h.headers["content-length"] == str(len(g.content)) and h.headers["content-type"] == \
            g.headers["content-type"], path


STCAL = """
import json, sys
from stcal.tweakreg import astrometric_utils as au
t = au.get_catalog(150.0, 2.0, epoch=2024.5, search_radius=0.1, catalog="GAIADR3")
print(json.dumps({"url": au.SERVICELOCATION, "objID": [int(x) for x in t["objID"]],
                  "ra": [float(x) for x in t["ra"]], "epoch": sorted(set(float(x) for x in t["epoch"]))}))
"""


def test_stcal_get_catalog_with_astrometric_catalog_url(server, store):
    server = server[0]
    pytest.importorskip("stcal.tweakreg.astrometric_utils", reason="stcal (test extra) not installed")
    env = {**os.environ, "ASTROMETRIC_CATALOG_URL": server}
    res = subprocess.run([sys.executable, "-c", STCAL], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    ref = store.cone(*CENTER, 0.1, catalog="gaia_dr3", epoch=2024.5)
    moving = np.asarray(ref["propagated"], bool)
    assert out["url"] == server and out["epoch"] == [2024.5]
    assert out["objID"] == list(ref["source_id"][moving]) and len(out["objID"]) > 50
    assert out["ra"] == list(ref["ra"][moving])


def test_serve_command_help_and_bad_settings(capsys):
    from astrodb.cli.main import main
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and all(o in out for o in ("--host", "--port", "--workers", "--max-radius",
                                                             "--max-rows", "--threads"))
    assert main(["serve", "--max-radius", "0"]) == 2
    assert "max radius must be within (0, 180]" in capsys.readouterr().err


def _children(pid: int) -> set[int]:
    try:
        return {int(x) for x in open(f"/proc/{pid}/task/{pid}/children").read().split()}
    except OSError:
        pytest.skip("no /proc children list on this system")


def test_a_dead_worker_is_replaced_and_the_port_is_not_shared(server, backend, tmp_path):
    if backend != "postgresql":
        pytest.skip("the single-process server (SQLite here) has no workers to replace")
    base, proc = server
    workers = {c for c in _children(proc.pid) if "spawn_main" in open(f"/proc/{c}/cmdline").read()}
    assert len(workers) == 2
    os.kill(sorted(workers)[0], 9)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = {c for c in _children(proc.pid) if "spawn_main" in open(f"/proc/{c}/cmdline").read()}
        if len(now) == 2 and now != workers:
            break
        time.sleep(0.2)
    assert len(now) == 2 and now != workers
    ok = 0
    for _ in range(100):
        try:
            ok += httpx.get(base + "/health", timeout=2).status_code == 200
        except httpx.TransportError:
            pass
        if ok >= 5:
            break
        time.sleep(0.1)
    assert ok >= 5
    port = base.rsplit(":", 1)[1]
    env = {**os.environ, "ASTRODB_URL": f"sqlite:///{tmp_path / 'unused.sqlite'}"}
    res = subprocess.run([sys.executable, "-m", "astrodb.cli.main", "serve", "--port", port, "--workers", "2"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2 and "already listens" in res.stderr


def test_the_store_read_through_the_service_gives_the_database_s_rows(server, store, monkeypatch):
    import astrodb
    from astrodb.epoch import earth_barycentric_position
    from astrodb.store.remote import ServiceStore

    base = server[0]
    remote = astrodb.connect(base)
    assert isinstance(remote, ServiceStore) and remote.url == base
    monkeypatch.setenv("ASTRODB_URL", base + "/")
    assert isinstance(astrodb.connect(), ServiceStore)
    assert [c.name for c in remote.catalogs()] == [c.name for c in store.catalogs()]
    info, local = remote.catalog("gaia_dr3"), store.catalog("gaia_dr3")
    assert info.row_count == local.row_count and [f["sha256"] for f in info.files] == [f["sha256"] for f in local.files]
    observer = earth_barycentric_position(2031.2)
    for epoch, obs in ((None, None), (2031.2, observer), ("2010-03-01", None)):
        got = remote.cone(*CENTER, 0.2, catalog="gaia_dr3", epoch=epoch, observer=obs)
        want = store.cone(*CENTER, 0.2, catalog="gaia_dr3", epoch=epoch, observer=obs)
        assert got.colnames == want.colnames and len(got) == len(want) > 100
        for name in want.colnames:   # bit for bit, masks included
            a, b = np.ma.filled(got[name], -999), np.ma.filled(want[name], -999)
            assert np.array_equal(np.asarray(a), np.asarray(b)), name
            assert got[name].unit == want[name].unit, name
    # The parallax shift is applied: without the observer the positions differ.
    plain = remote.cone(*CENTER, 0.2, catalog="gaia_dr3", epoch=2031.2)
    seen = remote.cone(*CENTER, 0.2, catalog="gaia_dr3", epoch=2031.2, observer=observer)
    assert not np.array_equal(np.asarray(plain["ra"]), np.asarray(seen["ra"]))


def test_the_store_read_through_the_service_refuses_clearly(server):
    import astrodb
    from astrodb.errors import CatalogNotFoundError, ConfigError, QueryError

    remote = astrodb.connect(server[0])
    with pytest.raises(CatalogNotFoundError, match="no catalog 'nosuch'"):
        remote.catalog("nosuch")
    with pytest.raises(CatalogNotFoundError, match="nosuch"):
        remote.cone(*CENTER, 0.1, catalog="nosuch")
    with pytest.raises(QueryError, match="radius"):
        remote.cone(*CENTER, 5.0, catalog="gaia_dr3")
    with pytest.raises(QueryError, match="epoch"):
        remote.cone(*CENTER, 0.1, catalog="gaia_dr3", epoch=99999.0)
    with pytest.raises(ConfigError, match="cannot be reached"):
        astrodb.connect("http://127.0.0.1:9/").catalogs()
    with pytest.raises(ConfigError, match="ingest_catalog: the store at .* is an astrodb service"):
        remote.ingest_catalog("x.ecsv", "x")
    assert not hasattr(remote, "engine")


def test_a_cut_result_is_an_error_not_a_subset(served):
    import astrodb
    from astrodb.errors import QueryError

    with live_server(served[0], extra=("--max-rows", "10")) as (base, _):
        remote = astrodb.connect(base)
        assert len(remote.cone(*CENTER, 0.01, catalog="gaia_dr3")) <= 10
        with pytest.raises(QueryError, match="at most 10 rows"):
            remote.cone(*CENTER, 0.3, catalog="gaia_dr3")
