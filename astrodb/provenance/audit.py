"""Reading the provenance records: which runs, which fits, what they used, what has changed.

Everything here reads ``prov_runs`` / ``prov_images`` (migration 0004) and the views of
migration 0005; nothing writes. Tables come back as :class:`astropy.table.Table` with times as
ISO 8601 UTC strings (``2026-11-25T22:20:36.572Z``), so they print, and write as ECSV or JSON.
Run ids may be given as a unique prefix (like git).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import date, datetime, timezone
from typing import Any, Iterable

import numpy as np
import sqlalchemy as sa
from astropy.table import MaskedColumn, Table

from ..errors import QueryError
from ..gaia_names import store_catalog
from ..ingest.table_reader import sha256_file
from . import plugins
from .chain import link_of

__all__ = ["RunNotFoundError", "resolve_run_id", "list_runs", "list_fits", "show_run", "image_history",
           "runs_using_file", "stale_runs", "parse_time", "clock_note"]

_HEX = re.compile(r"^[0-9a-fA-F]+$")


class RunNotFoundError(QueryError, LookupError):
    """No recorded run has that id (or the prefix is ambiguous)."""


# --- times and tables --------------------------------------------------------------------------

def _utc(dt: datetime | None) -> datetime | None:
    """Stored times are UTC; SQLite gives them back naive."""
    if dt is None:
        return None
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt)
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _iso(dt: datetime | None) -> str:
    dt = _utc(dt)
    return "" if dt is None else dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: Any, what: str = "time") -> datetime:
    """A date or time (``datetime``, ``date``, ISO string, astropy ``Time``) as an aware UTC datetime;
    naive values are taken as UTC."""
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if hasattr(value, "to_datetime") and hasattr(value, "utc"):  # astropy Time
        return value.utc.to_datetime(timezone=timezone.utc)
    if isinstance(value, str):
        try:
            return _utc(datetime.fromisoformat(value.strip()))
        except ValueError:
            pass
    raise QueryError(f"{what} must be a date or time like 2026-11-25 or 2026-11-25T14:00:00+01:00, got {value!r}")


def _when(conn: sa.Connection, value: datetime):
    """A bind value comparable with the stored timestamps (SQLite stores naive UTC text)."""
    return value.replace(tzinfo=None) if conn.dialect.name == "sqlite" else value


def _blob_sha256(data: bytes | None) -> str:
    return "" if data is None else hashlib.sha256(data).hexdigest()


def _table(rows: list[dict], spec: Iterable[tuple[str, str]], meta: dict | None = None) -> Table:
    """A Table of ``rows`` with the columns and dtypes of ``spec`` (None: NaN, '' or masked)."""
    cols = []
    for name, kind in spec:
        vals = [r.get(name) for r in rows]
        if kind == "f":
            cols.append(np.array([np.nan if v is None else float(v) for v in vals], dtype=float))
        elif kind == "i":
            missing = [v is None for v in vals]
            data = np.array([0 if v is None else int(v) for v in vals], dtype=np.int64)
            cols.append(MaskedColumn(data, name=name, mask=missing) if any(missing) else data)
        elif kind == "b":
            cols.append(np.array([bool(v) for v in vals], dtype=bool))
        else:
            cols.append(np.array(["" if v is None else str(v) for v in vals], dtype=str) if vals
                        else np.array([], dtype=str))
    names = [n for n, _ in spec]
    t = Table(cols, names=names, meta=meta or {})
    for name, unit in (("rmse_mas", "mas"), ("shift_x", "arcsec"), ("shift_y", "arcsec"), ("rotation", "deg"),
                       ("skew", "deg")):
        if name in t.colnames:
            t[name].unit = unit
    return t


def _schema(store) -> None:
    store._require_schema()


def _prov():
    from ..store.schema import prov_images, prov_runs
    return prov_runs, prov_images


# Columns of prov_runs without the big ones (ref_data).
def _run_columns(prov_runs) -> list:
    return [c for c in prov_runs.c if c.name != "ref_data"]


def _image_columns(prov_images, blobs: bool = False) -> list:
    big = {"catalog_data", "input_wcs", "output_wcs", "matches"}
    return [c for c in prov_images.c if blobs or c.name not in big]


# --- run ids --------------------------------------------------------------------------------

def resolve_run_id(store, run_id: str) -> str:
    """The full id of the run ``run_id`` names (the id or a unique prefix of it).

    Raises
    ------
    RunNotFoundError
        No run has that id or prefix, or the prefix is ambiguous.
    """
    prov_runs, _ = _prov()
    _schema(store)
    text = str(run_id or "").strip().lower()
    if not text or not re.fullmatch(r"[0-9a-f-]+", text):
        raise RunNotFoundError(f"not a run id: {run_id!r} (a UUID or a prefix of one, as `astrodb audit list` shows)")
    with store.engine.connect() as conn:
        ids = conn.execute(sa.select(prov_runs.c.run_id).where(prov_runs.c.run_id.like(text + "%"))
                           .order_by(prov_runs.c.started_at).limit(6)).scalars().all()
    if not ids:
        raise RunNotFoundError(f"no recorded run {run_id!r} in {store.url}")
    if len(ids) > 1 and text not in ids:
        more = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise RunNotFoundError(f"run id prefix {run_id!r} is ambiguous: {more}")
    return text if text in ids else ids[0]


# --- runs -----------------------------------------------------------------------------------

RUN_SPEC = [("run_id", "s"), ("step", "s"), ("started_at", "s"), ("finished_at", "s"), ("user", "s"),
            ("host", "s"), ("status", "s"), ("n_images", "i"), ("n_aligned", "i"), ("ref_kind", "s"),
            ("ref_catalog", "s"), ("ref_source", "s"), ("ref_rows", "i"), ("db_role", "s"),
            ("db_session_role", "s"), ("server_time", "s"), ("message", "s")]


def _catalog_names(catalog: str) -> list[str]:
    """A store catalog name, also by stcal's names (GAIADR3 -> gaia_dr3)."""
    release = store_catalog(catalog)
    return [catalog] if release is None else [catalog, release]


