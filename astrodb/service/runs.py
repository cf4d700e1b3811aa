"""Provenance records of alignment runs (tables ``prov_runs``, ``prov_images``), read-only:
a page of runs, one run with its images, and a run as W3C PROV.

One run and its PROV come from :mod:`astrodb.provenance` (``show_run``, ``export_prov``: the
same records ``astrodb audit`` shows) when it is installed, else from the small direct
queries and PROV-JSON builder here. Binary columns (the rows used, WCSs, matches) are not
sent; their sizes are. Queries are SQLAlchemy Core (bound parameters).
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime

import sqlalchemy as sa

from ..store.schema import prov_images, prov_runs
from .errors import BadParameter, NotFound

_BINARY_RUN = {"ref_data"}
_BINARY_IMAGE = {"catalog_data", "input_wcs", "output_wcs", "matches"}
_RUN_SUMMARY = ("run_id", "step", "started_at", "finished_at", "status", "message", "n_images", "n_aligned",
                "ref_kind", "ref_catalog", "ref_source", "user_name", "host")
_ID = re.compile(r"^[0-9a-fA-F-]{4,36}$")


def _clean(v):
    """JSON-safe: non-finite floats (possible in recorded parameters) become strings."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, (bytes, memoryview)):
        return None
    return v


def _jsonable(row: dict, binary=()) -> dict:
    out = {}
    for k, v in row.items():
        if k in binary:
            out[k + "_bytes"] = None if v is None else len(v)
        else:
            out[k] = _clean(v)
    return out


def list_runs(store, *, limit: int, offset: int, catalog: str | None, status: str | None,
              step: str | None) -> list[dict]:
    q = sa.select(*(prov_runs.c[n] for n in _RUN_SUMMARY))
    if catalog:
        q = q.where(prov_runs.c.ref_catalog == catalog)
    if status:
        q = q.where(prov_runs.c.status == status)
    if step:
        q = q.where(prov_runs.c.step == step)
    q = q.order_by(prov_runs.c.started_at.desc(), prov_runs.c.run_id).limit(limit).offset(offset)
    with store.engine.connect() as conn:
        return [_jsonable(dict(r)) for r in conn.execute(q).mappings()]


def page_runs(store, *, limit: int, offset: int, image: str | None = None, catalog: str | None = None,
              status: str | None = None, step: str | None = None, since=None, until=None) -> tuple[list[dict], bool]:
    """One page of runs, newest first, filtered as ``astrodb audit list`` filters
    (:func:`astrodb.provenance.audit.filter_runs`): (rows, whether more follow)."""
    from ..provenance.audit import filter_runs

    q = sa.select(*(prov_runs.c[n] for n in _RUN_SUMMARY))
    if status:
        q = q.where(prov_runs.c.status == status)
    with store.engine.connect() as conn:
        q = filter_runs(q, conn, image=image, since=since, until=until, catalog=catalog, step=step)
        q = q.order_by(prov_runs.c.started_at.desc(), prov_runs.c.run_id).limit(limit + 1).offset(offset)
        rows = [dict(r) for r in conn.execute(q).mappings()]
    return rows[:limit], len(rows) > limit


def _check_id(run_id: str) -> None:
    if not _ID.match(run_id):
        raise BadParameter("id", f"not a run id (a UUID or its first hex digits): {run_id[:40]!r}")


def _audit():
    try:
        from .. import provenance
        return provenance if hasattr(provenance, "show_run") and hasattr(provenance, "export_prov") else None
    except ImportError:
        return None


def _run_not_found(exc: Exception) -> Exception:
    msg = str(exc)
    return BadParameter("id", msg) if "ambiguous" in msg or "not a run id" in msg else NotFound(msg)


def by_run_id(what: str, store, run_id: str, *args):
    """``astrodb.provenance.<what>(store, run_id, *args)`` (``show_run``, ``resolve_run_id``,
    ``export_prov``: a function that looks a run up), with a malformed, ambiguous or unknown id
    answered as the service's BadParameter or NotFound. Imported here, in the worker thread: the
    provenance package is not loaded at start-up."""
    _check_id(run_id)
    from .. import provenance

    try:
        return getattr(provenance, what)(store, run_id, *args)
    except provenance.RunNotFoundError as exc:
        raise _run_not_found(exc) from None


def get_run(store, run_id: str) -> dict:
    """One run (a unique id prefix of >= 4 hex digits works) with its images."""
    audit = _audit()
    if audit is None:
        return get_run_direct(store, run_id)
    run = by_run_id("show_run", store, run_id)
    images = run.pop("images", [])
    out = _jsonable(run)
    out["images"] = [_jsonable(im) for im in images]
    return out


def get_prov(store, run_id: str, fmt: str) -> str:
    """The run as PROV-JSON (``fmt`` "json") or PROV-N ("provn") text."""
    audit = _audit()
    if audit is None:
        if fmt != "json":
            raise BadParameter("format", "PROV-N needs astrodb.provenance (only PROV-JSON here)")
        return json.dumps(prov_document(get_run_direct(store, run_id)))
    return by_run_id("export_prov", store, run_id, "prov-json" if fmt == "json" else "prov-n")


