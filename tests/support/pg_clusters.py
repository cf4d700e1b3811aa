"""Throwaway PostgreSQL servers for tests that need more than one (sharded stores, a shard that
goes down): each an ``initdb`` cluster in a temporary folder, on a free port of 127.0.0.1, with
trust authentication, made from the machine's own PostgreSQL binaries (the server the suite
already uses), so that nothing else needs installing. ``initdb`` refuses to run as root: as
root, the cluster belongs to the ``postgres`` OS user and its commands run as that user.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

#: Where the PostgreSQL server binaries are (``pg_config --bindir``), unless ASTRODB_PG_BINDIR says.
_BINDIR_ENV = "ASTRODB_PG_BINDIR"


def bindir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    if os.environ.get(_BINDIR_ENV):
        return Path(os.environ[_BINDIR_ENV])
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _owner() -> pwd.struct_passwd | None:
    """The OS user the clusters run as: ``postgres`` when we are root, else ourselves (None)."""
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else None


def _run(args: list[str], owner: pwd.struct_passwd | None, **kw) -> subprocess.CompletedProcess:
    if owner is not None:
        args = ["runuser", "-u", owner.pw_name, "--", *args]
    return subprocess.run(args, capture_output=True, text=True, **kw)


@dataclass
class Cluster:
    """One running throwaway server: ``url`` reaches its ``postgres`` database as ``postgres``."""

    name: str
    root: Path
    port: int
    owner: pwd.struct_passwd | None = field(default=None, repr=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{dbname}"

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        res = _run([str(bindir() / "pg_ctl"), "-D", str(self.data), *args], self.owner, timeout=120)
        if check and res.returncode:
            raise RuntimeError(f"pg_ctl {' '.join(args)} for cluster {self.name} failed: {res.stderr or res.stdout}")
        return res

    def start(self) -> None:
        """Start the server and wait until it takes connections."""
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c full_page_writes=off "
                "-c max_prepared_transactions=20")  # shards take part in two-phase commits
        self._pg_ctl("-w", "-t", "60", "-l", str(self.root / "server.log"), "-o", opts, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: as if it crashed)."""
        self._pg_ctl("-w", "-m", mode, "stop", check=False)

    def running(self) -> bool:
        return self._pg_ctl("status", check=False).returncode == 0

    def create_database(self, dbname: str, extensions: tuple[str, ...] = ("postgis",)) -> str:
        """Create ``dbname`` with ``extensions``; its psycopg URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            for ext in extensions:
                conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{ext}"')
        return self.url(dbname)


def start_cluster(name: str, parent: Path | None = None) -> Cluster:
    """``initdb`` a new cluster under ``parent`` (a new temporary folder by default) and start it.

    Raises
    ------
    RuntimeError
        Naming the step that failed (initdb, start) with the server's own message.
    """
    owner = _owner()
    root = Path(tempfile.mkdtemp(prefix=f"astrodb-{name}-", dir=parent))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    res = _run([str(bindir() / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                "-E", "UTF8", "--locale=C", "--no-sync"], owner, timeout=300)
    if res.returncode:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb for cluster {name} failed: {res.stderr or res.stdout}")
    cluster = Cluster(name, root, free_port(), owner)
    for _attempt in range(3):  # the free port may be taken between the probe and the start
        try:
            cluster.start()
            return cluster
        except RuntimeError:
            cluster.port = free_port()
            time.sleep(0.2)
    log = (root / "server.log").read_text(errors="replace")[-2000:] if (root / "server.log").exists() else ""
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"cluster {name} did not start on three free ports; its log ends:\n{log}")


def remove_cluster(cluster: Cluster) -> None:
    """Stop the server (immediately) and delete its folder."""
    cluster.stop("immediate")
    shutil.rmtree(cluster.root, ignore_errors=True)
