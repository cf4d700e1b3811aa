#!/usr/bin/env python
"""Benchmark of epoch propagation: astrodb.epoch.propagate against erfa.pmsafe and astropy's
SkyCoord.apply_space_motion, in one run on the same synthetic Gaia-like stars.

    .venv/bin/python bench/bench_epoch.py [--n 1000000] [--repeats 7] [--dt 9.5]

Prints a Markdown section (command, machine, date, table) to stdout; writes nothing.

Timed (best and median of --repeats, the methods interleaved in every repeat):
- propagate, one thread and the default thread count (numpy releases the GIL per block);
- propagate with an observer (annual parallax added), default threads;
- erfa.pmsafe, the call only (inputs already in radians / arcsec, RA proper motion divided
  by cos dec): the model propagate reproduces;
- astropy SkyCoord.apply_space_motion (a wrapper of erfa.pmsafe), the call only (SkyCoord
  built beforehand; non-positive parallaxes replaced by 1e-6 mas since astropy's Distance
  needs a positive parallax).
Also reported: the largest difference between propagate and erfa.pmsafe on these stars.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import astropy
import astropy.units as u
import erfa
import numpy as np
from astropy.coordinates import Distance, SkyCoord
from astropy.time import Time

from astrodb import epoch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_store import code_version, command_line  # noqa: E402  (the run-header helpers)

REF_EPOCH = 2016.0


def synthetic(n: int, seed: int) -> dict[str, np.ndarray]:
    """Gaia-DR3-like columns: ~25 % non-positive parallaxes, ~3 % radial velocities, a few
    fast nearby stars, some sources near the poles."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    plx = rng.normal(0.6, 0.8, n)
    pmra = rng.standard_t(3, n) * 6.0
    pmdec = rng.standard_t(3, n) * 6.0
    rv = np.full(n, np.nan)
    has_rv = rng.random(n) < 0.03
    rv[has_rv] = rng.normal(0.0, 40.0, has_rv.sum())
    fast = rng.random(n) < 1e-3
    plx[fast] = 10 ** rng.uniform(1.0, 2.8, fast.sum())
    pmra[fast] *= 100.0
    pmdec[fast] *= 100.0
    return dict(ra=ra, dec=dec, pmra=pmra, pmdec=pmdec, parallax=plx, radial_velocity=rv)


def machine() -> str:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:
        avail = os.cpu_count()
    return (f"nproc {avail} (os.cpu_count {os.cpu_count()}), CPU {model}, "
            f"{platform.system()} {platform.machine()}; Python {platform.python_version()}, "
            f"numpy {np.__version__}, pyerfa {erfa.__version__} (ERFA {erfa.version.erfa_version}),"
            f" astropy {astropy.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="number of stars")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--dt", type=float, default=9.5, help="epoch - ref_epoch (yr)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    cat = synthetic(args.n, args.seed)
    target = REF_EPOCH + args.dt
    obs = epoch.earth_barycentric_position(target)

    # erfa.pmsafe inputs, converted once outside the timing.
    d = np.radians(cat["dec"])
    e_in = (np.radians(cat["ra"]), d, cat["pmra"] * erfa.DMAS2R / np.cos(d),
            cat["pmdec"] * erfa.DMAS2R, cat["parallax"] * 1e-3,
            np.nan_to_num(cat["radial_velocity"]),
            erfa.DJ00, (REF_EPOCH - 2000.0) * 365.25, erfa.DJ00, (target - 2000.0) * 365.25)
    # astropy: built outside the timing.
    plx_pos = np.where(cat["parallax"] > 0, cat["parallax"], 1e-6)
    sc = SkyCoord(ra=cat["ra"] * u.deg, dec=cat["dec"] * u.deg,
                  distance=Distance(parallax=plx_pos * u.mas),
                  pm_ra_cosdec=cat["pmra"] * u.mas / u.yr, pm_dec=cat["pmdec"] * u.mas / u.yr,
                  radial_velocity=np.nan_to_num(cat["radial_velocity"]) * u.km / u.s,
                  obstime=Time(REF_EPOCH, format="jyear", scale="tdb"), frame="icrs")
    t_new = Time(target, format="jyear", scale="tdb")

    methods = {
        "astrodb.epoch.propagate, 1 thread":
            lambda: epoch.propagate(**cat, ref_epoch=REF_EPOCH, epoch=target, workers=1),
        "astrodb.epoch.propagate, default threads":
            lambda: epoch.propagate(**cat, ref_epoch=REF_EPOCH, epoch=target),
        "astrodb.epoch.propagate + observer, default threads":
            lambda: epoch.propagate(**cat, ref_epoch=REF_EPOCH, epoch=target, observer=obs),
        "astrodb.epoch.propagate + observer, 1 thread":
            lambda: epoch.propagate(**cat, ref_epoch=REF_EPOCH, epoch=target, observer=obs,
                                    workers=1),
        "erfa.pmsafe (call only)": lambda: erfa.pmsafe(*e_in),
        "astropy SkyCoord.apply_space_motion (call only)":
            lambda: sc.apply_space_motion(new_obstime=t_new),
    }
    times: dict[str, list[float]] = {k: [] for k in methods}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # ERFA's "distance overridden" warnings
        for f in methods.values():                  # warm-up
            f()
        for _ in range(args.repeats):
            for k, f in methods.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
        ours = epoch.propagate(**cat, ref_epoch=REF_EPOCH, epoch=target)
        ra2, dec2, *_ = erfa.pmsafe(*e_in)
    diff = erfa.seps(np.radians(ours.ra), np.radians(ours.dec), ra2, dec2) / erfa.DMAS2R

    base = min(times["erfa.pmsafe (call only)"])
    cmd = command_line("bench/bench_epoch.py", sys.argv[1:])
    print("## Epoch propagation benchmark\n")
    print(f"- command: `{cmd}` (in the repository root)")
    print(f"- machine: {machine()}")
    print(f"- measured on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d}; code: {code_version()}")
    print(f"- data: {args.n:,} synthetic Gaia-like stars (seed {args.seed}), "
          f"{REF_EPOCH} -> {target}; best / median of {args.repeats} interleaved repeats")
    print(f"- max |propagate - erfa.pmsafe| on these stars: {diff.max():.2e} mas\n")
    print("| method | best (ms) | median (ms) | Mstars/s | speed-up vs erfa.pmsafe |")
    print("|---|---:|---:|---:|---:|")
    for k, ts in times.items():
        best, med = min(ts), float(np.median(ts))
        print(f"| {k} | {best * 1e3:.1f} | {med * 1e3:.1f} | {args.n / best / 1e6:.1f} | "
              f"{base / best:.2f}x |")


if __name__ == "__main__":
    main()
