"""Recording of every alignment run in the store's append-only provenance tables.

One job: gather what a run used and produced — every parameter (defaults explicit), software
versions, user and host, each image's catalog (checksum, the rows used), input and output WCS
(FITS header text or ASDF), the reference catalog (its source, query, files then and a hash of
the rows used) and each fit (geometry, matrix, residuals, matched pairs, status) — and insert it
in one transaction (``prov_runs`` + ``prov_images``, see migration 0004), which also chains the
run (``prov_chain``, migration 0009: by the database on PostgreSQL, by
:func:`astrodb.provenance.chain.link_run` on SQLite). Reading, verifying and exporting the
records is :mod:`astrodb.provenance`.
"""
from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import os
import platform
import socket
import sys
import threading
import uuid
import zlib
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from numbers import Integral

import numpy as np
from astrodb.ingest.table_reader import sha256_file

from . import wcs_serializer
from .threads import in_background, thread_map

PACKAGES = ("astrodb", "numpy", "scipy", "astropy", "gwcs", "tweakwcs", "asdf", "sqlalchemy")


def software_versions() -> dict[str, str]:
    """Versions of Python and the packages a fit depends on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def npz_bytes(**arrays) -> bytes:
    """Arrays -> compressed .npz bytes (a portable, exact binary record, read by ``np.load``).

    Deflate level 1: ``np.savez_compressed``'s default level took 0.43 s for the matched pairs
    of 32 images x 10k sources, level 1 a quarter of that, for files a few per cent larger.
    An array whose first 4 kB do not deflate by 10 % is stored as it is: measured pixel
    positions (random low bits) shrink by 5 % at ~2 ms per 10k values, 0.12 s of CPU for a
    32 x 10k record, while indices shrink 3-5x and constant weights ~200x. (A 32 kB sample
    cost 0.3 ms an array, ~70 ms a record: most of what storing saved.)
    """
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k, v in arrays.items():
            a = np.asanyarray(v)
            zf.compression = zipfile.ZIP_DEFLATED if _deflates(a) else zipfile.ZIP_STORED
            with zf.open(f"{k}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
    return buf.getvalue()


def _deflates(a: np.ndarray, sample_bytes: int = 4096) -> bool:
    """Whether deflating ``a`` is worth its CPU: judged on its first ``sample_bytes``."""
    n = max(1, sample_bytes // max(a.itemsize, 1))
    head = np.ascontiguousarray(a.flat[:n]).tobytes()  # no copy of a whole strided array
    return len(head) < 512 or len(zlib.compress(head, 1)) < 0.9 * len(head)


def npz_load(data: bytes | None) -> dict[str, np.ndarray]:
    if data is None:
        return {}
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def wcs_kind(wcs) -> str:
    # On the class: a gwcs' forward_transform is a property that composes its whole pipeline.
    return "gwcs" if hasattr(type(wcs), "forward_transform") else "fits"


_batch = threading.local()
_hook_lock = threading.Lock()


#: What asdf's validation sets on the tagged nodes of a tree it writes (how the YAML is laid out).
_LAYOUT = ("property_order", "flow_style", "style")
#: Per tag: the layout asdf's validation gave its nodes, or None where it differed between nodes.
_tag_layout: dict[str, tuple | None] = {}


def _layout(node) -> tuple:
    return tuple(tuple(v) if isinstance(v, list) else v for v in (getattr(node, n, None) for n in _LAYOUT))


def _visit(node, checks, tagged_type, tagged_nodes: list) -> None:
    """asdf's structural checks on write (``checks``: large integer literals, then mapping keys)
    on every node of a tagged tree, collecting its tagged nodes. What ``asdf.treeutil.walk``
    with those checks does, in about a third of the time (the walk was a third of a batched
    gwcs serialization): a tree being written holds only mappings, sequences and scalars, and the
    checks only look at integers and mappings."""
    if isinstance(node, Mapping):
        for check in checks:
            check(node, False)
        if isinstance(node, tagged_type):
            tagged_nodes.append(node)
        for value in node.values():
            _visit(value, checks, tagged_type, tagged_nodes)
    elif isinstance(node, (list, tuple)):
        if isinstance(node, tagged_type):
            tagged_nodes.append(node)
        for value in node:
            _visit(value, checks, tagged_type, tagged_nodes)
    elif isinstance(node, tagged_type):
        tagged_nodes.append(node)
    elif isinstance(node, Integral):
        checks[0](node, False)


def _install_validation_hook() -> bool:
    """Let ASDF writes inside :func:`asdf_write_batch` skip the JSON-schema validation (once per process).

    asdf 6.0 validates every tree it writes against its schemas, with no switch, and builds a
    new schema resolver for each write: a JWST-style gwcs took 19 ms here (34 ms with a v2v3corr
    step), 7 (20) ms with one cached resolver, 3.3 (11) ms without the validation: 0.5 s less
    in a 32-image absolute fit's record than with the cached resolver. The trees a
    record writes are what the gwcs/asdf-astropy converters make of live WCS objects, and a
    record's WCS is validated where it is read (:func:`deserialize_wcs`: verify, plot; asdf 6
    does not validate on read by default), so the check on write is skipped inside a batch.

    What the validation does besides checking is kept, so the bytes are asdf's own
    (tests/aligner/test_provenance.py compares): asdf's structural checks on write (integer
    literals beyond 64 bits, mapping keys other than str/int/bool), and the layout the schemas
    give tagged nodes (``propertyOrder``, ``flowStyle``, ``style``: an ndarray's keys, the
    root's). That layout is learnt from asdf itself: a tree with a tag not seen yet in this
    process is validated as usual and each tag's layout noted (a tag whose nodes got different
    layouts is always validated); later trees whose tags are all known get those layouts. Every
    write outside a batch or in another thread is validated as usual, and every write if asdf's
    internals are not as expected.
    """
    try:
        import asdf.schema as asdf_schema
        from asdf import tagged
        from asdf.versioning import RESTRICTED_KEYS_MIN_VERSION as restricted_keys
    except ImportError:  # pragma: no cover - asdf is a dependency
        return False
    with _hook_lock:
        validate = getattr(asdf_schema, "validate", None)
        checks = [getattr(asdf_schema, n, None) for n in ("_validate_large_literals", "_validate_mapping_keys")]
        if validate is None or None in checks or not hasattr(tagged, "Tagged"):
            return False
        if getattr(validate, "_astrodb_hook", False):
            return True

        def validate_unless_batched(instance, ctx=None, schema=None, validators=None, reading=False, *args,
                                    **kwargs):
            # Only the whole-tree validation of a write (asdf's dump_tree: no explicit schema).
            if not (getattr(_batch, "active", False) and ctx is not None and not reading and schema is None
                    and validators is None and not args and not kwargs):
                return validate(instance, ctx, schema, validators, reading, *args, **kwargs)
            nodes = []
            run = checks if ctx.version >= restricted_keys else checks[:1]
            _visit(instance, run, tagged.Tagged, nodes)
            layouts = [_tag_layout.get(node._tag, False) for node in nodes]
            if any(layout is None or layout is False for layout in layouts):
                # A tag not seen yet (learn its layout from asdf) or one laid out differently
                # in different places: validated as usual.
                validate(instance, ctx, schema, validators, reading)
                seen: dict[str, set] = {}
                for node in nodes:
                    seen.setdefault(node._tag, set()).add(_layout(node))
                for tag, found in seen.items():
                    if tag not in _tag_layout:
                        _tag_layout[tag] = next(iter(found)) if len(found) == 1 else None
                    elif _tag_layout[tag] is not None and found != {_tag_layout[tag]}:
                        _tag_layout[tag] = None
                return None
            for node, layout in zip(nodes, layouts):
                for name, value in zip(_LAYOUT, layout):
                    if value is not None:
                        setattr(node, name, list(value) if isinstance(value, tuple) else value)
            return None

        validate_unless_batched._astrodb_hook = True
        validate_unless_batched.__wrapped__ = validate
        asdf_schema.validate = validate_unless_batched
        return True


@contextlib.contextmanager
def asdf_write_batch():
    """Within this block (this thread only), ASDF writes skip the schema validation (see
    :func:`_install_validation_hook`)."""
    if not _install_validation_hook() or getattr(_batch, "active", False):
        yield  # no hook, or already inside a batch
        return
    _batch.active = True
    try:
        yield
    finally:
        _batch.active = False


def serialize_wcs(wcs) -> bytes:
    """FITS WCS -> header text (SIP included, with the image size); gwcs -> ASDF bytes.

    Inside :func:`asdf_write_batch` a gwcs is serialized without asdf's schema validation (same bytes).
    """
    if wcs_kind(wcs) == "gwcs":
        buf = io.BytesIO()
        _asdf_file_class()({"wcs": wcs}).write_to(buf)
        return buf.getvalue()
    hdr = wcs.to_header(relax=True)
    if wcs.pixel_shape is not None:
        hdr["IMAGEW"], hdr["IMAGEH"] = wcs.pixel_shape
    return hdr.tostring(sep="\n").encode()


_asdf_file = None


def _history_order(entry) -> tuple[str, str]:
    return str(entry.get("extension_uri") or ""), str(entry.get("extension_class") or "")


def _asdf_file_class():
    """``asdf.AsdfFile``, writing the history's list of extensions in the order of their URIs.

    asdf 6 lists the extensions a write used in the iteration order of a set hashed by object
    ids, which differs between processes: the same gwcs gave other bytes (and another sha256,
    which the audit's WCS lineage and the PROV export key on) in another process. Sorted, the
    bytes depend on the WCS and the software versions only (tests/aligner/test_wcs_serializer.py
    serializes in two processes).
    """
    global _asdf_file
    if _asdf_file is None:
        import asdf

        if not hasattr(asdf.AsdfFile, "_update_extension_history"):  # pragma: no cover - another asdf
            _asdf_file = asdf.AsdfFile
        else:
            class CanonicalHistoryAsdfFile(asdf.AsdfFile):
                def _update_extension_history(self, tree, serialization_context):
                    super()._update_extension_history(tree, serialization_context)
                    extensions = tree.get("history", {}).get("extensions")
                    if isinstance(extensions, list):
                        extensions.sort(key=_history_order)

            _asdf_file = CanonicalHistoryAsdfFile
    return _asdf_file


def deserialize_wcs(kind: str, data: bytes):
    """Inverse of :func:`serialize_wcs`."""
    if kind == "gwcs":
        import asdf

        # Validated against the schemas (asdf 6 does not by default on read): a record's WCS
        # is written without (see asdf_write_batch), so it is checked where it is used.
        with asdf.config_context() as config:
            config.validate_on_read = True
            with asdf.open(io.BytesIO(data), lazy_load=False, memmap=False) as af:
                return af["wcs"]
    from astropy.io import fits
    from astropy.wcs import WCS

    hdr = fits.Header.fromstring(data.decode(), sep="\n")
    w = WCS(hdr)
    if "IMAGEW" in hdr:
        w.pixel_shape = (hdr["IMAGEW"], hdr["IMAGEH"])
    return w


def _sha256_arrays(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return h.hexdigest()


def _jsonable(value):
    """Parameters as JSON: numbers, strings, lists; anything else by its repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "url") and hasattr(value, "engine"):
        return f"store:{value.url}"
    try:
        from astropy.table import Table
        if isinstance(value, Table):
            return f"<Table of {len(value)} rows>"
    except ImportError:  # pragma: no cover
        pass
    return repr(value)


