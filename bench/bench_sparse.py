#!/usr/bin/env python
"""Absolute alignment of sparse fields: the aligner against stcal.tweakreg 1.20 on synthetic
single-image scenes with known truth (tests/support/aligner_synth.py), trial by trial on identical inputs.

    .venv/bin/python bench/bench_sparse.py [--trials 50] [--kinds fits,gwcs] [--n 3,5,8,15]
                                           [--spurious 0.1,0.5,0.9] [--shifts 0.5,1,2,3]
                                           [--jobs 2] [--json PATH] [--write]

The default 96 cells x 50 trials take about 9 minutes with 2 processes on 2 cores. Prints one
Markdown table per WCS kind; ``--write`` replaces (or appends) the section
"## Aligner: sparse fields" of BENCHMARKS.md, leaving the other sections as they are.

Scenes (one per trial, one image each)
--------------------------------------
A 2048 x 2048 detector at 0.05 arcsec/pixel (JWST/NIRCam-like, 102" on a side, no distortion),
2 mas centroid noise per axis, a reference catalog with 1 mas noise per axis at the observation
epoch (no proper-motion error to absorb). Exactly ``N`` reference stars are on the chip (true
positions), all detected: the ``N`` brightest detected stars on the chip of a
``make_scene(n_images=1)`` scene; its other stars on the chip are removed from the sky (catalog
and reference). Off the chip, each reference star of the scene's star box (the chip plus
2 x shift + 10" on every side) is kept with probability ``N / (true stars on the chip)``, so that
the reference density around the chip is the one on it, as a cone search would return. The
image catalog is those ``N`` detections plus ``K = round(N f / (1 - f))`` spurious detections
(uniform on the chip), ``f`` the spurious fraction: detections that are not reference stars.
The pointing error is a shift of exactly the given size (arcsec) in a uniformly random
direction plus a rotation of 0.005 deg (random sign) about the chip centre. Trial ``k`` of a
cell uses a seed drawn from ``(--seed, N, f, shift, k)`` (the same sky for both WCS kinds); a
draw that leaves fewer than ``N`` detected stars on the chip is redrawn (next sub-seed).

Tools, with the same reference (an ECSV file with RA/DEC) and fresh copies of the same WCS and
catalog each
----------------------------------------------------------------------------------------------
- ours: ``aligner.absolute_align(correctors, path, epoch=..., abs_minobj=min(5, N),
  provenance=False)``, every other parameter at its default (abs_searchrad 6", abs_separation
  1", abs_tolerance 0.7", rshift, 3 clipping rounds at 3 sigma); ``AlignmentError`` (nothing
  aligned) is caught, the status is the corrector's ``fit_info['status']``.
- stcal: ``stcal.tweakreg.tweakreg.absolute_align(correctors, path, None, None, None,
  abs_minobj=min(5, N), ...)`` on tweakwcs's own ``FITSWCSCorrector`` / ``JWSTWCSCorrector``,
  in a forked child per trial (``--timeout``). The same sky distances: its JWST corrector
  works in arcsec (the defaults as they are); its FITS corrector works in pixels of the image,
  so there abs_searchrad, abs_separation and abs_tolerance are the arcsec values divided by the
  pixel scale (120, 20 and 14 pixels).

With ``--jobs`` > 1 the trials run in that many processes; each tool then runs on one thread
(``ALIGNER_THREADS=1`` and one BLAS thread unless set in the environment), so the times
compare one core each.

Measures
--------
- error: the largest great-circle distance between the corrected and the true WCS over the
  chip's four corner pixels and its centre (arcsec; a failed fit keeps the pointing error).
- correct success: status SUCCESS and error <= 0.25".
- formal error of a SUCCESS: from the pairs the fit used (``matched_input_idx``, for stcal
  those of its ``fitmask``), the known per-axis noise of a pair,
  ``sigma = hypot(2 mas, 1 mas)``, and the fit geometry's linearised least-squares design about
  the pairs' mean position (shift: 2 parameters; rshift: 2 + a small rotation; rscale: + scale;
  general: 6), ``C = sigma^2 (A^T A)^-1`` propagated to the same five points: the largest
  ``sqrt(trace)`` of the 2 x 2 position covariance there (the 1-sigma radial error).
- false success: status SUCCESS with error > 3 x that formal error (counted apart from the
  0.25" criterion, as is a SUCCESS farther than 0.25"). For a correct fit of 3-15 true pairs a
  simulation of this definition flags 0.15-0.3 % of the fits by chance (the error at a corner
  is mostly the rotation's, one-dimensional, and P(|z| > 3) = 0.27 %): about one such flag in
  ten 50-trial cells.

Per cell: trials, each tool's rate of correct successes, the number of trials where both report
SUCCESS and each tool's median error over them, false successes and SUCCESSes beyond 0.25" of
each tool, each tool's median time per call, and the failure statuses (numbers shown as #,
counted). Targets per cell: our rate of correct successes >= stcal's; our median error <= stcal's
where both succeed (medians within 1 micro-arcsec are equal: the same fit computed twice); no
false success of ours.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import re
import signal
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
# The repository first (the packages, and tests.support), then the benchmarks' shared helpers.
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
# One thread per tool and process (read at import): the trials, not the fits, are parallel.
for _var in ("ALIGNER_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402

import aligner  # noqa: E402
from tests.support.aligner_synth import SimScene, make_correctors, make_scene  # noqa: E402
from bench_align import cpu_model, package_versions, write_section  # noqa: E402
from bench_store import code_version, command_line  # noqa: E402

SECTION = "## Aligner: sparse fields"
PIXEL_SCALE = 0.05              # arcsec / pixel
SHAPE = (2048, 2048)            # (ny, nx)
CENTROID_MAS = 2.0              # per axis
REF_NOISE_MAS = 1.0             # per axis
ROTATION_DEG = 0.005            # pointing rotation magnitude (random sign)
CORRECT_ARCSEC = 0.25           # a correct success is within this of the truth
FALSE_SIGMAS = 3.0              # a SUCCESS farther than this many formal errors is false
PAIR_SIGMA_ARCSEC = math.hypot(CENTROID_MAS, REF_NOISE_MAS) / 1000.0
#: stcal's and our defaults (arcsec): divided by the pixel scale for stcal's FITS corrector.
SKY_PARAMS = {"abs_searchrad": 6.0, "abs_separation": 1.0, "abs_tolerance": 0.7}
#: Median errors closer than this (arcsec) are equal: two implementations of one fit differ by ~1e-12.
SAME_ARCSEC = 1e-6
MAX_DRAWS = 100                 # redraws of a scene before giving up on a trial
WARM_UP_SEED = 987_654_321      # a sky no trial of a run with a small --seed uses
_ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0


# ============================================================================================
# scenes
# ============================================================================================
@dataclass(frozen=True)
class Cell:
    """One combination of WCS kind, reference stars on the chip, spurious fraction and shift."""

    kind: str
    n: int
    spurious: float
    shift: float

    @property
    def minobj(self) -> int:
        """``abs_minobj`` given to both tools."""
        return min(5, self.n)

    def label(self) -> str:
        """Short text for logs."""
        return f"{self.kind} N={self.n} f={self.spurious:g} shift={self.shift:g}\""


def trial_seed(base: int, cell: Cell, k: int, draw: int) -> int:
    """Seed of draw ``draw`` of trial ``k`` of ``cell`` (independent of the WCS kind).

    Parameters
    ----------
    base : int
        The run's ``--seed``.
    cell : Cell
    k, draw : int
        Trial number within the cell and redraw number within the trial.

    Returns
    -------
    int
        A 32-bit seed for :func:`make_scene`.
    """
    key = [base, cell.n, int(round(cell.spurious * 1000)), int(round(cell.shift * 1000)), k, draw]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def _on_chip(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pixels inside the chip's area (NaN, e.g. outside a gwcs bounding box, is off)."""
    ny, nx = SHAPE
    with np.errstate(invalid="ignore"):
        return (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)


