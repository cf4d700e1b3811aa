"""Gaia at scale on one server: 100 M DR3-layout rows loaded, sized and queried beside the anchors.

Phases (each resumable: the state lives in bench/out/scale/state.json and the database is kept):

1. ``load``: synthetic DR3 bulk files (the archive's layout: ECSV header, 152 columns, ``null``
   for missing, named by their HEALPix level-8 range, ``_MD5SUM.txt`` beside them) over a sky
   like Gaia's -- the Galactic plane and bulge 100-600x denser than the poles -- plus one disc at
   DR3's true mean density (44 k stars/deg²). Files are generated a batch at a time just before
   their load (generation is not timed) and deleted after it, so the disk holds at most one
   batch of input. Each batch is one ``store.ingest_gaia(files, release="dr3", jobs=J)``; the
   rate over the whole load, batch by batch, shows whether it falls as the indexes grow.
   On the first ``--subset`` rows the same files are also read by gunzip alone (ISA-L) and
   loaded by raw binary COPY into an index-free table, the two ceilings of the ingest.
2. ``anchors``: the best-known alternatives index the very same table (no copy of its rows):
   PostGIS ``ST_DWithin`` on a GiST expression index of the geography point, and Q3C's
   ``q3c_ang2ipix`` btree. Build times and sizes are recorded.
3. ``cones``: p50/p99 of cones of 1', 6', 30' and 2 deg at random centres in a dense region
   (Galactic bulge), a sparse one (near a Galactic pole) and the DR3-density disc, for SQL
   ``astrodb.cone``, ``Store.cone`` and the two anchors, every query's row count checked equal
   across the four; warm (each set run once before timing) and cold (PostgreSQL restarted and
   the OS page cache dropped before each set, fresh centres).
4. ``report``: bench/out/scale.md (and the numbers in bench/out/scale/results.json).

Run: ``./run bench scale`` (defaults: 100 M rows; ``--rows 2000000`` for a quick check). The
database ``astrodb_scale`` on the --pg server is kept between runs; ``--fresh`` starts over.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from bench_gaia import Meter, machine_info  # noqa: E402  (one copy of the CPU accounting)
from bench_store import code_version, command_line, pg_url_for  # noqa: E402

OUT = HERE / "out" / "scale"
FILES = OUT / "files"
DR3_DENSITY = 1_811_709_771 / 41_252.96  # DR3 rows per square degree, whole sky
RADII_ARCMIN = (1.0, 6.0, 30.0, 120.0)
ORDER8 = 8
NPIX8 = 12 * 4 ** ORDER8


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the sky --------------------------------------------------------------------------------
def galactic_density(l_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """Relative stellar density: 1 at the Galactic poles, a thin disc (scale height 4 deg in b)
    100-300x denser, brighter towards the centre, and a bulge ~600x (a Gaussian of 8 deg)."""
    lw = (np.asarray(l_deg) + 180.0) % 360.0 - 180.0
    b = np.asarray(b_deg)
    disc = 300.0 * np.exp(-np.abs(b) / 4.0) * (0.33 + 0.67 * np.exp(-(lw / 60.0) ** 2))
    bulge = 300.0 * np.exp(-(lw ** 2 + b ** 2) / (2 * 8.0 ** 2))
    return 1.0 + disc + bulge


#: The disc at DR3's mean density: centre (ra, dec) and radius, degrees (a sparse part of the sky,
#: so that its cones measure the density, not the model).
PATCH = (150.0, 30.0, 3.0)
#: Centres of the cone sets: (ra, dec, scatter radius) in degrees.
REGIONS = {"dense (Galactic bulge)": (266.4, -29.0, 4.0), "sparse (near the north Galactic pole)": (192.9, 27.1, 4.0),
           "DR3 mean density (44 k/deg²)": (PATCH[0], PATCH[1], 2.0),
           # where the model's density is the store's mean (100 M rows: ~2.4 k/deg²), l = 180, b = 8
           "store mean density (~2.4 k/deg²)": (94.53, 32.86, 1.0)}


def pixel_counts(total: int, seed: int) -> np.ndarray:
    """Rows per level-8 nested pixel: the model scaled to ``total`` rows, Poisson-drawn."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy_healpix import HEALPix

    hp = HEALPix(nside=2 ** ORDER8, order="nested")
    lon, lat = hp.healpix_to_lonlat(np.arange(NPIX8))
    ra, dec = lon.to_value(u.deg), lat.to_value(u.deg)
    gal = SkyCoord(ra * u.deg, dec * u.deg).galactic
    area = hp.pixel_area.to_value(u.deg ** 2)
    rel = galactic_density(gal.l.deg, gal.b.deg)
    c = np.radians
    sep = np.degrees(np.arccos(np.clip(np.sin(c(dec)) * np.sin(c(PATCH[1])) + np.cos(c(dec)) * np.cos(c(PATCH[1]))
                                       * np.cos(c(ra - PATCH[0])), -1, 1)))
    in_patch = sep < PATCH[2]
    patch_rows = DR3_DENSITY * area * in_patch.sum()
    lam = np.where(in_patch, DR3_DENSITY * area, rel / rel[~in_patch].sum() * (total - patch_rows))
    return np.random.default_rng(seed).poisson(lam).astype(np.int64)