class Recorder:
    """Collects one run's record while it runs; :meth:`write` inserts it."""

    def __init__(self, step: str, parameters: dict, correctors: list, store, *, capture: bool = True) -> None:
        self.run_id = str(uuid.uuid4())
        self.step = step
        self.started_at = datetime.now(timezone.utc)
        self.parameters = {k: _jsonable(v) for k, v in parameters.items()}
        self.store = store
        self.correctors = correctors
        self.inputs: list[tuple[str, wcs_serializer.Serialized]] | None = None
        self._outputs: dict[int, wcs_serializer.Serialized] = {}
        if capture:
            self.capture_inputs()
        self.images = None
        self._image_blobs = None
        self.reference = None
        self.reference_files = None

    def capture_inputs(self) -> None:
        """Serialize the input WCSs (once): before any correction is applied, which the caller
        ensures when it asks for ``capture=False`` (the absolute step captures them while the
        database works on its reference query; :meth:`write` captures them if the run failed
        before). A gwcs goes to the helper process when it is ready (:mod:`.wcs_serializer`)."""
        if self.inputs is not None:
            return
        inputs = []
        with asdf_write_batch():
            for c in self.correctors:
                try:
                    data = wcs_serializer.submit(c.wcs) or wcs_serializer.Serialized(data=serialize_wcs(c.wcs))
                except Exception as exc:  # noqa: BLE001 - a WCS we cannot serialize is recorded as such
                    data = _unserializable(exc)
                inputs.append((wcs_kind(c.wcs), data))
        self.inputs = inputs

    def corrected(self, index: int, corrector) -> None:
        """Corrector ``index`` has its output WCS: when the helper process is ready, it
        serializes it now, while the run goes on; else :meth:`write` does."""
        out = wcs_serializer.submit(corrector.wcs)
        if out is not None:
            self._outputs[index] = out

    def set_images(self, images) -> None:
        """The images' sources as the run uses them; their record (the rows used, npz, and the
        checksum of an in-memory catalog) is prepared on other threads while the run goes on."""
        self.images = images
        self._image_blobs = in_background(lambda: dict(zip(
            (im.index for im in images), thread_map(self._image_blob, images))))

    @staticmethod
    def _image_blob(im) -> tuple[bytes, str]:
        return (npz_bytes(row=im.rows, x=im.x, y=im.y, weight=im.weight),
                _sha256_arrays(im.x, im.y, im.weight))

    def _catalog(self, corrector, image, array_sha: str | None) -> tuple[str, str, int]:
        cat = corrector.meta.get("catalog")
        if isinstance(cat, (str, os.PathLike)) and os.path.isfile(os.fspath(cat)):
            path = os.path.abspath(os.fspath(cat))
            return path, sha256_file(path), int(image.catalog_rows) if image else 0
        n = len(cat) if cat is not None and hasattr(cat, "__len__") else 0
        if image is None:
            return "table", "", n
        return "table", array_sha, n

    def write(self, error: BaseException | None = None) -> str:
        """Insert the run (also when it failed: ``error`` says why); returns its run id."""
        import astrodb
        from astrodb.provenance.chain import link_run
        from astrodb.store.schema import prov_images, prov_runs, source_files, catalogs
        import sqlalchemy as sa

        self.capture_inputs()
        store = astrodb.connect(self.store) if isinstance(self.store, str) else self.store
        finished = datetime.now(timezone.utc)
        results = [c.meta.get("fit_result") if error is None or c.meta.get("fit_result") is not None else None
                   for c in self.correctors]
        # This run's results only: a result of an earlier step means the run did not reach the image.
        reached = [r if r is not None and r.step == self.step else None for r in results]
        images = {im.index: im for im in (self.images or [])}
        # The matches are compressed on other threads (zlib releases the GIL) while this one
        # serializes the output WCSs; the images' rows were, while the run went on.
        compressed = in_background(lambda: thread_map(
            lambda r: None if r is None else npz_bytes(input=r.matched_input_idx, partner=r.matched_ref_idx,
                                                       partner_image=r.matched_ref_image), reached))
        image_blobs = self._image_blobs.result() if self._image_blobs is not None else {}
        rows = []
        n_aligned = 0
        with asdf_write_batch():  # the output gwcs
            # What the helper process has not serialized yet, this thread does (in the order
            # they were sent: the inputs, then the outputs).
            wcs_serializer.gather([s for _, s in self.inputs] + list(self._outputs.values()))
            for i, c in enumerate(self.correctors):
                r = reached[i]
                im = images.get(i)
                blob, array_sha = image_blobs.get(i, (None, None))
                src, sha, nrows = self._catalog(c, im, array_sha)
                kind, inp = self.inputs[i]
                try:
                    inp = inp.result()
                except Exception as exc:  # noqa: BLE001 - as in capture_inputs
                    inp = _unserializable(exc).result()
                ok = r is not None and r.status == "SUCCESS"
                fitted = r is not None and r.ok   # a failed fit records no geometry, not an identity
                out = self._outputs.get(i) if fitted else None
                n_aligned += ok
                status = r.status if r is not None else ("FAILED: " + str(error) if error else "FAILED: not reached")
                rows.append({
                    "run_id": self.run_id, "image_index": i,
                    "name": str(c.meta.get("name") or f"image {i}"),
                    "group_id": None if c.meta.get("group_id") is None else str(c.meta.get("group_id")),
                    "epoch": _epoch_or_none(c.meta.get("epoch")),
                    "catalog_source": src, "catalog_sha256": sha, "catalog_rows": nrows,
                    "rows_used": 0 if im is None else len(im.rows),
                    "catalog_data": blob,
                    "wcs_kind": kind,
                    "wcsinfo": _jsonable(getattr(c, "_wcsinfo", None)),
                    "input_wcs": inp,
                    # The reference image of a relative run keeps its WCS: recorded as its output too.
                    "output_wcs": (out.result() if out is not None else serialize_wcs(c.wcs)) if fitted else None,
                    "status": status[:300], "message": (r.message if r is not None else str(error or "")) or None,
                    "fitgeometry": None if r is None else r.fitgeometry,
                    "matrix": np.asarray(r.matrix).tolist() if fitted else None,
                    "shift": np.asarray(r.shift).tolist() if fitted else None,
                    "rotation": float(r.rotation) if fitted else None,
                    "scale": float(r.scale) if fitted else None,
                    "skew": float(r.skew) if fitted else None,
                    "rmse": None if r is None or not np.isfinite(r.rmse) else float(r.rmse),
                    "mae": None if r is None or not np.isfinite(r.mae) else float(r.mae),
                    "nmatches": None if r is None else int(r.nmatches),
                    "nref": None if r is None else int(r.nref),
                    "nclipped": None if r is None else int(r.nclipped),
                })
        for row, blob in zip(rows, compressed.result()):
            row["matches"] = blob
        n = len(self.correctors)
        status = "failed" if error is not None or n_aligned == 0 else ("success" if all(
            (results[i] is not None and results[i].ok) for i in range(n)) else "partial")
        ref = self.reference
        run = {"run_id": self.run_id, "step": self.step, "started_at": self.started_at, "finished_at": finished,
               "user_name": _user(), "host": socket.gethostname(), "software": software_versions(),
               "parameters": self.parameters, "status": status,
               "message": None if error is None else f"{type(error).__name__}: {error}",
               "n_images": n, "n_aligned": int(n_aligned), "ref_kind": "none"}
        if ref is not None:
            source = os.path.abspath(ref.source) if ref.query.get("kind") == "file" else ref.source
            run.update(ref_kind=ref.query.get("kind", "table"), ref_source=source,
                       ref_catalog=ref.query.get("catalog"), ref_query=_jsonable(ref.query),
                       ref_rows=int(len(ref.ra)), ref_sha256=ref.checksum(),
                       ref_data=None if ref.query.get("kind") == "store" else npz_bytes(
                           ra=ref.ra, dec=ref.dec, weight=ref.weight))
            if ref.query.get("kind") == "store":
                with store.engine.connect() as conn:
                    files = conn.execute(sa.select(source_files.c.path, source_files.c.sha256)
                                         .join(catalogs, catalogs.c.id == source_files.c.catalog_id)
                                         .where(catalogs.c.name == ref.query["catalog"])
                                         .order_by(source_files.c.id)).all()
                run["ref_files"] = [[p, h] for p, h in files]
            elif ref.query.get("kind") == "file":
                run["ref_files"] = [[source, sha256_file(source)]]
        store._require_schema()
        with store.engine.begin() as conn:
            conn.execute(prov_runs.insert().values(**run))
            if rows:
                conn.execute(prov_images.insert(), rows)
            link_run(conn, self.run_id)  # last: a chained run takes no more images
        if any(kind == "gwcs" for kind, _ in self.inputs):
            wcs_serializer.start()  # for the next recorded run, if it is not running
        return self.run_id


def _unserializable(exc: BaseException) -> wcs_serializer.Serialized:
    return wcs_serializer.Serialized(data=f"not serializable: {exc}".encode())


def _epoch_or_none(value) -> float | None:
    if value is None:
        return None
    try:
        from astrodb.epoch import to_julian_year
        return float(to_julian_year(value))
    except (ValueError, TypeError):
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"
