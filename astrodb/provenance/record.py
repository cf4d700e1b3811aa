"""Writing one alignment run's record: ``prov_runs`` + ``prov_images`` (migration 0004), chained.

An aligner describes a run with a :class:`RunRecord` (its :class:`ImageRecord` per image and
its :class:`ReferenceRecord`) and hands it to :func:`record_run`, which inserts it in one
transaction and links it into the hash chain there (``prov_chain``, migration 0009: by the
database on PostgreSQL, by :func:`astrodb.provenance.chain.link_run` on SQLite). What the
columns hold, and how their bytes are made, is defined here and in the modules it uses:

* arrays (an image's rows used, its matches, a file or Table reference): ``.npz`` bytes made by
  :func:`catalog_blob`, :func:`matches_blob`, :func:`reference_blob`
  (:mod:`astrodb.provenance.arrays`);
* WCSs: :func:`~astrodb.provenance.wcs_bytes.serialize_wcs` (FITS header text, or ASDF);
* JSON columns (parameters, ``wcsinfo``, the reference query): :func:`jsonable`;
* the checksum of an in-memory catalog's rows: :func:`arrays_sha256`.

Reading the records back is :mod:`astrodb.provenance.audit` and the modules beside it.
"""
from __future__ import annotations

import getpass
import hashlib
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from astropy.table import Table
from numpy.typing import ArrayLike

from ..epoch import to_julian_year
from ..ingest.table_reader import sha256_file
from ..store.schema import catalogs, prov_images, prov_runs, source_files
from ..store.store import connect
from .arrays import npz_bytes
from .chain import link_run

__all__ = ["ImageRecord", "ReferenceRecord", "RunRecord", "record_run", "catalog_blob", "matches_blob",
           "reference_blob", "arrays_sha256", "jsonable", "unserializable", "STATUS_LENGTH"]

#: Longest ``prov_images.status`` stored (a failure's reason is cut there; ``message`` keeps it whole).
STATUS_LENGTH = 300


def current_user() -> str:
    """The login name of this process' user.

    Returns
    -------
    str
        Its uid where there is no name (some containers), else ``'unknown'``.
    """
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - getpass raises whatever its last fallback raises
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


@dataclass
class ImageRecord:
    """What one image of a run used and produced (a ``prov_images`` row).

    ``input_wcs`` / ``output_wcs`` are :func:`~astrodb.provenance.wcs_bytes.serialize_wcs` bytes
    or a :func:`~astrodb.provenance.corrections.correction_document` of a recorded WCS
    (``output_wcs`` None when the run did not fit the image); ``catalog_data`` is
    :func:`catalog_blob`'s, ``matches`` :func:`matches_blob`'s. The fit's fields are None for an
    image the run did not reach (``fitgeometry`` ... ``nclipped``) or did not fit (``matrix`` ...
    ``skew``). ``epoch`` is anything :func:`astrodb.epoch.to_julian_year` reads (else None).
    """

    name: str
    wcs_kind: str
    input_wcs: bytes | None
    status: str
    group_id: str | None = None
    epoch: Any = None
    catalog_source: str = "table"
    catalog_sha256: str = ""
    catalog_rows: int = 0
    rows_used: int = 0
    catalog_data: bytes | None = None
    wcsinfo: Any = None
    output_wcs: bytes | None = None
    message: str | None = None
    fitgeometry: str | None = None
    matrix: Any = None
    shift: Any = None
    rotation: float | None = None
    scale: float | None = None
    skew: float | None = None
    rmse: float | None = None
    mae: float | None = None
    nmatches: int | None = None
    nref: int | None = None
    nclipped: int | None = None
    matches: bytes | None = None


@dataclass
class ReferenceRecord:
    """The reference catalog of an absolute run.

    ``kind``: ``'store'`` (a store catalog, queried), ``'file'`` or ``'table'``. ``sha256`` is the
    hash of the rows used, as the aligner defines it; ``data`` the rows themselves
    (:func:`reference_blob`) for a file or Table. ``files`` is what the reference was made of
    then, ``[[path, sha256], ...]``; None: :func:`record_run` reads them (a store catalog's
    ingested files, a file's own sha256).
    """

    kind: str
    source: str
    query: dict
    rows: int
    sha256: str
    catalog: str | None = None
    data: bytes | None = None
    files: list | None = None


