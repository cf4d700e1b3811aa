#!/usr/bin/env python
"""Load benchmark of the HTTP service: cones at random positions from concurrent keep-alive
clients in this process against ``astrodb serve`` in another, on loopback.

    .venv/bin/python bench/bench_service.py [--rows 10000000] [--clients 32] [--duration 60]
        [--workers 2] [--threads N] [--radius-arcmin 6] [--endpoint scs|cone|gsss] [--url STORE_URL --catalog NAME]

Builds a PostgreSQL store (a uniquely named database on --pg, default $ASTRODB_BENCH_PG, else
postgresql://postgres@127.0.0.1:5432/postgres; dropped at the end unless --keep) holding
--rows synthetic Gaia-like rows uniform on the sky (bench_store.gaia_like_sky) as ``gaia_dr3``,
creates the read-only role of docs/service.md and serves the store as that role, or serves
an existing store (--url, --catalog). Then: a correctness check (responses against
Store.cone), a warm-up, and --duration seconds of --clients closed-loop clients each sending
its next request when the previous answer is complete. Reported: throughput, latency
percentiles, errors (non-200, malformed or incomplete bodies, connection failures), mean rows
per response, the CPU time of the server processes, PostgreSQL and this client, and the load
before the run. Prints a Markdown section and writes it to bench/out/service.md.

Targets (2 cores, 10 M rows, 6' cones, 32 clients, 60 s): 0 errors, p99 < 50 ms, >= 1000 req/s.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_store import code_version, command_line, gaia_like_sky, log, machine_info, pg_url_for  # noqa: E402

OUT = HERE / "out" / "service.md"
TARGETS = {"errors": 0, "p99_ms": 50.0, "rps": 1000.0}


# -- the store -----------------------------------------------------------------------------------
class BenchStore:
    def __init__(self, args) -> None:
        self.args = args
        self.dbname = f"astrodb_bench_service_{dt.datetime.now(dt.timezone.utc):%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:6]}"
        self.role = f"astrodb_reader_{uuid.uuid4().hex[:8]}"
        self.password = uuid.uuid4().hex
        self.created = self.role_created = False

    def admin(self, db: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(pg_url_for(self.args.pg, db), autocommit=True)

    def sky(self):
        """The rows served as ``gaia_dr3``."""
        return gaia_like_sky(self.args.rows)

    def build(self) -> tuple[str, dict]:
        import astrodb
        info = {}
        with self.admin() as c:
            c.execute(f'CREATE DATABASE "{self.dbname}"')
        self.created = True
        url = pg_url_for(self.args.pg, self.dbname)
        store = astrodb.connect(url)
        info["revision"] = store.init()
        t = time.perf_counter()
        table = self.sky()
        info["generate_s"] = time.perf_counter() - t
        log(f"generated {len(table):,} rows in {info['generate_s']:.1f} s; ingesting ...")
        t = time.perf_counter()
        store.ingest_catalog(table, "gaia_dr3", epoch=2016.0, description="synthetic Gaia-like sky")
        info["ingest_s"] = time.perf_counter() - t
        del table
        log(f"ingested in {info['ingest_s']:.1f} s")
        with self.admin(self.dbname) as c:
            c.execute("VACUUM ANALYZE astrodb.sources")
            info["server"] = c.execute("SHOW server_version").fetchone()[0]
            info["postgis"] = c.execute("SELECT postgis_lib_version()").fetchone()[0]
            info["settings"] = {k: c.execute(f"SHOW {k}").fetchone()[0]
                                for k in ("shared_buffers", "max_connections", "jit")}
        store.close()
        # serve it as the documented read-only role
        doc = (HERE.parent / "docs" / "service.md").read_text()
        sql = doc.split("-- read-only role for astrodb serve\n", 1)[1].split("```", 1)[0]
        sql = (sql.replace("astrodb_reader", self.role).replace("'change-me'", f"'{self.password}'")
               .replace("DATABASE astro TO", f'DATABASE "{self.dbname}" TO'))
        with self.admin(self.dbname) as c:
            c.execute(sql)
        self.role_created = True
        import sqlalchemy as sa
        reader = sa.engine.make_url(url.replace("postgresql://", "postgresql+psycopg://", 1)).set(
            username=self.role, password=self.password)
        return reader.render_as_string(hide_password=False), info

    def cleanup(self) -> None:
        if self.args.keep:
            log(f"kept database {self.dbname} (role {self.role})")
            return
        if self.created:
            with self.admin() as c:
                c.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        if self.role_created:
            with self.admin() as c:
                c.execute(f'DROP ROLE IF EXISTS "{self.role}"')
        log(f"dropped database {self.dbname} and role {self.role}")


# -- the server ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, args) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ}
    env.pop("ASTRODB_URL", None)
    cmd = [sys.executable, "-m", "astrodb.cli.main", "--store", url, "serve", "--port", str(port),
           "--workers", str(args.workers), "--no-access-log"]
    if args.threads is not None:
        cmd[-1:-1] = ["--threads", str(args.threads)]
    if getattr(args, "heavy_radius", None) is not None:
        cmd[-1:-1] = ["--heavy-radius", str(args.heavy_radius)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(HERE / "out" / "service_server.log", "w"),
                            env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return proc, port
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start; see {HERE / 'out' / 'service_server.log'}")


def stop_server(proc: subprocess.Popen | None) -> None:
    """SIGTERM (uvicorn finishes the requests in flight), then SIGKILL after 15 s."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def process_tree_cpu(root_pid: int) -> float:
    """utime + stime (s) of a process and its descendants (alive ones)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(p.name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        stats[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def postgres_cpu() -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if (p / "comm").read_text().strip() != "postgres":
                continue
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


# -- the clients ---------------------------------------------------------------------------------
def random_centres(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 360.0, n), np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))


def request_path(endpoint: str, catalog: str, ra: float, dec: float, radius: float) -> str:
    if endpoint == "scs":
        return f"/scs/{catalog}?RA={ra:.6f}&DEC={dec:.6f}&SR={radius:.6f}"
    if endpoint == "gsss":
        return f"/vo/CatalogSearch.aspx?RA={ra:.6f}&DEC={dec:.6f}&SR={radius:.6f}&EPOCH=2025.0&FORMAT=CSV&CAT=GAIADR3"
    return f"/v1/cone?catalog={catalog}&ra={ra:.6f}&dec={dec:.6f}&radius={radius:.6f}"


ROW_MARK = {"scs": b"<TR>", "cone": b"],[", "gsss": b"\r\n"}
END_MARK = {"scs": b"</VOTABLE>\n", "cone": b"]}", "gsss": b"\r\n"}


async def one_client(port, paths, start, stop_at, record_from, out, endpoint):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start
    done = 0
    try:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                return
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = None
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length is not None else b""
                ok = status == 200 and length is not None and body.endswith(END_MARK[endpoint])
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                out["errors"].append(f"{type(exc).__name__}: {exc}")
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            t1 = time.perf_counter()
            if t0 >= record_from:
                done += 1
                out["lat"].append(t1 - t0)
                if ok:
                    out["rows"] += body.count(ROW_MARK[endpoint])
                else:
                    out["errors"].append(f"HTTP {status}: {body[:200]!r}")
    finally:
        out["per_connection"].append(done)
        writer.close()


async def load(port, paths, clients, warmup, duration, endpoint):
    out = {"lat": [], "errors": [], "rows": 0, "per_connection": []}
    t = time.perf_counter()
    record_from, stop_at = t + warmup, t + warmup + duration
    step = len(paths) // clients
    await asyncio.gather(*(one_client(port, paths, k * step, stop_at, record_from, out, endpoint)
                           for k in range(clients)))
    out["wall"] = time.perf_counter() - record_from
    return out


def check_results(port: int, store_url: str, catalog: str, endpoint: str, radius: float, n: int = 30) -> str:
    """Row counts and ids of the service's answers against Store.cone at the same centres."""
    import io
    import warnings
    import urllib.request
    import astrodb
    from astropy.io.votable import parse_single_table
    store = astrodb.connect(store_url)
    ras, decs = random_centres(n, 99)
    bad = 0
    for ra, dec in zip(ras, decs):
        ra, dec = float(f"{ra:.6f}"), float(f"{dec:.6f}")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/scs/{catalog}?RA={ra}&DEC={dec}&SR={radius}").read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = parse_single_table(io.BytesIO(body)).to_table()
        ref = store.cone(ra, dec, radius, catalog=catalog)
        bad += [int(s) for s in t["source_id"]] != list(ref["source_id"])
    store.close()
    return f"{n - bad}/{n} SCS answers identical to Store.cone (ids, order)"