def _status_matches(value: str, wanted: str | None) -> bool:
    """Case-insensitive prefix match: 'failed' matches 'FAILED: ...' and 'failed'."""
    return wanted is None or str(value).lower().startswith(wanted.strip().lower())


def filter_runs(query, conn: sa.Connection, *, image=None, since=None, until=None, catalog=None, step=None):
    """``query`` (a select from ``prov_runs``) narrowed as ``astrodb audit list`` narrows: runs
    that fitted an image of name ``image``, started in [``since``, ``until``), against
    ``catalog`` (a store catalog, also by stcal's names, or a reference file as recorded), of
    ``step``. ``conn``: the connection it will run on (SQLite compares times as naive UTC)."""
    prov_runs, prov_images = _prov()
    if since is not None:
        query = query.where(prov_runs.c.started_at >= _when(conn, parse_time(since, "since")))
    if until is not None:
        query = query.where(prov_runs.c.started_at < _when(conn, parse_time(until, "until")))
    if catalog is not None:
        names = _catalog_names(catalog)
        query = query.where(sa.or_(prov_runs.c.ref_catalog.in_(names), prov_runs.c.ref_source.in_(names)))
    if step is not None:
        query = query.where(prov_runs.c.step == step)
    if image is not None:
        query = query.where(sa.exists().where(prov_images.c.run_id == prov_runs.c.run_id,
                                              prov_images.c.name == image))
    return query


def _run_rows(store, *, image=None, since=None, until=None, catalog=None, status=None, step=None,
              run_ids=None) -> list[dict]:
    prov_runs, _ = _prov()
    _schema(store)
    q = sa.select(*_run_columns(prov_runs)).order_by(prov_runs.c.started_at, prov_runs.c.run_id)
    with store.engine.connect() as conn:
        q = filter_runs(q, conn, image=image, since=since, until=until, catalog=catalog, step=step)
        if run_ids is not None:
            q = q.where(prov_runs.c.run_id.in_(list(run_ids)))
        rows = [dict(r) for r in conn.execute(q).mappings()]
    return [r for r in rows if _status_matches(r["status"], status)]


