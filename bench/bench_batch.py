"""Batch alignment on a local Dask cluster: associations per minute with 1 and 2 workers, and
the cluster's overhead per task against aligning the same associations in a loop.

Each association is a synthetic scene (FITS headers + ECSV catalogs, relative then absolute
alignment against a store catalog on PostgreSQL holding every scene's reference stars), at
4 images x 2,000 and 32 images x 10,000 sources. ALIGNER_THREADS=1 in every arm (each worker
a single-threaded process, the loop in one thread), so the cluster's workers are the only
parallelism. The loop arm runs what a task runs (align, then record the runs) in this process.

    .venv/bin/python bench/bench_batch.py [--small 16] [--large 6]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ["ALIGNER_THREADS"] = "1"

import numpy as np  # noqa: E402
from astropy.table import Table, vstack  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import astrodb  # noqa: E402
from aligner.batch import align_batch, read_associations  # noqa: E402
from aligner.batch.associations import task_key  # noqa: E402
from aligner.batch.runner import _NOT_IN_KEY, default_options  # noqa: E402
from aligner.batch.task import align_association, output_folder  # noqa: E402
from aligner.provenance import software_versions  # noqa: E402
from astrodb.provenance.batch import BatchTask, record_batch_task  # noqa: E402
from bench_store import report_head, scratch_database, write_report  # noqa: E402
from tests.support.aligner_synth import make_scene, write_fits_inputs  # noqa: E402

PG = os.environ.get("ASTRODB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
COLS = ["source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "parallax", "radial_velocity",
        "ref_epoch", "mag"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_batch(folder: Path, n_assoc: int, n_images: int, n_sources: int, seed: int) -> list[Table]:
    """n_assoc scenes at centres spread over the sky, one manifest each; their reference stars."""
    refs = []
    rng = np.random.default_rng(seed)
    for k in range(n_assoc):
        centre = (float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-0.9, 0.9)))))
        s = make_scene(n_images, n_sources, "fits", seed=seed + k, center=centre)
        images = write_fits_inputs(s, folder, f"a{k}")
        (folder / "manifests").mkdir(exist_ok=True)
        (folder / "manifests" / f"assoc{k:03d}.json").write_text(json.dumps({"images": [
            dict(im, wcs=f"../{im['wcs']}", catalog=f"../{im['catalog']}") for im in images]}))
        t = Table({c: s.refcat[c] for c in COLS})
        t["source_id"] = np.asarray(t["source_id"]) + (seed + k) * 10_000_000
        refs.append(t)
    return refs


def loop(folder: Path, outdir: Path, options: dict, store, part: tuple[int, int] = (0, 1)) -> tuple[float, float]:
    """What the tasks do, in this process, one association after the other: (seconds in all,
    seconds recording). ``part`` (i, n): only every n-th association from the i-th."""
    opts = default_options()
    opts.update(options)
    params = {k: v for k, v in opts.items() if k not in _NOT_IN_KEY}
    software = software_versions()
    recording = 0.0
    t0 = time.perf_counter()
    for a in read_associations(folder / "manifests")[part[0]::part[1]]:
        key = task_key(a, params, software)
        attempt = int(uuid.uuid4().int % 1_000_000_000)  # new each time, never skipped
        res = align_association(a, opts, output_folder(outdir, a), key, attempt, True)
        assert res.status == "success", (a.name, res.message)
        t1 = time.perf_counter()
        record_batch_task(store, BatchTask(key, attempt, a.name, a.manifest, a.manifest_sha256, res.status,
                                           res.n_images, res.n_aligned, rmse=res.rmse, seconds=res.seconds,
                                           worker="loop"), res.runs)
        recording += time.perf_counter() - t1
    return time.perf_counter() - t0, recording


def _loop_part(folder: str, outdir: str, options: dict, url: str, part: tuple[int, int], start: float) -> float:
    """One of two plain processes (no Dask): its share of the loop, from a common start time."""
    from aligner.batch.task import warm_up

    warm_up()
    store = astrodb.connect(url)
    store.catalogs()
    while time.time() < start:  # both begin together, once imported and connected
        time.sleep(0.001)
    took, _ = loop(Path(folder), Path(outdir), options, store, part)
    store.close()
    return took


def two_processes(folder: Path, outdir: Path, options: dict, url: str) -> float:
    """The machine's own ceiling: the loop split over two plain processes, each aligning and
    recording its half; seconds until both are done."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        start = time.time() + 15.0  # the processes' imports and connections are not timed
        parts = [pool.apply_async(_loop_part, (str(folder), str(outdir), options, url, (i, 2), start))
                 for i in range(2)]
        return max(p.get() for p in parts)