@dataclass
class RunRecord:
    """One run (a ``prov_runs`` row) and its images, in image order.

    ``status`` is ``'success'``, ``'partial'`` or ``'failed'``; ``message`` why it failed.
    ``parameters`` are made JSON by :func:`jsonable` when written. ``user_name`` and ``host``
    default to this process' user and host.
    """

    run_id: str
    step: str
    started_at: datetime
    finished_at: datetime
    status: str
    parameters: dict
    software: dict
    images: list[ImageRecord]
    n_aligned: int
    message: str | None = None
    reference: ReferenceRecord | None = None
    user_name: str = field(default_factory=current_user)
    host: str = field(default_factory=socket.gethostname)


def catalog_blob(rows: ArrayLike, x: ArrayLike, y: ArrayLike, weight: ArrayLike) -> bytes:
    """An image's sources as the run used them: catalog row indices and pixel positions, weights.

    Parameters
    ----------
    rows, x, y, weight : array_like
        Same length: the row of each source in the image's catalog, its position, its weight.

    Returns
    -------
    bytes
        ``.npz`` with members ``row``, ``x``, ``y``, ``weight`` (``prov_images.catalog_data``).
    """
    return npz_bytes(row=rows, x=x, y=y, weight=weight)


def matches_blob(input_idx: ArrayLike, partner_idx: ArrayLike, partner_image: ArrayLike) -> bytes:
    """An image's matched pairs.

    Parameters
    ----------
    input_idx : array_like of int
        Index of each pair's source among the image's recorded rows.
    partner_idx : array_like of int
        Index of its partner: a reference row, or a source of the partner image.
    partner_image : array_like of int
        The partner's image index, -1 for the reference.

    Returns
    -------
    bytes
        ``.npz`` with members ``input``, ``partner``, ``partner_image`` (``prov_images.matches``).
    """
    return npz_bytes(input=input_idx, partner=partner_idx, partner_image=partner_image)


def reference_blob(ra: ArrayLike, dec: ArrayLike, weight: ArrayLike) -> bytes:
    """A file or Table reference's rows as used (deg at the epoch, relative weights).

    Returns
    -------
    bytes
        ``.npz`` with members ``ra``, ``dec``, ``weight`` (``prov_runs.ref_data``).
    """
    return npz_bytes(ra=ra, dec=dec, weight=weight)


def arrays_sha256(*arrays: ArrayLike) -> str:
    """sha256 of arrays as little-endian float64, one after the other (an in-memory catalog's rows).

    Returns
    -------
    str
        Hex digest.
    """
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return h.hexdigest()


def unserializable(exc: BaseException) -> bytes:
    """What a WCS column holds when the WCS could not be serialized (verify then cannot re-run).

    Parameters
    ----------
    exc : BaseException
        What serializing it raised.

    Returns
    -------
    bytes
        ``b"not serializable: "`` and the error.
    """
    return f"not serializable: {exc}".encode()