def _run_record(r: dict) -> dict:
    out = dict(r)
    out["user"] = r.get("user_name")
    out["started_at"], out["finished_at"] = _iso(r["started_at"]), _iso(r["finished_at"])
    out["server_time"] = _iso(r.get("server_time"))
    return out


def list_runs(store, *, image: str | None = None, since=None, until=None, catalog: str | None = None,
              status: str | None = None, step: str | None = None, file: str | None = None) -> Table:
    """The recorded runs, oldest first, optionally filtered.

    Parameters
    ----------
    store : astrodb.Store
    image : str, optional
        Only runs that fitted an image of this name (``meta['name']``).
    since, until : date, datetime, str or astropy Time, optional
        Only runs started at or after ``since`` / before ``until`` (naive times are UTC).
    catalog : str, optional
        Only runs against this reference: a store catalog name (``gaia_dr3``, also stcal's
        ``GAIADR3``) or a reference file path as recorded.
    status : str, optional
        ``success``, ``partial`` or ``failed`` (case-insensitive prefix).
    step : {'relative', 'absolute'}, optional
    file : str, optional
        Only runs that used this file (see :func:`runs_using_file`).

    Returns
    -------
    astropy.table.Table
        run_id, step, started_at, finished_at, user, host, status, n_images, n_aligned,
        ref_kind, ref_catalog, ref_source, ref_rows, db_role, db_session_role, server_time,
        message. ``user``, ``host`` and the times before ``db_role`` are what the client recorded;
        ``db_role``, ``db_session_role`` and ``server_time`` what the database set (PostgreSQL;
        empty on SQLite and for runs recorded before migration 0009).
    """
    ids = None if file is None else set(runs_using_file(store, file)["run_id"])
    rows = _run_rows(store, image=image, since=since, until=until, catalog=catalog, status=status, step=step,
                     run_ids=ids)
    return _table([_run_record(r) for r in rows], RUN_SPEC, {"query": "runs"})


# --- fits (one row per image of a run) --------------------------------------------------------

FIT_SPEC = [("run_id", "s"), ("step", "s"), ("started_at", "s"), ("image", "s"), ("image_index", "i"),
            ("group_id", "s"), ("status", "s"), ("fitgeometry", "s"), ("shift_x", "f"), ("shift_y", "f"),
            ("rotation", "f"), ("scale", "f"), ("skew", "f"), ("rmse_mas", "f"), ("nmatches", "i"),
            ("nref", "i"), ("nclipped", "i"), ("ref_source", "s"), ("catalog_source", "s"),
            ("catalog_sha256", "s")]


def _fit_record(run: dict, im: dict) -> dict:
    shift = im.get("shift")
    ok_shift = isinstance(shift, (list, tuple)) and len(shift) == 2
    return {"run_id": run["run_id"], "step": run["step"], "started_at": _iso(run["started_at"]),
            "image": im["name"], "image_index": im["image_index"], "group_id": im["group_id"],
            "status": im["status"], "fitgeometry": im["fitgeometry"],
            "shift_x": shift[0] if ok_shift else None, "shift_y": shift[1] if ok_shift else None,
            "rotation": im["rotation"], "scale": im["scale"], "skew": im["skew"],
            "rmse_mas": None if im["rmse"] is None else im["rmse"] * 1000.0, "nmatches": im["nmatches"],
            "nref": im["nref"], "nclipped": im["nclipped"], "ref_source": run.get("ref_source"),
            "catalog_source": im["catalog_source"], "catalog_sha256": im["catalog_sha256"]}