def pct(a, q):
    return float(np.percentile(np.asarray(a) * 1e3, q)) if len(a) else float("nan")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    p.add_argument("--threads", type=int, default=None, help="astrodb serve --threads (queries at once per "
                   "worker; default: the server's, 1 with several workers)")
    p.add_argument("--radius-arcmin", type=float, default=6.0)
    p.add_argument("--endpoint", choices=("scs", "cone", "gsss"), default="scs")
    p.add_argument("--pg", default=os.environ.get("ASTRODB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--url", help="serve this existing store instead of building one")
    p.add_argument("--catalog", default="gaia_dr3")
    p.add_argument("--keep", action="store_true", help="keep the database and role")
    args = p.parse_args(argv)
    (HERE / "out").mkdir(exist_ok=True)
    try:
        import uvloop
        uvloop.install()
        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"

    t_start = time.time()
    load_before = os.getloadavg()
    others = subprocess.run(["pgrep", "-af", "bench_"], capture_output=True, text=True).stdout.splitlines()
    others = [o for o in others if str(os.getpid()) not in o.split()[0] and "pgrep" not in o]
    others = sorted({name for o in others for name in re.findall(r"bench_\w+\.py", o)})  # names, not command lines
    bs, info = BenchStore(args), {}
    proc = None
    try:
        if args.url:
            url = args.url
        else:
            url, info = bs.build()
        proc, port = start_server(url, args)
        log(f"server up on port {port} ({args.workers} workers)")
        radius = args.radius_arcmin / 60.0
        check = check_results(port, url, args.catalog, "scs", radius) if args.endpoint == "scs" else "n/a"
        log(check)
        ras, decs = random_centres(500_000, 7)
        paths = [request_path(args.endpoint, args.catalog, a, d, radius) for a, d in zip(ras, decs)]
        load_at_start = os.getloadavg()
        cpu0 = (process_tree_cpu(proc.pid), postgres_cpu(), time.process_time())
        res = asyncio.run(load(port, paths, args.clients, args.warmup, args.duration, args.endpoint))
        cpu1 = (process_tree_cpu(proc.pid), postgres_cpu(), time.process_time())
    finally:
        stop_server(proc)
        if not args.url:
            bs.cleanup()

    lat, n = res["lat"], len(res["lat"])
    pc = res["per_connection"] or [0]
    wall = res["wall"]
    span = args.warmup + wall  # CPU counters cover the warm-up too
    rps = n / wall
    errors = len(res["errors"])
    p50, p90, p99, pmax = pct(lat, 50), pct(lat, 90), pct(lat, 99), max(lat) * 1e3 if lat else float("nan")
    cpu = [(b - a) / span for a, b in zip(cpu0, cpu1)]
    m = machine_info()
    met = {"errors": errors == TARGETS["errors"], "p99": p99 < TARGETS["p99_ms"], "rps": rps >= TARGETS["rps"]}
    yes = {True: "yes", False: "**no**"}
    cmd = command_line("bench/bench_service.py", argv if argv is not None else sys.argv[1:],
                       {"--url": "URL", "--pg": "URL"})
    md = [
        "## HTTP service (bench/bench_service.py)",
        "",
        f"- Command: `{cmd}` (in the repository root)",
        f"- Measured on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d}; wall time "
        f"{(time.time() - t_start) / 60:.1f} min; {code_version()}",
        f"- Machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram']}, Linux {m['kernel']}; "
        f"Python {platform.python_version()}",
        f"- Load average before the run {load_before[0]:.2f} (1 min), at the start of the load "
        f"{load_at_start[0]:.2f}; other benchmark processes: "
        + (", ".join(others) if others else "none"),
    ]
    if info:
        md.append(f"- Store: PostgreSQL {info['server']}, PostGIS {info['postgis']} ({info['settings']}), schema "
                  f"{info['revision']}; {args.rows:,} synthetic Gaia-like rows uniform on the sky as `gaia_dr3` "
                  f"(generated {info['generate_s']:.0f} s, ingested {info['ingest_s']:.0f} s); served as the "
                  "read-only role of docs/service.md")
    else:
        md.append(f"- Store: an existing store (`--url`), catalog `{args.catalog}`")
    md += [
        f"- Server: `astrodb serve --workers {args.workers}"
        f"{'' if args.threads is None else f' --threads {args.threads}'} --no-access-log` (uvicorn, "
        "separate process); "
        f"client: this process, {args.clients} closed-loop keep-alive HTTP/1.1 connections ({loop_name}), "
        f"{args.radius_arcmin:g}′ cones at random centres uniform on the sphere, endpoint `{args.endpoint}` "
        f"(`{request_path(args.endpoint, args.catalog, 123.4, -5.6, radius)}`); {args.warmup:g} s warm-up, "
        f"then {wall:.1f} s measured",
        f"- Correctness before the load: {check}",
        "",
        "| Measure | Value | Target | Met |",
        "|---|---:|---:|---|",
        f"| throughput | {rps:,.0f} req/s | ≥ {TARGETS['rps']:,.0f} req/s | {yes[met['rps']]} |",
        f"| latency p50 / p90 | {p50:.1f} / {p90:.1f} ms | | |",
        f"| latency p99 (max) | {p99:.1f} ms ({pmax:.0f} ms) | < {TARGETS['p99_ms']:g} ms | {yes[met['p99']]} |",
        f"| errors | {errors} of {n + (errors if n == 0 else 0):,} | 0 | {yes[met['errors']]} |",
        f"| rows per response (mean) | {res['rows'] / max(n, 1):.1f} | | |",
        f"| requests per connection min / median / max | {min(pc)} / {int(np.median(pc))} / {max(pc)} | | |",
        f"| CPU, cores busy: server workers / PostgreSQL / this client | "
        f"{cpu[0]:.2f} / {cpu[1]:.2f} / {cpu[2]:.2f} | | |",
    ]
    if res["errors"]:
        md.append("")
        md.append(f"First errors: {'; '.join(sorted(set(res['errors']))[:3])}")
    text = "\n".join(md) + "\n"
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
