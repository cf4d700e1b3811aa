#!/usr/bin/env python
"""Benchmark of a catalog sharded over three PostgreSQL servers against one server holding the
same rows, in the same run on the same machine.

    .venv/bin/python bench/bench_shard.py [--rows 2000000] [--queries 300]

Starts five throwaway PostgreSQL 15 servers with the same settings (tests.support.pg_clusters:
fsync off, PostGIS): "one" (the single server), "coord" (the coordinator) and three shards, all
on this machine's cores, then:

1. Ingest: the same Gaia-like Table (three dense patches of ~44 k rows/deg², DR3's density in
   the Galactic plane, in order-1 HEALPix pixels held by different shards, plus an all-sky
   background) with Store.ingest_catalog into the one server and into the sharded store (rows
   routed by position, COPYed to the shards in parallel, two-phase commit); the routing's CPU
   time per row measured alone.
2. Cones, p50/p90 over random centres in the patches, alternating the two stores per centre:
   Store.cone at 6' (~1,400 rows) and 1.1' (~40 rows), and the SQL function astrodb.cone (all
   rows fetched) on the one server against the coordinator (through postgres_fdw).

Prints a Markdown section and writes it to bench/out/shard.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
from astropy.table import vstack
from astropy_healpix import HEALPix

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import astrodb  # noqa: E402
from bench_store import report_head, write_report  # noqa: E402
from tests.support import pg_clusters  # noqa: E402
from tests.support.synth import gaia_like  # noqa: E402

PATCH_RADIUS = 1.9   # deg: 500 k rows in it is ~44 k rows/deg²


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def patch_centres() -> list[tuple[float, float]]:
    """Centres of order-1 pixels 0, 1, 2 (dealt to shards 1, 2, 3 by a new catalog's map)."""
    lon, lat = HEALPix(nside=2, order="nested").healpix_to_lonlat([0, 1, 2])
    return list(zip(lon.deg.tolist(), lat.deg.tolist()))


def make_table(rows: int):
    per = rows // 4
    parts = [gaia_like(per, ra, dec, PATCH_RADIUS, seed=10 + k) for k, (ra, dec) in enumerate(patch_centres())]
    parts.append(gaia_like(rows - 3 * per, 0.0, 0.0, 180.0, seed=20))
    t = vstack(parts)
    t["source_id"] = np.arange(len(t), dtype=np.int64) + 1
    return t


def timed_ingest(store, table, name: str) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    store.ingest_catalog(table, name, epoch=2016.0)
    return time.perf_counter() - t0, time.process_time() - c0


def routing_cpu_us(store, table, name: str) -> float:
    """CPU µs per row of cutting sorted rows along the map and slicing their columns per range."""
    from astrodb.query.healpix import hpx29
    from astrodb.shard.shard_map import read_map

    with store.engine.connect() as conn:
        cid = conn.exec_driver_sql("SELECT id FROM astrodb.catalogs WHERE name = %s", (name,)).scalar()
        cmap = read_map(conn, cid)
    pix = np.sort(hpx29(np.asarray(table["ra"], float), np.asarray(table["dec"], float)))
    cols = [np.asarray(table[c], float) for c in ("ra", "dec", "pmra", "pmdec", "parallax")] * 4
    best = float("inf")
    for _ in range(5):
        c0 = time.process_time()
        for _, start, stop in cmap.slices(pix):
            [c[start:stop] for c in cols]
        best = min(best, time.process_time() - c0)
    return best / len(pix) * 1e6


def centres_in_patches(n: int, seed: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    pc = patch_centres()
    out = []
    for k in range(n):
        ra0, dec0 = pc[k % 3]
        r = np.degrees(np.arccos(rng.uniform(np.cos(np.radians(PATCH_RADIUS - 0.2)), 1.0)))
        a = rng.uniform(0, 2 * np.pi)
        out.append((float((ra0 + r * np.sin(a) / np.cos(np.radians(dec0))) % 360.0), float(dec0 + r * np.cos(a))))
    return out


def compare(fa, fb, centres) -> tuple[dict, dict]:
    """p50/p90 (ms) and mean rows of ``fa(ra, dec)`` and ``fb(ra, dec)``, alternated per centre."""
    for ra, dec in centres[:20]:   # warm-up
        fa(ra, dec), fb(ra, dec)
    ta, tb, na, nb = [], [], [], []
    for k, (ra, dec) in enumerate(centres):
        for f, t, n in ((fa, ta, na), (fb, tb, nb)) if k % 2 == 0 else ((fb, tb, nb), (fa, ta, na)):
            t0 = time.perf_counter()
            rows = f(ra, dec)
            t.append(time.perf_counter() - t0)
            n.append(rows)
    if na != nb:
        raise SystemExit("the sharded store and the one server returned different row counts")

    def stats(t, n):
        return {"p50": float(np.percentile(t, 50) * 1e3), "p90": float(np.percentile(t, 90) * 1e3),
                "rows": float(np.mean(n))}
    return stats(ta, na), stats(tb, nb)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--queries", type=int, default=300)
    args = p.parse_args()
    clusters = {}
    try:
        for name in ("one", "coord", "s1", "s2", "s3"):
            clusters[name] = pg_clusters.start_cluster(f"bench-{name}")
        urls = {n: c.create_database("astrodb").replace("postgresql://", "postgresql+psycopg://")
                for n, c in clusters.items()}
        one, coord = astrodb.connect(urls["one"]), astrodb.connect(urls["coord"])
        one.init()
        coord.init()
        for n in ("s1", "s2", "s3"):
            coord.add_shard(n, urls[n])
        log(f"making {args.rows} rows")
        table = make_table(args.rows)
        log("ingest: one server, then three shards, then again the other way round")
        runs = {"one": [], "sharded": []}
        for k, (label, store) in enumerate((("one", one), ("sharded", coord), ("sharded", coord), ("one", one))):
            name = f"cat{k}"
            runs[label].append(timed_ingest(store, table, name))
            log(f"  {label}: {args.rows / runs[label][-1][0]:,.0f} rows/s")
        route_us = routing_cpu_us(coord, table, "cat1")
        for k, store in ((2, coord), (3, one)):
            store.drop_catalog(f"cat{k}")
        for store in (one, coord):
            with store.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        centres = centres_in_patches(args.queries, seed=5)
        results = {}
        for radius, label in ((0.1, "6'"), (1.1 / 60, "1.1'")):
            log(f"Store.cone {label}")
            results[f"Store.cone {label}"] = compare(
                lambda ra, dec, r=radius: len(one.cone(ra, dec, r, catalog="cat0")),
                lambda ra, dec, r=radius: len(coord.cone(ra, dec, r, catalog="cat1")), centres)
        raw = {n: psycopg.connect(urls[n].replace("+psycopg", ""), autocommit=True) for n in ("one", "coord")}

        def sql(conn, catalog, radius):
            return lambda ra, dec: len(conn.execute("SELECT * FROM astrodb.cone(%s, %s, %s, %s)",
                                                    (catalog, ra, dec, radius)).fetchall())
        for radius, label in ((0.1, "6'"), (1.1 / 60, "1.1'")):
            log(f"SQL astrodb.cone {label}")
            results[f"SQL astrodb.cone {label}"] = compare(sql(raw["one"], "cat0", radius),
                                                           sql(raw["coord"], "cat1", radius), centres)
        for c in raw.values():
            c.close()
        one.close()
        coord.close()
    finally:
        for c in clusters.values():
            pg_clusters.remove_cluster(c)
    rate = {k: [args.rows / w for w, _ in v] for k, v in runs.items()}
    cpu = {k: float(np.mean([c for _, c in v])) for k, v in runs.items()}
    wall = {k: float(np.mean([w for w, _ in v])) for k, v in runs.items()}
    # Three machines: the client's work (read, sort, route, send) stays, the servers' divides by 3.
    projected = args.rows / (cpu["sharded"] + max(wall["sharded"] - cpu["sharded"], 0.0) / 3)
    lines = report_head("Sharded store: three PostgreSQL shards against one server", "bench/bench_shard.py",
                        "five PostgreSQL 15 servers on it (one, coordinator, three shards), same settings (fsync off).")
    lines += [f"{args.rows:,} Gaia-like rows (three patches of ~44 k rows/deg² in order-1 pixels held by "
             "different shards, and an all-sky background); each cone figure is over the same "
             f"{args.queries} centres in the patches, the two stores alternated per centre, row counts equal.", "",
             "| what | one server | sharded (3) | ratio |", "|---|---|---|---|"]
    for key, (a, b) in results.items():
        lines.append(f"| {key}, p50 ms (~{a['rows']:.0f} rows) | {a['p50']:.2f} | {b['p50']:.2f} | "
                     f"{b['p50'] / a['p50']:.2f}× |")
        lines.append(f"| {key}, p90 ms | {a['p90']:.2f} | {b['p90']:.2f} | {b['p90'] / a['p90']:.2f}× |")
    r1, r3 = float(np.mean(rate["one"])), float(np.mean(rate["sharded"]))
    lines += [f"| ingest_catalog rows/s (2 runs each, alternated) | {r1:,.0f} | {r3:,.0f} | {r3 / r1:.2f}× |",
              f"| client CPU s per load | {cpu['one']:.1f} | {cpu['sharded']:.1f} | |", "",
              f"Routing (cutting the sorted rows along the map, slicing each column per range): "
              f"{route_us:.4f} CPU-µs per row. Projected to three machines (the client's CPU time as "
              f"measured, the servers' share of the wall time divided by three): {projected:,.0f} rows/s.", ""]
    write_report("shard", "\n".join(lines))


if __name__ == "__main__":
    main()
