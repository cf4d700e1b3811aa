"""Re-running a recorded alignment from its record (``astrodb audit verify`` finds this module
through the ``astrodb.verifiers`` entry point; see :mod:`astrodb.provenance.plugins`).

The inputs come from the record itself (:func:`astrodb.provenance.verify.load_run`): each
image's input WCS and catalog rows as used, every parameter, and the reference — the rows
recorded for a file or a Table (a file is also checked against its recorded sha256), or, for a
store catalog, the same query re-run and its rows' hash compared with the recorded one (a
re-ingested or dropped catalog shows up here). The output WCSs are compared with the recorded
ones on a grid of pixels over each image: the run reproduces when every image gets the same
status and every corrected WCS agrees to ``tolerance_uas``.
"""
from __future__ import annotations

import inspect
import os
import warnings

import numpy as np
from astrodb.errors import AstrodbError
from astrodb.ingest.table_reader import sha256_file
from astrodb.provenance.arrays import npz_load
from astrodb.provenance.record import STATUS_LENGTH
from astrodb.provenance.verify import VerifyReport, load_run
from astrodb.provenance.corrections import resolve_wcs

from . import absolute_align, relative_align
from . import refcat as refcats
from .correctors import apply_correction
from .errors import AlignerError
from .plane import unit_vectors

__all__ = ["verify_run", "requery_reference", "apply_correction"]


def _corrector(store, row):
    from astropy.table import Table
    from tweakwcs.correctors import FITSWCSCorrector, JWSTWCSCorrector

    wcs = resolve_wcs(store, row["wcs_kind"], row["input_wcs"])
    data = npz_load(row["catalog_data"])
    cat = Table({"x": data.get("x", np.empty(0)), "y": data.get("y", np.empty(0)),
                 "weight": data.get("weight", np.empty(0))})
    meta = {"catalog": cat, "name": row["name"], "group_id": row["group_id"]}
    if row["epoch"] is not None:
        meta["epoch"] = row["epoch"]
    if row["wcs_kind"] == "gwcs":
        return JWSTWCSCorrector(wcs, row["wcsinfo"], meta=meta)
    return FITSWCSCorrector(wcs, meta=meta)


def _grid(corrector, n: int = 12):
    bb = corrector.bounding_box
    if bb is None:
        bb = ((0.0, 1000.0), (0.0, 1000.0))
    (x0, x1), (y0, y1) = bb
    gx, gy = np.meshgrid(np.linspace(x0 + 0.5, x1 - 0.5, n), np.linspace(y0 + 0.5, y1 - 0.5, n))
    return gx.ravel(), gy.ravel()


def _difference_uas(wcs_a, wcs_b, corrector) -> float:
    x, y = _grid(corrector)

    def sky(w):
        if hasattr(w, "forward_transform"):
            return w(x, y, with_bounding_box=False)
        return w.all_pix2world(x, y, 0)

    a, b = unit_vectors(*sky(wcs_a)), unit_vectors(*sky(wcs_b))
    ang = 2 * np.arcsin(np.clip(np.linalg.norm(a - b, axis=1) / 2, 0, 1))
    return float(np.degrees(ang.max()) * 3.6e9)


def requery_reference(store, run: dict) -> refcats.Reference | None:
    """Run a store reference's recorded query again.

    Parameters
    ----------
    store : astrodb.Store
    run : dict
        The run's ``prov_runs`` row.

    Returns
    -------
    aligner.refcat.Reference or None
        The rows the query gives now (``checksum()`` compares with ``ref_sha256``); None when the
        run's reference is not a store catalog or the catalog cannot be queried any more.
    """
    q = run.get("ref_query") or {}
    if run.get("ref_kind") != "store" or "name" not in q:
        return None
    try:
        return _requery(store, q)
    except (AlignerError, AstrodbError):
        return None


def _requery(store, q: dict) -> refcats.Reference:
    return refcats.resolve(q["name"], center=(q["ra"], q["dec"]), radius=q["radius_deg"], epoch=q.get("epoch"),
                           observer=None if q.get("observer_au") is None else np.asarray(q["observer_au"], float),
                           store=store, centroid_error_mas=q.get("centroid_error_mas",
                                                                 refcats.DEFAULT_CENTROID_ERROR_MAS))


