"""One association aligned on a batch worker.

The worker runs what ``aligner align`` runs for one manifest (relative, then absolute at the
images' epochs), writes the corrected WCSs and reports to the association's output folder, and
returns its provenance records instead of writing them: a worker needs only read access to the
store, and the client records each association once (:func:`astrodb.provenance.batch.record_batch_task`).
"""
from __future__ import annotations

import argparse
import math
import os
import socket
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AlignerError
from .associations import Association

__all__ = ["AssociationResult", "align_association", "run_id", "warm_up"]

#: Namespace of the task's run ids (uuid5 of the task key, attempt and run index).
_RUN_NAMESPACE = uuid.UUID("8a4e0f52-3d0c-5b8e-9f3b-0c1a6d2e7b41")


@dataclass
class AssociationResult:
    """What a task returns: the association's outcome and its runs' records (in order)."""

    name: str
    status: str               # success, partial, failed
    n_images: int
    n_aligned: int
    seconds: float
    worker: str
    rmse: float | None = None  # arcsec: root mean square of the images' final fits
    message: str | None = None
    runs: list = field(default_factory=list)
    #: The distinct warnings ``aligner align`` would have shown, three at most.
    warnings: list = field(default_factory=list)


def run_id(key: str, attempt: int, index: int) -> str:
    """The id of a task's run number ``index`` (from 0): the same for a retried task, new for a new attempt."""
    return str(uuid.uuid5(_RUN_NAMESPACE, f"{key}/{attempt}/{index}"))


_STORES: dict = {}


def _process_store(url: str | None):
    """The store at ``url`` (None: $ASTRODB_URL, else the local one), opened once per process."""
    import astrodb

    key = url or os.environ.get("ASTRODB_URL") or ""
    if key not in _STORES:
        _STORES[key] = astrodb.connect(url)
    return _STORES[key]


def warm_up() -> None:
    """Import what a task uses (run once on each worker before the tasks): a worker's first task
    would otherwise pay the imports, ~0.3 s measured, on top of its alignment."""
    import astropy.io.ascii  # noqa: F401 - ECSV catalogs
    import astropy.io.fits  # noqa: F401
    import scipy.spatial  # noqa: F401 - the matching's KD-trees
    import tweakwcs  # noqa: F401

    from .. import absolute, correctors, provenance, refcat, relative  # noqa: F401
    from ..cli import run_manifest  # noqa: F401


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def align_association(assoc: Association, options: dict, outdir: str, key: str, attempt: int,
                      record: bool) -> AssociationResult:
    """Align one association as ``aligner align`` aligns a manifest.

    Parameters
    ----------
    assoc : Association
    options : dict
        The ``aligner align`` options (every one of its parser's destinations).
    outdir : str
        The association's output folder.
    key, attempt
        The task's key and attempt: its runs' ids derive from them, so a retried task returns
        the same records.
    record : bool
        Return the runs' provenance records (else none are made).

    Returns
    -------
    AssociationResult
        Never raises for a failed alignment or bad input: the result says why.
    """
    from ..cli import run_manifest

    t0 = time.perf_counter()
    runs: list = []
    args = argparse.Namespace(**options)
    args.manifest = assoc.manifest if os.path.isfile(assoc.manifest) else None
    args.outdir = outdir

    def collect(run) -> None:  # the run's id derives from the task's: a retried task returns the same
        run.run_id = run_id(key, attempt, len(runs))
        runs.append(run)

    args.provenance = collect if record else False
    args.open_store = _process_store
    n = len(assoc.entries)
    # The warnings aligner align would show (run_manifest collects them here): they go to the
    # summary, since a worker's stderr is out of the user's sight.
    shown: set = set()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images = run_manifest(args, assoc.entries, lambda msg: None, shown)
    except (AlignerError, OSError, ValueError) as exc:
        return _result(assoc, runs, key, attempt, "failed", n, 0, t0, message=f"{type(exc).__name__}: {exc}",
                       shown=shown)
    except Exception as exc:  # noqa: BLE001 - one association's failure must not end the batch
        return _result(assoc, runs, key, attempt, "failed", n, 0, t0,
                       message=f"unexpected {type(exc).__name__}: {exc}", shown=shown)
    aligned = sum(im.ok for im in images)
    fits = [im.final.rmse for im in images if im.ok and im.final.rmse is not None and math.isfinite(im.final.rmse)]
    rmse = math.sqrt(sum(r * r for r in fits) / len(fits)) if fits else None
    failed = [f"{im.name}: {im.final.status if im.final else 'not run'}" for im in images if not im.ok]
    status = "success" if aligned == n else ("partial" if aligned else "failed")
    return _result(assoc, runs, key, attempt, status, n, aligned, t0, rmse=rmse,
                   message="; ".join(failed) or None, shown=shown)


def _result(assoc, runs, key, attempt, status, n, aligned, t0, *, rmse=None, message=None,
            shown=()) -> AssociationResult:
    return AssociationResult(assoc.name, status, n, aligned, time.perf_counter() - t0, _worker_name(),
                             rmse=rmse, message=message, runs=runs, warnings=sorted(shown)[:3])


def output_folder(outdir: str | Path, assoc: Association) -> str:
    """The association's output folder in the batch's OUTDIR (its name, made safe as a folder name)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in assoc.name) or "association"
    return str(Path(outdir) / safe)