def sparse_scene(cell: Cell, seed: int) -> SimScene | None:
    """A single-image scene with exactly ``cell.n`` detected reference stars on the chip.

    Parameters
    ----------
    cell : Cell
    seed : int

    Returns
    -------
    SimScene or None
        The scene with its image catalog and reference trimmed as described in the module
        docstring (``truth_index`` and ``ref_truth_index`` still index ``stars``); None when the
        draw has fewer than ``cell.n`` detected stars or ``K`` spurious rows on the chip.
    """
    n, f = cell.n, cell.spurious
    k_spur = int(round(n * f / (1.0 - f)))
    # Enough expected stars that N detected ones are on the chip in most draws.
    n_sources = n + 2.0 * math.sqrt(n) + 2.0
    scene = make_scene(1, n_sources, cell.kind, seed=seed, shift_range=(cell.shift, cell.shift),
                       rot_range=(ROTATION_DEG, ROTATION_DEG), centroid_noise_mas=CENTROID_MAS,
                       spurious_fraction=f, ref_noise_mas=REF_NOISE_MAS, ref_fraction=1.0,
                       pixel_scale=PIXEL_SCALE, shape=SHAPE, sip=False, epoch_gap=0.0, fast_fraction=0.0)
    im = scene.images[0]
    stars = scene.stars
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sx, sy = im.wcs_true.world_to_pixel_values(np.asarray(stars["ra"]), np.asarray(stars["dec"]))
    on = _on_chip(np.asarray(sx, float), np.asarray(sy, float))
    truth = im.truth_index
    detected = np.unique(truth[truth >= 0])
    detected = detected[on[detected]]
    spur_rows = np.nonzero(truth < 0)[0]
    if len(detected) < n or len(spur_rows) < k_spur:
        return None
    rng = np.random.default_rng([seed, 1])
    mag = np.asarray(stars["mag"])
    chosen = detected[np.argsort(mag[detected], kind="stable")[:n]]
    # Off the chip, the density of the N on it (a cone around a sparse chip is as sparse).
    keep_off = ~on & (rng.uniform(size=len(stars)) < n / max(int(on.sum()), 1))
    in_ref = keep_off.copy()
    in_ref[chosen] = True
    ref_rows = np.nonzero(in_ref[scene.ref_truth_index])[0]
    rows = np.sort(np.concatenate([np.nonzero(np.isin(truth, chosen))[0],
                                   rng.choice(spur_rows, k_spur, replace=False)]))
    if int(np.count_nonzero(on[scene.ref_truth_index[ref_rows]])) != n:  # pragma: no cover - a bug here
        raise RuntimeError(f"{cell.label()} seed {seed}: the reference does not have {n} stars on the chip")
    image = replace(im, catalog=im.catalog[rows], truth_index=truth[rows], sigma_px=im.sigma_px[rows])
    return replace(scene, images=[image], refcat=scene.refcat[ref_rows],
                   ref_truth_index=scene.ref_truth_index[ref_rows],
                   params=dict(scene.params, n_ref_on_chip=n, n_spurious=k_spur,
                               n_ref_off_chip=int(keep_off[scene.ref_truth_index].sum())))


