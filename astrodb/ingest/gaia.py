"""Ingest Gaia DR1/DR2/EDR3/DR3 bulk partition files and HATS catalogs of Gaia rows: each file
(a CSV partition, or a HATS partition's Parquet file) in its own transaction, recorded with its
sha256, so a run can be stopped at any moment (even kill -9) and restarted, and every file ends
up loaded exactly once; a bad file fails alone.

A HATS catalog (:mod:`astrodb.ingest.hats_reader`) is named by its directory, a local path or an
fsspec URL (``s3://...``); its partitions load into the same release catalog as the archive's
CSV files. A remote partition is fetched once: its bytes are hashed, then parsed from memory.

Reading (gunzip + CSV parse, :mod:`astrodb.ingest.gaia_reader`; Parquet decoding) costs more
CPU than the database's side of the load, so with ``jobs > 1`` files are read in worker
processes: on PostgreSQL each worker also COPYs its file on its own connection; on SQLite (one
writer) the main process loads what the workers read.
"""
from __future__ import annotations

import glob
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from ..errors import IngestError
from ..query.healpix import hpx29
from ..store import partitions
from ..shard.shard_map import read_map
from ..store.schema import GAIA_CORRELATIONS, catalog_density, catalogs, shards, source_files, sources
from ..store import catalog_regions
from . import hats_reader, region_select
from .bulk import insert_columns
from .density import add_counts
from .catalog import LOAD_COLUMNS, motion_stats
from .region_select import RegionOutcome, RowFilter
from .table_reader import sha256_file

#: release -> (catalog kind and default name, reference epoch in Julian years)
RELEASES = {"dr1": ("gaia_dr1", 2015.0), "dr2": ("gaia_dr2", 2015.5),
            "edr3": ("gaia_edr3", 2016.0), "dr3": ("gaia_dr3", 2016.0)}
#: Columns a Gaia file loads into ``sources``, in order.
GAIA_LOAD_COLUMNS = (*LOAD_COLUMNS, *GAIA_CORRELATIONS, "astrometric_params_solved")
_FILE_PATTERNS = ("GaiaSource_*.csv.gz", "GaiaSource_*.ecsv.gz", "TgasSource_*.csv.gz", "GaiaSource_*.csv")


@dataclass
class FileOutcome:
    """What happened to one file."""

    path: str
    status: str            # "loaded", "skipped" (already in the catalog) or "failed"
    rows: int = 0
    message: str = ""


@dataclass
class GaiaIngestReport:
    """The outcome of :func:`ingest_gaia`, file by file."""

    catalog: str
    release: str
    files: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0
    #: A region load: what it asked for, the files it did not read, and what the catalog records.
    region: RegionOutcome | None = None

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def rows(self) -> int:
        """Rows loaded by this run."""
        return sum(f.rows for f in self.files if f.status == "loaded")

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0

    def __str__(self) -> str:
        rate = f", {self.rows / self.seconds:,.0f} rows/s" if self.seconds > 0 and self.rows else ""
        lines = [f"{self.catalog} ({self.release}): {self.count('loaded')} file(s) loaded ({self.rows:,} rows"
                 f"{rate}), {self.count('skipped')} already loaded, {self.count('failed')} failed"]
        lines += [f"  failed: {f.path}: {f.message}" for f in self.files if f.status == "failed"]
        if self.region is not None:
            lines.append(self.region.summary())
        return "\n".join(lines)


#: One unit of work: a local file, or the URL of a remote HATS partition file.
Unit = Path | str


