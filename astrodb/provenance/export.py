"""One recorded run as W3C PROV (PROV-JSON or PROV-N), with the ``prov`` package.

The graph of a run:

* agents: the software (``prov:SoftwareAgent``, the package versions recorded), acting on behalf
  of the user (``prov:Person``, user and host, as the client recorded them); on PostgreSQL also
  the database role that inserted the record (``astrodb:DatabaseRole``, set by the database);
* activities: the run (``run:<uuid>``, start and end times as the client recorded them, step,
  status, every parameter as JSON; and what the database recorded: ``astrodb:server_time``,
  ``astrodb:db_role``, ``astrodb:db_session_role``, the run's link of the hash chain
  ``astrodb:chain_seq``, ``astrodb:chain_digest``) and one fit per image
  (``fit:<uuid>.<image index>``, started by the run; the record has one start and end time per
  run, so the fits carry the run's), all associated with the software and the user;
* entities, identified by content where there is one, so that runs share them: each image's
  catalog (``sha256:<hash>``: of the file, or of the rows used for a table), each input and
  output WCS (``wcs:<sha256 of the serialized WCS>``: the output of one run is the input entity
  of the next run of that image), the reference rows used (``refrows:<sha256>``) derived from the
  store catalog's ingested files or the reference file (``sha256:<hash>``, with the path) and,
  for a store reference, the store catalog (``catalog:<name>``);
* relations: each fit used its image's catalog and input WCS, the reference rows (absolute) or
  the catalogs of its partner images (relative, from the recorded matches); the output WCS
  wasGeneratedBy the fit and wasDerivedFrom the input WCS, the catalog and the reference.
"""
from __future__ import annotations

import hashlib
import json

from .arrays import npz_load
from .audit import run_record
from .chain import link_of

FORMATS = ("prov-json", "prov-n")

#: Namespaces of the identifiers and attributes.
NAMESPACES = {
    "astrodb": "urn:astrodb:",                 # types and attributes
    "run": "urn:uuid:",                         # a run: its UUID
    "fit": "urn:astrodb:fit:",                  # <run uuid>.<image index>
    "sha256": "urn:astrodb:sha256:",            # content: a file's, or a table's rows used
    "wcs": "urn:astrodb:wcs-sha256:",           # a serialized WCS (FITS header text or ASDF)
    "refrows": "urn:astrodb:reference-rows-sha256:",
    "catalog": "urn:astrodb:store-catalog:",
    "agent": "urn:astrodb:agent:",
}


def _doc():
    from prov.model import ProvDocument

    doc = ProvDocument()
    for prefix, uri in NAMESPACES.items():
        doc.add_namespace(prefix, uri)
    return doc