def draw_scene(base: int, cell: Cell, k: int) -> tuple[SimScene, int]:
    """The first valid draw of trial ``k`` (see :func:`sparse_scene`) and its seed."""
    for draw in range(MAX_DRAWS):
        seed = trial_seed(base, cell, k, draw)
        scene = sparse_scene(cell, seed)
        if scene is not None:
            return scene, seed
    raise RuntimeError(f"no valid scene for {cell.label()} trial {k} in {MAX_DRAWS} draws")


# ============================================================================================
# errors
# ============================================================================================
def check_points() -> tuple[np.ndarray, np.ndarray]:
    """0-based pixels of the chip's four corner pixels and its centre."""
    ny, nx = SHAPE
    return (np.array([0.0, nx - 1.0, 0.0, nx - 1.0, (nx - 1) / 2.0]),
            np.array([0.0, 0.0, ny - 1.0, ny - 1.0, (ny - 1) / 2.0]))


def _unit(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 3) of RA/Dec in degrees."""
    a, d = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack((np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)), axis=-1)


def _sky(wcs: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Unit vectors of 0-based pixels through an astropy WCS (with SIP) or a gwcs."""
    if hasattr(wcs, "forward_transform"):
        ra, dec = wcs(x, y, with_bounding_box=False)
    else:
        ra, dec = wcs.all_pix2world(x, y, 0)
    return _unit(np.asarray(ra, float), np.asarray(dec, float))


def chip_error_arcsec(wcs: Any, wcs_true: Any) -> float:
    """Largest distance (arcsec) between two WCSs over the chip's corners and centre.

    Parameters
    ----------
    wcs, wcs_true : astropy.wcs.WCS or gwcs.WCS

    Returns
    -------
    float
    """
    x, y = check_points()
    chord = np.linalg.norm(_sky(wcs, x, y) - _sky(wcs_true, x, y), axis=-1)
    return float(np.max(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))) * _ARCSEC_PER_RAD)


