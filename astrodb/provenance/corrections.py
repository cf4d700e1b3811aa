"""A recorded gwcs kept as a correction of another recorded WCS, not as a second ASDF document.

An aligned gwcs is its input WCS with a tangent-plane correction applied, so the record keeps
the input once and, for the output, a *correction document*: which recorded WCS it corrects
(``of``: a run id, an image index and the sha256 of that image's ``input_wcs`` bytes), the
method, and its numbers (the tweakwcs ``wcsinfo``, the fit's tangent point, matrix and shift).
Writing one costs microseconds where an ASDF document of a corrected gwcs costs tens of
milliseconds of asdf's validation (the record's largest cost), and the numbers stay readable in
the record itself.

The same document bytes stand for the same WCS wherever they appear: a run whose input is the
unchanged output of an earlier run recorded in the same store records that document as its
input, so equal sha256s across runs remain equal WCSs (the audit's WCS lineage and the PROV
export key on them). :func:`resolve_wcs` turns recorded bytes of any form back into a WCS,
following ``of`` through the store; applying a correction is the aligner's (the ``astrodb.verifiers``
entry point's ``apply_correction``), since it is the aligner's software that defines it.

The document is canonical JSON (keys sorted, no spaces; floats as Python writes them, which
read back exactly)::

    {"astrodb_wcs_correction":1,"matrix":[[a,b],[c,d]],"method":"tweakwcs-tangent-plane",
     "of":{"image_index":i,"run_id":"...","sha256":"..."},"shift":[x,y],
     "tangent_point":[ra,dec],"wcsinfo":{"roll_ref":...,"v2_ref":...,"v3_ref":...}}
"""
from __future__ import annotations

import hashlib
import json
import sqlalchemy as sa

from ..errors import QueryError
from .wcs_bytes import deserialize_wcs

__all__ = ["FORMAT_VERSION", "TANGENT_PLANE", "correction_document", "is_correction", "parse_correction",
           "resolve_wcs"]

#: The document's format version (its first key).
FORMAT_VERSION = 1
#: tweakwcs' JWST-style correction: ``JWSTWCSCorrector(wcs, wcsinfo).set_correction(matrix, shift,
#: ref_tpwcs=<a plane whose coordinates are arcsec about tangent_point>)``.
TANGENT_PLANE = "tweakwcs-tangent-plane"

_PREFIX = b'{"astrodb_wcs_correction":'
#: Longest chain of corrections followed (a cycle cannot be recorded; this bounds a damaged store).
MAX_DEPTH = 1000


def _floats(values) -> list:
    return [_floats(v) if isinstance(v, (list, tuple)) else float(v) for v in values]


def correction_document(of_run_id: str, of_image_index: int, of_sha256: str, *, wcsinfo: dict,
                        tangent_point, matrix, shift, method: str = TANGENT_PLANE) -> bytes:
    """The bytes that record a WCS as a correction of a recorded one.

    Parameters
    ----------
    of_run_id, of_image_index : str, int
        The image whose recorded ``input_wcs`` is corrected.
    of_sha256 : str
        sha256 of those ``input_wcs`` bytes.
    wcsinfo : dict
        ``v2_ref``, ``v3_ref`` (arcsec), ``roll_ref`` (deg).
    tangent_point : (float, float)
        The fit's tangent plane centre (ra, dec, deg).
    matrix : 2x2 array-like
    shift : 2 array-like
        Arcsec in that plane.
    method : str
        How the numbers are applied (:data:`TANGENT_PLANE`).

    Returns
    -------
    bytes
        Canonical JSON (see the module's docstring).
    """
    doc = {"astrodb_wcs_correction": FORMAT_VERSION, "method": method,
           "of": {"run_id": str(of_run_id), "image_index": int(of_image_index), "sha256": str(of_sha256)},
           "wcsinfo": {str(k): float(v) for k, v in wcsinfo.items()},
           "tangent_point": _floats(tangent_point), "matrix": _floats(getattr(matrix, "tolist", lambda: matrix)()),
           "shift": _floats(getattr(shift, "tolist", lambda: shift)())}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def is_correction(data: bytes | None) -> bool:
    """Whether recorded WCS bytes are a correction document (else ASDF or FITS header text)."""
    return data is not None and bytes(data[:len(_PREFIX)]) == _PREFIX