def _safe(text: str) -> str:
    """A PROV-N-safe local name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text))


def _blob_sha(data) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def build_document(store, run_id: str):
    """The :class:`prov.model.ProvDocument` of one run (``run_id``: the id or a unique prefix)."""
    from prov.constants import PROV_LABEL, PROV_LOCATION, PROV_TYPE
    from prov.model import PROV

    run, images = run_record(store, run_id)
    rid = run["run_id"]
    doc = _doc()
    A = "astrodb:"
    seen = {}

    def entity(ident, attrs):
        """One record per identifier (a file can be both a reference and an image catalog)."""
        if ident not in seen:
            seen[ident] = doc.entity(ident, attrs)
        return seen[ident]

    # --- agents ------------------------------------------------------------------------------
    user_name = run.get("user_name") or "unknown"
    user = doc.agent(f"agent:user.{_safe(user_name)}.{_safe(run.get('host') or 'unknown')}", {
        PROV_TYPE: PROV["Person"], PROV_LABEL: f"{user_name}@{run.get('host') or '?'}",
        A + "user": user_name, A + "host": run.get("host") or ""})
    software = run.get("software") or {}
    version = software.get("astrodb", "unknown")
    attrs = {PROV_TYPE: PROV["SoftwareAgent"], PROV_LABEL: f"astrodb/aligner {version}"}
    for pkg, ver in sorted(software.items()):
        attrs[A + _safe(pkg)] = str(ver)
    env = hashlib.sha256(json.dumps(software, sort_keys=True).encode()).hexdigest()[:16]
    sw = doc.agent(f"agent:software.{_safe(version)}.{env}", attrs)
    doc.actedOnBehalfOf(sw, user)

    # --- the run --------------------------------------------------------------------------------
    # Start and end are the client's claims; server_time, db_role and the chain link are the database's.
    recorded = {A + "db_role": run.get("db_role"), A + "db_session_role": run.get("db_session_role"),
                A + "server_time": run.get("server_time")}
    link = link_of(store, rid)
    if link is not None:
        recorded.update({A + "chain_seq": link.seq, A + "chain_digest": link.digest,
                         A + "chain_prev_digest": link.prev_digest})
    run_act = doc.activity(f"run:{rid}", run["started_at"], run["finished_at"], {
        PROV_TYPE: A + "AlignmentRun", PROV_LABEL: f"{run['step']} alignment",
        A + "step": run["step"], A + "status": run["status"], A + "n_images": int(run["n_images"]),
        A + "n_aligned": int(run["n_aligned"]), A + "message": run.get("message") or "",
        A + "parameters": json.dumps(run.get("parameters") or {}, sort_keys=True),
        **{k: v for k, v in recorded.items() if v is not None}})
    doc.wasAssociatedWith(run_act, sw)
    doc.wasAssociatedWith(run_act, user)
    if run.get("db_role"):
        role = doc.agent(f"agent:dbrole.{_safe(run['db_role'])}", {
            PROV_TYPE: A + "DatabaseRole", PROV_LABEL: f"database role {run['db_role']}",
            A + "db_role": run["db_role"], A + "db_session_role": run.get("db_session_role") or ""})
        doc.wasAssociatedWith(run_act, role)

    # --- the reference ---------------------------------------------------------------------------
    ref_entity = None
    if run.get("ref_kind") not in (None, "none") and run.get("ref_sha256"):
        query = run.get("ref_query") or {}
        ref_entity = entity(f"refrows:{run['ref_sha256']}", {
            PROV_TYPE: A + "ReferenceRows", PROV_LABEL: f"{run.get('ref_rows')} reference rows from {run['ref_source']}",
            A + "sha256": run["ref_sha256"], A + "rows": int(run.get("ref_rows") or 0),
            A + "kind": run["ref_kind"], A + "source": run.get("ref_source") or "",
            A + "query": json.dumps(query, sort_keys=True)})
        doc.used(run_act, ref_entity)
        files = [f for f in run.get("ref_files") or [] if isinstance(f, (list, tuple)) and len(f) == 2]
        catalog = None
        if run["ref_kind"] == "store" and run.get("ref_catalog"):
            catalog = entity(f"catalog:{_safe(run['ref_catalog'])}", {
                PROV_TYPE: A + "StoreCatalog", PROV_LABEL: run["ref_catalog"], A + "name": run["ref_catalog"],
                A + "store": str(query.get("store", "")), A + "rows_then": int(query.get("catalog_rows") or 0)})
            doc.wasDerivedFrom(ref_entity, catalog, run_act)
        for path, sha in files:
            f = entity(f"sha256:{sha}", {PROV_TYPE: A + "File", PROV_LABEL: path.rsplit("/", 1)[-1],
                                             PROV_LOCATION: path, A + "sha256": sha})
            doc.wasDerivedFrom(ref_entity, f, run_act)
            if catalog is not None:
                doc.wasDerivedFrom(catalog, f)

    # --- the images ------------------------------------------------------------------------------
    catalogs, inputs = {}, {}
    for im in images:
        k = im["image_index"]
        sha = im.get("catalog_sha256")
        label = im["catalog_source"] if im["catalog_source"] != "table" else f"catalog of {im['name']} (table)"
        ident = f"sha256:{sha}" if sha else f"sha256:unknown.{_safe(rid)}.{k}"
        attrs = {PROV_TYPE: A + ("File" if im["catalog_source"] != "table" else "Table"), PROV_LABEL: label,
                 A + "image": im["name"], A + "rows": int(im.get("catalog_rows") or 0),
                 A + "rows_used": int(im.get("rows_used") or 0)}
        if sha:
            attrs[A + "sha256"] = sha
        if im["catalog_source"] != "table":
            attrs[PROV_LOCATION] = im["catalog_source"]
        catalogs[k] = entity(ident, attrs)
        in_sha = _blob_sha(im.get("input_wcs"))
        inputs[k] = entity(f"wcs:{in_sha}" if in_sha else f"wcs:unknown.{_safe(rid)}.{k}", {
            PROV_TYPE: A + "WCS", PROV_LABEL: f"WCS of {im['name']}", A + "image": im["name"],
            A + "wcs_kind": im.get("wcs_kind") or "", A + "sha256": in_sha or ""})

    for im in images:
        k = im["image_index"]
        fit = doc.activity(f"fit:{_safe(rid)}.{k}", run["started_at"], run["finished_at"], {
            PROV_TYPE: A + "Fit", PROV_LABEL: f"{run['step']} fit of {im['name']}", A + "image": im["name"],
            A + "status": im["status"], A + "fitgeometry": im.get("fitgeometry") or "",
            **{A + key: float(im[key]) for key in ("rotation", "scale", "skew", "rmse", "mae")
               if im.get(key) is not None},
            **{A + key: int(im[key]) for key in ("nmatches", "nref", "nclipped") if im.get(key) is not None},
            **({A + "shift": json.dumps(im["shift"])} if im.get("shift") is not None else {}),
            **({A + "matrix": json.dumps(im["matrix"])} if im.get("matrix") is not None else {})})
        doc.wasStartedBy(fit, starter=run_act)
        doc.wasAssociatedWith(fit, sw)
        doc.wasAssociatedWith(fit, user)
        doc.used(fit, catalogs[k])
        doc.used(fit, inputs[k])
        used = [catalogs[k]]
        if run["step"] == "absolute" and ref_entity is not None:
            doc.used(fit, ref_entity)
            used.append(ref_entity)
        partners = set()
        if im.get("matches") is not None:
            m = npz_load(im["matches"])
            partners = {int(p) for p in m.get("partner_image", []) if int(p) >= 0 and int(p) != k}
        for p in sorted(partners):
            if p in catalogs:
                doc.used(fit, catalogs[p])
                used.append(catalogs[p])
        out_sha = _blob_sha(im.get("output_wcs"))
        if out_sha is not None:
            out = entity(f"wcs:{out_sha}", {
                PROV_TYPE: A + "WCS", PROV_LABEL: f"aligned WCS of {im['name']}", A + "image": im["name"],
                A + "wcs_kind": im.get("wcs_kind") or "", A + "sha256": out_sha})
            doc.wasGeneratedBy(out, fit, run["finished_at"])
            doc.wasDerivedFrom(out, inputs[k], fit)
            for e in used:
                doc.wasDerivedFrom(out, e, fit)
    return doc


def export_prov(store, run_id: str, fmt: str = "prov-json") -> str:
    """One run's provenance as W3C PROV text.

    Parameters
    ----------
    store : astrodb.Store
    run_id : str
        The run's id or a unique prefix.
    fmt : {'prov-json', 'prov-n'}

    Returns
    -------
    str
        PROV-JSON (``prov.model.ProvDocument.deserialize(content=..., format="json")`` reads it
        back) or PROV-N.
    """
    from ..errors import QueryError

    if fmt not in FORMATS:
        raise QueryError(f"PROV format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    doc = build_document(store, run_id)
    if fmt == "prov-json":
        return doc.serialize(format="json", indent=1)
    return doc.get_provn()
