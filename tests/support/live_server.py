"""``astrodb serve`` as a real server: uvicorn in a subprocess on a free port, for the clients
that speak HTTP to it (pyvo, stcal, the store's own HTTP client, batch workers)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(store_url: str, *, workers: int = 1, extra: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen]]:
    """Serve the store at ``store_url``; yields (base URL, the server process), stops it after."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ASTRODB_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "astrodb.cli.main", "--store", store_url, "serve",
                             "--port", str(port), "--workers", str(workers), "--no-access-log", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"server did not start: {proc.communicate()[0][-2000:]}")
            time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