def plan_files(counts: np.ndarray, rows_per_file: int) -> list[tuple[int, int, int]]:
    """Contiguous level-8 pixel ranges of about ``rows_per_file`` rows: (first, last, rows)."""
    cum = np.cumsum(counts)
    cuts = np.searchsorted(cum, np.arange(rows_per_file, cum[-1], rows_per_file), side="left")
    edges = np.unique(np.concatenate([[-1], cuts, [NPIX8 - 1]]))
    out: list[tuple[int, int, int]] = []
    for a, b in zip(edges[:-1] + 1, edges[1:]):
        n = int(counts[a:b + 1].sum())
        if out and n < rows_per_file // 2:  # a small last file joins the one before
            a0, _, n0 = out.pop()
            a, n = a0, n0 + n
        if n:
            out.append((int(a), int(b), n))
    return out


class FileMaker:
    """Writes one planned file: template rows of tests/support/gaia_fixtures.py (real layout,
    realistic widths and nulls) taken at random, with positions drawn uniformly in each level-8
    pixel and source_ids made from them, sorted by source_id as the archive's files are."""

    #: The first columns of a DR3 row: the ones a file sets (id, designation, position) and those
    #: between them, taken from the template like the rest of the row.
    HEAD = ("solution_id", "designation", "source_id", "random_index", "ref_epoch", "ra", "ra_error", "dec")

    def __init__(self, seed: int, template_rows: int = 100_000) -> None:
        import pyarrow.compute as pc
        import tests.support.gaia_fixtures as fx

        self.fx, self.seed = fx, seed
        t = fx.gaia_rows("dr3", template_rows, seed, real=False)
        names = t.column_names
        if tuple(names[:len(self.HEAD)]) != self.HEAD:
            raise SystemExit(f"unexpected DR3 column order: {names[:len(self.HEAD)]}")
        self.header = "".join(line + "\n" for line in fx.ecsv_header("dr3", columns=names))
        self.header += ",".join(names) + "\n"
        text = {n: pc.fill_null(t[n].combine_chunks(), "null") for n in names}
        # Each template row's text after "dec", joined once: a file takes whole tails (a copy),
        # not 144 columns (measured: 20 us a row to take and join all columns, ~3 this way).
        self.tail = pc.binary_join_element_wise(*(text[n] for n in names[len(self.HEAD):]), ",")
        self.text = text
        self.n = template_rows

    def write(self, directory: Path, index: int, first: int, last: int, counts: np.ndarray) -> Path:
        import astropy.units as u
        import pyarrow as pa
        import pyarrow.compute as pc
        from astropy_healpix import HEALPix
        from isal import igzip

        rng = np.random.default_rng([self.seed, index])
        per = counts[first:last + 1]
        n = int(per.sum())
        pix8 = np.repeat(np.arange(first, last + 1, dtype=np.int64), per)
        pix12 = pix8 * 256 + rng.integers(0, 256, n)
        lon, lat = HEALPix(nside=4096, order="nested").healpix_to_lonlat(pix12, dx=rng.random(n), dy=rng.random(n))
        ra, dec = lon.to_value(u.deg), lat.to_value(u.deg)
        sid = (pix12 << 35) + (np.arange(n, dtype=np.int64) << 7)  # unique: a file owns its pixels
        order = np.argsort(sid, kind="stable")
        sid, ra, dec = sid[order], ra[order], dec[order]
        pick = pa.array(rng.integers(0, self.n, n))
        sid_text = pa.array(sid).cast(pa.string())
        T = self.text
        lines = pc.binary_join_element_wise(
            T["solution_id"].take(pick), pc.binary_join_element_wise("Gaia DR3", sid_text, " "), sid_text,
            T["random_index"].take(pick), T["ref_epoch"].take(pick), pa.array(ra).cast(pa.string()),
            T["ra_error"].take(pick), pa.array(dec).cast(pa.string()), self.tail.take(pick), ",")
        lines = pc.binary_join_element_wise(lines, "", "\n").cast(pa.large_string())
        offsets = np.frombuffer(lines.buffers()[1], np.int64)[lines.offset:lines.offset + len(lines) + 1]
        body = memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]]
        path = directory / f"GaiaSource_{first:06d}-{last:06d}.csv.gz"
        with open(path, "wb") as f:
            f.write(igzip.compress(self.header.encode() + bytes(body), compresslevel=1))
        return path