def cluster_run(folder: Path, outdir: Path, options: dict, workers: int) -> tuple[float, float]:
    """(batch seconds, cluster start seconds) with a new local cluster of ``workers`` processes."""
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    client.wait_for_workers(workers)
    start = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        res = align_batch(folder / "manifests", outdir, options=options, client=client, force=True)
        took = time.perf_counter() - t1
        assert res.ok, res.summary()
    finally:
        client.close()
        cluster.close()
    return took, start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", type=int, default=16, help="associations of 4 images x 2,000 sources")
    p.add_argument("--large", type=int, default=6, help="associations of 32 images x 10,000 sources")
    args = p.parse_args()
    results = {}
    with scratch_database(PG) as url:
        store = astrodb.connect(url)
        store.init()
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
            tmp = Path(tmp)
            refs = []
            for label, n, ni, ns, seed in (("4×2k", args.small, 4, 2000, 100), ("32×10k", args.large, 32, 10_000, 500)):
                (tmp / label).mkdir()
                log(f"writing {n} associations of {label}")
                refs += write_batch(tmp / label, n, ni, ns, seed)
            store.ingest_catalog(vstack(refs), "bench_ref")
            options = {"abs_refcat": "bench_ref", "store": url}
            for label, n in (("4×2k", args.small), ("32×10k", args.large)):
                folder = tmp / label
                runs = {"loop": [], 1: [], 2: [], "2 processes": []}
                starts, recording = [], []
                for _rep in range(2):  # alternated, twice
                    log(f"{label}: loop")
                    took, rec = loop(folder, tmp / "out-loop", options, store)
                    runs["loop"].append(took)
                    recording.append(rec)
                    log(f"{label}: two plain processes")
                    runs["2 processes"].append(two_processes(folder, tmp / "out-2p", options, url))
                    for w in (1, 2):
                        log(f"{label}: {w} worker(s)")
                        took, start = cluster_run(folder, tmp / f"out-{w}", options, w)
                        runs[w].append(took)
                        starts.append(start)
                best = {k: min(v) for k, v in runs.items()}
                results[label] = (n, best, float(np.median(starts)), recording[int(np.argmin(runs["loop"]))])
                log(f"{label}: {best}")
        store.close()
    lines = report_head("Batch alignment on a local Dask cluster (`bench/bench_batch.py`)", "bench/bench_batch.py",
                        "PostgreSQL 15 on the same machine holds the reference catalog and the records.")
    lines += ["Each association: relative then absolute alignment of synthetic FITS images (headers + ECSV "
             "catalogs) against a store catalog at the images' epoch, outputs and reports written, its runs "
             "recorded by the client. ALIGNER_THREADS=1 in every arm. Best of two runs per arm, the arms "
             "alternated; the cluster's start (not counted) is given apart.", "",
             "| associations | loop in one process (of it recording) | 1 worker | 2 workers | 2 workers / 1 | "
             "two plain processes (no Dask) / loop: the machine's ceiling | cluster overhead per task "
             "(1 worker vs loop) | cluster start |", "|---|---|---|---|---|---|---|---|"]
    for label, (n, best, start, rec) in results.items():
        per_min = {k: 60.0 * n / v for k, v in best.items()}
        lines.append(f"| {n} × ({label}) | {per_min['loop']:.1f}/min ({best['loop']:.1f} s; {rec:.1f} s) | "
                     f"{per_min[1]:.1f}/min ({best[1]:.1f} s) | {per_min[2]:.1f}/min ({best[2]:.1f} s) | "
                     f"{best[1] / best[2]:.2f}× | {best['loop'] / best['2 processes']:.2f}× "
                     f"({best['2 processes']:.1f} s) | {100.0 * (best[1] - best['loop']) / best['loop']:+.1f} % "
                     f"({1000.0 * (best[1] - best['loop']) / n:+.0f} ms) | {start:.1f} s |")
    write_report("batch", "\n".join(lines))


if __name__ == "__main__":
    main()
