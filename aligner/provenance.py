"""Gathering one alignment run's record for the store (:func:`astrodb.provenance.record_run`).

The :class:`Recorder` collects, while a run goes on, what it used and produced: every parameter
(defaults explicit), software versions, each image's catalog (checksum, the rows used), input
and output WCS, the reference catalog (its source, query and a hash of the rows used) and each
fit (geometry, matrix, residuals, matched pairs, status). :meth:`Recorder.write` describes the
run as an :class:`astrodb.provenance.record.RunRecord` and hands it to the store, which owns the
record's format, inserts it and chains it.

An aligned gwcs is recorded as a correction of its input (:mod:`astrodb.provenance.corrections`:
the fit's plane, matrix and shift, which :func:`aligner.correctors.apply_correction` applies):
an ASDF document of it would cost asdf's validation again, the record's largest cost. A run
whose input gwcs is, unchanged, the output of an earlier run recorded in the same store by this
process records that correction as its input too (same bytes, same WCS in the audit's lineage).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import platform
import sys
import threading
import uuid
import weakref
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata

from astrodb.ingest.table_reader import sha256_file
from astrodb.provenance.corrections import correction_document
from astrodb.provenance.record import (ImageRecord, ReferenceRecord, RunRecord, arrays_sha256, catalog_blob,
                                       jsonable, matches_blob, record_run, reference_blob, unserializable)
from astrodb.provenance.wcs_bytes import serialize_wcs, wcs_kind

from . import wcs_serializer
from .runtime.threads import in_background, thread_map

#: The packages whose versions a fit depends on (recorded with each run).
PACKAGES = ("astrodb", "numpy", "scipy", "astropy", "gwcs", "tweakwcs", "asdf", "sqlalchemy")


def software_versions() -> dict[str, str]:
    """Versions of Python, the platform and :data:`PACKAGES`.

    Returns
    -------
    dict of str to str
        ``'not installed'`` for a package that is not.
    """
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _serialized_here(wcs) -> wcs_serializer.Serialized:
    try:
        return wcs_serializer.Serialized(data=serialize_wcs(wcs))
    except Exception as exc:  # noqa: BLE001 - a WCS we cannot serialize is recorded as such
        return wcs_serializer.Serialized(data=unserializable(exc))


class Recorder:
    """Collects one run's record while it runs; :meth:`write` hands it to the store.

    Parameters
    ----------
    step : {'relative', 'absolute'}
    parameters : dict
        Every parameter of the call (recorded as JSON).
    correctors : list
        The run's tweakwcs correctors, in image order.
    store : astrodb.Store or str
        Where the record goes.
    capture : bool
        Serialize the input WCSs now; False when the caller calls :meth:`capture_inputs` itself
        before it changes any of them.
    sink : callable, optional
        Gets the finished :class:`~astrodb.provenance.record.RunRecord` instead of ``store``
        (which the run then only reads), e.g. to hand it from a batch worker to its client.
    """

    def __init__(self, step: str, parameters: dict, correctors: list, store, *, capture: bool = True,
                 sink=None) -> None:
        self.run_id = str(uuid.uuid4())
        self.sink = sink
        self.step = step
        self.started_at = datetime.now(timezone.utc)
        self.parameters = {k: jsonable(v) for k, v in parameters.items()}  # as they were at the start
        self.store = store
        self.correctors = correctors
        self.inputs: list[tuple[str, wcs_serializer.Serialized]] | None = None
        if capture:
            self.capture_inputs()
        self.images = None
        self._image_blobs = None
        self.reference = None

    def capture_inputs(self) -> None:
        """Serialize the input WCSs (once): before any correction is applied, which the caller
        ensures when it asks for ``capture=False`` (the absolute step captures them while the
        database works on its reference query; :meth:`write` captures them if the run failed
        before). A gwcs that an earlier recorded run left unchanged is recorded as that run's
        output (:func:`_earlier_output`); another goes to the worker process when it is ready
        (:mod:`.wcs_serializer`)."""
        if self.inputs is not None:
            return
        self.inputs = [(wcs_kind(c.wcs), _earlier_output(c.wcs, self.store) or wcs_serializer.submit(c.wcs)
                        or _serialized_here(c.wcs)) for c in self.correctors]

    def set_images(self, images) -> None:
        """The images' sources as the run uses them; their record (the rows used, and the
        checksum of an in-memory catalog) is prepared on other threads while the run goes on."""
        self.images = images
        self._image_blobs = in_background(lambda: dict(zip(
            (im.index for im in images), thread_map(self._image_blob, images))))

    @staticmethod
    def _image_blob(im) -> tuple[bytes, str]:
        return catalog_blob(im.rows, im.x, im.y, im.weight), arrays_sha256(im.x, im.y, im.weight)

    @staticmethod
    def _catalog(corrector, image, array_sha: str | None) -> tuple[str, str, int]:
        """(source, sha256, rows) of an image's catalog: a file by its path and content, an
        in-memory catalog by the rows used."""
        cat = corrector.meta.get("catalog")
        if isinstance(cat, (str, os.PathLike)) and os.path.isfile(os.fspath(cat)):
            path = os.path.abspath(os.fspath(cat))
            return path, sha256_file(path), int(image.catalog_rows) if image else 0
        n = len(cat) if cat is not None and hasattr(cat, "__len__") else 0
        return "table", ("" if image is None else array_sha), n

    def write(self, error: BaseException | None = None) -> str:
        """Record the run (also when it failed: ``error`` says why); returns its run id."""
        self.capture_inputs()
        finished = datetime.now(timezone.utc)
        results = [c.meta.get("fit_result") if error is None or c.meta.get("fit_result") is not None else None
                   for c in self.correctors]
        # This run's results only: a result of an earlier step means the run did not reach the image.
        reached = [r if r is not None and r.step == self.step else None for r in results]
        images = {im.index: im for im in (self.images or [])}
        # The matches are compressed on other threads (zlib releases the GIL) while this one
        # serializes the output WCSs; the images' rows were, while the run went on.
        compressed = in_background(lambda: thread_map(
            lambda r: None if r is None else matches_blob(r.matched_input_idx, r.matched_ref_idx,
                                                          r.matched_ref_image), reached))
        image_blobs = self._image_blobs.result() if self._image_blobs is not None else {}
        # What the worker has not serialized yet, this thread does.
        wcs_serializer.gather([s for _, s in self.inputs])
        records, derived = [], []
        for i, c in enumerate(self.correctors):
            r = reached[i]
            im = images.get(i)
            blob, array_sha = image_blobs.get(i, (None, None))
            source, sha, nrows = self._catalog(c, im, array_sha)
            kind, inp = self.inputs[i]
            try:
                input_wcs = inp.result()
            except Exception as exc:  # noqa: BLE001 - as in capture_inputs
                input_wcs = unserializable(exc)
            fitted = r is not None and r.ok  # a failed fit records no geometry, not an identity
            # The reference image of a relative run keeps its WCS: recorded as its output too.
            output_wcs = None
            if fitted:
                output_wcs = self._output(i, c, r, kind, input_wcs)
                if kind == "gwcs":
                    derived.append((c.wcs, output_wcs))
            rec = ImageRecord(
                name=str(c.meta.get("name") or f"image {i}"), wcs_kind=kind, input_wcs=input_wcs,
                status=r.status if r is not None else ("FAILED: " + str(error) if error else "FAILED: not reached"),
                group_id=c.meta.get("group_id"), epoch=c.meta.get("epoch"), catalog_source=source,
                catalog_sha256=sha, catalog_rows=nrows, rows_used=0 if im is None else len(im.rows),
                catalog_data=blob, wcsinfo=getattr(c, "ref_angles", None), output_wcs=output_wcs,
                message=(r.message if r is not None else str(error or "")) or None)
            if r is not None:
                rec.fitgeometry, rec.rmse, rec.mae = r.fitgeometry, r.rmse, r.mae
                rec.nmatches, rec.nref, rec.nclipped = r.nmatches, r.nref, r.nclipped
            if fitted:
                rec.matrix, rec.shift = r.matrix, r.shift
                rec.rotation, rec.scale, rec.skew = r.rotation, r.scale, r.skew
            records.append(rec)
        for rec, blob in zip(records, compressed.result()):
            rec.matches = blob
        n_aligned = sum(r is not None and r.status == "SUCCESS" for r in reached)
        status = "failed" if error is not None or n_aligned == 0 else (
            "success" if all(r is not None and r.ok for r in results) else "partial")
        run = RunRecord(run_id=self.run_id, step=self.step, started_at=self.started_at, finished_at=finished,
                        status=status, parameters=self.parameters, software=software_versions(),
                        images=records, n_aligned=n_aligned, reference=self._reference(),
                        message=None if error is None else f"{type(error).__name__}: {error}")
        if self.sink is not None:
            self.sink(run)
        else:
            record_run(self.store, run)
            _remember_outputs(derived, self.store)
        if any(kind == "gwcs" for kind, _ in self.inputs):
            wcs_serializer.start()  # for the next recorded run, if it is not running
        return run.run_id  # a sink may have given it another

    def _output(self, i: int, corrector, result, kind: str, input_wcs: bytes) -> bytes:
        """The record's bytes of image ``i``'s WCS after the run: for an aligned gwcs, the fit's
        correction of its recorded input; for the reference image of a relative run, which
        keeps its WCS, its input bytes; else (or when the input could not be recorded) the WCS."""
        recorded = not input_wcs.startswith(b"not serializable")
        if result.status != "SUCCESS" and recorded:
            return input_wcs
        info = getattr(corrector, "ref_angles", None)
        if kind == "gwcs" and info and recorded:
            return correction_document(self.run_id, i, hashlib.sha256(input_wcs).hexdigest(), wcsinfo=info,
                                       tangent_point=result.plane_center, matrix=result.matrix,
                                       shift=result.shift)
        return serialize_wcs(corrector.wcs)

    def _reference(self) -> ReferenceRecord | None:
        """The reference the absolute step used (:class:`aligner.refcat.Reference`), as recorded."""
        ref = self.reference
        if ref is None:
            return None
        kind = ref.query.get("kind", "table")
        return ReferenceRecord(kind=kind, source=ref.source, query=ref.query, rows=len(ref.ra),
                               sha256=ref.checksum(), catalog=ref.query.get("catalog"),
                               data=None if kind == "store" else reference_blob(ref.ra, ref.dec, ref.weight),
                               files=getattr(ref, "files", None))


# --- outputs of recorded runs, for the next run's inputs ---------------------------------------

_outputs_lock = threading.Lock()
#: id(gwcs) -> (weak reference, store, sha256 of its pickle then, the recorded correction).
_outputs: dict[int, tuple] = {}


def _store_key(store) -> str:
    return str(getattr(store, "url", store))


def _fingerprint(wcs) -> bytes | None:
    """sha256 of the WCS' whole state (its pickle): equal only while nothing in it changed."""
    try:
        return hashlib.sha256(pickle.dumps(wcs, protocol=pickle.HIGHEST_PROTOCOL)).digest()
    except Exception:  # noqa: BLE001 - not picklable: never taken for an earlier output
        return None


def _remember_outputs(derived: list[tuple], store) -> None:
    """The gwcs a run left, with the bytes it recorded for them."""
    key = _store_key(store)
    for wcs, data in derived:
        fp = _fingerprint(wcs)
        if fp is None:
            continue
        ident = id(wcs)
        with _outputs_lock:
            _outputs[ident] = (weakref.ref(wcs, lambda _, ident=ident: _forget(ident)), key, fp, data)


def _forget(ident: int) -> None:
    with _outputs_lock:
        entry = _outputs.get(ident)
        if entry is not None and entry[0]() is None:
            del _outputs[ident]


def _earlier_output(wcs, store) -> wcs_serializer.Serialized | None:
    """The recorded bytes of ``wcs`` when an earlier run recorded it, in the same store, as its
    output and it has not changed since (the same pickle); else None."""
    with _outputs_lock:
        entry = _outputs.get(id(wcs))
    if entry is None or entry[0]() is not wcs or entry[1] != _store_key(store):
        return None
    if _fingerprint(wcs) != entry[2]:
        return None
    return wcs_serializer.Serialized(data=entry[3])