# -- state ----------------------------------------------------------------------------------
class State:
    def __init__(self, path: Path, config: dict, fresh: bool) -> None:
        self.path = path
        data = json.loads(path.read_text()) if path.is_file() and not fresh else {}
        if data.get("config") != config:
            data = {"config": config}
        self.data = data

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=float))
        tmp.replace(self.path)

    def __getitem__(self, key):
        return self.data.setdefault(key, {})


def disk_used() -> int:
    """Bytes used on the repository's file system (as df's Used column)."""
    return shutil.disk_usage(ROOT).used


# -- phases ---------------------------------------------------------------------------------
class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.db = args.db
        self.url = pg_url_for(args.pg, self.db)
        config = {"rows": args.rows, "rows_per_file": args.rows_per_file, "seed": args.seed}
        self.state = State(OUT / "state.json", config, args.fresh)

    def pg(self, autocommit: bool = True):
        """A connection with the settings the store's own connections use (JIT and parallel
        workers off): the anchors' best case too (measured: Q3C's cone with JIT on ~3 ms at 1')."""
        import psycopg
        return psycopg.connect(self.url, autocommit=autocommit,
                               options="-c jit=off -c max_parallel_workers_per_gather=0")

    def store(self):
        import astrodb
        return astrodb.connect(self.url.replace("postgresql://", "postgresql+psycopg://", 1))

    def ensure_db(self) -> None:
        import psycopg
        with psycopg.connect(self.args.pg, autocommit=True) as c:
            exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.db,)).fetchone()
            if exists and self.args.fresh:
                c.execute(f'DROP DATABASE "{self.db}" WITH (FORCE)')
                exists = None
            if not exists:
                c.execute(f'CREATE DATABASE "{self.db}"')
        st = self.store()
        self.state["meta"]["revision"] = st.init()
        st.close()

    # 1. load
    def load(self) -> None:
        S = self.state["load"]
        counts = pixel_counts(self.args.rows, self.args.seed)
        plan = plan_files(counts, self.args.rows_per_file)
        S["files"], S["rows_planned"] = len(plan), int(counts.sum())
        numbered = list(enumerate(plan))  # (file number: its generator seed, planned file)
        batches = [numbered[i:i + self.args.batch] for i in range(0, len(plan), self.args.batch)]
        done = S.setdefault("batches", [])
        if len(done) >= len(batches):
            return
        maker = FileMaker(self.args.seed)
        store = self.store()
        FILES.mkdir(parents=True, exist_ok=True)
        peak = S.get("peak_disk", 0)
        S.setdefault("disk_before", disk_used())
        try:
            for k in range(len(done), len(batches)):
                for old in FILES.glob("*"):
                    old.unlink()
                t = time.perf_counter()
                paths = [maker.write(FILES, i, f[0], f[1], counts) for i, f in batches[k]]
                self.fx_md5(paths)
                gen = time.perf_counter() - t
                rows = sum(f[2] for _, f in batches[k])
                gz = sum(p.stat().st_size for p in paths)
                loaded_before = sum(b["rows"] for b in done)
                sub = self.subset_measures(paths, store) if loaded_before < self.args.subset else None
                with Meter(self.db) as m:
                    report = store.ingest_gaia([str(p) for p in paths], release="dr3", jobs=self.args.jobs)
                if not report.ok or report.rows != rows:
                    raise SystemExit(f"batch {k}: {report}")
                peak = max(peak, disk_used())
                for p in paths:
                    p.unlink()
                size = self.sizes()
                done.append({"rows": rows, "files": len(paths), "gz": gz, "gen_s": gen, "s": m.wall,
                             "rate": rows / m.wall, "meter": m.as_dict(), "size": size, "subset": sub,
                             "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
                S["peak_disk"] = peak
                self.state.save()
                total = loaded_before + rows
                log(f"batch {k + 1}/{len(batches)}: {rows:,} rows in {m.wall:.1f} s ({rows / m.wall:,.0f} rows/s; "
                    f"generated in {gen:.1f} s); {total:,} rows loaded, {size['total'] / total:.0f} B/row on disk")
        finally:
            store.close()

    @staticmethod
    def fx_md5(paths: list[Path]) -> None:
        import tests.support.gaia_fixtures as fx
        fx.write_md5sum(paths[0].parent, [p.name for p in paths])

    def subset_measures(self, paths: list[Path], store) -> dict:
        """gunzip alone and raw binary COPY into an index-free table, on these files."""
        from isal import igzip
        from astrodb.ingest import gaia
        from astrodb.ingest.bulk import insert_columns

        out = {}
        t = time.perf_counter()
        for p in paths:
            with igzip.open(p, "rb") as f:
                while f.read(1 << 22):
                    pass
        out["gunzip_s"] = time.perf_counter() - t
        prepared = [gaia.prepare_file(str(p), "dr3") for p in paths]
        with self.pg() as c:
            c.execute("CREATE SCHEMA IF NOT EXISTS bench")
            c.execute("CREATE TABLE IF NOT EXISTS bench.raw_copy (LIKE astrodb.sources INCLUDING DEFAULTS) "
                      "WITH (autovacuum_enabled = false)")
        with Meter(self.db) as m:
            for pf in prepared:
                n = len(pf)
                cols = dict(pf.columns, catalog_id=np.full(n, 1, np.int64), file_id=np.full(n, 1, np.int64))
                cols.setdefault("weight", np.full(n, np.nan))
                names = [c for c in gaia.GAIA_LOAD_COLUMNS if c in cols]
                with store.engine.begin() as conn:
                    insert_columns(conn, "bench.raw_copy", names, [cols[c] for c in names])
        out["copy_s"], out["copy_backend_cpu"] = m.wall, m.pg["ours"]
        with self.pg() as c:
            c.execute("TRUNCATE bench.raw_copy")
        return out

    def sizes(self) -> dict:
        with self.pg() as c:
            part = c.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                             "WHERE i.inhparent = 'astrodb.sources'::regclass").fetchone()[0]
            heap, idx, rows = c.execute(
                f"SELECT pg_table_size('astrodb.{part}'), pg_indexes_size('astrodb.{part}'), "
                f"(SELECT row_count FROM astrodb.catalogs WHERE name = 'gaia_dr3')").fetchone()
            per_index = dict(c.execute(
                "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
                "WHERE schemaname = 'astrodb' AND relname = %s", (part,)).fetchall())
        return {"partition": part, "heap": heap, "indexes": idx, "total": heap + idx, "rows": rows,
                "per_index": per_index}

    # 2. anchors
    def anchors(self) -> None:
        S = self.state["anchors"]
        part = self.sizes()["partition"]
        steps = (("q3c", f"CREATE INDEX IF NOT EXISTS bench_q3c ON astrodb.{part} (public.q3c_ang2ipix(ra, dec))"),
                 ("postgis", f"CREATE INDEX IF NOT EXISTS bench_geog ON astrodb.{part} USING gist "
                             "((public.ST_SetSRID(public.ST_MakePoint(ra - 180.0, dec), 4326)::public.geography))"),
                 ("analyze", f"ANALYZE astrodb.{part}"))
        with self.pg() as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS q3c WITH SCHEMA public")
            c.execute("SET maintenance_work_mem = '1GB'")
            for key, sql in steps:
                if key in S:
                    continue
                log(f"anchor index {key} ...")
                t = time.perf_counter()
                c.execute(sql)
                S[key] = {"s": time.perf_counter() - t}
                if key != "analyze":
                    index = "astrodb.bench_geog" if key == "postgis" else "astrodb.bench_q3c"
                    S[key]["bytes"] = c.execute("SELECT pg_relation_size(%s::regclass)", (index,)).fetchone()[0]
                S["disk_after"] = disk_used()
                self.state.save()
                log(f"  {S[key]['s']:.0f} s")

    # 3. cones
    def centres(self, region: str, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
        ra0, dec0, r = REGIONS[region]
        d = np.radians(r) * np.sqrt(rng.random(n))
        a = rng.random(n) * 2 * np.pi
        dec = dec0 + np.degrees(d * np.cos(a))
        ra = (ra0 + np.degrees(d * np.sin(a)) / np.cos(np.radians(dec))) % 360.0
        return ra, dec

    def cones(self, cold: bool) -> None:
        key = "cold" if cold else "warm"
        S = self.state[f"cones_{key}"]
        store = self.store()
        part = self.sizes()["partition"]
        queries = {
            "SQL astrodb.cone": "SELECT * FROM astrodb.cone('gaia_dr3', %s, %s, %s)",
            "PostGIS ST_DWithin (GiST)": (f"SELECT * FROM astrodb.{part} WHERE public.ST_DWithin("
                                          "public.ST_SetSRID(public.ST_MakePoint(ra - 180.0, dec), 4326)::public.geography, "
                                          "public.ST_SetSRID(public.ST_MakePoint(%s - 180.0, %s), 4326)::public.geography, "
                                          "%s, false)"),
            "Q3C q3c_radial_query": f"SELECT * FROM astrodb.{part} WHERE public.q3c_radial_query(ra, dec, %s, %s, %s)",
        }
        sphere = 6371008.7714  # PostGIS' sphere radius (use_spheroid = false)
        try:
            for region in REGIONS:
                for r in RADII_ARCMIN:
                    label = f"{region} | {r:g}′"
                    if label in S:
                        continue
                    n = self.args.cones if r <= 6 else (self.args.cones // 4 if r <= 30 else self.args.big_cones)
                    rng = np.random.default_rng([self.args.seed, int(r * 10), len(region), int(cold)])
                    ras, decs = self.centres(region, n, rng)
                    res, counts = {}, {}
                    for method in ("Store.cone", *queries):
                        if cold:
                            self.drop_caches()
                            store.engine.dispose()  # its pooled connection died with the server
                        with self.pg() as c:
                            def run(ra, dec, method=method, c=c, r=r):
                                if method == "Store.cone":
                                    return len(store.cone(ra, dec, r / 60.0, catalog="gaia_dr3"))
                                p = math.radians(r / 60.0) * sphere if method.startswith("PostGIS") else r / 60.0
                                return len(c.execute(queries[method], (ra, dec, p)).fetchall())
                            if not cold:
                                for ra, dec in zip(ras, decs):
                                    run(ra, dec)
                            ms, got = [], []
                            for ra, dec in zip(ras, decs):
                                t = time.perf_counter()
                                got.append(run(ra, dec))
                                ms.append((time.perf_counter() - t) * 1e3)
                        res[method] = {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
                                       "rows_mean": float(np.mean(got)), "n": n}
                        counts[method] = got
                    first = counts["Store.cone"]
                    res["counts_agree"] = all(v == first for v in counts.values())
                    S[label] = res
                    self.state.save()
                    log(f"{key} {label}: " + ", ".join(f"{m} {v['p50']:.2f}/{v['p99']:.2f} ms" for m, v in res.items()
                                                        if isinstance(v, dict)) + f"; rows {res['Store.cone']['rows_mean']:.0f}, "
                        f"counts agree: {res['counts_agree']}")
        finally:
            store.close()

    def drop_caches(self) -> None:
        """Restart PostgreSQL (its shared buffers) and drop the OS page cache (needs root)."""
        subprocess.run(["pg_ctlcluster", "15", "main", "restart"], check=True)
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        for _ in range(50):
            try:
                with self.pg():
                    return
            except Exception:  # noqa: BLE001 - the server is starting
                time.sleep(0.2)

    # 4. report
    def report(self) -> str:
        S, a = self.state, self.args
        L = ["## Gaia at scale (`bench/bench_scale.py`)", "",
             "- Commands (resumed by phase): " + "; ".join(
                 f"`{c}`" for c in S["meta"].get("commands") or [".venv/bin/python bench/bench_scale.py"]),
             f"- Machine: {S['meta'].get('machine')}",
             f"- Code: {S['meta'].get('code')}; schema revision {S['meta'].get('revision')}", ""]
        ld = S["load"]
        b = ld.get("batches", [])
        if b:
            rows = sum(x["rows"] for x in b)
            secs = sum(x["s"] for x in b)
            last = b[-1]["size"]
            L += [f"Load: {rows:,} rows in {len(b)} batches of {a.batch} files ({ld['files']} files, ~{a.rows_per_file:,} "
                  f"rows each), `ingest_gaia(jobs={a.jobs})`: {secs / 60:.1f} min, **{rows / secs:,.0f} rows/s** over "
                  f"the whole load; first batch {b[0]['rate']:,.0f} rows/s, last {b[-1]['rate']:,.0f} rows/s. "
                  f"On disk: {last['total'] / 1e9:.1f} GB = **{last['total'] / rows:.0f} B/row** (heap "
                  f"{last['heap'] / rows:.0f}, indexes {last['indexes'] / rows:.0f}: "
                  + ", ".join(f"{k} {v / rows:.0f}" for k, v in last['per_index'].items()) +
                  f"). Disk used on the machine: {ld.get('disk_before', 0) / 1e9:.1f} GB before the load, at most "
                  f"{ld.get('peak_disk', 0) / 1e9:.1f} GB during it (the database, WAL and one batch of input files); "
                  f"{S['anchors'].get('disk_after', 0) / 1e9:.1f} GB with the anchors' indexes.", ""]
            def others(x):  # cores other processes took during the batch's load
                m = x["meter"]
                return (m["others"]["user"] + m["pg"]["other"]) / max(m["wall"], 1e-9)
            quiet = [x for x in b if others(x) < 0.1]
            if quiet:
                L += [f"Over the {len(quiet)} batches during which other processes took < 0.1 core: "
                      f"{sum(x['rows'] for x in quiet) / sum(x['s'] for x in quiet):,.0f} rows/s.", ""]
            L += ["| batch | rows loaded (total) | rows/s | B/row on disk | other processes (cores) |",
                  "|---:|---:|---:|---:|---:|"]
            tot = 0
            for i, x in enumerate(b):
                tot += x["rows"]
                if i in (0, len(b) - 1) or (i + 1) % max(len(b) // 12, 1) == 0:
                    L.append(f"| {i + 1} | {tot:,} | {x['rate']:,.0f} | {x['size']['total'] / tot:.0f} | "
                             f"{others(x):.2f} |")
            subs = [x for x in b if x.get("subset")]
            if subs:
                n = sum(x["rows"] for x in subs)
                gz = sum(x["subset"]["gunzip_s"] for x in subs)
                cp = sum(x["subset"]["copy_s"] for x in subs)
                e2e = sum(x["s"] for x in subs)
                L += ["", f"On the first {n:,} rows (same files): gunzip alone (ISA-L, one process) {n / gz:,.0f} rows/s; "
                      f"raw binary COPY into an index-free table {n / cp:,.0f} rows/s; end to end {n / e2e:,.0f} rows/s."]
        an = S["anchors"]
        if an:
            L += ["", "Anchor indexes on the same table: " + "; ".join(
                f"{k} built in {v['s'] / 60:.1f} min" + (f", {v['bytes'] / 1e9:.1f} GB" if "bytes" in v else "")
                for k, v in an.items() if isinstance(v, dict)) + "."]
        for key in ("warm", "cold"):
            C = S[f"cones_{key}"]
            if not C:
                continue
            methods = ("SQL astrodb.cone", "Store.cone", "PostGIS ST_DWithin (GiST)", "Q3C q3c_radial_query")
            L += ["", f"Cones, {key}" + (" (PostgreSQL restarted and the OS page cache dropped before each set)"
                                          if key == "cold" else " (each set run once before it is timed)")
                  + ": p50 / p99 ms", "",
                  "| region | radius | rows | " + " | ".join(methods) + " | SQL ÷ best anchor (p50) | counts agree |",
                  "|---|---:|---:|" + "---:|" * len(methods) + "---:|---|"]
            for label, res in C.items():
                region, radius = label.split(" | ")
                best = min(res["PostGIS ST_DWithin (GiST)"]["p50"], res["Q3C q3c_radial_query"]["p50"])
                L.append(f"| {region} | {radius} | {res['Store.cone']['rows_mean']:,.0f} | " +
                         " | ".join(f"{res[m]['p50']:.2f} / {res[m]['p99']:.2f}" for m in methods) +
                         f" | {res['SQL astrodb.cone']['p50'] / best:.2f} | {'yes' if res['counts_agree'] else 'NO'} |")
        return "\n".join(L) + "\n"

    def run(self) -> None:
        meta = self.state["meta"]
        meta["machine"] = ", ".join(f"{k} {v}" for k, v in machine_info().items() if k in ("nproc", "cpu", "ram"))
        meta["code"] = code_version()
        if self.args.phases != ["report"]:
            cmd = command_line("bench/bench_scale.py", sys.argv[1:], {"--pg": "URL"})
            meta["commands"] = [c for c in meta.get("commands", []) if c != cmd] + [cmd]
        self.ensure_db()
        for phase in self.args.phases:
            log(f"phase {phase}")
            if phase == "load":
                self.load()
            elif phase == "anchors":
                self.anchors()
            elif phase == "cones":
                self.cones(cold=False)
            elif phase == "cold":
                self.cones(cold=True)
        text = self.report()
        (HERE / "out" / "scale.md").write_text(text)
        print(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000_000, help="rows in all (default 100 M)")
    p.add_argument("--rows-per-file", type=int, default=530_000, help="rows per bulk file (DR3 averages ~535 k)")
    p.add_argument("--batch", type=int, default=4, help="files generated, loaded and deleted together (default 4)")
    p.add_argument("--jobs", type=int, default=2, help="ingest_gaia jobs (default 2)")
    p.add_argument("--subset", type=int, default=5_000_000, help="rows also read by gunzip alone and raw COPY")
    p.add_argument("--cones", type=int, default=200, help="cones per set at 1' and 6' (a quarter at 30')")
    p.add_argument("--big-cones", type=int, default=10, help="cones per set at 2 deg")
    p.add_argument("--seed", type=int, default=2016)
    p.add_argument("--phases", nargs="+", default=["load", "anchors", "cones", "cold"],
                   choices=["load", "anchors", "cones", "cold", "report"], help="report: only write the report")
    p.add_argument("--db", default="astrodb_scale", help="database name (kept between runs)")
    p.add_argument("--fresh", action="store_true", help="drop the database and the state first")
    p.add_argument("--pg", default=os.environ.get("ASTRODB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    Bench(p.parse_args()).run()


if __name__ == "__main__":
    main()