def _reference(store, run, report: VerifyReport):
    """The ``abs_refcat`` argument that reproduces the run's reference, checking it on the way."""
    from astropy.table import Table

    kind, query = run["ref_kind"], run["ref_query"] or {}
    if kind in ("file", "table"):
        if kind == "file":
            path = run["ref_source"]
            recorded = dict(run["ref_files"] or []).get(path)
            if not os.path.isfile(path):
                report.lines.append(f"reference file {path} is gone; using the recorded rows")
            elif recorded and sha256_file(path) != recorded:
                report.fail(f"reference file {path} changed since the run (sha256 {recorded[:12]}… then, "
                            f"{sha256_file(path)[:12]}… now); using the recorded rows")
            else:
                report.lines.append(f"reference file {path}: same sha256 as recorded")
        ref = npz_load(run["ref_data"])
        return Table({"RA": ref["ra"], "DEC": ref["dec"], "weight": ref["weight"]}), {}
    # A store catalog: the same query again, its rows' hash compared; one read through an astrodb
    # service is read there again.
    from astrodb.store.remote import is_service_url

    if is_service_url(query.get("store")):
        import astrodb

        store = astrodb.connect(query["store"])
    try:
        again = _requery(store, query)
    except Exception as exc:  # noqa: BLE001 - any failure to query again (e.g. the catalog was dropped) differs
        report.fail(f"the reference catalog cannot be queried again: {exc}")
        return None, {}
    if again.checksum() == run["ref_sha256"]:
        report.lines.append(f"reference {run['ref_source']}: the same {len(again.ra)} rows as recorded (sha256 match)")
    else:
        then = {h: p for p, h in (run["ref_files"] or [])}
        try:
            now = {f["sha256"]: f["path"] for f in store.catalog(query["catalog"]).files}
        except Exception:  # noqa: BLE001 - the rows differ; the files are only the explanation
            now = {}
        added = [now[h] for h in now if h not in then]
        removed = [then[h] for h in then if h not in now]
        why = []
        if added:
            why.append(f"files ingested since: {', '.join(added[:5])}")
        if removed:
            why.append(f"files recorded then but no longer in the catalog: {', '.join(removed[:5])}")
        report.fail(f"reference rows changed: {run['ref_rows']} rows then, {len(again.ra)} now "
                    f"(sha256 {run['ref_sha256'][:12]}… then, {again.checksum()[:12]}… now)"
                    + ("; " + "; ".join(why) if why else "; the catalog was re-ingested or its rows changed"))
    return query["name"], {"epoch": query["epoch"], "observer": query.get("observer_au"), "store": store}


def verify_run(store, run_id: str, *, tolerance_uas: float = 1.0) -> VerifyReport:
    """Re-run a recorded alignment and compare its outcome with the record.

    Parameters
    ----------
    store : astrodb.Store
        The store holding the record (and, for store references, the catalog).
    run_id : str
        The run's UUID or a unique prefix of it.
    tolerance_uas : float
        Largest accepted difference between a recomputed and a recorded WCS (micro-arcsec).

    Returns
    -------
    astrodb.provenance.verify.VerifyReport
    """
    run, rows = load_run(store, run_id)
    report = VerifyReport(run["run_id"])
    unreadable = [r["name"] for r in rows if r["input_wcs"] is None or r["input_wcs"].startswith(b"not serializable")]
    if unreadable:
        report.fail(f"input WCS of {', '.join(unreadable)} was not recorded: cannot re-run")
        return report
    correctors = [_corrector(store, r) for r in rows]
    params = dict(run["parameters"] or {})
    extra = {}
    if run["step"] == "relative":
        func = relative_align
    else:
        func = absolute_align
        refcat, extra = _reference(store, run, report)
        if refcat is None:
            return report
        params.update(save_abs_catalog=False, abs_catalog_output_dir=None, abs_refcat=refcat)
    accepted = inspect.signature(func).parameters
    kwargs = {k: v for k, v in params.items()
              if k in accepted and k not in ("correctors", "ref_wcs", "ref_wcsinfo", "store")}
    kwargs.update(extra)  # a store reference: the same store, epoch and observer as recorded
    kwargs["provenance"] = False
    error = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            func(correctors, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a recorded failure should fail again
            error = exc
    if run["status"] == "failed" and error is None and run["message"]:
        report.fail(f"the run failed then ({run['message']}) but succeeds now")
    for row, c in zip(rows, correctors):
        res = c.meta.get("fit_result")
        status = res.status if res is not None and res.step == run["step"] else (
            "FAILED: " + str(error) if error is not None else "FAILED: not reached")
        same_kind = status.split(":")[0] == row["status"].split(":")[0]
        if not same_kind or (status.startswith("FAILED") and status[:STATUS_LENGTH] != row["status"]):
            report.fail(f"{row['name']}: status {status[:120]!r} now, {row['status'][:120]!r} then")
            continue
        if row["output_wcs"] is None:
            report.lines.append(f"{row['name']}: {row['status'][:80]} (as recorded)")
            continue
        d = _difference_uas(c.wcs, resolve_wcs(store, row["wcs_kind"], row["output_wcs"]), c)
        report.max_difference_uas = max(report.max_difference_uas, d)
        if d > tolerance_uas:
            report.fail(f"{row['name']}: corrected WCS differs by {d:.3g} µas (> {tolerance_uas:g})")
        else:
            report.lines.append(f"{row['name']}: {row['status']}, corrected WCS within {d:.3g} µas")
    return report
