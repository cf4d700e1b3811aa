"""Server time of the web pages of ``astrodb serve`` on a store with many recorded runs.

A PostgreSQL store holds Hipparcos (118k rows, all sky), a field catalog, and N runs (default
100,000; 4 images each): two runs the aligner really recorded, cloned in SQL with new ids,
times spread over a year, every tenth failed, image names shared by ~20 runs each. Each page is
requested in-process (the ASGI app, no network) after one warm-up request; the median of 5 is
its server time. Plots are separate requests: their first (drawn) and later (cached) times are
given apart.

    .venv/bin/python bench/bench_pages.py [--runs 100000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import psycopg
from astropy.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import aligner  # noqa: E402
import astrodb  # noqa: E402
from astrodb.datasets import HIPPARCOS_EPOCH, hipparcos  # noqa: E402
from bench_store import report_head, scratch_database, write_report  # noqa: E402
from tests.support.aligner_synth import make_correctors, make_scene  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/postgres"
REF = ["source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "parallax", "radial_velocity",
       "ref_epoch", "mag"]
TARGET_MS = 300.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fill(store, url: str, n: int) -> None:
    store.ingest_catalog(hipparcos(), "hip", epoch=HIPPARCOS_EPOCH)
    scene = make_scene(4, 1000, "fits", seed=3, epoch=2024.5, center=(150.2, 2.1))
    store.ingest_catalog(Table({c: scene.refcat[c] for c in REF}), "field")
    corr = make_correctors(scene)
    aligner.relative_align(corr, store=store)
    aligner.absolute_align(corr, "field", epoch=2024.5, store=store)
    with psycopg.connect(url, autocommit=False) as conn:
        conn.execute("SET search_path = astrodb, public")
        cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'astrodb' AND "
            "table_name = 'prov_runs' AND column_name NOT IN ('db_role', 'db_session_role', 'server_time') "
            "ORDER BY ordinal_position")]
        icols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'astrodb' AND "
            "table_name = 'prov_images' ORDER BY ordinal_position")]
        originals = [r[0] for r in conn.execute("SELECT run_id FROM prov_runs")]
        assert len(originals) == 2
        step, copies = 5_000, (n - 2) // 2  # each copy step clones both runs
        for lo in range(1, copies + 1, step):
            hi = min(lo + step - 1, copies)
            new_id = "md5(g::text || r.run_id)::uuid::text"
            sel = []
            for c in cols:
                sel.append({"run_id": new_id,
                            "started_at": "r.started_at - make_interval(mins => g * 10)",
                            "finished_at": "r.finished_at - make_interval(mins => g * 10)",
                            "status": "CASE WHEN g %% 10 = 0 THEN 'failed' ELSE r.status END"}.get(c, "r." + c))
            conn.execute(f"INSERT INTO prov_runs ({', '.join(cols)}) SELECT {', '.join(sel)} "
                         f"FROM prov_runs r CROSS JOIN generate_series({lo}, {hi}) g WHERE r.run_id = ANY(%s)",
                         (originals,))
            isel = [{"run_id": "md5(g::text || i.run_id)::uuid::text",
                     "name": "'img' || (g %% 5000) || '_' || i.image_index"}.get(c, "i." + c) for c in icols]
            conn.execute(f"INSERT INTO prov_images ({', '.join(icols)}) SELECT {', '.join(isel)} "
                         f"FROM prov_images i CROSS JOIN generate_series({lo}, {hi}) g WHERE i.run_id = ANY(%s)",
                         (originals,))
            conn.commit()
            log(f"runs {2 + 2 * hi:,} of {n:,}")
        conn.execute("ANALYZE prov_runs")
        conn.execute("ANALYZE prov_images")
        conn.commit()


def timed(client, path: str, repeat: int = 5) -> tuple[float, float]:
    """(first request ms, median of ``repeat`` later ones ms); each must answer 200."""
    t0 = time.perf_counter()
    r = client.get(path)
    first = 1000.0 * (time.perf_counter() - t0)
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    later = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(path)
        later.append(1000.0 * (time.perf_counter() - t0))
        assert r.status_code == 200, path
    return first, statistics.median(later)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=100_000)
    args = p.parse_args()
    rows = []
    with scratch_database(PG) as url:
        store = astrodb.connect(url)
        store.init()
        t0 = time.perf_counter()
        fill(store, url, args.runs)
        log(f"filled in {time.perf_counter() - t0:.0f} s")
        with store.engine.connect() as conn:
            n_runs = conn.exec_driver_sql("SELECT count(*) FROM prov_runs").scalar_one()
            newest = conn.exec_driver_sql("SELECT run_id FROM prov_runs ORDER BY started_at DESC LIMIT 1").scalar_one()
            old = conn.exec_driver_sql("SELECT run_id FROM prov_runs WHERE step = 'absolute' "
                                       "ORDER BY started_at LIMIT 1").scalar_one()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fastapi.testclient import TestClient

            from astrodb.service import Settings, create_app
        app = create_app(Settings(store_url=url))
        pages = [
            ("catalogs and the cone form", "/"),
            ("cone search, 0.2° at J2030 (Hipparcos)", "/pages/cone?catalog=hip&ra=269.45&dec=4.69&radius=0.2&epoch=2030"),
            ("cone search, 1° at J2030 (Hipparcos; the heavy lane's process starts on the first)",
             "/pages/cone?catalog=hip&ra=269.45&dec=4.69&radius=1&epoch=2030"),
            ("runs, first page", "/pages/runs"),
            ("runs, page 1,000 (offset 49,950)", "/pages/runs?page=1000"),
            ("runs, status failed", "/pages/runs?status=failed"),
            ("runs, step + catalog", "/pages/runs?step=absolute&catalog=field"),
            ("runs, one image", "/pages/runs?image=img42_0"),
            ("runs, a week", "/pages/runs?since=2026-06-01&until=2026-06-08"),
            ("a run (4 images)", f"/pages/runs/{old}"),
            ("an image's WCS history (~20 runs)", "/pages/image?name=img42_0"),
        ]
        plots = [("sky map (Hipparcos, all sky)", "/pages/catalogs/hip/sky.png"),
                 ("residual plot (4 images)", f"/pages/runs/{newest}/residuals.png")]
        with TestClient(app.app) as client:
            for label, path in pages + plots:
                first, median = timed(client, path)
                rows.append((label, path, first, median))
                log(f"{label}: first {first:.1f} ms, then {median:.1f} ms")
        store.close()
    lines = report_head("Web pages of `astrodb serve` (`bench/bench_pages.py`)", "bench/bench_pages.py",
                        "PostgreSQL 15 on the same machine.")
    lines += [f"Store: {n_runs:,} recorded runs (4 images each), Hipparcos (117,955 rows) and a field catalog. "
             "Server time: the ASGI app called in-process (no network), median of 5 requests after a first one "
             f"(the first also pays the process's cold caches); target ≤ {TARGET_MS:.0f} ms a page, judged on the "
             "median. Plots are separate requests, drawn once and then cached.", "",
             "| page | request | first (ms) | then, median (ms) | ≤ 300 ms |", "|---|---|---:|---:|---|"]
    for label, path, first, median in rows:
        is_plot = path.endswith(".png")
        ok = "(plot)" if is_plot else ("yes" if median <= TARGET_MS else "no")
        lines.append(f"| {label} | `{path}` | {first:.1f} | {median:.1f} | {ok} |")
    write_report("pages", "\n".join(lines))


if __name__ == "__main__":
    main()