def _images_of(store, run_ids: list[str], *, image: str | None = None, blobs=False) -> list[dict]:
    _, prov_images = _prov()
    if not run_ids:
        return []
    out = []
    with store.engine.connect() as conn:
        for k in range(0, len(run_ids), 500):
            q = sa.select(*_image_columns(prov_images, blobs)).where(prov_images.c.run_id.in_(run_ids[k:k + 500]))
            if image is not None:
                q = q.where(prov_images.c.name == image)
            out += [dict(r) for r in conn.execute(q).mappings()]
    return out


def list_fits(store, *, run: str | None = None, image: str | None = None, since=None, until=None,
              catalog: str | None = None, status: str | None = None, step: str | None = None,
              file: str | None = None) -> Table:
    """One row per image fit of the matching runs, oldest run first.

    The filters are those of :func:`list_runs`, except that ``image`` keeps that image's rows
    only and ``status`` applies to each fit (``success``, ``reference``, ``failed``:
    case-insensitive prefix of ``SUCCESS``, ``REFERENCE``, ``FAILED: <why>``); ``run`` is a run
    id or prefix. "Which images were aligned against gaia_dr3" is
    ``list_fits(store, catalog="gaia_dr3", status="success")``.
    """
    ids = None if file is None else set(runs_using_file(store, file)["run_id"])
    if run is not None:
        one = resolve_run_id(store, run)
        ids = {one} if ids is None else ids & {one}
    runs = _run_rows(store, image=image, since=since, until=until, catalog=catalog, step=step, run_ids=ids)
    by_id = {r["run_id"]: r for r in runs}
    images = _images_of(store, list(by_id), image=image)
    order = {rid: k for k, rid in enumerate(by_id)}
    images.sort(key=lambda im: (order[im["run_id"]], im["image_index"]))
    rows = [_fit_record(by_id[im["run_id"]], im) for im in images if _status_matches(im["status"], status)]
    return _table(rows, FIT_SPEC, {"query": "fits"})


# --- one run --------------------------------------------------------------------------------

def show_run(store, run_id: str) -> dict:
    """One run's record without the big binary columns.

    Returns
    -------
    dict
        The ``prov_runs`` columns (times as aware UTC datetimes; ``ref_data`` replaced by
        ``ref_data_bytes``), ``chain``: the run's link of the provenance chain (``seq``,
        ``digest``, ``prev_digest``, ``db_role``, ``server_time``; None when it has none), and
        ``images``: per image its ``prov_images`` columns without the catalog rows, WCSs and
        matches, which are replaced by their sizes and the sha256 of the input and output WCS
        (``input_wcs_sha256``, ``output_wcs_sha256``: equal hashes across runs are the same WCS).

    Raises
    ------
    RunNotFoundError
        Unknown or ambiguous id.
    """
    prov_runs, prov_images = _prov()
    rid = resolve_run_id(store, run_id)
    with store.engine.connect() as conn:
        run = dict(conn.execute(sa.select(*_run_columns(prov_runs),
                                          sa.func.length(prov_runs.c.ref_data).label("ref_data_bytes"))
                                .where(prov_runs.c.run_id == rid)).mappings().one())
        rows = [dict(r) for r in conn.execute(sa.select(prov_images).where(prov_images.c.run_id == rid)
                                              .order_by(prov_images.c.image_index)).mappings()]
    run["started_at"], run["finished_at"] = _utc(run["started_at"]), _utc(run["finished_at"])
    run["server_time"] = _utc(run.get("server_time"))
    link = link_of(store, rid)
    run["chain"] = None if link is None else {k: getattr(link, k) for k in
                                              ("seq", "digest", "prev_digest", "db_role", "server_time")}
    images = []
    for r in rows:
        im = {k: v for k, v in r.items() if k not in ("catalog_data", "input_wcs", "output_wcs", "matches", "run_id")}
        im["input_wcs_sha256"] = _blob_sha256(r["input_wcs"])
        im["output_wcs_sha256"] = _blob_sha256(r["output_wcs"])
        for k in ("catalog_data", "input_wcs", "output_wcs", "matches"):
            im[k + "_bytes"] = 0 if r[k] is None else len(r[k])
        images.append(im)
    run["images"] = images
    return run


