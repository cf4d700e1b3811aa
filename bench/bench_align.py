#!/usr/bin/env python
"""Benchmark of the aligner against stcal.tweakreg 1.20 (tweakwcs 0.9.3) and SCAMP 2.10 on
synthetic scenes with known truth (tests/support/aligner_synth.py), in one run on the same data.

    .venv/bin/python bench/bench_align.py [--cases 8x2k,8x10k,32x10k,32x100k] [--repeats N]
                                          [--kinds gwcs,fits] [--no-stcal] [--no-scamp]
                                          [--timeout 120] [--no-write]

(``./run bench align`` runs it.) Prints Markdown and replaces the section "Aligner
(bench/bench_align.py)" of BENCHMARKS.md (re-read right before writing; other sections are left
as they are); ``--no-write`` only prints.

What is measured, per case (images x sources per image) and WCS kind:

- ours: ``aligner.relative_align(correctors)``; ``aligner.absolute_align(correctors, Table)``
  (RA/DEC of the reference at the observation epoch); ``aligner.absolute_align(correctors,
  "GAIADR3", epoch=..., store=store, observer=np.zeros(3))`` on a fresh PostgreSQL database
  holding the scene's reference catalog as ``gaia_dr3`` (the time includes the store query and
  the epoch propagation; the ingest is reported apart). Absolute alignment starts from the
  unaligned WCSs: one joint fit of every image against the reference and its neighbours.
  Every call gets fresh correctors (``make_correctors``, not timed); best and median of
  ``--repeats``.
- stcal.tweakreg (gwcs only: its JWST corrector works in arcsec like ours; its FITS corrector
  works in pixels, where its defaults are meaningless): ``relative_align(correctors)``, then, as
  the tweakreg step does, ``absolute_align(correctors, <ECSV of the same reference>, None, None,
  None)`` on the relatively aligned correctors (stcal's absolute step fits all images as ONE
  group, so it cannot fix per-image errors on its own). Each run is a forked child process with
  a per-phase timeout (``--timeout``); a phase still running is killed and reported as not
  finished. An absolute step that did not finish is not retried at a larger source count with the
  same number of images.
- SCAMP (FITS only: it reads FITS-LDAC catalogs with the images' FITS headers), configured as
  its anchor configuration (ASTREF_CATALOG FILE, MATCH_RESOL 1.0, POSITION_MAXERR 1.0, POSANGLE_MAXERR
  5.0, CROSSID_RADIUS 2.0, MOSAIC_TYPE UNCHANGED, DISTORT_DEGREES 1, SOLVE_PHOTOM N, no plots)
  plus MATCH_NMAX 500 (on these scenes the pattern-matching contrast stays below SCAMP's
  automatic threshold, so MATCH_NMAX 0 keeps doubling the number of stars used: ~10x slower,
  same solution); also with CROSSID_RADIUS 0.7 (the aligners' matching tolerance), and in two
  passes: that configuration, then a second run started from the first run's .head files (copied
  to .ahead, which SCAMP reads as header overrides) with MATCH N and CROSSID_RADIUS 0.2. One pass
  is limited by its preliminary cross-identification: after pattern matching some images are
  still off by 0.1-0.3 deg / 0.5 % in scale, and at ~1 star per arcsec^2 (plus 10 % spurious
  sources) a 2" radius links many wrong pairs that one clipping round does not remove (0.6 to
  20 mas at seed 1); the second pass starts within ~0.1" and cross-identifies tightly. Time =
  the ``scamp`` process(es) alone; writing the LDAC files is reported apart. Its .head output (a TAN
  header: CRVAL, CRPIX, CD) replaces the linear part of each image's nominal header.
  SCAMP runs with an unlimited stack (see ``_scamp_stack``). Installed with apt-get when missing
  and running as root, else skipped.

Errors (tests/support/aligner_synth.py): absolute = RMS over a 16x16 pixel grid of every image of the
distance between the corrected and the true WCS; relative = the same after removing the mean
error of the images covering each point (an error common to all images cancels).

A per-stage timing breakdown of ours (wrappers around the functions aligner.align calls, one
extra run per slow case) and a cProfile summary of the slowest call follow the tables.
"""
from __future__ import annotations

import argparse
import dataclasses
import cProfile
import datetime as dt
import functools
import gc
import inspect
import io
import json
import math
import multiprocessing as mp
import os
import platform
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository first (the packages, and tests.support), then the benchmarks' shared helpers.
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_store import code_version, command_line, without_machine_paths  # noqa: E402

import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402

import aligner  # noqa: E402
from tests.support.aligner_synth import (absolute_error_mas, make_correctors, make_scene,  # noqa: E402
                           reference_at_epoch, relative_error_mas)

SECTION = "## Aligner (bench/bench_align.py)"
#: A measurement is not repeated once its runs have taken this long (s); for a case whose
#: PostgreSQL absolute run took longer, the Table / provenance=False variants and the absolute
#: breakdown are skipped.
SLOW_S = 30.0
PG_ADMIN = os.environ.get("ASTRODB_BENCH_PG", os.environ.get(
    "ASTRODB_TEST_PG", "postgresql://{u}@{h}:{p}/postgres".format(
        u=os.environ.get("PGUSER", "postgres"), h=os.environ.get("PGHOST", "127.0.0.1"),
        p=os.environ.get("PGPORT", "5432"))))
STORE_COLUMNS = ["source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "parallax",
                 "radial_velocity", "ref_epoch", "mag"]
# Targets: absolute error (mas) per case.
ABS_TARGET = {(8, 2000): 0.35, (8, 10000): 0.15, (32, 10000): 0.15}
REL_SPEED_CASES = [(8, 10000), (32, 100000)]
ABS_TIME_CASE, ABS_TIME_TARGET = (32, 10000), 2.0
SCAMP_BASE = {
    "ASTREF_CATALOG": "FILE", "ASTREFCAT_NAME": "ref.cat", "MATCH": "Y", "MATCH_RESOL": "1.0",
    "MATCH_NMAX": "500", "POSITION_MAXERR": "1.0", "POSANGLE_MAXERR": "5.0", "CROSSID_RADIUS": "2.0",
    "MOSAIC_TYPE": "UNCHANGED", "DISTORT_DEGREES": "1", "SOLVE_PHOTOM": "N", "CHECKPLOT_DEV": "NULL",
    "CHECKPLOT_TYPE": "NONE", "WRITE_XML": "N", "VERBOSE_TYPE": "QUIET", "NTHREADS": "0",
}
#: Label -> passes (config overrides of SCAMP_BASE); a pass after the first starts from the
#: previous pass's .head files (copied to .ahead).
SCAMP_VARIANTS = {"anchor config": [{}], "CROSSID_RADIUS 0.7": [{"CROSSID_RADIUS": "0.7"}],
                  "2 passes": [{}, {"MATCH": "N", "CROSSID_RADIUS": "0.2"}]}


