"""Bounded work per request, on both backends: wide regions run in the low-priority lane (same
answers), a full lane says busy, and a request past its time limit is stopped — while waiting,
in the database (PostgreSQL's statement_timeout, SQLite's progress handler) or while rendering
— with a 503 naming the limit, never retried."""
from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from astrodb.service import lanes
from astrodb.service.core import Service, open_read_only_store
from astrodb.service.errors import Busy, TooSlow, call_store
from astrodb.service.settings import Settings
from service_fixtures import make_client


def test_wide_cone_runs_in_the_heavy_lane_with_the_same_answer(served):
    url, store = served
    params = {"catalog": "gaia_dr3", "ra": 150.0, "dec": 2.0, "radius": 0.3, "epoch": "J2030"}
    with make_client(url, heavy_radius=1.0) as small, make_client(url, heavy_radius=0.1) as wide:
        a, b = small.get("/v1/cone", params=params), wide.get("/v1/cone", params=params)
        assert a.status_code == b.status_code == 200 and a.json() == b.json() and len(a.json()["rows"]) > 100
        scs = wide.get("/scs/gaia_dr3", params={"RA": 150, "DEC": 2, "SR": 0.3, "EPOCH": "J2030"})
        assert scs.status_code == 200 and scs.content.count(b"<TR>") == len(a.json()["rows"])
        assert wide.get("/health").json()["heavy_radius_deg"] == 0.1


def _where(svc, release: str):
    """Heavy-lane work for the test below: waits for the file ``release``, says where it ran."""
    for _ in range(200):
        if os.path.exists(release):
            break
        time.sleep(0.05)
    return os.getpid(), os.getpriority(os.PRIO_PROCESS, 0), svc.store.backend


def test_heavy_lane_is_a_lower_priority_process_and_bounded(served, backend, tmp_path):
    lane = lanes.HeavyLane(Settings(store_url=served[0], heavy_queue=2), Service.open)
    release = str(tmp_path / "go")

    async def main():
        far = time.monotonic() + 60
        first = asyncio.ensure_future(lane.run(_where, 60.0, far, release))
        second = asyncio.ensure_future(lane.run(_where, 60.0, far, release))
        await asyncio.sleep(0.05)
        with pytest.raises(Busy, match="busy with 2 large requests"):
            await lane.run(_where, 60.0, far, release)      # a third is refused at once, not queued
        open(release, "w").close()
        return await first, await second

    try:
        (pid, nice, kind), again = asyncio.run(main())
    finally:
        lane.close()
    assert pid != os.getpid() and again[0] == pid and kind == backend
    assert nice >= lanes.HEAVY_NICE


def test_errors_come_back_from_the_heavy_lane_as_they_were(served):
    with make_client(served[0], heavy_radius=0.0) as c:
        r = c.get("/v1/cone", params={"catalog": "nope", "ra": 150, "dec": 2, "radius": 0.2})
        assert r.status_code == 404 and "no catalog 'nope'" in r.json()["error"]["message"]
        r = c.get("/v1/cone", params={"catalog": "gaia_dr3", "ra": 150, "dec": 2, "radius": 0.2, "columns": "ra,x"})
        assert r.status_code == 400 and r.json()["error"]["parameter"] == "columns"
        assert "unknown column" in r.json()["error"]["message"]


def test_request_timed_out_while_waiting():
    with pytest.raises(TooSlow, match="while waiting for its turn: it passed its time limit of 2 s"):
        lanes.bounded(lambda: 1, 2.0, time.monotonic() - 0.1)


def test_rendering_past_the_deadline_is_a_503():
    from astrodb.service.cells import DeadlineExceeded

    def render():
        raise DeadlineExceeded("10 of 20 rows rendered")
    with pytest.raises(TooSlow, match="while rendering the rows") as info:
        lanes.bounded(render, 5.0, time.monotonic() + 5)
    assert info.value.status == 503


def test_a_query_past_its_deadline_is_stopped_in_the_database(served, backend):
    url, _ = served
    store = open_read_only_store(Settings(store_url=url, statement_timeout=0.2))
    slow = ("SELECT pg_sleep(5)" if backend == "postgresql" else
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 100000000) SELECT count(*) FROM c")
    calls = []

    def query():
        calls.append(1)
        with store.engine.connect() as conn:
            return conn.exec_driver_sql(slow).scalar()
    try:
        t0 = time.monotonic()
        with pytest.raises(TooSlow, match="while running the query"):
            lanes.bounded(call_store, 0.2, time.monotonic() + 0.2, store, query)
        assert time.monotonic() - t0 < 3 and calls == [1]       # stopped, and not tried again
        assert lanes.deadline() is None
        with store.engine.connect() as conn:                     # the connection is usable again
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        store.close()


def test_time_limit_reaches_the_client(served):
    url, _ = served
    with make_client(url, request_timeout=1e-9) as c:
        r = c.get("/v1/cone", params={"catalog": "gaia_dr3", "ra": 150, "dec": 2, "radius": 0.1})
        assert r.status_code == 503 and "time limit" in r.json()["error"]["message"]
        s = c.get("/scs/gaia_dr3", params={"RA": 150, "DEC": 2, "SR": 0.1})
        assert s.status_code == 503 and b"time limit" in s.content and b'name="Error"' in s.content


@pytest.mark.parametrize("bad, message", [({"request_timeout": 0}, "request timeout"),
                                          ({"heavy_radius": -1}, "heavy radius"),
                                          ({"heavy_queue": 0}, "heavy queue")])
def test_settings_refuse_nonsense(bad, message):
    from astrodb.errors import ConfigError
    with pytest.raises(ConfigError, match=message):
        Settings(**bad)


def test_settings_from_the_environment(monkeypatch):
    from astrodb.errors import ConfigError
    monkeypatch.setenv("ASTRODB_SERVICE_REQUEST_TIMEOUT", "12.5")
    monkeypatch.setenv("ASTRODB_SERVICE_HEAVY_RADIUS", "0.5")
    s = Settings.from_env()
    assert (s.request_timeout, s.heavy_radius) == (12.5, 0.5) and Settings.from_env(**s.to_env() and {}) == s
    monkeypatch.setenv("ASTRODB_SERVICE_HEAVY_RADIUS", "wide")
    with pytest.raises(ConfigError, match="ASTRODB_SERVICE_HEAVY_RADIUS must be a number"):
        Settings.from_env()


def _pid(svc):
    return os.getpid()


_ORPHAN = """
import asyncio, sys, time
sys.path[:0] = {path!r}
from astrodb.service.core import Service
from astrodb.service.lanes import HeavyLane
from astrodb.service.settings import Settings
import test_lanes
lane = HeavyLane(Settings(store_url={url!r}), Service.open)
print(asyncio.run(lane.run(test_lanes._pid, 60.0, time.monotonic() + 60)), flush=True)
time.sleep(60)
"""


def test_the_heavy_process_ends_when_its_worker_is_killed(served):
    import signal
    import subprocess

    code = _ORPHAN.format(path=[os.path.dirname(__file__)] + sys.path, url=served[0])
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        for _ in range(50):
            if not os.path.exists(f"/proc/{child}") or " Z " in _stat(child):
                break
            time.sleep(0.1)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the heavy lane's process outlived its killed worker by 5 s")
    finally:
        if parent.poll() is None:
            parent.kill()


def _stat(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read()
    except OSError:
        return " Z "