def clock_note(run: dict, tolerance_s: float = 600.0) -> str:
    """How far a run's claimed end time is from the server's time of its record.

    Parameters
    ----------
    run : dict
        A run as :func:`show_run` gives it (``finished_at`` from the client, ``server_time``
        from the database).
    tolerance_s : float
        Largest gap not worth a note (clocks differ; the record is written after the run).

    Returns
    -------
    str
        E.g. "the client's end time is 6.8 years before the server's time of the record"; ''
        within the tolerance or when the database recorded no time (SQLite).
    """
    server, finished = _utc(run.get("server_time")), _utc(run.get("finished_at"))
    if server is None or finished is None:
        return ""
    gap = (server - finished).total_seconds()
    if abs(gap) <= tolerance_s:
        return ""
    size = abs(gap)
    for unit, seconds in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if size >= seconds or unit == "minutes":
            amount = f"{size / seconds:.1f} {unit}"
            break
    side = "before" if gap > 0 else "after"
    return f"the client's end time is {amount} {side} the server's time of the record"


# --- one image ------------------------------------------------------------------------------

HISTORY_SPEC = [("started_at", "s"), ("run_id", "s"), ("step", "s"), ("run_status", "s"), ("status", "s"),
                ("image_index", "i"), ("fitgeometry", "s"), ("shift_x", "f"), ("shift_y", "f"), ("rotation", "f"),
                ("scale", "f"), ("rmse_mas", "f"), ("nmatches", "i"), ("nref", "i"), ("ref_source", "s"),
                ("catalog_sha256", "s"), ("input_wcs_sha256", "s"), ("wcs_sha256", "s"), ("input_from_run", "s")]


def image_history(store, name: str) -> Table:
    """Every run that touched image ``name``, oldest first: the fit and the WCS lineage.

    ``input_wcs_sha256`` is the WCS the run started from, ``wcs_sha256`` the one it left (the
    output when aligned, else the input, unchanged); ``input_from_run`` is the latest earlier
    run that aligned the image to exactly the WCS this run started from ('' when no recorded run
    produced it: the image's original WCS, or one changed outside the aligner).

    Raises
    ------
    QueryError
        No recorded fit of an image of that name.
    """
    _, prov_images = _prov()
    runs = _run_rows(store, image=name)
    if not runs:
        with store.engine.connect() as conn:
            like = conn.execute(sa.select(prov_images.c.name).distinct()
                                .where(prov_images.c.name.like(f"%{name}%")).limit(5)).scalars().all()
        hint = f" (similar names: {', '.join(like)})" if like else ""
        raise QueryError(f"no recorded fit of an image named {name!r} in {store.url}{hint}")
    by_id = {r["run_id"]: r for r in runs}
    order = {rid: k for k, rid in enumerate(by_id)}
    images = sorted(_images_of(store, list(by_id), image=name, blobs=True),
                    key=lambda im: (order[im["run_id"]], im["image_index"]))
    rows, made_by = [], {}
    for im in images:
        run = by_id[im["run_id"]]
        rec = _fit_record(run, im)
        inp = _blob_sha256(im["input_wcs"])
        out = _blob_sha256(im["output_wcs"]) or inp
        rec.update(run_status=run["status"], input_wcs_sha256=inp, wcs_sha256=out,
                   input_from_run=made_by.get(inp, ""))
        if im["output_wcs"] is not None:
            made_by[out] = run["run_id"]
        rows.append(rec)
    return _table(rows, HISTORY_SPEC, {"query": "image history", "image": name})


# --- files ----------------------------------------------------------------------------------

USE_SPEC = [("run_id", "s"), ("step", "s"), ("started_at", "s"), ("status", "s"), ("used_as", "s"),
            ("image", "s"), ("path", "s"), ("sha256", "s")]


