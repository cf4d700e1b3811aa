#!/usr/bin/env python
"""End-to-end Gaia ingest benchmark: DR3 bulk partition files -> indexed, queryable rows, against
gunzip alone, the parse alone, astropy ``Table.read`` and raw binary COPY of the same rows, all in
one run on the same generated files.

    .venv/bin/python bench/bench_gaia.py [--files 8] [--rows 200000] [--astropy-rows 20000]

Files: ``--files`` DR3 ``GaiaSource_*.csv.gz`` partitions of ``--rows`` rows each, in the archive's
exact layout (ECSV header, all 152 columns, ``null`` for missing; tests/support/gaia_fixtures.py), each on
its own patch of sky (disjoint like the archive's HEALPix-8 ranges), with the ``_MD5SUM.txt`` the
archive ships beside them. Generated once and cached under bench/out/gaia_dr3_files/ (gitignored).

Measured (rows/s = rows / wall seconds; CPU seconds of this process, all its threads):
1. gunzip alone, one core: zlib (``gzip`` module), ISA-L ``isal.igzip`` and ``isal.igzip_threaded``
   (threads=1, what the reader uses: decompression in its own thread).
2. ``read_gaia_file`` (gunzip + pyarrow parse + validation), one process; also on the uncompressed
   text of the first file (parse + validation alone) and with pyarrow's threads; then
   ``gaia.prepare_file`` (what a worker does per file: sha256, md5, read, HEALPix, spatial sort).
3. astropy ``Table.read(format="ascii.ecsv")`` of the first ``--astropy-rows`` rows of the first
   file (same header, gzipped like the others); rows/s extrapolated to the full files.
4. Raw binary COPY (astrodb.ingest.bulk.insert_columns, one transaction per file, the prepared
   numpy columns exactly as the ingest loads them) into (a) an index-free copy of astrodb.sources
   and (b) a Gaia catalog's partition of the real store (indexed at creation, as ingest_gaia
   loads it); then, splitting (b)'s cost (skip with --no-breakdown): (b') (b) on two connections
   at once, (c) the partition's indexes without foreign keys, (d) two foreign keys only (as the
   partitions had before migration 0006), (e) a PostGIS geography point and its GiST only (as the
   partitions had before migration 0012), (f) the two btrees only; then (a)'s indexes built
   after the load (the load-then-index alternative). PostgreSQL CPU is read
   from /proc per backend, giving CPU microseconds per row for every step and the rows/s ceiling
   they allow on this machine's cores.
5. End to end: ``astrodb.connect(url).init(); store.ingest_gaia(files, release="dr3", jobs=J)``
   into a fresh PostgreSQL database for J = 1 and 2, wall clock until it returns (the partition is
   indexed, so the rows are queryable then; checked with Store.cone against a brute-force count),
   with CPU accounting (this process, its worker processes, the PostgreSQL backends of the
   database, PostgreSQL background processes, whole machine) and a per-file timeline of the
   workers' prepare_file and the main process's load_prepared; then SQLite with J = 2.

Creates its own uniquely named PostgreSQL databases (dropped at the end unless --keep) on the
server named by --pg (default $ASTRODB_BENCH_PG, else postgresql://postgres@127.0.0.1:5432/postgres).
Prints a Markdown section and writes it to bench/out/gaia.md (numbers also in bench/out/gaia.json).
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import gzip
import itertools
import json
import os
import platform
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_store import code_version, command_line, pg_url_for  # noqa: E402  (one copy of the run-header helpers)
OUT_DIR = HERE / "out"
CACHE_DIR = OUT_DIR / "gaia_dr3_files"
CACHE_VERSION = 1  # bump when the generated files change
CATALOG = "gaia_dr3"
TARGET_RATE = 120e3  # rows/s end to end on the machine's 2 cores
# The anchor layout (e): a geography point computed from ra/dec, as PostGIS users store one.
GEOG_SQL = ("ALTER TABLE {t} ADD COLUMN geog public.geography(Point, 4326) GENERATED ALWAYS AS "
            "(public.ST_SetSRID(public.ST_MakePoint(ra - 180.0, dec), 4326)::public.geography) STORED")

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def fmt_rate(r: float) -> str:
    return f"{r / 1e6:.2f} M" if r >= 1e6 else f"{r / 1e3:.1f} k"


# -- the files -----------------------------------------------------------------------------
def _fixtures():
    """tests.support.gaia_fixtures: the archive's file layouts (the repository root is on sys.path)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import tests.support.gaia_fixtures as fixtures
    return fixtures


def _generate_one(directory: str, index: int, rows: int, seed: int) -> dict:
    """Write DR3 partition number ``index``: the fixture's rows moved to their own patch of sky
    (source_id, designation, ra, dec follow), sorted by source_id as the archive's files are."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import astropy.units as u
    from astropy_healpix import HEALPix
    gaia_rows, write_partition = _fixtures().gaia_rows, _fixtures().write_partition

    t = gaia_rows("dr3", rows, seed + index, real=False)
    # The fixture puts every file at (280, -60) +- 1 deg; shift file k by 3 deg in ra (1.5 deg in
    # dec every 120 files) so that the files cover disjoint sky, like the archive's partitions.
    ra = pc.cast(t["ra"], pa.float64()).to_numpy()
    dec = pc.cast(t["dec"], pa.float64()).to_numpy()
    ra = (ra + 3.0 * (index % 120)) % 360.0
    if index >= 120:
        dec = dec + 1.5 * (index // 120)
    old = pc.cast(t["source_id"], pa.int64()).to_numpy()
    pix = HEALPix(nside=4096, order="nested").lonlat_to_healpix(ra * u.deg, dec * u.deg).astype(np.int64)
    sid = (pix << 35) | (old & ((1 << 35) - 1))  # keeps the fixture's unique low bits
    sid_text = pa.array(sid).cast(pa.string())
    t = t.set_column(t.column_names.index("source_id"), "source_id", sid_text)
    t = t.set_column(t.column_names.index("designation"), "designation",
                     pc.binary_join_element_wise("Gaia DR3", sid_text, " "))
    t = t.set_column(t.column_names.index("ra"), "ra", pa.array(ra).cast(pa.string()))
    t = t.set_column(t.column_names.index("dec"), "dec", pa.array(dec).cast(pa.string()))
    t = t.take(pa.array(np.argsort(sid, kind="stable")))
    path = write_partition(directory, "dr3", t)
    with open(path, "rb") as f:  # gzip ISIZE: uncompressed size mod 2**32
        f.seek(-4, 2)
        isize = int.from_bytes(f.read(4), "little")
    return {"index": index, "name": path.name, "rows": rows, "gz_bytes": path.stat().st_size,
            "isize": isize, "ra_c": float(np.median(ra)), "dec_c": float(np.median(dec))}


def ensure_files(nfiles: int, rows: int, seed: int) -> tuple[list[Path], list[dict], float]:
    """The cached files (generating those missing, two at a time), their manifest, generation time."""
    directory = CACHE_DIR / f"v{CACHE_VERSION}_r{rows}_s{seed}"
    directory.mkdir(parents=True, exist_ok=True)
    mpath = directory / "manifest.json"
    manifest = {int(k): v for k, v in json.loads(mpath.read_text()).items()} if mpath.is_file() else {}
    manifest = {k: v for k, v in manifest.items() if (directory / v["name"]).is_file()}
    missing = [i for i in range(nfiles) if i not in manifest]
    t = time.perf_counter()
    if missing:
        log(f"generating {len(missing)} DR3 partition(s) of {rows:,} rows into {directory} ...")
        with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            futs = [pool.submit(_generate_one, str(directory), i, rows, seed) for i in missing]
            for fut in futs:
                m = fut.result()
                manifest[m["index"]] = m
                log(f"  {m['name']}: {m['gz_bytes'] / 1e6:.0f} MB gz, {m['isize'] / m['rows']:.0f} B/row")
        mpath.write_text(json.dumps({str(k): v for k, v in sorted(manifest.items())}, indent=1))
        _fixtures().write_md5sum(directory, sorted(v["name"] for v in manifest.values()))
    t_gen = time.perf_counter() - t
    used = [manifest[i] for i in range(nfiles)]
    names = [m["name"] for m in used]
    if len(set(names)) != len(names):
        raise SystemExit("generated files share a name (overlapping sky): regenerate with another --seed")
    return [directory / n for n in names], used, t_gen


# -- measurement helpers -------------------------------------------------------------------
_CLK = os.sysconf("SC_CLK_TCK")


def _proc_cpu() -> tuple[int, int, int]:
    """(busy, total, irq + softirq + steal) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]] + [0] * 8
    idle = v[3] + v[4]  # idle, iowait
    return sum(v[:8]) - idle, sum(v[:8]), v[5] + v[6] + v[7]