# ============================================================================================
# small helpers
# ============================================================================================
def parse_case(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad case {text!r} (expected e.g. 8x10k)")
    mult = {"": 1, "k": 1000, "m": 1_000_000}[m.group(3).lower()]
    return int(m.group(1)), int(round(float(m.group(2)) * mult))


def case_name(case: tuple[int, int]) -> str:
    n, s = case
    return f"{n}×{s // 1000}k" if s % 1000 == 0 else f"{n}×{s}"


def fmt_s(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def fmt_mas(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if not math.isfinite(v):
        return "nan"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def quiet():
    """Silence the warnings and INFO logging of tweakwcs/stcal/aligner during timed calls."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")
    return ctx


def statuses(correctors) -> str:
    counts: dict[str, int] = defaultdict(int)
    for c in correctors:
        st = str(c.meta.get("fit_info", {}).get("status", "none"))
        counts["FAILED" if st.startswith("FAILED") else st] += 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def errors(correctors, scene) -> dict:
    """Absolute and relative error of all images, and the relative error over the images whose
    fit succeeded (status SUCCESS or REFERENCE) only: a failed image keeps its pointing error
    (0.3-1 arcsec), which then dominates the relative error of all images."""
    ok = [i for i, c in enumerate(correctors)
          if str(c.meta.get("fit_info", {}).get("status", "")) in ("SUCCESS", "REFERENCE")]
    out = {"abs_err": absolute_error_mas(correctors, scene), "rel_err": relative_error_mas(correctors, scene),
           "n_ok": len(ok), "n": len(correctors)}
    if 2 <= len(ok) < len(correctors):
        sub = dataclasses.replace(scene, images=[scene.images[i] for i in ok])
        out["rel_err_ok"] = relative_error_mas([correctors[i] for i in ok], sub)
    elif len(ok) == len(correctors):
        out["rel_err_ok"] = out["rel_err"]
    return out


def n_failed(correctors) -> int:
    return sum(str(c.meta.get("fit_info", {}).get("status", "")).startswith("FAILED") for c in correctors)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_avg() -> str:
    return "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def other_benchmarks() -> list[str]:
    try:
        out = subprocess.run(["pgrep", "-af", r"bench/bench_|bench_gaia|bench_store"], capture_output=True,
                             text=True).stdout
    except OSError:
        return []
    me = os.getpid()
    lines = [ln for ln in out.splitlines() if ln.split()[0] != str(me) and "pgrep" not in ln and "bench_align" not in ln]
    # The scripts' names only: their command lines hold this machine's paths.
    return sorted({m for ln in lines for m in re.findall(r"bench_\w+\.py", ln)})


def package_versions() -> list[str]:
    """Versions of Python and the packages the aligners run on (stcal: or that it is missing)."""
    import astropy
    import gwcs
    import scipy
    import tweakwcs
    out = [f"Python {platform.python_version()}", f"numpy {np.__version__}", f"scipy {scipy.__version__}",
           f"astropy {astropy.__version__}", f"gwcs {gwcs.__version__}", f"tweakwcs {tweakwcs.__version__}"]
    try:
        import stcal
        out.append(f"stcal {stcal.__version__}")
    except ImportError:
        out.append("stcal not installed")
    return out


def versions() -> str:
    out = package_versions()
    try:
        import psycopg
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            v = conn.execute("SHOW server_version").fetchone()[0]
        out.append(f"PostgreSQL {v.split()[0]}")
    except Exception as exc:  # noqa: BLE001 - only a label
        out.append(f"PostgreSQL unavailable ({type(exc).__name__})")
    if shutil.which("scamp"):
        v = subprocess.run(["scamp", "-v"], capture_output=True, text=True).stdout.strip()
        out.append(v.replace("SCAMP version", "SCAMP").strip())
    return ", ".join(out)


# ============================================================================================
# ours
# ============================================================================================
def time_ours(scene, call, repeats: int) -> dict:
    """Time ``call(correctors)`` on fresh correctors ``repeats`` times; errors of the last run."""
    times, corr, error = [], None, None
    for _ in range(repeats):
        if sum(times) > SLOW_S:  # enough for a slow case
            break
        corr = make_correctors(scene)
        gc.collect()
        ctx = quiet()
        try:
            t0 = time.perf_counter()
            call(corr)
            times.append(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
            times.append(time.perf_counter() - t0)
        finally:
            ctx.__exit__(None, None, None)
    return dict(errors(corr, scene), times=times, best=min(times), median=float(np.median(times)),
                status=statuses(corr), failed=n_failed(corr), error=error)


def reference_table(scene) -> Table:
    ref = reference_at_epoch(scene)
    return Table({"RA": np.asarray(ref["RA"], float), "DEC": np.asarray(ref["DEC"], float)})


class PgStore:
    """A fresh PostgreSQL database with the scene's reference catalog as ``gaia_dr3``."""

    def __init__(self, scene) -> None:
        import psycopg

        import astrodb
        self.name = f"astrodb_bench_align_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        self.store = None
        try:
            self.store = astrodb.connect(f"{base}/{self.name}")
            self.store.init()
            t = Table({c: scene.refcat[c] for c in STORE_COLUMNS})
            t0 = time.perf_counter()
            self.store.ingest_catalog(t, "gaia_dr3", description="bench_align synthetic reference")
            self.ingest_s = time.perf_counter() - t0
            self.rows = len(t)
        except BaseException:
            self.drop()
            raise

    def drop(self) -> None:
        import psycopg
        if self.store is not None:
            self.store.close()
            self.store = None
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# ============================================================================================
# per-stage breakdown of ours
# ============================================================================================
class Stages:
    """Wall time per stage of one aligner call: top-level wrappers around the functions
    the aligner's step modules call (a call made while another wrapped one runs is not counted twice) plus
    nested counters (det_to_world, set_correction, Store.cone) counted wherever they run.

    The aligner maps per-group work onto threads (``aligner.runtime.threads``): such a map counts, as
    wall time, under the stage of the functions its threads ran; the reference query runs on a
    background thread while the images are thinned: its own duration is shown apart (it overlaps
    the stages), the main thread's wait for it as a stage."""

    #: The aligner's modules whose module-level names the stages wrap (each module looks its
    #: helpers up in its own namespace).
    MODULES = ("aligner.align", "aligner.relative", "aligner.absolute", "aligner.placement",
               "aligner.reference_points", "aligner.linking", "aligner.checks", "aligner.outcome", "aligner.images")
    TOP = [("load_images", "load_images: catalogs + det_to_world"), ("plane_for", "tangent plane + projection"),
           ("project", "tangent plane + projection"), ("make_groups", "make_groups (per-image thinning)"),
           ("thin", "reference thinning"), ("find_offset", "find_offset (2D histograms)"),
           ("match_pairs", "matching (match_pairs, match_groups, match_reference)"),
           ("match_groups", "matching (match_pairs, match_groups, match_reference)"),
           ("match_reference", "matching (match_pairs, match_groups, match_reference)"),
           ("chance", "matching (match_pairs, match_groups, match_reference)"),
           ("joint_fit", "joint_fit (all passes)"),
           ("group_results", "results (FitResult)"), ("apply", "apply: set_correction on every image"),
           ("recorder", "provenance: Recorder (relative: input WCSs serialized)"),
           ("record", "provenance: write (inputs not serialized yet, outputs as corrections, INSERT)")]
    CAPTURE = "provenance: input WCSs serialized (absolute: while the query runs)"
    RESOLVE = "reference: resolve (store query + epoch, or Table)"
    BACKGROUND = "reference query on its background thread (overlaps the stages above)"
    WAIT = "reference: waiting for the background query"

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.n: dict[str, int] = defaultdict(int)
        self.local = threading.local()     # per thread: depth, current stage
        self.current: str | None = None    # the main thread's stage
        self.seen: list[str] = []          # stages entered on worker threads during a map
        self._saved: list = []

    @staticmethod
    def _main() -> bool:
        return threading.current_thread() is threading.main_thread()

    def _top(self, label, fn):
        @functools.wraps(fn)
        def w(*a, **k):
            loc = self.local
            if getattr(loc, "depth", 0):
                return fn(*a, **k)
            main = self._main()
            loc.depth = 1
            if main or getattr(loc, "current", None) is None:
                loc.current = label
            if main:
                self.current = label
            else:
                self.seen.append(label)
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                if main:
                    self.t[label] += time.perf_counter() - t0
                    self.n[label] += 1
                    self.current = None
                loc.depth = 0
                if main or loc.current == label:
                    loc.current = None
        return w

    def _nested(self, label, fn):
        """Counted under the top-level stage running it: key 'stage|label'."""
        @functools.wraps(fn)
        def w(*a, **k):
            stage = self.current if self._main() else getattr(self.local, "current", None)
            key = f"{stage or 'outside the stages'}|{label}"
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[key] += time.perf_counter() - t0
                self.n[key] += 1
        return w

    def _thread_map(self, fn):
        """A map onto threads from the main thread outside any stage: its wall time goes to the
        stage(s) its threads entered."""
        @functools.wraps(fn)
        def w(*a, **k):
            if not self._main() or getattr(self.local, "depth", 0):
                return fn(*a, **k)
            self.seen = []
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                labels = list(dict.fromkeys(self.seen)) or ["other (validation, links, checks)"]
                label = " + ".join(labels) if len(labels) > 1 else labels[0]
                self.t[label] += time.perf_counter() - t0
                self.n[label] += 1
        return w

    def _in_background(self, fn):
        stages = self

        class Waited:
            def __init__(self, future):
                self.future = future

            def result(self, timeout=None):
                t0 = time.perf_counter()
                try:
                    return self.future.result(timeout)
                finally:
                    stages.t[stages.WAIT] += time.perf_counter() - t0
                    stages.n[stages.WAIT] += 1

        @functools.wraps(fn)
        def w(task):
            def timed():
                stages.local.current = stages.BACKGROUND
                t0 = time.perf_counter()
                try:
                    return task()
                finally:
                    stages.t[stages.BACKGROUND] += time.perf_counter() - t0
                    stages.n[stages.BACKGROUND] += 1
            return Waited(fn(timed))
        return w

    def _patch(self, obj, attr, wrapper):
        self._saved.append((obj, attr, obj.__dict__[attr] if attr in obj.__dict__ else getattr(obj, attr)))
        setattr(obj, attr, wrapper)

    def __enter__(self):
        from tweakwcs.correctors import FITSWCSCorrector, JWSTWCSCorrector

        import importlib

        import aligner.refcat as R
        import astrodb
        modules = [importlib.import_module(m) for m in self.MODULES]
        for M in modules:
            for name, label in self.TOP:
                if name in M.__dict__:
                    self._patch(M, name, self._top(label, M.__dict__[name]))
        try:
            import aligner.provenance as P
            import aligner.wcs_serializer as S
            self._patch(P, "serialize_wcs", self._nested("provenance.serialize_wcs", P.serialize_wcs))
            # gwcs the worker process has not answered yet are serialized by the caller, here.
            self._patch(S, "serialize_wcs", self._nested("provenance.serialize_wcs", S.serialize_wcs))
            if hasattr(P.Recorder, "capture_inputs"):
                self._patch(P.Recorder, "capture_inputs", self._top(self.CAPTURE, P.Recorder.capture_inputs))
        except ImportError:
            pass
        self._patch(R, "resolve", self._top(self.RESOLVE, R.resolve))
        for M in modules:
            if "thread_map" in M.__dict__:
                self._patch(M, "thread_map", self._thread_map(M.thread_map))
            if "in_background" in M.__dict__:
                self._patch(M, "in_background", self._in_background(M.in_background))
        for cls in (JWSTWCSCorrector, FITSWCSCorrector):
            self._patch(cls, "set_correction", self._nested(f"{cls.__name__}.set_correction",
                                                           cls.set_correction))
            self._patch(cls, "det_to_world", self._nested(f"{cls.__name__}.det_to_world",
                                                         cls.det_to_world))
        self._patch(astrodb.Store, "cone", self._nested("Store.cone (query + propagation)", astrodb.Store.cone))
        return self

    def __exit__(self, *exc):
        for obj, attr, orig in reversed(self._saved):
            setattr(obj, attr, orig)
        self._saved.clear()


def breakdown(scene, call) -> dict:
    corr = make_correctors(scene)
    gc.collect()
    ctx = quiet()
    try:
        with Stages() as st:
            t0 = time.perf_counter()
            call(corr)
            total = time.perf_counter() - t0
    finally:
        ctx.__exit__(None, None, None)
    return {"total": total, "t": dict(st.t), "n": dict(st.n)}


def profile_call(scene, call, top: int = 14) -> str:
    corr = make_correctors(scene)
    gc.collect()
    prof = cProfile.Profile()
    ctx = quiet()
    try:
        prof.enable()
        call(corr)
        prof.disable()
    finally:
        ctx.__exit__(None, None, None)
    buf = io.StringIO()
    ps = pstats.Stats(prof, stream=buf).sort_stats("tottime")
    ps.print_stats(top)
    return buf.getvalue()


def profile_rows(text: str, top: int = 10) -> list[tuple[str, str, str, str]]:
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and re.fullmatch(r"[\d/]+", parts[0]) and re.fullmatch(r"[\d.]+", parts[1]):
            where = without_machine_paths(parts[5])
            rows.append((parts[0], parts[1], parts[3], where))
    return rows[:top]


# ============================================================================================
# stcal.tweakreg in a forked child
# ============================================================================================
def _stcal_child(conn, scene, ref_path, do_abs) -> None:
    import logging
    try:
        logging.disable(logging.CRITICAL)
        warnings.simplefilter("ignore")
        from stcal.tweakreg import tweakreg
        corr = make_correctors(scene)
        conn.send(("ready",))
        t0 = time.perf_counter()
        tweakreg.relative_align(corr)
        t = time.perf_counter() - t0
        conn.send(("rel", t, errors(corr, scene), statuses(corr)))
        if do_abs:
            t0 = time.perf_counter()
            tweakreg.absolute_align(corr, ref_path, None, None, None)
            t = time.perf_counter() - t0
            conn.send(("abs", t, errors(corr, scene), statuses(corr)))
        conn.send(("done",))
    except BaseException as exc:  # noqa: BLE001 - stcal's TweakregError derives from BaseException
        try:
            conn.send(("error", f"{type(exc).__name__}: {str(exc)[:200]}"))
        except Exception:  # noqa: BLE001
            pass
    finally:
        try:
            conn.close()
        finally:
            os._exit(0)  # no atexit handlers / finalizers of the parent's objects in the child


def run_stcal(scene, ref_path: str, do_abs: bool, timeout: float) -> dict:
    """One forked child: stcal relative, then (optionally) absolute; each phase with a timeout."""
    ctx = mp.get_context("fork")
    rd, wr = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_stcal_child, args=(wr, scene, ref_path, do_abs), daemon=True)
    proc.start()
    wr.close()
    out: dict = {}
    phases = ["ready", "rel"] + (["abs"] if do_abs else [])
    try:
        for ph in phases:
            limit = 600.0 if ph == "ready" else timeout
            if not rd.poll(limit):
                out[ph] = {"timeout": timeout}
                break
            try:
                msg = rd.recv()
            except EOFError:
                out[ph] = {"error": f"child died (exit code {proc.exitcode})"}
                break
            if msg[0] == "error":
                out[ph] = {"error": msg[1]}
                break
            if msg[0] in ("rel", "abs"):
                out[msg[0]] = dict(msg[2], time=msg[1], status=msg[3])
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(10)
        rd.close()
    return out


# ============================================================================================
# SCAMP
# ============================================================================================
def ensure_scamp() -> tuple[bool, str]:
    if shutil.which("scamp"):
        return True, "installed"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False, "scamp is not installed and this is not root with apt-get (Debian package `scamp`)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "scamp"], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "scamp"], capture_output=True, text=True, env=env)
    if r.returncode == 0 and shutil.which("scamp"):
        return True, "installed now with apt-get"
    return False, f"apt-get install scamp failed: {r.stderr.strip()[-200:]}"


def _scamp_stack() -> None:
    """preexec_fn of the scamp child: lift its stack limit to the hard limit (unlimited here).

    SCAMP 2.10's cross-identification recurses once per re-linked detection (crossid.c:
    cross_sample -> try_match -> crossmatch -> cross_sample, each re-link of a sample that lost
    its best match restarts a search), and in dense overlapping fields the chain of re-links is
    long: at 16x10k and 32x10k (CROSSID_RADIUS 2.0) it overflows the default 8 MB stack
    (after ~131,000 frames at 32x10k; 32 MB is not enough there, 64 MB is) and SCAMP dies with
    SIGSEGV in "Making preliminary cross-identifications". At 32x100k it no longer crashes but
    does not finish in 15 min (4.9 GB)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_STACK, (hard, hard))


def _ldac(header_cards: list[str], columns) -> "fits.HDUList":  # noqa: F821
    """A FITS-LDAC file: LDAC_IMHEAD (the header text) and LDAC_OBJECTS.

    The header text is written as bytes: astropy pads shorter strings with NULs, and SCAMP also
    turns trailing blanks of the whole text into NULs, which hides the END card (SCAMP then reads
    past its buffer and crashes): the text is padded with blank cards to whole 2880-byte blocks and
    its very last character is made non-blank."""
    from astropy.io import fits

    cards = [c.ljust(80)[:80] for c in header_cards] + ["END".ljust(80)]
    cards += [" " * 80] * (-len(cards) % 36)
    if len(cards) == len(header_cards) + 1:  # END is the last card: add a block of blanks after it
        cards += [" " * 80] * 36
    cards[-1] = cards[-1][:79] + "."
    n = len(cards)
    text = "".join(cards).encode("ascii")
    head = fits.BinTableHDU.from_columns([fits.Column(name="Field Header Card", format=f"{80 * n}A",
                                                      array=np.array([text], dtype=f"S{80 * n}"))])
    head.header["EXTNAME"] = "LDAC_IMHEAD"
    head.header["TDIM1"] = f"(80, {n})"
    objs = fits.BinTableHDU.from_columns([fits.Column(name=k, format=f, array=v, unit=u)
                                          for k, f, v, u in columns])
    objs.header["EXTNAME"] = "LDAC_OBJECTS"
    return fits.HDUList([fits.PrimaryHDU(), head, objs])


def write_scamp_inputs(scene, d: Path) -> None:
    from astropy.io import fits

    sig = float(scene.params["sigma_px"])
    for i, im in enumerate(scene.images):
        h = fits.Header()
        h["SIMPLE"], h["BITPIX"], h["NAXIS"] = True, -32, 2
        h["NAXIS1"], h["NAXIS2"] = im.shape[1], im.shape[0]
        h["EXPTIME"] = 1.0
        h.update(im.wcs.to_header())
        cat = im.catalog
        n = len(cat)
        flux = np.asarray(cat["flux"], float)
        cols = [("XWIN_IMAGE", "1D", np.asarray(cat["x"], float) + 1.0, "pixel"),   # 1-based
                ("YWIN_IMAGE", "1D", np.asarray(cat["y"], float) + 1.0, "pixel"),
                ("ERRAWIN_IMAGE", "1E", np.full(n, sig, np.float32), "pixel"),
                ("ERRBWIN_IMAGE", "1E", np.full(n, sig, np.float32), "pixel"),
                ("ERRTHETAWIN_IMAGE", "1E", np.zeros(n, np.float32), "deg"),
                ("FLUX_AUTO", "1E", flux.astype(np.float32), "count"),
                ("FLUXERR_AUTO", "1E", (np.abs(flux) / 1000.0 + 1e-6).astype(np.float32), "count"),
                ("FLAGS", "1I", np.zeros(n, np.int16), "")]
        _ldac([c.image for c in h.cards], cols).writeto(d / f"img_{i:03d}.cat", overwrite=True)
    ref = reference_at_epoch(scene)
    n = len(ref)
    err = np.full(n, float(scene.params["ref_noise_mas"]) / 3.6e6, np.float32)
    h = fits.Header()
    h["SIMPLE"], h["BITPIX"], h["NAXIS"] = True, 8, 0
    cols = [("X_WORLD", "1D", np.asarray(ref["RA"], float), "deg"),
            ("Y_WORLD", "1D", np.asarray(ref["DEC"], float), "deg"),
            ("ERRA_WORLD", "1E", err, "deg"), ("ERRB_WORLD", "1E", err, "deg"),
            ("ERRTHETA_WORLD", "1E", np.zeros(n, np.float32), "deg"),
            ("MAG", "1E", np.asarray(ref["mag"], np.float32), "mag"),
            ("MAGERR", "1E", np.full(n, 0.01, np.float32), "mag")]
    _ldac([c.image for c in h.cards], cols).writeto(d / "ref.cat", overwrite=True)


def read_scamp_wcs(scene, d: Path) -> list:
    from astropy.io import fits
    from astropy.wcs import WCS

    out = []
    for i, im in enumerate(scene.images):
        h = im.wcs.to_header()
        for k in ("PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2"):
            h.remove(k, ignore_missing=True)
        raw = (d / f"img_{i:03d}.head").read_bytes().decode("latin-1")
        for line in raw.splitlines():
            if len(line) > 9 and line[8] == "=":
                card = fits.Card.fromstring(line.ljust(80)[:80])
                h[card.keyword] = card.value
        w = WCS(h)
        w.pixel_shape = (im.shape[1], im.shape[0])
        out.append(w)
    return out


def run_scamp(scene, timeout: float, repeats: int, variants=SCAMP_VARIANTS) -> dict:
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_align_scamp_") as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        write_scamp_inputs(scene, d)
        res["write_s"] = time.perf_counter() - t0
        cats = [f"img_{i:03d}.cat" for i in range(len(scene.images))]
        for label, passes in variants.items():
            if any("timeout" in v for v in res.values() if isinstance(v, dict)):
                res[label] = {"skipped": "the previous configuration did not finish"}
                continue
            times = []
            for _ in range(repeats):
                for f in [*d.glob("*.head"), *d.glob("*.ahead")]:
                    f.unlink()
                spent = 0.0
                for k, extra in enumerate(passes):
                    if k:  # start from the previous pass's solution
                        for f in d.glob("*.head"):
                            f.rename(f.with_suffix(".ahead"))
                    conf = dict(SCAMP_BASE, **extra)
                    (d / "scamp.conf").write_text("".join(f"{k_:<22} {v}\n" for k_, v in conf.items()))
                    t0 = time.perf_counter()
                    try:
                        r = subprocess.run(["scamp", *cats, "-c", "scamp.conf"], cwd=d, capture_output=True,
                                           text=True, timeout=timeout, preexec_fn=_scamp_stack)
                    except subprocess.TimeoutExpired:
                        res[label] = {"timeout": timeout}
                        break
                    spent += time.perf_counter() - t0
                    if r.returncode != 0:
                        msg = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", r.stderr)
                        msg = " / ".join(ln.strip("> ").strip() for ln in msg.splitlines()
                                         if ln.strip("> ").strip() and "ATLAS" not in ln)
                        what = "segmentation fault" if r.returncode == -11 else f"exit code {r.returncode}"
                        res[label] = {"error": what + (f" (pass {k + 1})" if len(passes) > 1 else ""),
                                      "output": msg[-300:]}
                        break
                if label in res:
                    break
                times.append(spent)
                if sum(times) > SLOW_S:
                    break
            for f in d.glob("*.ahead"):
                f.unlink()
            if label in res:
                continue
            try:
                wcss = read_scamp_wcs(scene, d)
            except (OSError, ValueError) as exc:
                res[label] = {"error": f"reading .head: {exc}"}
                continue
            res[label] = {"times": times, "best": min(times), "median": float(np.median(times)),
                          "abs_err": absolute_error_mas(wcss, scene), "rel_err": relative_error_mas(wcss, scene)}
    return res


# ============================================================================================
# main
# ============================================================================================
def run_case(case, kind, args, scamp_ok, stcal_abs_skip: set, log) -> dict:
    n_img, n_src = case
    r: dict = {"case": case, "kind": kind}
    t0 = time.perf_counter()
    scene = make_scene(n_img, n_src, kind, seed=args.seed)
    r["gen_s"] = time.perf_counter() - t0
    r["n_ref"] = int(scene.params["n_ref"])
    r["n_rows"] = int(sum(len(im.catalog) for im in scene.images))
    log(f"{case_name(case)} {kind}: scene {r['gen_s']:.1f} s, {r['n_rows']:,} catalog rows, {r['n_ref']:,} reference stars")
    ref_tab = reference_table(scene)

    # stcal first (forked before any database connection of this case exists).
    if kind == "gwcs" and args.stcal:
        with tempfile.TemporaryDirectory(prefix="bench_align_stcal_") as tmp:
            ref_path = os.path.join(tmp, "ref.ecsv")
            ref_tab.write(ref_path, format="ascii.ecsv", overwrite=True)
            do_abs = n_img not in stcal_abs_skip
            runs = []
            spent = 0.0
            for _ in range(args.repeats):
                t1 = time.perf_counter()
                o = run_stcal(scene, ref_path, do_abs, args.timeout)
                spent += time.perf_counter() - t1
                runs.append(o)
                bad = any("timeout" in v or "error" in v for v in o.values())
                if bad or spent > 45.0:
                    break
            st: dict = {"runs": len(runs)}
            for ph in ("rel", "abs"):
                ok = [o[ph] for o in runs if ph in o and "time" in o[ph]]
                failed = [o[ph] for o in runs if ph in o and "time" not in o[ph]]
                if ok:
                    ts = [x["time"] for x in ok]
                    st[ph] = dict(ok[-1], best=min(ts), median=float(np.median(ts)), nruns=len(ts))
                elif failed:
                    st[ph] = failed[0]
            if not do_abs:
                st["abs"] = {"skipped": f"not finished at {n_img} images with fewer sources"}
            elif "abs" in st and "timeout" in st["abs"]:
                stcal_abs_skip.add(n_img)
            if "ready" in runs[0]:
                st["rel"] = runs[0]["ready"]
            r["stcal"] = st
            log(f"  stcal: {json.dumps({k: v for k, v in st.items()}, default=str)[:400]}")

    # ours
    r["rel"] = time_ours(scene, lambda c: aligner.relative_align(c), args.repeats)
    log(f"  ours relative: median {r['rel']['median']:.3f} s, rel err {r['rel']['rel_err']:.3f} mas, {r['rel']['status']}")
    epoch = scene.params["epoch"]
    pg = None
    try:
        pg = PgStore(scene)
        r["ingest_s"], r["ingest_rows"] = pg.ingest_s, pg.rows
        store = pg.store
        abs_store = lambda c: aligner.absolute_align(c, "GAIADR3", epoch=epoch, store=store,  # noqa: E731
                                                     observer=np.zeros(3))
        r["abs_store"] = time_ours(scene, abs_store, args.repeats)
        log(f"  ours absolute (PostgreSQL): median {r['abs_store']['median']:.3f} s, abs err "
            f"{r['abs_store']['abs_err']:.3f} mas (ingest {pg.ingest_s:.1f} s)")
        slow_abs = r["abs_store"]["best"] > SLOW_S
        if slow_abs:
            r["abs_table"] = {"skipped": f"the PostgreSQL run took {r['abs_store']['best']:.0f} s"}
        else:
            r["abs_table"] = time_ours(scene, lambda c: aligner.absolute_align(c, ref_tab), args.repeats)
            log(f"  ours absolute (Table): median {r['abs_table']['median']:.3f} s, abs err "
                f"{r['abs_table']['abs_err']:.3f} mas")
        if "provenance" in inspect.signature(aligner.absolute_align).parameters and not slow_abs:
            r["abs_store_noprov"] = time_ours(scene, lambda c: aligner.absolute_align(
                c, "GAIADR3", epoch=epoch, store=store, observer=np.zeros(3), provenance=False), args.repeats)
            log(f"  ours absolute (PostgreSQL, provenance=False): median {r['abs_store_noprov']['median']:.3f} s")
        # Breakdown (and cProfile) of the slow cases; when the case is very slow, of the first
        # WCS kind only and of the absolute step only if it took < SLOW_S.
        very_slow = r["rel"]["best"] > SLOW_S or slow_abs
        if case in args.breakdown_cases and (kind == args.kinds[0] or not very_slow):
            r["bd_rel"] = breakdown(scene, lambda c: aligner.relative_align(c))
            if not slow_abs:
                r["bd_abs"] = breakdown(scene, abs_store)
        if args.profile and case == args.profile_case and kind == args.profile_kind:
            r["profile_rel"] = profile_call(scene, lambda c: aligner.relative_align(c))
            if not slow_abs:
                r["profile_abs"] = profile_call(scene, abs_store)
    except Exception as exc:  # noqa: BLE001 - e.g. no PostgreSQL: reported
        r["abs_store"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        log(f"  ours absolute (PostgreSQL) failed: {r['abs_store']['error']}")
    finally:
        if pg is not None:
            pg.drop()

    if kind == "fits" and args.scamp and scamp_ok:
        r["scamp"] = run_scamp(scene, args.scamp_timeout, args.repeats)
        log(f"  scamp: {json.dumps(r['scamp'], default=str)[:400]}")
    del scene
    gc.collect()
    return r


def ratio(a, b) -> str:
    if a is None or b is None or not b:
        return "—"
    return f"{a / b:.1f}×"


def ours_cell(x: dict | None, key: str = "median") -> str:
    if x and "skipped" in x:
        return f"not run ({x['skipped']})"
    if not x or "error" in x and "median" not in x:
        return f"failed: {x.get('error')}" if x else "—"
    s = fmt_s(x[key])
    if x.get("error"):
        s += " (raised)"
    return s


def stcal_cell(st: dict | None, ph: str) -> tuple[str, float | None]:
    if not st or ph not in st:
        return "—", None
    x = st[ph]
    if "time" in x:
        return fmt_s(x["median"]), x["median"]
    if "timeout" in x:
        return f"not finished in {x['timeout']:g} s", None
    if "skipped" in x:
        return f"not run ({x['skipped']})", None
    return f"error: {x.get('error')}", None


def render(results: list[dict], args, meta: dict) -> str:
    L = [SECTION, ""]
    L.append(f"- Command: `{meta['command']}` (in the repository root)")
    L.append(f"- Measured on {meta['date']}; wall time {meta['wall_min']:.1f} min")
    L.append(f"- Machine: nproc {meta['nproc']}, CPU {meta['cpu']}, {meta['mem']}; at the start: "
             f"{meta['load_start']}; at the end: {meta['load_end']}")
    L.append(f"- Other benchmark processes at the start: {meta['others'] or 'none'}")
    L.append(f"- Versions: {meta['versions']}")
    L.append(f"- Code: {meta['code']}")
    L.append(f"- Data: `tests/support/aligner_synth.make_scene(n_images, n_sources, kind, seed={args.seed})` with its defaults "
             "(2048² px at 0.05″/px, dither 0.3 of the footprint, pointing errors 0.3–1″ and 0.005–0.02° per image, "
             "2 mas centroid noise, 10 % spurious sources, reference = every star with 1 mas noise at the "
             "observation epoch); same seed for every tool. Times: median of "
             f"{args.repeats} runs on fresh correctors (fewer once a measurement has taken {SLOW_S:g} s; stcal: see below); "
             "errors of the last run.")
    L.append("")

    # ---- relative
    L.append("### Relative alignment")
    L.append("")
    L.append("Relative error of all images, then over the images whose fit succeeded only (a failed image keeps "
             "its 0.3–1″ pointing error). Status: fit_info['status'] counts.")
    L.append("")
    L.append("| Case | WCS | ours (s) | ours rel. error: all / aligned (mas) | ours status | stcal (s) "
             "| stcal rel. error: all / aligned (mas) | stcal status | stcal / ours time |")
    L.append("|---|---|---:|---:|---|---:|---:|---|---:|")
    for r in results:
        o = r["rel"]
        st = r.get("stcal")
        cell, t_st = stcal_cell(st, "rel")
        x = (st or {}).get("rel", {})
        serr = f"{fmt_mas(x['rel_err'])} / {fmt_mas(x.get('rel_err_ok'))}" if "rel_err" in x else "—"
        L.append(f"| {case_name(r['case'])} | {r['kind']} | {ours_cell(o)} | {fmt_mas(o['rel_err'])} / "
                 f"{fmt_mas(o.get('rel_err_ok'))} | {o['status']} | {cell} | {serr} | {x.get('status', '—')} | "
                 f"{ratio(t_st, o['median']) if t_st else '—'} |")
    L.append("")

    # ---- absolute
    L.append("### Absolute alignment")
    L.append("")
    L.append("Ours: one call from the unaligned WCSs. stcal: its absolute step on the output of its relative step "
             "(time of the absolute step alone; error after both). SCAMP: one global run, or two (FITS only; times "
             "are the scamp processes alone).")
    L.append("")
    L.append("| Case | WCS | ours, Table (s) | ours, PostgreSQL incl. query (s) | same, provenance=False (s) "
             "| ours abs. error (mas) | ours rel. error (mas) "
             "| stcal absolute step (s) | stcal abs. error (mas) | SCAMP (s) | SCAMP abs. / rel. error (mas) "
             "| SCAMP, CROSSID_RADIUS 0.7: s, abs. / rel. (mas) "
             "| SCAMP, 2 passes (2nd: .ahead, MATCH N, CROSSID_RADIUS 0.2): s, abs. / rel. (mas) |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        a, s = r.get("abs_table") or {}, r.get("abs_store") or {}
        err = s.get("abs_err", a.get("abs_err"))
        rerr = s.get("rel_err", a.get("rel_err"))
        st = r.get("stcal")
        cell, _ = stcal_cell(st, "abs")
        serr = fmt_mas(st["abs"]["abs_err"]) if st and "abs" in st and "abs_err" in st["abs"] else "—"
        sc = r.get("scamp") or {}
        cells = []
        for label in SCAMP_VARIANTS:
            x = sc.get(label)
            if not x:
                cells.append(("—", "—"))
            elif "median" in x:
                cells.append((fmt_s(x["median"]), f"{fmt_mas(x['abs_err'])} / {fmt_mas(x['rel_err'])}"))
            elif "timeout" in x:
                cells.append((f"not finished in {x['timeout']:g} s", "—"))
            elif "skipped" in x:
                cells.append((f"not run ({x['skipped']})", "—"))
            else:
                cells.append((f"error: {x.get('error')}", "—"))
        alt, alt2 = (f"{c[0]}, {c[1]}" if c[0] != "—" else "—" for c in cells[1:3])
        L.append(f"| {case_name(r['case'])} | {r['kind']} | {ours_cell(a)} | {ours_cell(s)} | "
                 f"{ours_cell(r.get('abs_store_noprov'))} | {fmt_mas(err)} | "
                 f"{fmt_mas(rerr)} | {cell} | {serr} | {cells[0][0]} | {cells[0][1]} | {alt} | {alt2} |")
    L.append("")
    notes = []
    for r in results:
        for key, label in (("rel", "relative"), ("abs_table", "absolute, Table"), ("abs_store", "absolute, PostgreSQL"),
                           ("abs_store_noprov", "absolute, PostgreSQL, provenance=False")):
            x = r.get(key) or {}
            if x.get("failed") or x.get("error"):
                notes.append(f"ours {label}, {case_name(r['case'])} {r['kind']}: {x.get('status', '')} "
                             f"{x.get('error') or ''}".strip())
        st = r.get("stcal") or {}
        for ph in ("rel", "abs"):
            if ph in st and "status" in st[ph] and "FAILED" in st[ph]["status"]:
                notes.append(f"stcal {ph}, {case_name(r['case'])}: {st[ph]['status']}")
    if notes:
        L.append("Failed fits: " + "; ".join(notes) + ".")
        L.append("")
    ing = [f"{case_name(r['case'])} {r['kind']} {r['ingest_rows']:,} rows {r['ingest_s']:.1f} s"
           for r in results if "ingest_s" in r]
    if ing:
        L.append("Reference ingest into the fresh PostgreSQL store (not in the times above): " + "; ".join(ing) + ".")
    runs = [f"{case_name(r['case'])}: {r['stcal']['runs']}" for r in results if r.get("stcal")]
    if runs:
        L.append("stcal runs per case (repeated while the first ones took < 45 s in all): " + ", ".join(runs) + ".")
    sw = [f"{case_name(r['case'])} {r['scamp']['write_s']:.1f} s" for r in results if r.get("scamp")]
    if sw:
        L.append("Writing SCAMP's FITS-LDAC inputs (not in SCAMP's time): " + ", ".join(sw) + ".")
    if any(r.get("scamp") for r in results):
        L.append("SCAMP configuration: " + ", ".join(f"{k} {v}" for k, v in SCAMP_BASE.items())
                 + "; image catalogs with XWIN/YWIN_IMAGE (1-based), ERRA/BWIN_IMAGE = the centroid noise, "
                 "FLUX_AUTO = the scene's flux (S/N 1000), reference X/Y_WORLD with ERRA/B_WORLD = its noise.")
    if meta.get("scamp_note"):
        L.append(f"SCAMP: {meta['scamp_note']}")
    L.append("")

    # ---- targets
    L.append("### Targets")
    L.append("")
    L.append("| Target | Measured | Met |")
    L.append("|---|---|---|")
    by = {(r["case"], r["kind"]): r for r in results}
    for kind in args.kinds:
        errs = {}
        for case, tgt in ABS_TARGET.items():
            r = by.get((case, kind))
            if not r:
                continue
            e = (r.get("abs_store") or {}).get("abs_err")
            src = "PostgreSQL"
            if e is None:
                e, src = (r.get("abs_table") or {}).get("abs_err"), "Table"
            if e is None:
                continue
            errs[case] = e
            L.append(f"| absolute error ≤ {tgt} mas at {case_name(case)} ({kind}) | {fmt_mas(e)} mas ({src}) | "
                     f"{'yes' if e <= tgt else 'NO'} |")
        if (8, 10000) in errs and (32, 10000) in errs:
            a, b = errs[(8, 10000)], errs[(32, 10000)]
            L.append(f"| absolute error not growing with the images ({kind}; 32×10k ≤ 1.1 × 8×10k) | "
                     f"{fmt_mas(b)} vs {fmt_mas(a)} mas | {'yes' if b <= 1.1 * a else 'NO'} |")
    for r in results:
        st = r.get("stcal") or {}
        if r["kind"] == "gwcs" and "rel" in st and "rel_err" in st["rel"]:
            o, s = r["rel"]["rel_err"], st["rel"]["rel_err"]
            oo, so = r["rel"].get("rel_err_ok"), st["rel"].get("rel_err_ok")
            extra = (f"; aligned images only: {fmt_mas(oo)} ({r['rel']['n_ok']}/{r['rel']['n']}) vs {fmt_mas(so)} "
                     f"({st['rel']['n_ok']}/{st['rel']['n']})") if (oo is not None and so is not None) else ""
            L.append(f"| relative error ≤ stcal's at {case_name(r['case'])} (gwcs) | all images: {fmt_mas(o)} vs "
                     f"{fmt_mas(s)} mas{extra} | {'yes' if o <= s else 'NO'} |")
    for case in REL_SPEED_CASES:
        r = by.get((case, "gwcs"))
        if not r:
            continue
        cell, t_st = stcal_cell(r.get("stcal"), "rel")
        if t_st:
            q = t_st / r["rel"]["median"]
            L.append(f"| relative ≥ 3× faster than stcal at {case_name(case)} (gwcs) | {fmt_s(r['rel']['median'])} vs "
                     f"{fmt_s(t_st)} s = {q:.1f}× | {'yes' if q >= 3 else 'NO'} |")
        else:
            L.append(f"| relative ≥ 3× faster than stcal at {case_name(case)} (gwcs) | stcal: {cell} | — |")
    for kind in args.kinds:
        r = by.get((ABS_TIME_CASE, kind))
        if r and "median" in (r.get("abs_store") or {}):
            t = r["abs_store"]["median"]
            L.append(f"| absolute {case_name(ABS_TIME_CASE)} ≤ {ABS_TIME_TARGET:g} s incl. the PostgreSQL query ({kind}) | "
                     f"{fmt_s(t)} s (provenance=False: {ours_cell(r.get('abs_store_noprov'))} s; Table: "
                     f"{ours_cell(r.get('abs_table'))} s) | {'yes' if t <= ABS_TIME_TARGET else 'NO'} |")
    L.append("")

    # ---- breakdown
    bds = [(r, k) for r in results for k in ("bd_rel", "bd_abs") if k in r]
    if bds:
        L.append("### Where our time goes")
        L.append("")
        L.append("One extra instrumented run per column (wall time in s; top-level stages are exclusive, indented "
                 "rows are the parts of the stage above them spent in that function; n = calls).")
        L.append("")
        heads = [f"{case_name(r['case'])} {r['kind']} {'relative' if k == 'bd_rel' else 'absolute (PostgreSQL)'}"
                 for r, k in bds]
        L.append("| Stage | " + " | ".join(heads) + " |")
        L.append("|---|" + "---:|" * len(bds))
        labels: list[str] = []
        order = [lab for _, lab in Stages.TOP] + [Stages.CAPTURE, Stages.RESOLVE, Stages.WAIT]
        for r, k in bds:
            for lab in r[k]["t"]:
                if lab not in labels:
                    labels.append(lab)
        top = [lab for lab in dict.fromkeys(order) if lab in labels]
        top += [lab.split("|")[0] for lab in labels if "|" in lab and lab.split("|")[0] not in top]
        top = [lab for lab in dict.fromkeys(top) if lab != Stages.BACKGROUND]

        def cell(bd, lab):
            if lab not in bd["t"]:
                return "—"
            return f"{bd['t'][lab]:.3f} (n={bd['n'][lab]})"

        L.append("| **total** | " + " | ".join(f"**{r[k]['total']:.3f}**" for r, k in bds) + " |")
        for lab in top:
            L.append(f"| {lab} | " + " | ".join(cell(r[k], lab) for r, k in bds) + " |")
            for sub in labels:
                if sub.startswith(lab + "|"):
                    L.append(f"| &nbsp;&nbsp;of which {sub.split('|', 1)[1]} | "
                             + " | ".join(cell(r[k], sub) for r, k in bds) + " |")
        L.append("| other (validation, links, checks) | " + " | ".join(
            f"{r[k]['total'] - sum(v for lab, v in r[k]['t'].items() if '|' not in lab and lab != Stages.BACKGROUND):.3f}"
            for r, k in bds) + " |")
        if any(Stages.BACKGROUND in r[k]["t"] for r, k in bds):
            L.append(f"| *{Stages.BACKGROUND}* | " + " | ".join(cell(r[k], Stages.BACKGROUND) for r, k in bds) + " |")
            for sub in labels:
                if sub.startswith(Stages.BACKGROUND + "|"):
                    L.append(f"| &nbsp;&nbsp;of which {sub.split('|', 1)[1]} | "
                             + " | ".join(cell(r[k], sub) for r, k in bds) + " |")
        L.append("")
        per = defaultdict(list)
        for r, k in bds:
            for lab, v in r[k]["t"].items():
                sub = lab.split("|", 1)[-1]
                if "|" in lab and ("set_correction" in sub or "serialize_wcs" in sub) and r[k]["n"][lab]:
                    per[f"{sub} ({r[k] is r.get('bd_rel') and 'relative' or 'absolute'}, {r['kind']})"].append(
                        v / r[k]["n"][lab])
        if per:
            L.append("Mean per call: " + "; ".join(
                f"{lab} " + (f"{1e3 * min(v):.0f} ms" if round(1e3 * min(v)) == round(1e3 * max(v))
                             else f"{1e3 * min(v):.0f}–{1e3 * max(v):.0f} ms") for lab, v in per.items()) + ".")
            L.append("")
    for r in results:
        for k, label in (("profile_rel", "relative"), ("profile_abs", "absolute (PostgreSQL)")):
            if k in r:
                rows = profile_rows(r[k])
                L.append(f"cProfile of ours, {label}, {case_name(r['case'])} {r['kind']} (top functions by own time):")
                L.append("")
                L.append("| calls | own time (s) | cumulative (s) | function |")
                L.append("|---:|---:|---:|---|")
                for calls, tt, ct, where in rows:
                    L.append(f"| {calls} | {tt} | {ct} | `{where}` |")
                L.append("")
    return "\n".join(L).rstrip() + "\n"


def write_section(text: str, path: Path, section: str = SECTION) -> None:
    """Replace (or append) a benchmark's section (its heading line ``section``) of BENCHMARKS.md,
    re-reading the file first."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == section), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    tmp = path.with_name(path.name + ".bench.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="8x2k,8x10k,32x10k,32x100k",
                    help="comma-separated IMAGESxSOURCES (k = thousand), default %(default)s")
    ap.add_argument("--kinds", default="gwcs,fits", help="WCS kinds, default %(default)s")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=120.0, help="per stcal phase, s (default %(default)s)")
    ap.add_argument("--scamp-timeout", type=float, default=180.0, help="per SCAMP run, s (default %(default)s)")
    ap.add_argument("--no-stcal", dest="stcal", action="store_false")
    ap.add_argument("--no-scamp", dest="scamp", action="store_false")
    ap.add_argument("--breakdown", default="32x10k,32x100k",
                    help="cases with a per-stage breakdown of ours ('' for none), default %(default)s")
    ap.add_argument("--no-profile", dest="profile", action="store_false",
                    help="skip the cProfile summary of the largest case")
    ap.add_argument("--no-write", dest="write", action="store_false", help="print only, leave BENCHMARKS.md")
    ap.add_argument("--json", metavar="PATH", help="also save the raw results there (JSON)")
    args = ap.parse_args()
    args.cases = [parse_case(c) for c in args.cases.split(",") if c.strip()]
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in args.kinds if k not in ("gwcs", "fits")]
    if bad:
        ap.error(f"unknown kinds {bad}")
    args.breakdown_cases = [parse_case(c) for c in args.breakdown.split(",") if c.strip()]
    args.profile_case = max(args.cases, key=lambda c: c[0] * c[1])
    args.profile_kind = args.kinds[0]
    if args.stcal:
        try:
            import stcal.tweakreg.tweakreg  # noqa: F401  (imported before forking)
        except ImportError:
            print("stcal is not installed: skipping it", file=sys.stderr)
            args.stcal = False

    def log(msg: str) -> None:
        print(f"[bench_align {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    # A SIGTERM ends the run through the finally blocks (the fresh databases are dropped).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_start = time.perf_counter()
    meta = {"command": command_line("bench/bench_align.py", sys.argv[1:]), "code": code_version(),
            "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu": cpu_model(), "load_start": load_avg(), "others": "; ".join(other_benchmarks()),
            "versions": "",
            "mem": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB RAM"}
    if meta["others"]:
        log(f"WARNING: other benchmarks are running: {meta['others']}")
    scamp_ok = False
    if args.scamp and "fits" in args.kinds:
        scamp_ok, note = ensure_scamp()
        meta["scamp_note"] = None if scamp_ok and note == "installed" else note
        if not scamp_ok:
            log(f"SCAMP skipped: {note}")
    meta["versions"] = versions()
    log(meta["versions"])

    results = []
    stcal_abs_skip: set = set()
    for case in sorted(args.cases, key=lambda c: (c[0], c[1])):
        for kind in args.kinds:
            results.append(run_case(case, kind, args, scamp_ok, stcal_abs_skip, log))
    # Table order: as given on the command line.
    order = {c: i for i, c in enumerate(args.cases)}
    results.sort(key=lambda r: (order[r["case"]], args.kinds.index(r["kind"])))
    meta["load_end"] = load_avg()
    meta["wall_min"] = (time.perf_counter() - t_start) / 60.0
    meta["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    text = render(results, args, meta)
    print(text)
    for r in results:
        for k in ("profile_rel", "profile_abs"):
            if k in r:
                print(f"<!-- full cProfile, {k}, {case_name(r['case'])} {r['kind']}:\n{r[k]}\n-->", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, default=repr, indent=1))
    if args.write:
        write_section(text, ROOT / "BENCHMARKS.md")
        log("BENCHMARKS.md: section written")


if __name__ == "__main__":
    main()