def _is_parquet(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(".parquet")


def _expand_remote(url: str) -> list[tuple[Unit, int]]:
    if hats_reader.is_hats_catalog(url):
        return list(hats_reader.hats_partition_sizes(url))
    if _is_parquet(url):
        return [(url, _remote_size(url))]
    raise IngestError("not a HATS catalog (no hats.properties or properties with partition_info.csv) "
                      "nor a .parquet partition file", source=url)


def _remote_size(url: str) -> int:
    from fsspec.core import url_to_fs

    try:
        fs, path = url_to_fs(url)
        return int(fs.size(path) or 0)
    except FileNotFoundError:
        raise IngestError("no such file", source=url) from None
    except Exception as exc:  # noqa: BLE001 - network, permissions: one clear error
        raise IngestError(f"cannot read ({type(exc).__name__}: {exc})", source=url) from None


def _expand(paths: Iterable[str | os.PathLike]) -> list[tuple[Unit, int]]:
    """:func:`expand_paths` with each file's size in bytes."""
    out: list[tuple[Unit, int]] = []
    for p in paths:
        text = os.fspath(p)
        if hats_reader.is_remote(text):
            out += _expand_remote(text)
            continue
        text = hats_reader.local_path(text)  # file:// URLs
        path = Path(text)
        if path.is_dir() and hats_reader.is_hats_catalog(path):
            out += [(Path(f), size) for f, size in hats_reader.hats_partition_sizes(path)]
        elif path.is_dir():
            found = sorted({f for pat in _FILE_PATTERNS for f in path.glob(pat)})
            if not found:
                raise IngestError(f"no Gaia partition files ({', '.join(_FILE_PATTERNS)}) nor a HATS catalog "
                                  "(hats.properties, partition_info.csv) in directory", source=text)
            out += [(f, f.stat().st_size) for f in found]
        elif path.is_file():
            out.append((path, path.stat().st_size))
        elif any(ch in text for ch in "*?["):
            found = sorted(Path(f) for f in glob.glob(text))
            if not found:
                raise IngestError("the pattern matches no file", source=text)
            out += [(f, f.stat().st_size) for f in found]
        else:
            raise IngestError("no such file or directory", source=text)
    seen: set = set()
    unique = []
    for unit, size in out:
        key = unit.resolve() if isinstance(unit, Path) else unit
        if key not in seen:
            seen.add(key)
            unique.append((unit, size))
    return unique


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Unit]:
    """Files, directories (their Gaia partition files, or a HATS catalog's partitions), glob
    patterns and URLs (a HATS catalog, or one ``.parquet`` partition) -> unique files: local
    ones as :class:`~pathlib.Path`, remote ones as URL strings."""
    return [unit for unit, _ in _expand(paths)]


@dataclass
class PreparedFile:
    """A file read, indexed and sorted spatially, ready for COPY (built in a worker process)."""

    path: str
    sha256: str
    size: int
    release: str
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["source_id"])


def prepare_file(path: str, release: str | None, done: frozenset[str] = frozenset(),
                 row_filter: RowFilter | None = None) -> PreparedFile | FileOutcome:
    """Verify, read and sort one partition file (runs in a worker process).

    A file whose sha256 is in ``done`` (already in the catalog) is not parsed: a skipped outcome
    is returned, so a restarted run only hashes what it loaded before. A ``.parquet`` file is a
    HATS partition; a remote one (URL) is fetched once, hashed and parsed from memory.
    ``row_filter`` (a region load, :class:`astrodb.ingest.region_select.RowFilter`) keeps only
    its rows, and the file is recorded under its key for that cut.
    """
    from . import gaia_reader

    if hats_reader.is_remote(path):
        if not _is_parquet(path):
            raise IngestError("a remote file must be a HATS .parquet partition", source=path)
        data = hats_reader.read_bytes(path)
        sha, size = hashlib.sha256(data).hexdigest(), len(data)
        if sha in done or (row_filter is not None and row_filter.loaded(sha)):
            return FileOutcome(path, "skipped", 0, "already loaded")
        rows = hats_reader.read_hats_partition(path, release, data=data)
        del data  # the columns are decoded copies: free the file's bytes before sorting
    else:
        p = Path(path)
        path = str(p)
        if not p.is_file():
            raise IngestError("no such file", source=path)
        sha, size = sha256_file(p), p.stat().st_size
        if sha in done or (row_filter is not None and row_filter.loaded(sha)):
            return FileOutcome(path, "skipped", 0, "already loaded")
        if _is_parquet(p):
            rows = hats_reader.read_hats_partition(p, release)
        else:
            gaia_reader.verify_md5(p)
            rows = gaia_reader.read_gaia_file(p, release=release)
    cols = rows.columns
    pix = hpx29(cols["ra"], cols["dec"])
    kept = None  # row numbers a region load keeps
    if row_filter is not None:
        keep = row_filter.mask(pix, sha)
        if not keep.any():  # read for the region's edge, but none of its rows is in it
            return FileOutcome(path, "loaded", 0, "no row in the region")
        sha = row_filter.file_key(sha)
        kept = np.nonzero(keep)[0]
        pix = pix[kept]
    order = np.argsort(pix, kind="stable")
    take = order if kept is None else kept[order]  # each column copied once: cut and sorted
    out = {name: np.ascontiguousarray(cols[name][take]) for name in GAIA_LOAD_COLUMNS
           if name in cols}
    out["hpx29"] = pix[order]
    return PreparedFile(path, sha, size, rows.release, out)