def _file_matcher(sha256_or_path: str):
    """A predicate on (path, sha256): the same content, the same path, or the same file name."""
    arg = os.fspath(sha256_or_path).strip()
    if not arg:
        raise QueryError("a file path or sha256 is needed")
    shas: set[str] = set()
    paths = {arg}
    if os.path.isfile(arg):
        shas.add(sha256_file(arg))
        paths.add(os.path.abspath(arg))
    prefix = arg.lower() if _HEX.match(arg) and len(arg) >= 8 else None
    bare = os.sep not in arg and "/" not in arg

    def match(path: str | None, sha: str | None) -> bool:
        sha = (sha or "").lower()
        if sha and (sha in shas or (prefix is not None and sha.startswith(prefix))):
            return True
        if not path:
            return False
        return path in paths or (bare and os.path.basename(path) == arg)

    return match


def runs_using_file(store, sha256_or_path: str) -> Table:
    """Runs that used a file: as a reference (the file itself, or a file ingested into the store
    catalog the run queried, as recorded then) or as an image's catalog.

    ``sha256_or_path``: a sha256 (or a prefix of 8+ hex digits), a path as recorded, a bare file
    name (matches any recorded path ending with it), or an existing file (matched by its current
    sha256 too, wherever it was when used).

    Returns
    -------
    astropy.table.Table
        One row per use: run_id, step, started_at, status, used_as ('reference' or 'catalog'),
        image (for 'catalog'), path, sha256; oldest run first.
    """
    match = _file_matcher(sha256_or_path)
    runs = _run_rows(store)
    rows = []
    by_id = {r["run_id"]: r for r in runs}
    for r in runs:
        for entry in r.get("ref_files") or []:
            if isinstance(entry, (list, tuple)) and len(entry) == 2 and match(entry[0], entry[1]):
                rows.append({"run_id": r["run_id"], "step": r["step"], "started_at": _iso(r["started_at"]),
                             "status": r["status"], "used_as": "reference", "image": "", "path": entry[0],
                             "sha256": entry[1]})
    _, prov_images = _prov()
    with store.engine.connect() as conn:
        ims = conn.execute(sa.select(prov_images.c.run_id, prov_images.c.image_index, prov_images.c.name,
                                     prov_images.c.catalog_source, prov_images.c.catalog_sha256)).mappings().all()
    for im in ims:
        src = im["catalog_source"] if im["catalog_source"] != "table" else None
        if match(src, im["catalog_sha256"]):
            r = by_id[im["run_id"]]
            rows.append({"run_id": r["run_id"], "step": r["step"], "started_at": _iso(r["started_at"]),
                         "status": r["status"], "used_as": "catalog", "image": im["name"],
                         "path": im["catalog_source"], "sha256": im["catalog_sha256"], "_k": im["image_index"]})
    order = {rid: k for k, rid in enumerate(by_id)}
    rows.sort(key=lambda x: (order[x["run_id"]], x["used_as"] != "reference", x.get("_k", -1)))
    return _table(rows, USE_SPEC, {"query": "runs using file", "file": str(sha256_or_path)})


# --- staleness ------------------------------------------------------------------------------

STALE_SPEC = [("run_id", "s"), ("step", "s"), ("started_at", "s"), ("status", "s"), ("ref_kind", "s"),
              ("reference", "s"), ("changes", "s"), ("rows_changed", "s")]


