"""The associations of a batch and their task keys.

A batch is a folder of manifests (each one association, named by its file's stem) or one table
(any format ``aligner align`` reads as a manifest) with an association column. An association's
key is the sha256 of its manifest, the sha256 of every file it lists, the alignment parameters
and the software's versions: what a rerun must match to be the same task.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from astrodb.ingest.table_reader import sha256_file

from ..cli import _Entry, _entry, _plain, read_manifest
from ..errors import ParameterError

__all__ = ["Association", "read_associations", "task_key", "MANIFEST_SUFFIXES"]

#: The files of a batch folder read as manifests.
MANIFEST_SUFFIXES = (".json", ".ecsv", ".fits", ".fit", ".csv", ".vot", ".xml", ".parquet")


@dataclass
class Association:
    """One image set of a batch: its name, where its manifest came from, and its images."""

    name: str
    manifest: str            # the manifest file, or "TABLE#NAME" for a table's association
    manifest_sha256: str
    entries: list[_Entry]


def _sha256_json(doc) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def read_associations(source, column: str = "association") -> list[Association]:
    """The associations of a batch.

    Parameters
    ----------
    source : path
        A folder whose manifest files (:data:`MANIFEST_SUFFIXES`) are each an association, or a
        table file with an association column.
    column : str
        The table's association column.

    Raises
    ------
    ParameterError
        No such folder or file, a folder with no manifests, a table without ``column`` or an
        unreadable manifest (naming the file and image).
    """
    p = Path(os.fspath(source))
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in MANIFEST_SUFFIXES)
        if not files:
            raise ParameterError(f"batch folder {str(p)!r} holds no manifests ({', '.join(MANIFEST_SUFFIXES)})")
        out = []
        for f in files:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # unknown keys: aligner align warns about them, a batch does not
                try:
                    entries = read_manifest(f)
                except ParameterError as exc:
                    raise ParameterError(f"{exc} (every file of a batch folder with a manifest's suffix is read as "
                                         f"a manifest: keep the images and catalogs in another folder)") from None
            out.append(Association(f.stem, str(f.resolve()), sha256_file(str(f)), entries))
        return out
    if not p.is_file():
        raise ParameterError(f"batch {str(p)!r}: no such folder or file")
    from astropy.table import Table

    try:
        t = Table.read(p)
    except Exception as exc:  # noqa: BLE001 - astropy raises many kinds
        raise ParameterError(f"batch table {str(p)!r}: cannot read it ({exc})") from None
    if column not in t.colnames:
        raise ParameterError(f"batch table {str(p)!r}: no association column {column!r} "
                             f"(columns: {', '.join(t.colnames)}; a folder of manifests also works)")
    base = p.resolve().parent
    rows = [{c: _plain(row[c]) for c in t.colnames} for row in t]
    names: dict[str, list[dict]] = {}
    for i, r in enumerate(rows):
        if r[column] is None:
            raise ParameterError(f"batch table {str(p)!r} row {i}: no association in column {column!r}")
        names.setdefault(str(r[column]), []).append(r)
    out = []
    unknown: set = set()
    for name, members in names.items():
        where = f"{p.resolve()}#{name}"
        entries = [_entry(k, {c: v for c, v in r.items() if c != column}, base, where, unknown)
                   for k, r in enumerate(members)]
        out.append(Association(name, where, _sha256_json(members), entries))
    return out


def task_key(assoc: Association, parameters: dict, software: dict) -> str:
    """The sha256 (hex) of what determines an association's result: its manifest, the sha256 of
    each file it lists, ``parameters`` and ``software`` (name -> version)."""
    inputs = sorted({p for e in assoc.entries for p in (e.wcs, e.catalog)})
    missing = [p for p in inputs if not os.path.isfile(p)]
    if missing:
        raise ParameterError(f"association {assoc.name!r} ({assoc.manifest}): no such file {missing[0]!r}")
    # The files' contents, not where they are: a batch folder moved elsewhere keeps its keys.
    return _sha256_json({"manifest": assoc.manifest_sha256, "inputs": sorted(sha256_file(q) for q in inputs),
                         "parameters": parameters, "software": software})