def _tangent_arcsec(v: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Gnomonic coordinates (arcsec) of unit vectors ``v`` (m, 3) about unit vector ``center``."""
    east = np.array([-center[1], center[0], 0.0])
    east /= np.linalg.norm(east)
    north = np.cross(center, east)
    d = v @ center
    return np.stack((v @ east / d, v @ north / d), axis=-1) * _ARCSEC_PER_RAD


def fit_jacobian(d: np.ndarray, fitgeom: str) -> np.ndarray:
    """Derivative of a fitted position with respect to the fit's parameters.

    Parameters
    ----------
    d : numpy.ndarray (m, 2)
        Positions relative to the linearisation centre (arcsec).
    fitgeom : {"shift", "rshift", "rscale", "general"}
        Parameters: shift (tx, ty); rshift adds a small rotation; rscale a rotation and a
        scale; general the four terms of a 2 x 2 matrix.

    Returns
    -------
    numpy.ndarray (m, 2, p)
    """
    m = len(d)
    dx, dy = d[:, 0], d[:, 1]
    zero, one = np.zeros(m), np.ones(m)
    cols = [(one, zero), (zero, one)]
    if fitgeom in ("rshift", "rscale"):
        cols.append((-dy, dx))
    if fitgeom == "rscale":
        cols.append((dx, dy))
    if fitgeom == "general":
        cols += [(dx, zero), (dy, zero), (zero, dx), (zero, dy)]
    elif fitgeom not in ("shift", "rshift", "rscale"):
        raise ValueError(f"unknown fit geometry {fitgeom!r}")
    return np.stack([np.stack(c, axis=-1) for c in cols], axis=-1)


def formal_error_arcsec(wcs: Any, x: np.ndarray, y: np.ndarray, fitgeom: str,
                        sigma: float = PAIR_SIGMA_ARCSEC) -> float:
    """1-sigma radial position error of a fit, the largest over the chip's corners and centre.

    Parameters
    ----------
    wcs : astropy.wcs.WCS or gwcs.WCS
        Places the pairs and the check points on the sky (any WCS of the image does: only the
        geometry matters).
    x, y : numpy.ndarray
        0-based pixels of the image sources of the pairs the fit used.
    fitgeom : str
        See :func:`fit_jacobian`.
    sigma : float
        Per-axis noise of a pair (arcsec): centroid and reference noise added in quadrature.

    Returns
    -------
    float
        ``max_p sqrt(trace(J_p C J_p^T))`` with ``C = sigma^2 (A^T A)^-1``, ``A`` the stacked
        ``J`` of the pairs; inf when the pairs do not determine the parameters.
    """
    cx, cy = check_points()
    v = _sky(wcs, np.concatenate([np.asarray(x, float), cx]), np.concatenate([np.asarray(y, float), cy]))
    xy = _tangent_arcsec(v, v[-1])
    pairs, points = xy[:-5], xy[-5:]
    if len(pairs) == 0:
        return math.inf
    c = pairs.mean(axis=0)
    a = fit_jacobian(pairs - c, fitgeom).reshape(-1, fit_jacobian(c[None], fitgeom).shape[-1])
    normal = a.T @ a
    if np.linalg.matrix_rank(normal) < normal.shape[0]:
        return math.inf
    cov = sigma ** 2 * np.linalg.inv(normal)
    jp = fit_jacobian(points - c, fitgeom)
    var = np.einsum("kip,pq,kiq->k", jp, cov, jp)
    return float(np.sqrt(var.max()))


def assess(corrector: Any, used_rows: np.ndarray, status: str, fitgeom: str, image: Any) -> dict:
    """Error, formal error and verdicts of one tool's result on one image.

    Parameters
    ----------
    corrector : tweakwcs corrector
        After the tool ran (its ``wcs`` is the corrected one).
    used_rows : numpy.ndarray of int
        Catalog rows of the pairs the fit used.
    status : str
    fitgeom : str
    image : SimImage

    Returns
    -------
    dict
        ``status``, ``error`` (arcsec), ``formal`` (arcsec, NaN unless SUCCESS), ``correct``,
        ``false``, ``n_used`` and ``n_used_true`` (used pairs whose source is a real star).
    """
    err = chip_error_arcsec(corrector.wcs, image.wcs_true)
    ok = status == "SUCCESS"
    formal = math.nan
    used_rows = np.asarray(used_rows, np.intp)
    if ok:
        cat = image.catalog
        formal = formal_error_arcsec(corrector.wcs, np.asarray(cat["x"])[used_rows],
                                     np.asarray(cat["y"])[used_rows], fitgeom)
    return {"status": status, "error": err, "formal": formal, "correct": bool(ok and err <= CORRECT_ARCSEC),
            "false": bool(ok and err > FALSE_SIGMAS * formal), "n_used": int(len(used_rows)),
            "n_used_true": int(np.count_nonzero(image.truth_index[used_rows] >= 0)) if len(used_rows) else 0}


# ============================================================================================
# the two tools
# ============================================================================================
def run_ours(scene: SimScene, ref_path: str, minobj: int) -> dict:
    """Our absolute alignment of the scene's image; see the module docstring."""
    corr = make_correctors(scene)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        try:
            aligner.absolute_align(corr, ref_path, epoch=scene.params["epoch"], abs_minobj=minobj,
                                   provenance=False)
        except aligner.AlignmentError:
            pass  # every image failed: the status says why
        elapsed = time.perf_counter() - t0
    info = corr[0].meta.get("fit_info", {})
    status = str(info.get("status", "none"))
    used = info.get("matched_input_idx", np.empty(0, np.intp)) if status == "SUCCESS" else np.empty(0, np.intp)
    out = assess(corr[0], used, status, str(info.get("fitgeom", "rshift")), scene.images[0])
    out["time"] = elapsed
    return out


def stcal_params(kind: str) -> dict:
    """stcal's distance parameters for a WCS kind: arcsec for gwcs, pixels for FITS."""
    scale = 1.0 if kind == "gwcs" else 1.0 / PIXEL_SCALE
    return {k: v * scale for k, v in SKY_PARAMS.items()}


def _stcal_child(conn: Connection, scene: SimScene, ref_path: str, minobj: int) -> None:
    """Body of the forked child: stcal's absolute step, its assessment sent through ``conn``."""
    import logging
    try:
        logging.disable(logging.CRITICAL)
        warnings.simplefilter("ignore")
        from stcal.tweakreg import tweakreg
        corr = make_correctors(scene)
        t0 = time.perf_counter()
        error = None
        try:
            tweakreg.absolute_align(corr, ref_path, None, None, None, abs_minobj=minobj,
                                    **stcal_params(scene.params["kind"]))
        except BaseException as exc:  # noqa: BLE001 - stcal's TweakregError derives from BaseException
            error = f"{type(exc).__name__}: {str(exc)[:160]}"
        elapsed = time.perf_counter() - t0
        info = corr[0].meta.get("fit_info", {})
        status = str(info.get("status", "none")) if error is None else f"EXCEPTION: {error}"
        used = np.empty(0, np.intp)
        if status == "SUCCESS":
            idx = np.asarray(info["matched_input_idx"], np.intp)
            mask = np.asarray(info.get("fitmask", np.ones(len(idx), bool)), bool)
            used = idx[mask] if len(mask) == len(idx) else idx
        out = assess(corr[0], used, status, str(info.get("fitgeom", "rshift")), scene.images[0])
        out["time"] = elapsed
        conn.send(out)
    except BaseException as exc:  # noqa: BLE001 - the child reports any failure to the parent
        try:
            conn.send({"status": f"EXCEPTION: {type(exc).__name__}: {str(exc)[:160]}"})
        except Exception:  # noqa: BLE001 - the parent reports a dead child
            pass
    finally:
        try:
            conn.close()
        finally:
            os._exit(0)  # no atexit handlers / finalizers of the parent's objects in the child


def run_stcal(scene: SimScene, ref_path: str, minobj: int, timeout: float) -> dict:
    """stcal's absolute step in a forked child (os.fork: pool workers may not start processes).

    Returns
    -------
    dict
        As :func:`assess` plus ``time``; status ``TIMEOUT`` or ``EXCEPTION: ...`` when the child
        did not answer.
    """
    rd, wr = Pipe(duplex=False)
    pid = os.fork()
    if pid == 0:
        rd.close()
        _stcal_child(wr, scene, ref_path, minobj)
    wr.close()
    try:
        if not rd.poll(timeout):
            os.kill(pid, signal.SIGKILL)
            return {"status": "TIMEOUT", "time": timeout}
        try:
            return rd.recv()
        except EOFError:
            return {"status": "EXCEPTION: child died"}
    finally:
        rd.close()
        os.waitpid(pid, 0)


def warm_up(kinds: Sequence[str], scratch: str) -> None:
    """Run both tools once per WCS kind in this process, results discarded.

    The first call of each pays lazy imports and caches (0.5-1 s); stcal's forked children
    inherit a warm process, so no trial's time includes them.

    Parameters
    ----------
    kinds : sequence of str
    scratch : str
        Directory for the reference file.
    """
    import logging

    from stcal.tweakreg import tweakreg
    level = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        for kind in kinds:
            cell = Cell(kind, 8, 0.1, 1.0)
            scene, _ = draw_scene(WARM_UP_SEED, cell, 0)
            with tempfile.TemporaryDirectory(dir=scratch) as tmp:
                path = str(Path(tmp) / "ref.ecsv")
                scene.refcat["RA", "DEC"].write(path, format="ascii.ecsv")
                run_ours(scene, path, cell.minobj)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        tweakreg.absolute_align(make_correctors(scene), path, None, None, None,
                                                abs_minobj=cell.minobj, **stcal_params(kind))
                    except BaseException:  # noqa: BLE001 - stcal's TweakregError; only a warm-up
                        pass
    finally:
        logging.disable(level)


def run_trial(task: tuple[Cell, int, int, float, str]) -> dict:
    """Both tools on trial ``k`` of a cell.

    Parameters
    ----------
    task : (Cell, k, base seed, stcal timeout, scratch directory)

    Returns
    -------
    dict
        ``cell`` fields, ``k``, ``seed``, scene counts and ``ours`` / ``stcal`` (see
        :func:`assess`).
    """
    cell, k, base, timeout, scratch = task
    scene, seed = draw_scene(base, cell, k)
    im = scene.images[0]
    nref_on = int(np.count_nonzero(im.truth_index >= 0))
    if nref_on != cell.n:  # pragma: no cover - a broken scene would falsify the whole cell
        raise RuntimeError(f"{cell.label()} trial {k}: {nref_on} reference detections, not {cell.n}")
    # One name for every trial's file: statuses quoting it then count together.
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        ref_path = str(Path(tmp) / "reference.ecsv")
        Table({"RA": np.asarray(scene.refcat["RA"], float), "DEC": np.asarray(scene.refcat["DEC"], float)}
              ).write(ref_path, format="ascii.ecsv")
        # stcal first: its child is forked before our call has started any thread.
        theirs = run_stcal(scene, ref_path, cell.minobj, timeout)
        ours = run_ours(scene, ref_path, cell.minobj)
    return {"kind": cell.kind, "n": cell.n, "spurious": cell.spurious, "shift": cell.shift, "k": k,
            "seed": seed, "n_detections": len(im.catalog), "n_ref": len(scene.refcat),
            "ours": ours, "stcal": theirs}


# ============================================================================================
# summary
# ============================================================================================
def reason(status: str) -> str:
    """A status with its numbers replaced by '#' and the reference file's directory dropped, so
    that statuses of one kind count together."""
    status = re.sub(r"\S*/reference\.ecsv", "reference.ecsv", status)
    return re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", status)


def summarize(trials: Sequence[dict]) -> dict:
    """Per-cell figures of one cell's trials (see the module docstring)."""
    def col(tool: str, key: str, default: Any = math.nan) -> np.ndarray:
        return np.array([t[tool].get(key, default) for t in trials])

    both = (col("ours", "status", "") == "SUCCESS") & (col("stcal", "status", "") == "SUCCESS")
    out = {"trials": len(trials), "both": int(both.sum())}
    for tool in ("ours", "stcal"):
        st = col(tool, "status", "")
        out[tool] = {
            "rate": float(np.mean(col(tool, "correct", False).astype(bool))),
            "success": int(np.sum(st == "SUCCESS")),
            "median_both": float(np.median(col(tool, "error")[both])) if both.any() else math.nan,
            "false": int(np.sum(col(tool, "false", False).astype(bool))),
            "wrong": int(np.sum((st == "SUCCESS") & (col(tool, "error").astype(float) > CORRECT_ARCSEC))),
            "failures": dict(Counter(reason(s) for s in st if s != "SUCCESS").most_common()),
            "time": float(np.nanmedian(col(tool, "time").astype(float))),
        }
    return out


def _pct(v: float) -> str:
    return f"{100.0 * v:.0f} %"


def _mas(v: float) -> str:
    if not math.isfinite(v):
        return "—"
    v *= 1000.0
    return f"{v:.2f}" if v < 10 else f"{v:.0f}"


def render(cells: Sequence[Cell], summaries: dict, args: argparse.Namespace, meta: dict) -> str:
    """The Markdown section: settings, one table per kind, targets, failure legend."""
    L = [SECTION, "",
         f"- Command: `{meta['command']}` (in the repository root)",
         f"- Measured on {meta['date']}; wall time {meta['wall_min']:.1f} min; {args.jobs} process(es)",
         f"- Machine: {meta['nproc']} CPUs (`nproc`), {meta['cpu']}; load average (1, 5, 15 min) at the start: "
         f"{meta['load_start']}; at the end: {meta['load_end']}",
         f"- Versions: {meta['versions']}",
         f"- Code: {meta['code']}",
         f"- Scenes: one {SHAPE[1]}×{SHAPE[0]} image at {PIXEL_SCALE}″/px, no distortion; N reference stars on "
         f"the chip, all detected; K = round(N f / (1 − f)) spurious detections; reference stars around the chip "
         f"at the chip's density; centroid noise {CENTROID_MAS:g} mas, reference noise {REF_NOISE_MAS:g} mas per "
         f"axis; pointing error: a shift of exactly the given size in a random direction and a "
         f"{ROTATION_DEG:g}° rotation (random sign); {args.trials} trials per cell, seeds from "
         f"(--seed {args.seed}, N, f, shift, trial), the same skies for both WCS kinds.",
         f"- Both tools: the same ECSV reference, fresh copies of the same WCS and catalog, abs_minobj = min(5, N), "
         f"other parameters at their defaults (abs_searchrad 6″, abs_separation 1″, abs_tolerance 0.7″, rshift, "
         f"3 × 3σ clipping); stcal's FITS corrector works in pixels: 120, 20, 14 px there. stcal runs in a forked "
         f"child per trial (timeout {args.timeout:g} s); times are each tool's call alone, one thread each.",
         f"- Error: the largest distance between the corrected and the true WCS over the chip's corners and centre. "
         f"Correct = SUCCESS within {CORRECT_ARCSEC}″. Formal error of a SUCCESS: σ²(AᵀA)⁻¹ of the fit's "
         f"linearised design over the pairs it used, σ = hypot({CENTROID_MAS:g}, {REF_NOISE_MAS:g}) mas per axis, "
         f"propagated to the same 5 points (largest 1σ radial error); false = SUCCESS with error > "
         f"{FALSE_SIGMAS:g} × formal (for a correct fit of N = 3–15 true pairs a simulation flags 0.15–0.3 % of "
         f"fits by chance: the error at a corner is mostly the rotation's, one-dimensional); medians within "
         f"{SAME_ARCSEC * 1e6:g} µas count as equal.", ""]
    codes: dict[str, str] = {}

    def fail_cell(fails: dict) -> str:
        parts = []
        for text, count in fails.items():
            code = codes.setdefault(text, f"F{len(codes) + 1}")
            parts.append(f"{code} {count}")
        return ", ".join(parts) or "—"

    for kind in args.kinds:
        mine = [c for c in cells if c.kind == kind and c in summaries]
        if not mine:
            continue
        L += [f"### {kind}", "",
              "| N | spurious | shift (″) | trials | correct: ours | correct: stcal | both SUCCESS | median error "
              "ours (mas) | median error stcal (mas) | false SUCCESS ours | false SUCCESS stcal "
              "| SUCCESS > 0.25″ ours | SUCCESS > 0.25″ stcal | time ours (ms) | time stcal (ms) | our failures "
              "| stcal failures |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for c in mine:
            s = summaries[c]
            o, t = s["ours"], s["stcal"]
            L.append(f"| {c.n} | {_pct(c.spurious)} | {c.shift:g} | {s['trials']} | {_pct(o['rate'])} | "
                     f"{_pct(t['rate'])} | {s['both']} | {_mas(o['median_both'])} | {_mas(t['median_both'])} | "
                     f"{o['false']} | {t['false']} | {o['wrong']} | {t['wrong']} | {1e3 * o['time']:.0f} | "
                     f"{1e3 * t['time']:.0f} | "
                     f"{fail_cell(o['failures'])} | {fail_cell(t['failures'])} |")
        L.append("")
    L += ["### Targets", "", "| WCS | correct-success rate ≥ stcal's | median error ≤ stcal's where both succeed "
          "| no false SUCCESS of ours | false SUCCESS (ours / stcal, all trials) |", "|---|---|---|---|---|"]
    for kind in args.kinds:
        mine = [summaries[c] for c in cells if c.kind == kind and c in summaries]
        if not mine:
            continue
        rate = sum(s["ours"]["rate"] >= s["stcal"]["rate"] for s in mine)
        comparable = [s for s in mine if s["both"]]
        med = sum(s["ours"]["median_both"] <= s["stcal"]["median_both"] + SAME_ARCSEC for s in comparable)
        clean = sum(s["ours"]["false"] == 0 for s in mine)
        L.append(f"| {kind} | {rate}/{len(mine)} cells | {med}/{len(comparable)} cells (where both succeed at least "
                 f"once) | {clean}/{len(mine)} cells | {sum(s['ours']['false'] for s in mine)} / "
                 f"{sum(s['stcal']['false'] for s in mine)} |")
    L.append("")
    if codes:
        L.append("Failure statuses (numbers shown as #): " + "; ".join(f"{v}: `{k}`" for k, v in codes.items()) + ".")
        L.append("")
    return "\n".join(L).rstrip() + "\n"


def load_avg() -> str:
    """The load average (1, 5, 15 min), without the time of day."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def versions() -> str:
    """Versions of Python and the packages both tools run on."""
    return ", ".join(package_versions())


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: Iterable[str] | None = None) -> None:
    """Command line: run the cells, print the tables, optionally save JSON and BENCHMARKS.md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=50, help="trials per cell (default %(default)s)")
    ap.add_argument("--kinds", default="fits,gwcs", help="WCS kinds (default %(default)s)")
    ap.add_argument("--n", default="3,5,8,15", help="reference stars on the chip (default %(default)s)")
    ap.add_argument("--spurious", default="0.1,0.5,0.9",
                    help="fractions of detections that are not reference stars (default %(default)s)")
    ap.add_argument("--shifts", default="0.5,1,2,3", help="pointing shifts, arcsec (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="base seed (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)),
                    help="processes over the trials (default: the CPUs, %(default)s)")
    ap.add_argument("--timeout", type=float, default=60.0, help="per stcal call, s (default %(default)s)")
    ap.add_argument("--scratch", default=tempfile.gettempdir(),
                    help="directory for the per-trial reference files (default %(default)s)")
    ap.add_argument("--json", metavar="PATH", help="also save every trial and the summaries there (JSON)")
    ap.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = ap.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if bad := [k for k in args.kinds if k not in ("fits", "gwcs")]:
        ap.error(f"unknown kinds {bad}")
    ns = [int(v) for v in args.n.split(",") if v.strip()]
    fracs, shifts = _floats(args.spurious), _floats(args.shifts)
    if any(not 0.0 <= f < 1.0 for f in fracs) or any(n < 1 for n in ns) or args.trials < 1:
        ap.error("need N >= 1, 0 <= spurious < 1 and trials >= 1")
    import stcal.tweakreg.tweakreg  # noqa: F401  (imported once, before the workers fork)

    def log(msg: str) -> None:
        print(f"[bench_sparse {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    cells = [Cell(kind, n, f, s) for kind in args.kinds for n in ns for f in fracs for s in shifts]
    tasks = [(c, k, args.seed, args.timeout, args.scratch) for c in cells for k in range(args.trials)]
    meta = {"command": command_line("bench/bench_sparse.py", sys.argv[1:]),
            "nproc": len(os.sched_getaffinity(0)), "cpu": cpu_model(), "load_start": load_avg(),
            "versions": versions(), "code": code_version(("aligner", "tests"))}
    log(meta["versions"])
    log(f"{len(cells)} cells x {args.trials} trials on {args.jobs} process(es)")
    t_start = time.perf_counter()
    results: dict[Cell, list[dict]] = {c: [] for c in cells}
    ctx = mp.get_context("fork")
    init = (args.kinds, args.scratch)
    with ctx.Pool(args.jobs, warm_up, init) if args.jobs > 1 else _Serial(warm_up, init) as pool:
        for r in pool.imap(run_trial, tasks, chunksize=max(1, min(8, args.trials // 4))):
            c = Cell(r["kind"], r["n"], r["spurious"], r["shift"])
            results[c].append(r)
            if len(results[c]) == args.trials:
                s = summarize(results[c])
                log(f"{c.label()}: correct ours {_pct(s['ours']['rate'])}, stcal {_pct(s['stcal']['rate'])}; "
                    f"false ours {s['ours']['false']}, stcal {s['stcal']['false']}")
    summaries = {c: summarize(rs) for c, rs in results.items() if rs}
    meta["wall_min"] = (time.perf_counter() - t_start) / 60.0
    meta["load_end"] = load_avg()
    meta["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    text = render(cells, summaries, args, meta)
    print(text)
    if args.json:
        out = {"meta": meta, "cells": [{"cell": asdict(c),
                                        "summary": summaries[c], "trials": results[c]} for c in cells]}
        Path(args.json).write_text(json.dumps(out, default=_json_default, indent=1))
    if args.write:
        write_section(text, ROOT / "BENCHMARKS.md", SECTION)
        log("BENCHMARKS.md: section written")


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays as plain JSON values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return repr(obj)


class _Serial:
    """The part of ``multiprocessing.Pool`` used here, in this process (``--jobs 1``)."""

    def __init__(self, initializer: Any, initargs: tuple) -> None:
        initializer(*initargs)

    def __enter__(self) -> "_Serial":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    @staticmethod
    def imap(fn, items, chunksize: int = 1):  # noqa: ARG004 - Pool's signature
        """``map`` in order, lazily."""
        return map(fn, items)


if __name__ == "__main__":
    main()