def stale_runs(store, *, files: bool = True, requery: bool = False) -> Table:
    """Runs whose reference catalog has changed since: it may no longer give the rows they used.

    For a store catalog, the catalog's ingested files then (``prov_runs.ref_files``) are compared
    with its files now (the view ``prov_reference_changes``: the catalog dropped, a recorded file
    no longer in it, a file ingested since). With ``files``, runs against a reference file are
    also checked on disk (missing, or another sha256 now). With ``requery``, each store reference
    found changed is queried again as the run did and its rows' hash compared with the recorded
    one: ``rows_changed`` is then 'yes' or 'no' (a file added elsewhere on the sky changes the
    catalog, not the rows used), otherwise '' (unknown).

    Returns
    -------
    astropy.table.Table
        run_id, step, started_at, status, ref_kind, reference, changes (what differs, '; '-joined),
        rows_changed; oldest run first.
    """
    _schema(store)
    with store.engine.connect() as conn:
        changes = conn.execute(sa.text("SELECT run_id, change, path FROM prov_reference_changes "
                                       "ORDER BY started_at, run_id, change, path")).all()
    why: dict[str, list[str]] = {}
    for rid, change, path in changes:
        why.setdefault(rid, []).append(change if path is None else f"{change}: {path}")
    runs = _run_rows(store)
    if files:
        for r in runs:
            if r["ref_kind"] != "file":
                continue
            for entry in r.get("ref_files") or []:
                path, sha = entry
                if not os.path.isfile(path):
                    why.setdefault(r["run_id"], []).append(f"file missing: {path}")
                elif sha256_file(path) != sha:
                    why.setdefault(r["run_id"], []).append(f"file changed on disk: {path}")
    rows = []
    for r in runs:
        if r["run_id"] not in why:
            continue
        rec = {"run_id": r["run_id"], "step": r["step"], "started_at": _iso(r["started_at"]), "status": r["status"],
               "ref_kind": r["ref_kind"], "reference": r["ref_catalog"] or r["ref_source"],
               "changes": "; ".join(why[r["run_id"]]), "rows_changed": ""}
        if requery:
            rec["rows_changed"] = _rows_changed(store, r)
        rows.append(rec)
    return _table(rows, STALE_SPEC, {"query": "stale runs"})


def _rows_changed(store, run: dict) -> str:
    """'yes'/'no': does the run's reference query give other rows now? '' when it cannot tell."""
    if run["ref_kind"] == "file":
        return "yes"  # the file itself differs or is gone
    if run["ref_kind"] != "store":
        return ""
    again = requery_reference(store, run)
    if again is None:
        return "yes"
    return "no" if again.checksum() == run["ref_sha256"] else "yes"


def requery_reference(store, run: dict):
    """Run a store reference's recorded query again, with the installed aligner (its
    ``requery_reference``, see :mod:`astrodb.provenance.plugins`).

    Parameters
    ----------
    store : astrodb.Store
    run : dict
        The run's ``prov_runs`` row.

    Returns
    -------
    object or None
        The rows the query gives now (``ra``, ``dec``, ``checksum()``: compared with
        ``ref_sha256``); None when the reference is not a store catalog, or the catalog cannot be
        queried any more (dropped).

    Raises
    ------
    astrodb.provenance.plugins.NoAlignerError
        A store reference, and no aligner installed to query it as the run did.
    """
    if run.get("ref_kind") != "store" or "name" not in (run.get("ref_query") or {}):
        return None
    return plugins.load(plugins.VERIFIERS, "querying a run's reference again").requery_reference(store, run)


def run_record(store, run_id: str) -> tuple[dict, list[dict]]:
    """The full rows of a run (blobs included): ``(prov_runs row, [prov_images rows])``."""
    prov_runs, prov_images = _prov()
    rid = resolve_run_id(store, run_id)
    with store.engine.connect() as conn:
        run = dict(conn.execute(sa.select(prov_runs).where(prov_runs.c.run_id == rid)).mappings().one())
        rows = [dict(r) for r in conn.execute(sa.select(prov_images).where(prov_images.c.run_id == rid)
                                              .order_by(prov_images.c.image_index)).mappings()]
    run["started_at"], run["finished_at"] = _utc(run["started_at"]), _utc(run["finished_at"])
    run["server_time"] = _utc(run.get("server_time"))
    return run, rows


def to_jsonable(value):
    """show_run's dict (or any value) as plain JSON values: times ISO, bytes by their size."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, str):
        return str(value)
    return value


def dumps(value) -> str:
    return json.dumps(to_jsonable(value), indent=1)