def jsonable(value: Any) -> Any:
    """A value as JSON: numbers, strings, lists and dicts as they are; a store by its URL; a Table
    by its length; anything else by its repr.

    Parameters
    ----------
    value : object

    Returns
    -------
    None, bool, int, float, str, list or dict
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "url") and hasattr(value, "engine"):
        return f"store:{value.url}"
    if isinstance(value, Table):
        return f"<Table of {len(value)} rows>"
    return repr(value)


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(to_julian_year(value))
    except (ValueError, TypeError):
        return None


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _image_row(run_id: str, index: int, im: ImageRecord) -> dict:
    return {
        "run_id": run_id, "image_index": index, "name": str(im.name),
        "group_id": None if im.group_id is None else str(im.group_id), "epoch": _epoch(im.epoch),
        "catalog_source": im.catalog_source, "catalog_sha256": im.catalog_sha256,
        "catalog_rows": int(im.catalog_rows), "rows_used": int(im.rows_used), "catalog_data": im.catalog_data,
        "wcs_kind": im.wcs_kind, "wcsinfo": jsonable(im.wcsinfo), "input_wcs": im.input_wcs,
        "output_wcs": im.output_wcs, "status": im.status[:STATUS_LENGTH], "message": im.message or None,
        "fitgeometry": im.fitgeometry,
        "matrix": None if im.matrix is None else np.asarray(im.matrix).tolist(),
        "shift": None if im.shift is None else np.asarray(im.shift).tolist(),
        "rotation": None if im.rotation is None else float(im.rotation),
        "scale": None if im.scale is None else float(im.scale),
        "skew": None if im.skew is None else float(im.skew),
        "rmse": _finite(im.rmse), "mae": _finite(im.mae),
        "nmatches": None if im.nmatches is None else int(im.nmatches),
        "nref": None if im.nref is None else int(im.nref),
        "nclipped": None if im.nclipped is None else int(im.nclipped),
        "matches": im.matches,
    }


def _reference_columns(store, ref: ReferenceRecord | None) -> dict:
    if ref is None:
        return {"ref_kind": "none"}
    source = os.path.abspath(ref.source) if ref.kind == "file" else ref.source
    files = ref.files
    if files is None and ref.kind == "store":
        with store.engine.connect() as conn:
            files = [[p, h] for p, h in conn.execute(
                sa.select(source_files.c.path, source_files.c.sha256)
                .join(catalogs, catalogs.c.id == source_files.c.catalog_id)
                .where(catalogs.c.name == ref.catalog).order_by(source_files.c.id))]
    elif files is None and ref.kind == "file":
        files = [[source, sha256_file(source)]]
    return {"ref_kind": ref.kind, "ref_source": source, "ref_catalog": ref.catalog, "ref_query": jsonable(ref.query),
            "ref_rows": int(ref.rows), "ref_sha256": ref.sha256, "ref_data": ref.data, "ref_files": files}


def record_run(store: Any, run: RunRecord) -> str:
    """Insert one run's record and chain it, in one transaction.

    Parameters
    ----------
    store : astrodb.Store or str
        The store (or its URL: connected here, and closed again).
    run : RunRecord

    Returns
    -------
    str
        The run id.

    Raises
    ------
    astrodb.ConfigError
        The store cannot be opened, or its schema is missing or old (``astrodb init``).
    sqlalchemy.exc.DBAPIError
        The database refused the record (e.g. a role that may not write provenance).
    """
    own = isinstance(store, str)
    if own:
        store = connect(store)
    try:
        store._require_schema()
        rows = run_rows(store, run)
        with store.engine.begin() as conn:
            insert_run(conn, *rows)
    finally:
        if own:
            store.close()
    return run.run_id


def run_rows(store: Any, run: RunRecord) -> tuple[dict, list[dict]]:
    """The ``prov_runs`` row and ``prov_images`` rows of ``run`` (the reference's files read
    from ``store``), for :func:`insert_run`."""
    row = {"run_id": run.run_id, "step": run.step, "started_at": run.started_at,
           "finished_at": run.finished_at, "user_name": run.user_name, "host": run.host,
           "software": jsonable(run.software), "parameters": jsonable(run.parameters), "status": run.status,
           "message": run.message, "n_images": len(run.images), "n_aligned": int(run.n_aligned),
           **_reference_columns(store, run.reference)}
    return row, [_image_row(run.run_id, i, im) for i, im in enumerate(run.images)]


def insert_run(conn: sa.Connection, row: dict, images: list[dict]) -> None:
    """Insert one run's rows (:func:`run_rows`) and chain it, in the caller's transaction."""
    conn.execute(prov_runs.insert().values(**row))
    if images:
        conn.execute(prov_images.insert(), images)
    link_run(conn, row["run_id"])  # last: a chained run takes no more images
