"""A small end-to-end alignment on the embedded store, the alignment part of ``astrodb demo``
(``./run demo``).

A field of Gaia-like stars (proper motions, parallaxes, some without either) is put in a
temporary SQLite store as ``gaia_dr3`` at J2016.0; four dithered 1024x1024 images observed at
J2024.5 get source catalogs (2 mas centroid noise, 10% spurious detections) and WCSs with
pointing errors of 0.5-1" and 0.01 deg. ``relative_align`` then ``absolute_align(..., "GAIADR3",
epoch=2024.5)`` correct them, each run is recorded in the store's provenance tables, and the
absolute run is re-run from its record to show that it reproduces. The errors printed are
measured against the true WCSs, which the aligner never sees.
"""
from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

OBS_EPOCH, CAT_EPOCH = 2024.5, 2016.0
CENTER = (53.16, -27.79)
SCALE = 0.05       # arcsec / pixel
SIZE = 1024


def _tan(ra: float, dec: float, rot_deg: float = 0.0) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(SIZE + 1) / 2, (SIZE + 1) / 2]
    t = np.radians(rot_deg)
    w.wcs.cd = SCALE / 3600 * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    w.pixel_shape = (SIZE, SIZE)
    w.wcs.set()
    return w


def _error_mas(w: WCS, truth: WCS) -> float:
    g = np.linspace(0, SIZE - 1, 8)
    x, y = np.meshgrid(g, g)
    a = np.array(w.all_pix2world(x.ravel(), y.ravel(), 0))
    b = np.array(truth.all_pix2world(x.ravel(), y.ravel(), 0))
    d = np.hypot((a[0] - b[0]) * np.cos(np.radians(b[1])), a[1] - b[1]) * 3.6e6
    return float(np.sqrt(np.mean(d ** 2)))


def _stars(rng: np.random.Generator, n: int) -> Table:
    half = 1.6 * SIZE * SCALE / 3600 / 2
    dec = CENTER[1] + rng.uniform(-half, half, n)
    ra = CENTER[0] + rng.uniform(-half, half, n) / np.cos(np.radians(CENTER[1]))
    pmra, pmdec = rng.normal(3.0, 5.0, n), rng.normal(-4.0, 5.0, n)
    plx = rng.uniform(0.2, 3.0, n)
    two = rng.random(n) < 0.1                       # 2-parameter solutions: no pm, no parallax
    for a in (pmra, pmdec, plx):
        a[two] = np.nan
    err = np.where(two, 2.0, 0.3)
    return Table({"source_id": np.arange(1, n + 1), "ra": ra, "dec": dec, "ra_error": err, "dec_error": err,
                  "pmra": pmra, "pmdec": pmdec, "parallax": plx, "ref_epoch": np.full(n, CAT_EPOCH),
                  "mag": rng.uniform(16, 21, n)})


def run(out: Callable[[str], object] = print) -> None:
    """Run the demo (``astrodb demo`` finds it through the ``astrodb.demos`` entry point).

    Parameters
    ----------
    out : callable
        Called with each piece of text to show (default: print it).
    """
    import astrodb
    from astrodb.epoch import earth_barycentric_position, propagate
    from tweakwcs.correctors import FITSWCSCorrector

    from . import absolute_align, relative_align
    from .verify import verify_run

    rng = np.random.default_rng(2024)
    with tempfile.TemporaryDirectory(prefix="aligner-demo-") as tmp:
        store = astrodb.connect(f"sqlite:///{Path(tmp) / 'demo.sqlite'}")
        store.init()
        stars = _stars(rng, 3000)
        store.ingest_catalog(stars, "gaia_dr3", description="demo: synthetic Gaia-like stars at J2016.0")
        out(f"\nAlignment demo: {len(stars)} Gaia-like stars at J{CAT_EPOCH:g} in a temporary store; 4 images "
            f"observed at J{OBS_EPOCH:g}.")
        # Where the stars are when the images are taken: space motion plus the annual parallax
        # seen from the Earth (stars without pm stay put: their true motion is unknown).
        p = propagate(stars["ra"], stars["dec"], stars["pmra"], stars["pmdec"], stars["parallax"],
                      np.full(len(stars), np.nan), stars["ref_epoch"], OBS_EPOCH,
                      observer=earth_barycentric_position(OBS_EPOCH))
        correctors, truths = [], []
        for k, (dx, dy) in enumerate([(-0.15, -0.15), (0.15, -0.15), (-0.15, 0.15), (0.15, 0.15)]):
            fov = SIZE * SCALE / 3600
            ra0 = CENTER[0] + dx * fov / np.cos(np.radians(CENTER[1]))
            truth = _tan(ra0, CENTER[1] + dy * fov)
            x, y = truth.all_world2pix(p.ra, p.dec, 0)
            inside = (x > 0) & (x < SIZE - 1) & (y > 0) & (y < SIZE - 1)
            noise = 0.002 / SCALE
            x = x[inside] + rng.normal(0, noise, inside.sum())
            y = y[inside] + rng.normal(0, noise, inside.sum())
            fake = int(0.1 * len(x))
            cat = Table({"x": np.r_[x, rng.uniform(0, SIZE - 1, fake)], "y": np.r_[y, rng.uniform(0, SIZE - 1, fake)]})
            shift = rng.uniform(0.5, 1.0) / 3600
            ang = rng.uniform(0, 2 * np.pi)
            wrong = _tan(ra0 + shift * np.cos(ang) / np.cos(np.radians(CENTER[1])), CENTER[1] + dy * fov
                         + shift * np.sin(ang), rot_deg=0.01 * rng.choice([-1, 1]))
            correctors.append(FITSWCSCorrector(wrong, meta={"catalog": cat, "name": f"image_{k + 1}", "group_id": k,
                                                            "epoch": OBS_EPOCH}))
            truths.append(truth)
        before = [_error_mas(c.wcs, t) for c, t in zip(correctors, truths)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            relative_align(correctors, store=store)
            after_rel = [_error_mas(c.wcs, t) for c, t in zip(correctors, truths)]
            absolute_align(correctors, "GAIADR3", epoch=OBS_EPOCH, store=store)
        after_abs = [_error_mas(c.wcs, t) for c, t in zip(correctors, truths)]
        rows = Table({"image": [c.meta["name"] for c in correctors],
                      "sources": [len(c.meta["catalog"]) for c in correctors],
                      "error before": np.round(before, 1), "after relative": np.round(after_rel, 1),
                      "after absolute": np.round(after_abs, 3),
                      "Gaia matches": [c.meta["fit_result"].nref for c in correctors],
                      "rmse": np.round([c.meta["fit_result"].rmse * 1000 for c in correctors], 2),
                      "status": [c.meta["fit_result"].status for c in correctors]})
        out("WCS error against the truth (mas) and the absolute fit (rmse in mas):")
        out("\n".join(rows.pformat(max_lines=-1, max_width=-1)))
        runs = aligner_runs(store)
        out(f"\nProvenance: {len(runs)} runs recorded ({', '.join(runs)}); re-running the last from its record:")
        out(str(verify_run(store, runs[-1])))
        store.close()


def aligner_runs(store) -> list[str]:
    """The ids of the runs recorded in ``store``, oldest first."""
    import sqlalchemy as sa

    from astrodb.store.schema import prov_runs

    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(prov_runs.c.run_id).order_by(prov_runs.c.started_at)).scalars())