def _ensure_catalog(engine: sa.Engine, name: str, release: str) -> tuple[int, bool]:
    """The release catalog's id, and whether this call created it."""
    kind, epoch = RELEASES[release]
    with engine.begin() as conn:
        row = conn.execute(sa.select(catalogs.c.id, catalogs.c.kind).where(catalogs.c.name == name)).first()
        if row is not None:
            if row.kind != kind:
                raise IngestError(f"catalog {name!r} holds {row.kind}, not {kind}: choose another --catalog name")
            return int(row.id), False
        desc = f"Gaia {release.upper()} gaia_source (ESA/Gaia/DPAC), positions at J{epoch}"
        cat_id = conn.execute(catalogs.insert().values(
            name=name, kind=kind, ref_epoch=epoch, description=desc, row_count=0,
            created_at=datetime.now(timezone.utc)).returning(catalogs.c.id)).scalar_one()
        if conn.dialect.name == "postgresql" and _sharded_store(conn):
            from ..shard.placement import create_shard_tables, new_catalog_map

            # The shards' empty tables first: if the coordinator then fails, they are orphans no
            # map names (and a rerun makes new ones for a new catalog id).
            create_shard_tables(_shard_connections(engine), new_catalog_map(conn, cat_id))
        elif conn.dialect.name == "postgresql":
            partitions.create_attached(conn, cat_id)
        return int(cat_id), True


def _sharded_store(conn: sa.Connection) -> bool:
    return conn.execute(sa.select(sa.func.count()).select_from(shards)).scalar_one() > 0


_SHARD_CONNECTIONS: dict[str, object] = {}


def _shard_connections(engine: sa.Engine):
    """The process' connections to the shards of the store behind ``engine``."""
    from ..shard.connections import ShardConnections

    key = engine.url.render_as_string(hide_password=False)
    conns = _SHARD_CONNECTIONS.get(key)
    if conns is None:
        conns = _SHARD_CONNECTIONS[key] = ShardConnections(engine.url)
    return conns