def parse_correction(data: bytes) -> dict:
    """The document as a dict.

    Raises
    ------
    ValueError
        Not a correction document of a known version, or a field missing.
    """
    try:
        doc = json.loads(bytes(data))
        version = doc["astrodb_wcs_correction"]
        of = doc["of"]
        missing = [k for k in ("method", "wcsinfo", "tangent_point", "matrix", "shift") if k not in doc]
        missing += [f"of.{k}" for k in ("run_id", "image_index", "sha256") if k not in of]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a recorded WCS correction ({exc})") from None
    if version != FORMAT_VERSION:
        raise ValueError(f"recorded WCS correction of format {version!r}: this astrodb reads {FORMAT_VERSION}")
    if missing:
        raise ValueError(f"recorded WCS correction without {', '.join(missing)}")
    return doc


def _recorded_input(conn: sa.Connection, run_id: str, image_index: int) -> tuple[str | None, bytes | None]:
    from ..store.schema import prov_images

    row = conn.execute(sa.select(prov_images.c.wcs_kind, prov_images.c.input_wcs)
                       .where(prov_images.c.run_id == run_id, prov_images.c.image_index == image_index)).first()
    return (None, None) if row is None else (row[0], None if row[1] is None else bytes(row[1]))


def resolve_wcs(store, kind: str, data: bytes):
    """A recorded WCS (``input_wcs`` or ``output_wcs`` bytes of any form) as a WCS object.

    Parameters
    ----------
    store : astrodb.Store
        The store holding the record (a correction names the recorded WCS it corrects there).
    kind : {'gwcs', 'fits'}
        The record's ``wcs_kind``.
    data : bytes
        ASDF, FITS header text or a correction document.

    Returns
    -------
    gwcs.WCS or astropy.wcs.WCS
        A new object on each call.

    Raises
    ------
    QueryError
        A correction whose base WCS is not in the store, or not the recorded bytes.
    astrodb.provenance.plugins.NoAlignerError
        No installed aligner can apply the correction.
    """
    from .plugins import VERIFIERS, NoAlignerError, load

    data = bytes(data)
    chain = []
    with store.engine.connect() as conn:
        while is_correction(data):
            if len(chain) >= MAX_DEPTH:
                raise QueryError(f"recorded WCS: more than {MAX_DEPTH} corrections in a row")
            doc = parse_correction(data)
            chain.append(doc)
            of = doc["of"]
            base_kind, base = _recorded_input(conn, of["run_id"], of["image_index"])
            where = f"run {of['run_id']} image {of['image_index']}"
            if base is None:
                raise QueryError(f"recorded WCS: a correction of the input WCS of {where}, which is not in "
                                 f"{store.url}")
            if hashlib.sha256(base).hexdigest() != of["sha256"]:
                raise QueryError(f"recorded WCS: the input WCS of {where} is not the one the correction was "
                                 f"made for (sha256 {hashlib.sha256(base).hexdigest()[:16]}…, recorded "
                                 f"{of['sha256'][:16]}…)")
            kind, data = base_kind or kind, base
    wcs = deserialize_wcs(kind, data)
    if chain:
        verifier = load(VERIFIERS, "applying a recorded WCS correction")
        apply = getattr(verifier, "apply_correction", None)
        if apply is None:
            raise NoAlignerError(f"applying a recorded WCS correction needs an aligner that provides "
                                 f"apply_correction; {getattr(verifier, '__name__', verifier)!r} does not")
        for doc in reversed(chain):  # the oldest correction first
            wcs = apply(wcs, doc)
    return wcs