def _procs(dbname: str | None) -> dict[int, tuple[str, float]]:
    """pid -> (kind, CPU seconds) of every process but this one and its children (counted by
    getrusage): PostgreSQL 'ours' (backends of ``dbname``), 'other' (backends of other databases),
    'bg' (checkpointer, WAL writer, autovacuum, ...); 'kernel' (kernel threads: I/O writeback,
    ...); 'user' (any other process on the machine)."""
    out, me = {}, os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{d}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(st[1]) == me:  # a child: counted by RUSAGE_CHILDREN once reaped
            continue
        cpu = (int(st[11]) + int(st[12])) / _CLK  # utime, stime
        if not cmd:
            kind = "kernel"
        elif not cmd.startswith("postgres:"):
            kind = "user"
        elif "autovacuum worker" in cmd:
            kind = "autovac"
        elif dbname and f" {dbname} " in cmd:
            kind = "ours"
        elif "(" in cmd or "[local]" in cmd:  # a client backend: host(port)
            kind = "other"
        else:
            kind = "bg"
        out[int(d)] = (kind, cpu)
    return out


class Meter:
    """Wall and CPU seconds over a stretch of the run: this process (all threads), its reaped
    children (worker processes), the other processes by kind (see _procs; a process that starts
    and ends inside the stretch is not seen: it falls in 'unattributed'), and the whole machine."""

    def __init__(self, dbname: str | None = None) -> None:
        self.dbname = dbname

    def _sampler(self) -> None:
        """Every 0.5 s, the CPU of every process: catches short-lived ones (autovacuum workers)."""
        while not self._stop.wait(0.5):
            for pid, (kind, cpu) in _procs(self.dbname).items():
                self._seen[pid] = (kind, max(cpu, self._seen.get(pid, (kind, 0.0))[1]))

    def __enter__(self) -> "Meter":
        import threading

        self._p0 = _procs(self.dbname)
        self._seen: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sampler, daemon=True)
        if self.dbname:  # only around PostgreSQL work (the sampling costs ~1% of a core)
            self._thread.start()
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        self._self0, self._kids0 = s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime
        self._sys0 = _proc_cpu()
        self._load0 = os.getloadavg()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        self.self_cpu = s.ru_utime + s.ru_stime - self._self0
        self.kids_cpu = c.ru_utime + c.ru_stime - self._kids0
        busy1, tot1, irq1 = _proc_cpu()
        self.machine_cpu = (busy1 - self._sys0[0]) / _CLK
        self.machine_busy = (busy1 - self._sys0[0]) / max(tot1 - self._sys0[1], 1)
        self.irq_cpu = (irq1 - self._sys0[2]) / _CLK
        p1 = dict(self._seen)
        p1.update(_procs(self.dbname))
        self.pg = {"ours": 0.0, "other": 0.0, "bg": 0.0, "autovac": 0.0}
        self.others = {"kernel": 0.0, "user": 0.0}
        for pid, (kind, cpu) in p1.items():
            before = self._p0.get(pid, (kind, 0.0))[1]
            (self.pg if kind in self.pg else self.others)[kind] += max(cpu - before, 0.0)
        self.unattributed = max(self.machine_cpu - self.self_cpu - self.kids_cpu - sum(self.pg.values())
                                - sum(self.others.values()) - self.irq_cpu, 0.0)
        self.load = os.getloadavg()

    def as_dict(self) -> dict:
        return {"wall": self.wall, "self_cpu": self.self_cpu, "kids_cpu": self.kids_cpu,
                "machine_cpu": self.machine_cpu, "machine_busy": self.machine_busy, "pg": self.pg,
                "others": self.others, "irq_cpu": self.irq_cpu, "unattributed": self.unattributed,
                "load_before": self._load0, "load_after": self.load}


# -- tracing ingest_gaia's per-file steps (no change to its code) --------------------------
_EVENTS_ENV = "ASTRODB_BENCH_GAIA_EVENTS"


def _event(kind: str, t0: float, t1: float, rows: int) -> None:
    path = os.environ.get(_EVENTS_ENV)
    if path:
        with open(path, "a") as f:  # O_APPEND: one short line per write, safe across processes
            f.write(f"{kind} {os.getpid()} {t0:.6f} {t1:.6f} {rows}\n")