def _drop_if_empty(engine: sa.Engine, cat_id: int) -> None:
    """Remove a catalog this run created when no file of it was loaded (every file failed), so
    that a failed load leaves no trace; one that got rows meanwhile (another loader) stays."""
    with engine.begin() as conn:
        query = sa.select(catalogs.c.row_count).where(catalogs.c.id == cat_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        files = conn.execute(sa.select(sa.func.count()).select_from(source_files)
                             .where(source_files.c.catalog_id == cat_id)).scalar_one()
        if row is None or row.row_count or files:
            return
        sharded = conn.dialect.name == "postgresql" and read_map(conn, cat_id) is not None
        if sharded:
            from ..shard.placement import drop_coordinator_side

            drop_coordinator_side(conn, cat_id)
        elif conn.dialect.name == "postgresql":
            partitions.drop(conn, cat_id)
        conn.execute(catalog_density.delete().where(catalog_density.c.catalog_id == cat_id))
        conn.execute(catalogs.delete().where(catalogs.c.id == cat_id))
    if sharded:
        from ..shard.placement import drop_everywhere
        from ..shard.shard_map import read_shards

        with engine.connect() as conn:
            drop_everywhere(_shard_connections(engine), cat_id, read_shards(conn).values())


def _greatest(column, value: float):
    return sa.case((column.is_(None), value), (column < value, value), else_=column)


def _least(column, value: float):
    return sa.case((column.is_(None), value), (column > value, value), else_=column)


def load_prepared(engine: sa.Engine, cat_id: int, prepared: PreparedFile) -> FileOutcome:
    """Load one prepared file in one transaction; a file already recorded is skipped."""
    n = len(prepared)
    load = None
    try:
        with engine.begin() as conn:
            if conn.execute(sa.select(source_files.c.id).where(
                    source_files.c.catalog_id == cat_id, source_files.c.sha256 == prepared.sha256)).first():
                return FileOutcome(prepared.path, "skipped", 0, "already loaded")
            cmap = read_map(conn, cat_id, share=True) if conn.dialect.name == "postgresql" else None
            file_id = conn.execute(source_files.insert().values(
                catalog_id=cat_id, path=prepared.path, size=prepared.size, sha256=prepared.sha256, rows=n,
                ingested_at=datetime.now(timezone.utc)).returning(source_files.c.id)).scalar_one()
            cols = dict(prepared.columns)
            cols["catalog_id"] = np.full(n, cat_id, np.int64)
            cols["file_id"] = np.full(n, file_id, np.int64)
            cols.setdefault("weight", np.full(n, np.nan))
            names = [c for c in GAIA_LOAD_COLUMNS if c in cols]
            if cmap is not None:  # each shard its rows, prepared; committed below once this is
                from ..shard.loading import ShardLoad

                load = ShardLoad(_shard_connections(engine), cmap, conn, prepared.sha256)
                load.copy(names, [cols[c] for c in names])
            else:
                table = partitions.partition_name(cat_id) if conn.dialect.name == "postgresql" else sources.name
                insert_columns(conn, table, names, [cols[c] for c in names])
            add_counts(conn, cat_id, cols["hpx29"])
            st = motion_stats(cols)
            conn.execute(catalogs.update().where(catalogs.c.id == cat_id).values(
                row_count=catalogs.c.row_count + n,
                pm_max=_greatest(catalogs.c.pm_max, st["pm_max"]),
                radial_rate_max=_greatest(catalogs.c.radial_rate_max, st["radial_rate_max"]),
                parallax_max=_greatest(catalogs.c.parallax_max, st["parallax_max"]),
                epoch_min=_least(catalogs.c.epoch_min, st["epoch_min"]),
                epoch_max=_greatest(catalogs.c.epoch_max, st["epoch_max"])))
    except BaseException as exc:
        if load is not None:
            load.rollback()
        if not isinstance(exc, (sa.exc.IntegrityError, engine.dialect.dbapi.IntegrityError)):
            if isinstance(exc, IngestError):   # a shard refused the rows (named)
                return FileOutcome(prepared.path, "failed", 0, str(exc))
            raise
        text = str(getattr(exc, "orig", exc))
        if "sha256" in text:  # another process loaded the same file meanwhile
            return FileOutcome(prepared.path, "skipped", 0, "loaded concurrently")
        return FileOutcome(prepared.path, "failed", 0, f"rejected by the database: {text.splitlines()[0]}")
    if load is not None:
        load.commit()
    return FileOutcome(prepared.path, "loaded", n)


def _duration(seconds: float) -> str:
    """``42 s``, ``17 min``, ``5 h 08 min``: an ETA readable at a glance."""
    s = int(round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """Files, rows, rows/s and ETA on one line of stderr.

    The rate and the ETA are of the bytes loaded by this run over the last few minutes (files
    skipped as already loaded count neither), so they follow a load of thousands of files that
    slows or speeds up, and a resumed load. On a terminal the line is rewritten in place; into a
    log file (``enabled=True`` without a terminal) it is a new line at most every
    ``log_every`` seconds, and after the last file.
    """

    #: Seconds of history behind the rate and the ETA.
    WINDOW = 300.0

    def __init__(self, total_files: int, total_bytes: int, stream=None, enabled: bool | None = None,
                 log_every: float = 30.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = self.tty if enabled is None else enabled
        self.total_files, self.total_bytes = total_files, max(total_bytes, 1)
        self.files = self.bytes = self.rows = 0
        self.start = self._last_line = time.monotonic()
        self.log_every = log_every
        self._history: list[tuple[float, int]] = [(self.start, 0)]  # (time, bytes loaded by this run)
        self._loaded_bytes = 0

    def update(self, outcome: FileOutcome, size: int, now: float | None = None) -> None:
        """One more file done (``size`` bytes); ``now``: its ``time.monotonic()``, default now."""
        now = time.monotonic() if now is None else now
        self.files += 1
        self.bytes += size
        self.rows += outcome.rows
        if outcome.status == "skipped":
            self.total_bytes = max(self.total_bytes - size, 1)  # nothing to do for it: not in the ETA
            self.bytes -= size
        else:
            self._loaded_bytes += size
            self._history.append((now, self._loaded_bytes))
            while len(self._history) > 2 and now - self._history[1][0] > self.WINDOW:
                self._history.pop(0)
        if not self.enabled:
            return
        last = self.files == self.total_files
        if not self.tty and not last and now - self._last_line < self.log_every:
            return
        self._last_line = now
        self.stream.write(("\r" if self.tty else "") + self.line(now) + ("   " if self.tty else "\n"))
        self.stream.flush()

    def line(self, now: float | None = None) -> str:
        """The progress line as it is now."""
        now = time.monotonic() if now is None else now
        dt = max(now - self.start, 1e-9)
        (t0, b0), (t1, b1) = self._history[0], self._history[-1]
        rate = (b1 - b0) / (t1 - t0) if t1 > t0 and b1 > b0 else 0.0
        left = self.total_bytes - self.bytes
        eta = "done" if left <= 0 else (f"ETA {_duration(left / rate)}" if rate > 0 else "ETA unknown")
        return (f"[{self.files:,}/{self.total_files:,} files] {self.rows:,} rows, {self.rows / dt:,.0f} rows/s, "
                f"{eta}")

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")


def _prepared_stream(files: list[Unit], release: str | None, jobs: int, done: frozenset[str],
                     row_filter=None) -> Iterator[tuple[Unit, PreparedFile | FileOutcome | Exception]]:
    if jobs <= 1:
        for f in files:
            try:
                yield f, prepare_file(str(f), release, done, row_filter)
            except IngestError as exc:
                yield f, exc
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        # Keep at most 2 * jobs files in flight: each holds a partition's arrays in memory.
        pending: list = []
        it = iter(files)
        for f in it:
            pending.append((f, pool.submit(prepare_file, str(f), release, done, row_filter)))
            if len(pending) >= 2 * jobs:
                break
        while pending:
            f, fut = pending.pop(0)
            try:
                result: PreparedFile | FileOutcome | Exception = fut.result()
            except IngestError as exc:
                result = exc
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(prepare_file, str(nxt), release, done, row_filter)))
            yield f, result


def _infer_release(files: list[Unit]) -> str:
    """The release of the first readable file (its name pattern, ECSV header and columns; for a
    HATS partition its catalog's properties and its columns, read from the Parquet footer only)."""
    from .gaia_reader import read_gaia_file

    errors = []
    for f in files:
        try:
            if _is_parquet(f):
                return hats_reader.partition_release(f)
            return read_gaia_file(f).release
        except IngestError as exc:
            errors.append(str(exc))
    raise IngestError("cannot tell the Gaia release (give --release): " + "; ".join(errors[:3]))


def ingest_gaia(engine: sa.Engine, paths, release: str | None = None, *, catalog: str | None = None,
                jobs: int = 1, progress: bool | None = None,
                on_file: Callable[[FileOutcome], None] | None = None,
                region=None, epochs=None) -> GaiaIngestReport:
    """Load Gaia partition files into the release's catalog; see :meth:`Store.ingest_gaia`."""
    if not (isinstance(jobs, (int, np.integer)) and not isinstance(jobs, bool) and jobs >= 1):
        raise IngestError(f"jobs must be an integer >= 1 (worker processes), got {jobs!r}")
    wanted = None if region is None else region_select.LoadRegion.create(region)
    if wanted is None and epochs is not None:
        raise IngestError("epochs: they apply to a region load (give region=, or --cone/--polygon/--moc/--wcs)")
    span = None if wanted is None else region_select.check_epochs(
        region_select.DEFAULT_EPOCHS if epochs is None else epochs)
    units = _expand(paths)
    files = [unit for unit, _ in units]
    sizes = {str(unit): size for unit, size in units}
    if release is not None:
        release = release.lower().removeprefix("gaia_").removeprefix("gaia")
        if release not in RELEASES:
            raise IngestError(f"unknown Gaia release {release!r}: expected one of {', '.join(RELEASES)}")
    else:
        release = _infer_release(files)
    name = catalog or RELEASES[release][0]
    selection = None
    if wanted is not None:  # chosen before anything is written: a bad region leaves no trace
        sky = any(not any(ch in os.fspath(p) for ch in "*?[") and hats_reader.is_hats_catalog(p) for p in paths)
        selection = region_select.select(files, wanted, release, RELEASES[release][1], span, sky)
        files = selection.read
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            sharded = _sharded_store(conn)
        if sharded:  # what a killed load left prepared on the shards, first
            from ..shard.loading import recover

            recover(engine, _shard_connections(engine))
    cat_id, created = _ensure_catalog(engine, name, release)
    with engine.connect() as conn:
        done = frozenset(conn.execute(sa.select(source_files.c.sha256).where(
            source_files.c.catalog_id == cat_id)).scalars())
        earlier = tuple(catalog_regions.cuts(conn, cat_id))
    catalog_regions.start(engine, cat_id, created, selection)
    row_filter = None
    if selection is not None:
        row_filter = RowFilter(selection.key, selection.cells, earlier, done)
    elif earlier:  # whole files into a catalog holding pieces of some: each row once
        row_filter = RowFilter(None, None, earlier, done)
    report = GaiaIngestReport(name, release)
    if selection is not None:
        report.region = RegionOutcome.of(selection)
    bar = Progress(len(files), sum(sizes[str(f)] for f in files), enabled=progress)
    t0 = time.monotonic()

    def finish(f, outcome: FileOutcome) -> None:
        report.files.append(outcome)
        bar.update(outcome, sizes[str(f)])
        if on_file is not None:
            on_file(outcome)

    parallel = jobs > 1 and engine.dialect.name == "postgresql"
    try:
        _load_all(engine, cat_id, files, release, jobs, done, parallel, finish, row_filter=row_filter)
        if report.ok and not (created and report.count("loaded") == 0):  # (else the catalog goes)
            # Every file loaded: the catalog now holds all of the region's rows.
            catalog_regions.finish(engine, cat_id, selection)
            if report.region is not None:
                report.region.recorded = True
    finally:
        if created and report.count("loaded") == 0:
            try:
                _drop_if_empty(engine, cat_id)
            except sa.exc.SQLAlchemyError:  # the load's own error (if any) matters more
                pass
    if report.count("loaded") and engine.dialect.name == "postgresql":
        # Fresh planner statistics for the partition (a sample of 30 k rows: ~0.3 s at any size).
        with engine.begin() as conn:
            cmap = read_map(conn, cat_id)
            if cmap is None:
                conn.exec_driver_sql(f"ANALYZE {partitions.partition_name(cat_id)}")
        if cmap is not None:
            from ..shard.placement import analyze

            analyze(_shard_connections(engine), cmap)
    bar.close()
    report.seconds = time.monotonic() - t0
    return report


_WORKER_ENGINES: dict[str, sa.Engine] = {}


def _worker_engine(url: str) -> sa.Engine:
    """The worker process' own engine (one per store URL), made on its first file."""
    engine = _WORKER_ENGINES.get(url)
    if engine is None:
        from ..store.engine import create_store_engine

        engine = _WORKER_ENGINES[url] = create_store_engine(url)
    return engine


def prepare_and_load(url: str, cat_id: int, path: str, release: str, done: frozenset[str] = frozenset(),
                     row_filter=None) -> FileOutcome:
    """One file, start to end, in a worker process: read and sort it, then COPY it on the
    worker's own connection in its own transaction (PostgreSQL)."""
    try:
        prepared = prepare_file(path, release, done, row_filter)
    except IngestError as exc:
        return FileOutcome(path, "failed", 0, str(exc))
    return _load_or_refuse(_worker_engine(url), cat_id, prepared, release)


def _load_or_refuse(engine: sa.Engine, cat_id: int, prepared: PreparedFile | FileOutcome, release: str) -> FileOutcome:
    if isinstance(prepared, FileOutcome):
        return prepared
    if prepared.release != release:
        return FileOutcome(prepared.path, "failed", 0,
                           f"holds Gaia {prepared.release.upper()} rows, not {release.upper()}")
    return load_prepared(engine, cat_id, prepared)


def _load_all(engine: sa.Engine, cat_id: int, files: list, release: str, jobs: int, done: frozenset,
              parallel: bool, finish: Callable, row_filter=None) -> None:
    """Prepare every file (``jobs`` workers) and load each, calling ``finish(file, outcome)``.

    PostgreSQL with ``jobs > 1``: each worker reads a file and COPYs it itself, so reading and
    loading overlap on every core and no column crosses a process boundary (measured: the main
    process loading what workers read was one serial chain that held the ingest to one core).
    SQLite has one writer: workers read, the main process loads.
    """
    if parallel:
        url = engine.url.render_as_string(hide_password=False)
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [(f, pool.submit(prepare_and_load, url, cat_id, str(f), release, done, row_filter))
                       for f in files]
            try:
                for f, fut in futures:
                    finish(f, fut.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # files in flight finish or roll back
                raise
        return
    for f, prepared in _prepared_stream(files, release, jobs, done, row_filter):
        if isinstance(prepared, Exception):
            finish(f, FileOutcome(str(f), "failed", 0, str(prepared)))
        else:
            finish(f, _load_or_refuse(engine, cat_id, prepared, release))