def get_run_direct(store, run_id: str) -> dict:
    _check_id(run_id)
    with store.engine.connect() as conn:
        runs = conn.execute(sa.select(prov_runs).where(prov_runs.c.run_id.startswith(run_id.lower(), autoescape=True))
                            .limit(6)).mappings().all()
        if not runs:
            raise NotFound(f"no recorded run {run_id!r}")
        if len(runs) > 1:
            raise BadParameter("id", f"run id prefix {run_id!r} is ambiguous: "
                                     f"{', '.join(r['run_id'] for r in runs[:5])}")
        run = _jsonable(dict(runs[0]), _BINARY_RUN)
        images = conn.execute(sa.select(prov_images).where(prov_images.c.run_id == run["run_id"])
                              .order_by(prov_images.c.image_index)).mappings().all()
    run["images"] = [_jsonable({k: v for k, v in dict(r).items() if k != "run_id"}, _BINARY_IMAGE) for r in images]
    return run


def prov_document(run: dict) -> dict:
    """W3C PROV-JSON of a run: the alignment activity, the software and user agents, the
    reference catalog and each image's catalog and input WCS used, each corrected WCS generated."""
    rid = run["run_id"]
    act = f"astrodb:run/{rid}"
    sw = f"astrodb:software/{rid}"
    doc = {
        "prefix": {"astrodb": "urn:astrodb:", "xsd": "http://www.w3.org/2001/XMLSchema#"},
        "activity": {act: {"prov:type": f"astrodb:{run['step']}_align", "prov:startTime": run["started_at"],
                           "prov:endTime": run["finished_at"], "astrodb:status": run["status"],
                           "astrodb:message": run.get("message"), "astrodb:parameters": run.get("parameters")}},
        "agent": {sw: {"prov:type": "prov:SoftwareAgent", "astrodb:versions": run.get("software")}},
        "entity": {}, "used": {}, "wasGeneratedBy": {}, "wasAssociatedWith": {
            "_:assoc_sw": {"prov:activity": act, "prov:agent": sw}},
    }
    if run.get("user_name"):
        user = f"astrodb:user/{run['user_name']}"
        doc["agent"][user] = {"prov:type": "prov:Person", "astrodb:host": run.get("host")}
        doc["wasAssociatedWith"]["_:assoc_user"] = {"prov:activity": act, "prov:agent": user}
    if run.get("ref_kind") not in (None, "none"):
        ref = f"astrodb:reference/{rid}"
        doc["entity"][ref] = {"prov:type": "astrodb:reference_catalog", "astrodb:kind": run["ref_kind"],
                              "astrodb:source": run.get("ref_source"), "astrodb:catalog": run.get("ref_catalog"),
                              "astrodb:query": run.get("ref_query"), "astrodb:files": run.get("ref_files"),
                              "astrodb:rows": run.get("ref_rows"), "astrodb:sha256": run.get("ref_sha256")}
        doc["used"]["_:used_ref"] = {"prov:activity": act, "prov:entity": ref}
    for im in run.get("images", []):
        i = im["image_index"]
        cat, wcs_in = f"astrodb:image/{rid}/{i}/catalog", f"astrodb:image/{rid}/{i}/input_wcs"
        doc["entity"][cat] = {"prov:type": "astrodb:source_catalog", "prov:label": im["name"],
                              "astrodb:source": im.get("catalog_source"), "astrodb:sha256": im.get("catalog_sha256"),
                              "astrodb:rows": im.get("catalog_rows"), "astrodb:rows_used": im.get("rows_used")}
        doc["entity"][wcs_in] = {"prov:type": "astrodb:wcs", "prov:label": im["name"],
                                 "astrodb:kind": im.get("wcs_kind"), "astrodb:epoch": im.get("epoch")}
        doc["used"][f"_:used_cat_{i}"] = {"prov:activity": act, "prov:entity": cat}
        doc["used"][f"_:used_wcs_{i}"] = {"prov:activity": act, "prov:entity": wcs_in}
        if im.get("output_wcs_bytes"):
            out = f"astrodb:image/{rid}/{i}/output_wcs"
            doc["entity"][out] = {"prov:type": "astrodb:wcs", "prov:label": im["name"],
                                  "astrodb:status": im.get("status"), "astrodb:fitgeometry": im.get("fitgeometry"),
                                  "astrodb:shift_arcsec": im.get("shift"), "astrodb:rotation_deg": im.get("rotation"),
                                  "astrodb:scale": im.get("scale"), "astrodb:rmse_arcsec": im.get("rmse"),
                                  "astrodb:nmatches": im.get("nmatches")}
            doc["wasGeneratedBy"][f"_:gen_{i}"] = {"prov:entity": out, "prov:activity": act}
            doc.setdefault("wasDerivedFrom", {})[f"_:der_{i}"] = {"prov:generatedEntity": out,
                                                                  "prov:usedEntity": wcs_in}
    return doc