class Trace:
    """Wrap astrodb.ingest.gaia's module-level prepare_file and load_prepared (looked up by
    ingest_gaia at call time; forked workers inherit the wrapper) to log each call's
    CLOCK_MONOTONIC start and end; restored on exit."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled

    def __enter__(self) -> "Trace":
        from astrodb.ingest import gaia

        self.gaia = gaia
        self.orig = (gaia.prepare_file, gaia.load_prepared)
        if not self.enabled:
            return self
        self.path.unlink(missing_ok=True)
        os.environ[_EVENTS_ENV] = str(self.path)
        prep0, load0 = self.orig

        def prepare_file(*a, **k):
            t = time.monotonic()
            out = prep0(*a, **k)
            _event("prepare", t, time.monotonic(), len(out) if hasattr(out, "columns") else 0)
            return out

        def load_prepared(*a, **k):
            t = time.monotonic()
            out = load0(*a, **k)
            _event("load", t, time.monotonic(), out.rows)
            return out

        # pickled by reference for the worker processes: make the reference resolve to the wrapper
        prepare_file.__module__, prepare_file.__qualname__ = gaia.__name__, "prepare_file"
        gaia.prepare_file, gaia.load_prepared = prepare_file, load_prepared
        return self

    def __exit__(self, *exc) -> None:
        self.gaia.prepare_file, self.gaia.load_prepared = self.orig
        os.environ.pop(_EVENTS_ENV, None)

    def events(self) -> list[tuple[str, int, float, float, int]]:
        if not self.enabled or not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            k, pid, a, b, n = line.split()
            out.append((k, int(pid), float(a), float(b), int(n)))
        return out


def timeline(events, t_start: float, t_end: float, main_pid: int) -> dict:
    """Summaries of a traced ingest: the main process's load time and idle (waiting) time, the
    workers' prepare time, the pipeline's fill time."""
    loads = [e for e in events if e[0] == "load"]
    preps = [e for e in events if e[0] == "prepare"]
    wall = t_end - t_start
    load_s = sum(b - a for _, _, a, b, _ in loads)
    prep_main = sum(b - a for _, pid, a, b, _ in preps if pid == main_pid)
    load_main = sum(b - a for _, pid, a, b, _ in loads if pid == main_pid)
    prep_workers = [b - a for _, pid, a, b, _ in preps if pid != main_pid]
    first_load = min((a for _, _, a, _, _ in loads), default=t_end) - t_start
    return {"wall": wall, "load_s": load_s, "load_n": len(loads),
            "load_mean": load_s / max(len(loads), 1),
            "prep_main_s": prep_main, "prep_workers_s": sum(prep_workers),
            "prep_workers_mean": (sum(prep_workers) / len(prep_workers)) if prep_workers else None,
            "workers": len({pid for _, pid, _, _, _ in preps if pid != main_pid}),
            "first_load_at": first_load,
            "load_each": [b - a for _, _, a, b, _ in sorted(loads, key=lambda e: e[2])],
            "loads_in": "main" if load_main >= load_s / 2 else "workers",
            "main_other_s": wall - load_main - prep_main}


# -- misc ----------------------------------------------------------------------------------
def machine_info() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram = "unknown"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            ram = f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
            break
    return {"nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "cpu": cpu, "ram": ram,
            "kernel": platform.release()}


def angular_count(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float, radius_deg: float) -> int:
    r1, d1, r0, d0 = np.radians(ra), np.radians(dec), np.radians(ra0), np.radians(dec0)
    c = np.sin(d1) * np.sin(d0) + np.cos(d1) * np.cos(d0) * np.cos(r1 - r0)
    return int(np.count_nonzero(c >= np.cos(np.radians(radius_deg))))


# -- the benchmark -------------------------------------------------------------------------
class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.res: dict = {"stages": {}, "e2e": {}, "notes": []}
        self.dbs: list[str] = []
        stamp = f"{dt.datetime.now(dt.timezone.utc):%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:6]}"
        self.prefix = f"astrodb_bench_gaia_{stamp}"

    # PostgreSQL databases
    def create_db(self, tag: str) -> str:
        name = f"{self.prefix}_{tag}"
        with psycopg.connect(pg_url_for(self.args.pg, "postgres"), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        self.dbs.append(name)
        log(f"created database {name}")
        return name

    def drop_db(self, name: str) -> None:
        if self.args.keep:
            log(f"kept database {name}")
            return
        with psycopg.connect(pg_url_for(self.args.pg, "postgres"), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.dbs:
            self.dbs.remove(name)
        log(f"dropped database {name}")

    def sql(self, db: str, query: str, *params):
        with psycopg.connect(pg_url_for(self.args.pg, db), autocommit=True) as c:
            cur = c.execute(query, params or None)
            return cur.fetchall() if cur.description else None

    def wal_lsn(self, db: str) -> str:
        return self.sql(db, "SELECT pg_current_wal_lsn()::text")[0][0]

    def wal_since(self, db: str, lsn: str) -> float:
        return float(self.sql(db, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", lsn)[0][0])

    def checkpoint(self, db: str) -> None:
        self.sql(db, "CHECKPOINT")

    def server_info(self, db: str) -> dict:
        info = {}
        with psycopg.connect(pg_url_for(self.args.pg, db), autocommit=True) as c:
            info["server"] = c.execute("SHOW server_version").fetchone()[0]
            try:
                info["postgis"] = c.execute("SELECT postgis_lib_version()").fetchone()[0]
            except psycopg.Error:
                info["postgis"] = "?"
            for k in ("shared_buffers", "maintenance_work_mem", "max_wal_size", "synchronous_commit",
                      "wal_compression", "checkpoint_timeout"):
                info[k] = c.execute(f"SHOW {k}").fetchone()[0]
        return info

    def store_url(self, db: str) -> str:
        return pg_url_for(self.args.pg, db).replace("postgresql://", "postgresql+psycopg://", 1)

    # 1. gunzip alone
    def gunzip(self, files: list[Path], rows: int) -> None:
        S = self.res["stages"]
        openers = [("gunzip_zlib", "gunzip, zlib (`gzip.open`, 1 thread)", lambda p: gzip.open(p, "rb"))]
        try:
            from isal import igzip, igzip_threaded
            openers += [("gunzip_isal", "gunzip, ISA-L `isal.igzip` (1 thread)", lambda p: igzip.open(p, "rb")),
                        ("gunzip_isal_thr", "gunzip, ISA-L `isal.igzip_threaded` (threads=1: its own thread, as the reader)",
                         lambda p: igzip_threaded.open(p, "rb", threads=1))]
        except ImportError:
            self.res["notes"].append("isal is not installed: no ISA-L rows.")
        for key, label, opener in openers:
            gc.collect()
            nbytes = 0
            with Meter() as m:
                for p in files:
                    with opener(p) as f:
                        while chunk := f.read(1 << 20):
                            nbytes += len(chunk)
            S[key] = {"label": label, "rows": rows, "s": m.wall, "cpu": m.self_cpu, "rate": rows / m.wall,
                      "mb_s": nbytes / m.wall / 1e6, "bytes": nbytes}
            log(f"{label}: {m.wall:.2f} s, {rows / m.wall:,.0f} rows/s, {nbytes / m.wall / 1e6:.0f} MB/s, CPU {m.self_cpu:.2f} s")
        self.res["text_bytes"] = S["gunzip_zlib"]["bytes"]

    # 2. parse alone and the worker's whole per-file step
    def parse(self, files: list[Path], rows: int) -> list:
        from astrodb.ingest import gaia
        from astrodb.ingest.gaia_reader import read_gaia_file, verify_md5
        from astrodb.ingest.table_reader import sha256_file
        from astrodb.query.healpix import hpx29

        S = self.res["stages"]
        # (i) the uncompressed text of the first file: parse + validation without gunzip
        tmp = OUT_DIR / "gaia_uncompressed_tmp.csv"
        with gzip.open(files[0], "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
        read_gaia_file(tmp, release="dr3")  # warm the page cache and the imports
        n0 = self.res["files"][0]["rows"]
        gc.collect()
        with Meter() as m:
            got = read_gaia_file(tmp, release="dr3")
        assert len(got) == n0
        tmp.unlink()
        S["parse_plain"] = {"label": "`read_gaia_file` of the first file's uncompressed text (parse + validate, no gunzip)",
                            "rows": n0, "s": m.wall, "cpu": m.self_cpu, "rate": n0 / m.wall}
        log(f"read_gaia_file, uncompressed: {m.wall:.2f} s, {n0 / m.wall:,.0f} rows/s, CPU {m.self_cpu:.2f} s")
        del got

        # (ii) read_gaia_file per file, default threads, with the HEALPix + sort steps timed apart
        t_hpx = t_sort = 0.0
        gc.collect()
        with Meter() as m:
            for p in files:
                r = read_gaia_file(p, release="dr3")
                t = time.perf_counter()
                pix = hpx29(r.columns["ra"], r.columns["dec"])
                t_hpx += time.perf_counter() - t
                t = time.perf_counter()
                order = np.argsort(pix, kind="stable")
                _ = {k: np.ascontiguousarray(v[order]) for k, v in r.columns.items()}
                t_sort += time.perf_counter() - t
                del r, pix, order, _
        t_read = m.wall - t_hpx - t_sort
        S["read"] = {"label": "`read_gaia_file` (ISA-L gunzip thread + pyarrow parse + validate), 1 process, default threads",
                     "rows": rows, "s": t_read, "cpu": m.self_cpu, "rate": rows / t_read,
                     "cpu_note": "CPU includes the HEALPix + sort below"}
        S["hpx"] = {"label": "`hpx29` of the rows (astropy-healpix)", "rows": rows, "s": t_hpx, "rate": rows / t_hpx}
        S["sort"] = {"label": "argsort by hpx29 + reorder all columns", "rows": rows, "s": t_sort, "rate": rows / t_sort}
        log(f"read_gaia_file: {t_read:.2f} s, {rows / t_read:,.0f} rows/s; hpx29 {t_hpx:.2f} s; sort {t_sort:.2f} s; "
            f"CPU {m.self_cpu:.2f} s")

        if self.args.threads_variant:
            gc.collect()
            with Meter() as m:
                for p in files:
                    read_gaia_file(p, release="dr3", use_threads=True)
            S["read_thr"] = {"label": "`read_gaia_file(use_threads=True)` (pyarrow parses on several threads)",
                             "rows": rows, "s": m.wall, "cpu": m.self_cpu, "rate": rows / m.wall}
            log(f"read_gaia_file(use_threads=True): {m.wall:.2f} s, {rows / m.wall:,.0f} rows/s, CPU {m.self_cpu:.2f} s")

        # (iii) the hashes
        with Meter() as m:
            for p in files:
                sha256_file(p)
        S["sha256"] = {"label": "sha256 of the .gz files", "rows": rows, "s": m.wall, "cpu": m.self_cpu, "rate": rows / m.wall}
        with Meter() as m:
            for p in files:
                verify_md5(p)
        S["md5"] = {"label": "md5 check against `_MD5SUM.txt`", "rows": rows, "s": m.wall, "cpu": m.self_cpu, "rate": rows / m.wall}
        log(f"sha256 {S['sha256']['s']:.2f} s, md5 {S['md5']['s']:.2f} s")

        # (iv) prepare_file: exactly what an ingest worker does per file; keep its output for COPY
        prepared = []
        gc.collect()
        with Meter() as m:
            for p in files:
                prepared.append(gaia.prepare_file(str(p), "dr3"))
        assert all(isinstance(x, gaia.PreparedFile) for x in prepared), prepared
        S["prepare"] = {"label": "`gaia.prepare_file` (sha256, md5, read, hpx29, sort: a worker's whole step), 1 process",
                        "rows": rows, "s": m.wall, "cpu": m.self_cpu, "rate": rows / m.wall}
        log(f"prepare_file: {m.wall:.2f} s, {rows / m.wall:,.0f} rows/s, CPU {m.self_cpu:.2f} s")
        return prepared

    # 3. astropy
    def astropy_read(self, files: list[Path]) -> None:
        from astropy.table import Table

        k = min(self.args.astropy_rows, self.res["files"][0]["rows"])
        sub = OUT_DIR / f"gaia_astropy_subset_{k}.ecsv.gz"
        with gzip.open(files[0], "rb") as src:
            head = []
            for line in src:
                head.append(line)
                if not line.startswith(b"#"):
                    break  # the header row
            data = list(itertools.islice(src, k))
        with open(sub, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as f:
            f.writelines(head + data)
        gc.collect()
        # The bulk files write missing values as 'null', which ECSV readers must be told.
        with Meter() as m:
            t = Table.read(sub, format="ascii.ecsv", fill_values=[("null", "0")])
        assert len(t) == k and len(t.colnames) == 152, (len(t), len(t.colnames))
        sub.unlink()
        self.res["stages"]["astropy"] = {
            "label": f"astropy `Table.read(format=\"ascii.ecsv\", fill_values=[(\"null\", \"0\")])`, first {k:,} rows "
                     f"of the first file (gzipped), all 152 columns"
                     + ("; rows/s extrapolated to the files" if k < self.res["files"][0]["rows"] else ""),
            "rows": k, "s": m.wall, "cpu": m.self_cpu, "rate": k / m.wall}
        log(f"astropy Table.read of {k:,} rows: {m.wall:.2f} s, {k / m.wall:,.0f} rows/s")

    # 4. raw binary COPY
    def raw_copy(self, prepared: list, rows: int) -> None:
        import astrodb
        from astrodb.ingest import gaia
        from astrodb.ingest.bulk import binary_copy_chunks, insert_columns
        from astrodb.store import partitions
        from astrodb.store.schema import source_files

        S = self.res["stages"]

        def arrays_of(pf, cat_id, file_id):  # as load_prepared assembles them
            n = len(pf)
            cols = dict(pf.columns)
            cols["catalog_id"] = np.full(n, cat_id, np.int64)
            cols["file_id"] = np.full(n, file_id, np.int64)
            cols.setdefault("weight", np.full(n, np.nan))
            names = [c for c in gaia.GAIA_LOAD_COLUMNS if c in cols]
            return names, [cols[c] for c in names]

        # payload encoding alone (numpy, no database)
        gc.collect()
        nbytes = 0
        with Meter() as m:
            for pf in prepared:
                names, arrays = arrays_of(pf, 1, 1)
                nbytes += sum(len(b) for b in binary_copy_chunks(arrays))
        S["payload"] = {"label": "binary COPY payload encoding alone (numpy, no database)", "rows": rows,
                        "s": m.wall, "cpu": m.self_cpu, "rate": rows / m.wall, "bytes": nbytes}
        self.res["copy_columns"] = names
        log(f"COPY payload: {m.wall:.2f} s, {nbytes / 1e6:.0f} MB, {len(names)} columns")

        db = self.create_db("raw")
        store = astrodb.connect(self.store_url(db))
        try:
            self.res["revision"] = store.init()
            self.res["server"] = self.server_info(db)
            eng = store.engine
            cat_id, _ = gaia._ensure_catalog(eng, "raw_copy_dr3", "dr3")  # its partition: indexed at creation
            part = partitions.partition_name(cat_id)
            file_ids = []
            with eng.begin() as conn:
                for i, pf in enumerate(prepared):
                    file_ids.append(conn.execute(source_files.insert().values(
                        catalog_id=cat_id, path=pf.path, size=pf.size, sha256=f"{i:064d}", rows=len(pf),
                        ingested_at=dt.datetime.now(dt.timezone.utc)).returning(source_files.c.id)).scalar_one())
                conn.exec_driver_sql("CREATE SCHEMA bench")
                idx = conn.exec_driver_sql(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = 'astrodb' AND tablename = %(t)s ORDER BY 1",
                    {"t": part}).scalars().all()
                fks = conn.exec_driver_sql(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %(t)s::regclass "
                    "AND contype = 'f' ORDER BY 1", {"t": f"astrodb.{part}"}).scalars().all()
            self.res["partition_indexes"] = [d.split(" USING ", 1)[1] if " USING " in d else d for d in idx]
            self.res["partition_fks"] = list(fks)

            bare = ("CREATE TABLE {t} (LIKE astrodb.sources INCLUDING DEFAULTS INCLUDING GENERATED "
                    "INCLUDING CONSTRAINTS INCLUDING STORAGE) WITH (autovacuum_enabled = false)")
            fk_sql = ["ALTER TABLE {t} ADD FOREIGN KEY (catalog_id) REFERENCES astrodb.catalogs (id) ON DELETE CASCADE",
                      "ALTER TABLE {t} ADD FOREIGN KEY (file_id) REFERENCES astrodb.source_files (id) ON DELETE CASCADE"]
            variants = [
                ("copy_noidx", "bench.sources_noidx", [bare],
                 "raw binary COPY, (a) index-free copy of astrodb.sources (one transaction per file)"),
                ("copy_idx", f"astrodb.{part}", [],
                 f"raw binary COPY, (b) the store's Gaia partition astrodb.{part} as ingest_gaia loads it: "
                 f"{len(idx)} indexes, {len(fks)} foreign keys"),
                ("copy_idx_nofk", "bench.sources_idx",
                 ["CREATE TABLE {t} (LIKE astrodb.sources INCLUDING ALL) WITH (autovacuum_enabled = false)"],
                 f"raw binary COPY, (c) `LIKE astrodb.sources INCLUDING ALL`: the partition's {len(idx)} indexes, no foreign keys"),
            ]
            if self.args.breakdown:
                variants += [
                    ("copy_fk_only", "bench.sources_fk", [bare] + fk_sql,
                     "raw binary COPY, (d) no index, 2 foreign keys only (catalog_id → catalogs, file_id → source_files, "
                     "as the partitions had before migration 0006)"),
                    ("copy_gist_only", "bench.sources_gist", [bare, GEOG_SQL, "CREATE INDEX ON {t} USING gist (geog)"],
                     "raw binary COPY, (e) a generated PostGIS geography point and its GiST only (as the partitions "
                     "had before migration 0012)"),
                    ("copy_btree_only", "bench.sources_btree",
                     [bare, "ALTER TABLE {t} ADD UNIQUE (catalog_id, source_id)", "CREATE INDEX ON {t} (catalog_id, hpx29)"],
                     "raw binary COPY, (f) the 2 btree indexes only (UNIQUE (catalog_id, source_id), (catalog_id, hpx29))"),
                ]
                # (b) again, into a second Gaia catalog's fresh partition, two files at a time
                cat2, _ = gaia._ensure_catalog(eng, "raw_copy_dr3_2conn", "dr3")
                variants.append(("copy_idx_2conn", f"astrodb.{partitions.partition_name(cat2)}", [],
                                 "raw binary COPY, (b′) like (b) into a fresh Gaia partition, 2 files at a time on 2 "
                                 "connections (threads)", cat2, 2))
            variants = [v if len(v) == 6 else (*v, cat_id, 1) for v in variants]
            sizes = {}
            for key, table, ddl, label, vcat, conns in variants:
                with psycopg.connect(pg_url_for(self.args.pg, db), autocommit=True) as c:
                    for q in ddl:
                        c.execute(q.format(t=table))
                self.checkpoint(db)
                gc.collect()
                log(f"{label} ...")
                per_file = []

                def load_one(item, table=table, vcat=vcat):
                    pf, fid = item
                    t = time.perf_counter()
                    names, arrays = arrays_of(pf, vcat, fid)
                    with eng.begin() as conn:
                        insert_columns(conn, table, names, arrays)
                    return time.perf_counter() - t

                lsn0 = self.wal_lsn(db)
                with Meter(db) as m:
                    if conns == 1:
                        per_file = [load_one(item) for item in zip(prepared, file_ids)]
                    else:
                        from concurrent.futures import ThreadPoolExecutor
                        with ThreadPoolExecutor(conns) as ex:
                            per_file = list(ex.map(load_one, zip(prepared, file_ids)))
                S[key] = {"label": label, "rows": rows, "s": m.wall, "cpu": m.self_cpu, "rate": rows / m.wall,
                          "pg_cpu": m.pg["ours"], "pg_bg_cpu": m.pg["bg"], "machine_busy": m.machine_busy,
                          "machine_cpu": m.machine_cpu, "per_file": per_file, "kernel_cpu": m.others["kernel"],
                          "unattributed": m.unattributed, "wal": self.wal_since(db, lsn0)}
                log(f"  {m.wall:.2f} s, {rows / m.wall:,.0f} rows/s (per file {', '.join(f'{x:.2f}' for x in per_file)} s); "
                    f"CPU: client {m.self_cpu:.1f} s, backend {m.pg['ours']:.1f} s, pg background {m.pg['bg']:.1f} s, "
                    f"autovacuum {m.pg['autovac']:.1f} s, kernel threads {m.others['kernel']:.1f} s, "
                    f"other processes {m.others['user']:.1f} s, "
                    f"unattributed {m.unattributed:.1f} s, machine {m.machine_cpu:.1f} s; WAL {S[key]['wal'] / 1e6:,.0f} MB")
                with psycopg.connect(pg_url_for(self.args.pg, db), autocommit=True) as c:
                    sizes[table] = c.execute(f"SELECT pg_table_size('{table}'), pg_indexes_size('{table}')").fetchone()
                    if table.startswith("bench.") and table != "bench.sources_noidx" and not self.args.keep:
                        c.execute(f"DROP TABLE {table}")

            # (a) indexed after the load, like the partition's indexes
            self.checkpoint(db)
            steps, steps_cpu = {}, {}
            with psycopg.connect(pg_url_for(self.args.pg, db), autocommit=True) as c:
                for label, q in (("UNIQUE (catalog_id, source_id)", "ALTER TABLE bench.sources_noidx ADD UNIQUE (catalog_id, source_id)"),
                                 ("btree (catalog_id, hpx29)", "CREATE INDEX ON bench.sources_noidx (catalog_id, hpx29)"),
                                 ("ANALYZE", "ANALYZE bench.sources_noidx")):
                    with Meter(db) as m:
                        c.execute(q)
                    steps[label], steps_cpu[label] = m.wall, m.pg["ours"]
                    log(f"  (a) {label}: {m.wall:.2f} s, backend CPU {m.pg['ours']:.2f} s")
            total = S["copy_noidx"]["s"] + sum(steps.values())
            S["copy_then_index"] = {"label": "(a) + the partition's indexes built after the load + ANALYZE (load-then-index)",
                                    "rows": rows, "s": total, "rate": rows / total, "steps": steps,
                                    "steps_cpu": steps_cpu}
            self.res["sizes"] = sizes
            self.res["copy_bytes"] = nbytes
        finally:
            store.close()
            self.drop_db(db)

    # 5. end to end
    def e2e_pg(self, files: list[Path], rows: int, jobs: int, check) -> None:
        import astrodb

        db = self.create_db(f"j{jobs}")
        store = astrodb.connect(self.store_url(db))
        try:
            rev = store.init()
            self.res.setdefault("revision", rev)
            self.checkpoint(db)
            gc.collect()
            log(f"end to end: PostgreSQL ingest_gaia(jobs={jobs}) of {len(files)} files ...")
            lsn0 = self.wal_lsn(db)
            with Trace(OUT_DIR / f"gaia_events_pg_j{jobs}.txt", self.args.trace) as tr, Meter(db) as m:
                t_start = time.monotonic()
                report = store.ingest_gaia([str(p) for p in files], release="dr3", jobs=jobs)
                t_end = time.monotonic()
            assert report.ok and report.rows == rows and report.count("loaded") == len(files), str(report)
            log(f"  {m.wall:.2f} s, {rows / m.wall:,.0f} rows/s; CPU: main {m.self_cpu:.1f} s, workers {m.kids_cpu:.1f} s, "
                f"backends {m.pg['ours']:.1f} s, pg background {m.pg['bg']:.1f} s; machine {m.machine_busy:.0%} busy")
            res = {"rows": rows, "s": m.wall, "rate": rows / m.wall, "meter": m.as_dict(),
                   "report": str(report).splitlines()[0], "report_seconds": report.seconds,
                   "wal": self.wal_since(db, lsn0)}
            log(f"  autovacuum {m.pg['autovac']:.1f} s, kernel threads {m.others['kernel']:.1f} s, "
                f"other processes {m.others['user']:.1f} s, unattributed {m.unattributed:.1f} s; WAL {res['wal'] / 1e6:,.0f} MB")
            res["timeline"] = timeline(tr.events(), t_start, t_end, os.getpid()) if self.args.trace else None
            res["check"] = check(store)
            res["count"] = self.sql(db, "SELECT count(*) FROM astrodb.sources")[0][0]
            res["indexes"] = [r[0] for r in self.sql(
                db, "SELECT indexdef FROM pg_indexes WHERE schemaname = 'astrodb' AND tablename LIKE 'sources_c%%' ORDER BY 1")]
            res["sizes"] = self.sql(db, "SELECT pg_table_size(c.oid), pg_indexes_size(c.oid) FROM pg_class c "
                                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'astrodb' "
                                        "AND c.relname LIKE 'sources_c%%'")[0]
            assert res["count"] == rows, res["count"]
            time.sleep(0.6)  # statistics of the last autovacuum
            res["autovacuum"] = self.sql(
                db, "SELECT coalesce(sum(autovacuum_count), 0)::int, coalesce(sum(autoanalyze_count), 0)::int "
                    "FROM pg_stat_user_tables WHERE schemaname = 'astrodb' AND relname LIKE 'sources_c%%'")[0]
            self.res["e2e"][f"pg_j{jobs}"] = res
        finally:
            store.close()
            self.drop_db(db)

    def e2e_sqlite(self, files: list[Path], rows: int, jobs: int, check) -> None:
        import astrodb

        tmp = Path(tempfile.mkdtemp(prefix="astrodb_bench_gaia_"))
        path = tmp / "gaia.sqlite"
        store = astrodb.connect(f"sqlite:///{path}")
        try:
            store.init()
            gc.collect()
            log(f"end to end: SQLite ingest_gaia(jobs={jobs}) ...")
            with Trace(OUT_DIR / f"gaia_events_sqlite_j{jobs}.txt", self.args.trace) as tr, Meter() as m:
                t_start = time.monotonic()
                report = store.ingest_gaia([str(p) for p in files], release="dr3", jobs=jobs)
                t_end = time.monotonic()
            assert report.ok and report.rows == rows, str(report)
            log(f"  {m.wall:.2f} s, {rows / m.wall:,.0f} rows/s; CPU: main {m.self_cpu:.1f} s, workers {m.kids_cpu:.1f} s; "
                f"machine {m.machine_busy:.0%} busy")
            res = {"rows": rows, "s": m.wall, "rate": rows / m.wall, "meter": m.as_dict(),
                   "report": str(report).splitlines()[0]}
            res["timeline"] = timeline(tr.events(), t_start, t_end, os.getpid()) if self.args.trace else None
            res["check"] = check(store)
            res["size"] = sum(p.stat().st_size for p in tmp.iterdir())
            self.res["e2e"][f"sqlite_j{jobs}"] = res
        finally:
            store.close()
            if self.args.keep:
                log(f"kept {path}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)

    # report
    def report(self, machine: dict, wall: float) -> str:
        R = self.res
        S, E = R["stages"], R["e2e"]
        srv = R.get("server", {})
        F = R["files"]
        rows = sum(f["rows"] for f in F)
        text = R["text_bytes"]
        gz = sum(f["gz_bytes"] for f in F)
        cmd = command_line("bench/bench_gaia.py", sys.argv[1:], {"--pg": "URL"})
        code, code_end = R["code_start"], code_version()
        L = ["## Gaia ingest (`bench/bench_gaia.py`)", "",
             f"- Command: `{cmd}` (in the repository root)",
             f"- Measured on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d}; wall time {wall / 60:.1f} min "
             + (f"(file generation {R['t_gen']:.0f} s, not included)" if R["t_gen"] > 1
                else "(the files were cached: their generation is not included)"),
             f"- Machine: {machine['nproc']} CPUs (`nproc`), {machine['cpu']}, {machine['ram']} RAM, Linux {machine['kernel']}; "
             f"load average at the start {R['load_start'][0]:.2f}/{R['load_start'][1]:.2f}/{R['load_start'][2]:.2f}, "
             f"at the end {R['load_end'][0]:.2f}/{R['load_end'][1]:.2f}/{R['load_end'][2]:.2f}; over the run the machine's "
             f"CPUs were {R['whole']['machine_busy']:.0%} busy; other processes (anything else running on the machine, "
             f"alive at both ends or short-lived) took "
             f"{(R['whole']['others']['user'] + R['whole']['pg']['other'] + R['whole']['unattributed']) / R['whole']['wall']:.2f} "
             f"cores on average, kernel threads {R['whole']['others']['kernel'] / R['whole']['wall']:.2f}",
             f"- PostgreSQL {srv.get('server')}, PostGIS {srv.get('postgis')}; server settings untouched: shared_buffers "
             f"{srv.get('shared_buffers')}, maintenance_work_mem {srv.get('maintenance_work_mem')}, max_wal_size "
             f"{srv.get('max_wal_size')}, synchronous_commit {srv.get('synchronous_commit')}, wal_compression "
             f"{srv.get('wal_compression')}; SQLite {sqlite3.sqlite_version}; Python {platform.python_version()}, "
             f"numpy {np.__version__}, pyarrow {R['versions']['pyarrow']}, isal {R['versions']['isal']}, "
             f"astropy {R['versions']['astropy']}",
             f"- Code: {code}" + ("" if code_end == code else f"; at the end: {code_end}")
             + f"; schema revision {R.get('revision')}",
             f"- Data: {len(F)} DR3 `GaiaSource_*.csv.gz` partitions × {F[0]['rows']:,} rows = {rows:,} rows, written by "
             f"tests/support/gaia_fixtures.py in the archive's layout (ECSV header, all 152 columns, `null` for missing; "
             f"generated rows, each file on its own patch of sky), with `_MD5SUM.txt`: {text / 1e6:,.0f} MB of text "
             f"({text / rows:,.0f} B/row uncompressed, header included), {gz / 1e6:,.0f} MB gzipped ({gz / rows:,.0f} B/row). "
             f"Every stage below reads these same files (page-cached).", ""]

        e2 = E.get("pg_j2") or E.get("pg_j1")
        ref = e2["rate"] if e2 else None
        L += ["| Stage (same files, same run) | Rows | Wall (s) | CPU (s) | Rows/s | end to end (PG, jobs=2) ÷ this |",
              "|---|---:|---:|---:|---:|---:|"]

        def row(label, d, cpu=None):
            cpu = d.get("cpu") if cpu is None else cpu
            ratio = f"{ref / d['rate']:.2f}×" if ref else "n/a"
            L.append(f"| {label} | {d['rows']:,} | {d['s']:.2f} | {'' if cpu is None else f'{cpu:.2f}'} | "
                     f"{fmt_rate(d['rate'])} | {ratio} |")

        for key in ("gunzip_zlib", "gunzip_isal", "gunzip_isal_thr", "parse_plain", "read", "read_thr", "hpx",
                    "sort", "sha256", "md5", "prepare", "astropy", "payload", "copy_noidx", "copy_idx", "copy_idx_2conn",
                    "copy_idx_nofk", "copy_fk_only", "copy_gist_only", "copy_btree_only", "copy_then_index"):
            if key in S:
                d = S[key]
                label = d["label"]
                if key == "gunzip_zlib" or key.startswith("gunzip_isal"):
                    label += f" ({d['mb_s']:.0f} MB/s of text)"
                if key == "read":
                    label += " (CPU column: with hpx29 + sort)"
                if key.startswith("copy_") and "pg_cpu" in d:
                    label += f"; PostgreSQL backend CPU {d['pg_cpu']:.1f} s"
                row(label, d)
        for key, label in (("pg_j1", "**end to end, PostgreSQL: `ingest_gaia(files, release=\"dr3\", jobs=1)`**"),
                           ("pg_j2", "**end to end, PostgreSQL: `ingest_gaia(..., jobs=2)`**"),
                           ("sqlite_j2", "**end to end, SQLite: `ingest_gaia(..., jobs=2)`**")):
            if key in E:
                d = E[key]
                m = d["meter"]
                row(label, d, cpu=m["self_cpu"] + m["kids_cpu"])
        L += ["", "CPU (s) is this process's (all its threads; end to end: plus its worker processes); the PostgreSQL "
                  "server's CPU is given separately. \"÷ this\" > 1: the end-to-end ingest is faster than that stage alone."]
        if "copy_then_index" in S:
            st = S["copy_then_index"]["steps"]
            L += ["", "(a) indexed after its load: " + ", ".join(f"{k} {v:.2f} s" for k, v in st.items()) + "."]
        if "sizes" in R:
            L += ["Sizes (table + indexes): " + "; ".join(f"{t} {s[0] / 1e6:.0f} MB + {s[1] / 1e6:.0f} MB"
                                                        for t, s in R["sizes"].items()) +
                  f". COPY payload {R['copy_bytes'] / 1e6:.0f} MB ({R['copy_bytes'] / rows:.0f} B/row, "
                  f"{len(R['copy_columns'])} columns). Partition indexes: " + "; ".join(R.get("partition_indexes", [])) +
                  "; foreign keys: " + "; ".join(R.get("partition_fks", [])) + "."]

        # CPU accounting of the end-to-end runs
        L += self.budget(machine, rows)
        L += ["", "### Where the end-to-end time goes", "",
              "CPU seconds during each run, by process: the main process, its worker processes, the PostgreSQL backends "
              "of the run's database, autovacuum workers (any database), PostgreSQL's other background processes (WAL "
              "writer, checkpointer), kernel threads, interrupts, other processes (anything else running on the "
              "machine, backends of other databases), and the rest of the machine's busy time (processes too "
              "short-lived for the 0.5 s sampling).", "",
              "| Run | Wall (s) | main | workers | PG backends (run's DB) | PG autovacuum workers | PG background | "
              "kernel threads | irq | other processes | unattributed | machine busy |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for key in ("pg_j1", "pg_j2", "sqlite_j2"):
            if key not in E:
                continue
            m = E[key]["meter"]
            L.append(f"| {key} | {m['wall']:.2f} | {m['self_cpu']:.1f} | {m['kids_cpu']:.1f} | {m['pg']['ours']:.1f} | "
                     f"{m['pg'].get('autovac', 0.0):.1f} | {m['pg']['bg']:.1f} | {m['others']['kernel']:.1f} | {m['irq_cpu']:.1f} | "
                     f"{m['others']['user'] + m['pg']['other']:.1f} | {m['unattributed']:.1f} | "
                     f"{m['machine_busy']:.0%} ({m['machine_cpu']:.1f} CPU-s of {m['wall'] * machine['nproc']:.1f}) |")
        av = [f"{k}: {E[k]['autovacuum'][0]} autovacuum(s), {E[k]['autovacuum'][1]} autoanalyze(s)"
              for k in ("pg_j1", "pg_j2") if k in E and E[k].get("autovacuum")]
        if av:
            L += ["", "Autovacuum on the Gaia partition during/just after the ingest (pg_stat_user_tables): " + "; ".join(av) + "."]
        for key in ("pg_j1", "pg_j2"):
            if key in E and E[key].get("wal") is not None:
                L.append("")
                L.append("WAL written during the PostgreSQL runs (whole server): " + "; ".join(
                    f"{k}: {E[k]['wal'] / 1e6:,.0f} MB ({E[k]['wal'] / rows:.0f} B/row)" for k in ("pg_j1", "pg_j2")
                    if k in E and E[k].get("wal") is not None) + ".")
                break
        L += ["", "Per-file timeline (ingest_gaia's `prepare_file` and `load_prepared`, traced by wrapping them; "
                  "the load is the binary COPY into the indexed partition plus its bookkeeping, in the main process or, "
                  "on PostgreSQL with jobs > 1, in the worker that read the file):", "",
              "| Run | files | in load_prepared (s, all processes) | loads in | per file: mean, first → last (s) | "
              "main: in prepare_file (s) | "
              "main: waiting / other (s) | workers: prepare_file (s, sum) | mean per file (s) | first load starts at (s) |",
              "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for key in ("pg_j1", "pg_j2", "sqlite_j2"):
            tl = E.get(key, {}).get("timeline")
            if not tl:
                continue
            pw = "" if tl["prep_workers_mean"] is None else f"{tl['prep_workers_mean']:.2f}"
            each = tl.get("load_each") or [0.0]
            L.append(f"| {key} | {tl['load_n']} | {tl['load_s']:.2f} | {tl.get('loads_in', 'main')} | "
                     f"{tl['load_mean']:.2f}, {each[0]:.2f} → {each[-1]:.2f} | "
                     f"{tl['prep_main_s']:.2f} | "
                     f"{tl['main_other_s']:.2f} | {tl['prep_workers_s']:.2f} | {pw} | {tl['first_load_at']:.2f} |")
        L += ["", "Queryable when the ingest returns: " + "; ".join(
            f"{key}: `Store.cone` at the first file's centre, radius {E[key]['check']['radius_arcmin']:g}′, first call "
            f"{E[key]['check']['ms']:.1f} ms, {E[key]['check']['rows']} rows (brute force over the files' rows: "
            f"{E[key]['check']['expected']})" for key in ("pg_j1", "pg_j2", "sqlite_j2") if key in E) + "."]
        if "pg_j2" in E:
            L += [f"PostgreSQL after ingest: {E['pg_j2']['count']:,} rows in astrodb.sources; partition "
                  f"{E['pg_j2']['sizes'][0] / 1e6:.0f} MB + {E['pg_j2']['sizes'][1] / 1e6:.0f} MB of indexes."]
        if "sqlite_j2" in E:
            L += [f"SQLite file after ingest: {E['sqlite_j2']['size'] / 1e6:.0f} MB."]

        # targets
        L += ["", "### Targets", "", "| Target | Measured | Met |", "|---|---|---|"]
        best = max((E[k] for k in ("pg_j1", "pg_j2") if k in E), key=lambda d: d["rate"], default=None)
        if best is not None:
            bk = "jobs=2" if best is E.get("pg_j2") else "jobs=1"
            L.append(f"| end to end (file → indexed, queryable rows in PostgreSQL) ≥ 120 k rows/s on these "
                     f"{machine['nproc']} cores | best {fmt_rate(best['rate'])} rows/s ({bk}); "
                     + ", ".join(f"jobs={k[-1]} {fmt_rate(E[k]['rate'])}" for k in ("pg_j1", "pg_j2") if k in E)
                     + f" | {'yes' if best['rate'] >= TARGET_RATE else 'NO'} |")
            if "astropy" in S:
                r = best["rate"] / S["astropy"]["rate"]
                L.append(f"| ≥ 10× astropy `Table.read` | {r:.1f}× ({fmt_rate(best['rate'])} vs {fmt_rate(S['astropy']['rate'])} rows/s) | "
                         f"{'yes' if r >= 10 else 'NO'} |")
            for key, label in (("gunzip_zlib", "gunzip alone, zlib"), ("gunzip_isal", "gunzip alone, ISA-L"),
                               ("copy_noidx", "raw binary COPY, index-free table"),
                               ("copy_idx", "raw binary COPY, the indexed partition")):
                if key in S:
                    L.append(f"| (reference) end to end vs {label} | {best['rate'] / S[key]['rate']:.2f}× | — |")
        if R["notes"]:
            L += ["", "Notes:"] + [f"- {x}" for x in R["notes"]]
        return "\n".join(L) + "\n"

    def budget(self, machine: dict, rows: int) -> list[str]:
        """CPU microseconds per row of each step, measured above, and the rows/s they allow on
        this machine's cores if every step overlapped perfectly (an upper bound)."""
        S = self.res["stages"]
        need = ("read", "hpx", "sort", "sha256", "md5", "copy_noidx", "copy_idx", "copy_then_index")
        if any(k not in S for k in need):
            return []
        us = lambda cpu: cpu / rows * 1e6  # noqa: E731
        BKEY = ("PostgreSQL backend: COPY into the store's partition (b): per-row maintenance of its "
                f"{len(self.res.get('partition_indexes', []))} indexes" +
                (f" and {len(self.res['partition_fks'])} foreign keys" if self.res.get("partition_fks") else ""))
        read = S["read"]["cpu"] - S["hpx"]["s"] - S["sort"]["s"]
        steps = S["copy_then_index"].get("steps_cpu") or S["copy_then_index"]["steps"]
        items = {
            "read_gaia_file (ISA-L gunzip + parse + validate)": us(read),
            "sha256 + md5 of the file": us(S["sha256"]["cpu"] + S["md5"]["cpu"]),
            "hpx29 + spatial sort": us(S["hpx"]["s"] + S["sort"]["s"]),
            "client side of the COPY (payload encoding, sending; into (a))": us(S["copy_noidx"]["cpu"]),
            "PostgreSQL backend: COPY into the index-free table (a)": us(S["copy_noidx"]["pg_cpu"]),
            BKEY:
                us(S["copy_idx"]["pg_cpu"]),
        }
        for key, label in (("copy_idx_nofk", "(c) the partition's indexes, no FK"), ("copy_fk_only", "(d) 2 FKs only"),
                           ("copy_gist_only", "(e) geography + GiST only"), ("copy_btree_only", "(f) 2 btrees only")):
            if key in S:
                items[f"PostgreSQL backend: COPY {label}, minus (a)"] = us(S[key]["pg_cpu"] - S["copy_noidx"]["pg_cpu"])
        for k, v in steps.items():
            items[f"PostgreSQL backend: {k} after the load" + (" (samples 30 k rows: a fixed cost)" if k == "ANALYZE"
                                                                else ", built")] = us(v)
        L = ["", "### CPU per row (budget)", "",
             f"CPU microseconds per row of each step (this process's CPU, or the PostgreSQL backend's, as measured "
             f"above); at ≥ {TARGET_RATE / 1e3:.0f} k rows/s the whole pipeline may spend at most "
             f"{machine['nproc'] * 1e6 / TARGET_RATE:.1f} "
             f"CPU-µs per row on these {machine['nproc']} cores.", "",
             "| Step | CPU µs / row |", "|---|---:|"]
        L += [f"| {k} | {v:.1f} |" for k, v in items.items()]
        front = items["read_gaia_file (ISA-L gunzip + parse + validate)"] + items["sha256 + md5 of the file"] + \
            items["hpx29 + spatial sort"] + items["client side of the COPY (payload encoding, sending; into (a))"]
        bare = items["PostgreSQL backend: COPY into the index-free table (a)"]
        builds = {k: us(v) for k, v in steps.items()}
        gist = items.get("PostgreSQL backend: COPY (e) geography + GiST only, minus (a)", float("nan"))
        designs = [
            ("as ingest_gaia loads now: COPY into the indexed partition (per-row index maintenance"
             + (", per-row FK checks)" if self.res.get("partition_fks") else ")"), front + items[BKEY]),
            ("the same with a PostGIS geography point and its GiST (the layout before migration 0012)",
             front + items[BKEY] + gist),
            ("load into an index-free table, then build the partition's indexes + ANALYZE", front + bare + sum(builds.values())),
            ("no indexes at all (COPY into (a) only)", front + bare),
        ]
        L += ["", f"| Pipeline (sum of the steps it needs) | CPU µs / row | rows/s ceiling on {machine['nproc']} cores, perfect overlap |",
              "|---|---:|---:|"]
        L += [f"| {k} | {v:.1f} | {fmt_rate(machine['nproc'] * 1e6 / v)} |" for k, v in designs]
        self.res["budget"] = {"items": items, "designs": dict(designs)}
        return L

    # main
    def run(self) -> None:
        a = self.args
        machine = machine_info()
        self.res["machine"] = machine
        self.res["code_start"] = code_version()
        self.res["load_start"] = os.getloadavg()
        import astropy
        import pyarrow
        try:
            import isal
            isal_v = isal.__version__
        except ImportError:
            isal_v = "absent"
        self.res["versions"] = {"pyarrow": pyarrow.__version__, "astropy": astropy.__version__, "isal": isal_v}
        log(f"astrodb code: {self.res['code_start']}; load average {self.res['load_start']}")
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        files, manifest, t_gen = ensure_files(a.files, a.rows, a.seed)
        self.res["files"], self.res["t_gen"] = manifest, t_gen
        rows = sum(m["rows"] for m in manifest)
        for p in files:  # page cache: every stage reads the files from memory
            p.read_bytes()
        log(f"{len(files)} files, {rows:,} rows, {sum(m['gz_bytes'] for m in manifest) / 1e6:.0f} MB gz")
        whole = Meter().__enter__()  # the machine's CPU over the whole run (others' load included)
        try:
            self.gunzip(files, rows)
            prepared = self.parse(files, rows)
            # for the query check: the files' positions, and a centre in the first file
            ra = np.concatenate([pf.columns["ra"] for pf in prepared])
            dec = np.concatenate([pf.columns["dec"] for pf in prepared])
            ra0, dec0 = float(np.median(prepared[0].columns["ra"])), float(np.median(prepared[0].columns["dec"]))
            radius = a.cone_arcmin / 60.0
            expected = angular_count(ra, dec, ra0, dec0, radius)
            del ra, dec

            def check(store) -> dict:
                t = time.perf_counter()
                tab = store.cone(ra0, dec0, radius, catalog=CATALOG)
                ms = (time.perf_counter() - t) * 1e3
                assert len(tab) == expected and len(tab) > 0, (len(tab), expected)
                return {"rows": len(tab), "expected": expected, "ms": ms, "radius_arcmin": a.cone_arcmin}

            self.raw_copy(prepared, rows)
            del prepared
            gc.collect()
            self.astropy_read(files)
            for jobs in a.jobs:
                self.e2e_pg(files, rows, jobs, check)
            if a.sqlite:
                self.e2e_sqlite(files, rows, 2, check)
            self.res["load_end"] = os.getloadavg()
            whole.__exit__(None, None, None)
            self.res["whole"] = whole.as_dict()
            md = self.report(machine, time.perf_counter() - T0)
            (OUT_DIR / "gaia.md").write_text(md)
            (OUT_DIR / "gaia.json").write_text(json.dumps(self.res, indent=1, default=str))
            print(md)
            log(f"wrote {OUT_DIR / 'gaia.md'} and gaia.json")
        finally:
            for db in list(self.dbs):
                self.drop_db(db)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=8, help="DR3 partition files (default 8)")
    p.add_argument("--rows", type=int, default=200_000, help="rows per file (default 200000)")
    p.add_argument("--seed", type=int, default=1000, help="seed of the generated files (default 1000)")
    p.add_argument("--astropy-rows", type=int, default=20_000,
                   help="rows of the first file that astropy Table.read reads (default 20000; it runs at ~5k rows/s)")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="ingest_gaia jobs values on PostgreSQL (default 1 2)")
    p.add_argument("--no-sqlite", dest="sqlite", action="store_false", help="skip the SQLite end-to-end run")
    p.add_argument("--no-threads-variant", dest="threads_variant", action="store_false",
                   help="skip read_gaia_file(use_threads=True)")
    p.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                   help="skip the raw COPY variants (d)-(f) that split the partition's load cost by index / foreign key")
    p.add_argument("--no-trace", dest="trace", action="store_false",
                   help="do not wrap prepare_file/load_prepared to log the per-file timeline")
    p.add_argument("--cone-arcmin", type=float, default=3.0, help="radius of the post-ingest cone check (default 3′)")
    p.add_argument("--pg", default=os.environ.get("ASTRODB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
                   help="PostgreSQL admin URL (databases are created next to it)")
    p.add_argument("--keep", action="store_true", help="keep the databases and the SQLite file")
    Bench(p.parse_args(argv)).run()


if __name__ == "__main__":
    main()
