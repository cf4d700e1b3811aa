"""Reader of HATS catalogs (Hierarchical Adaptive Tiling Scheme, the LSDB layout) holding Gaia
``gaia_source`` rows, such as the public Gaia DR3 copy in ``s3://stpubdata/gaia/gaia_dr3/public/hats``:
each partition file -> validated numpy columns in the store's column set, exactly as
:func:`astrodb.ingest.gaia_reader.read_gaia_file` gives them for the archive's CSV files.

Layout of a catalog (a local directory or an fsspec URL: ``s3://``, ``https://``, ``file://``,
``memory://`` ...)::

    <catalog>/hats.properties          java-properties key=value lines (older catalogs: properties)
                                       obs_collection=gaia_dr3, hats_col_ra=ra, hats_nrows=...
    <catalog>/partition_info.csv       one row per partition: Norder,Npix (other columns ignored)
    <catalog>/dataset/Norder=K/Dir=D/Npix=N.parquet     D = N // 10000 * 10000
    <catalog>/dataset/Norder=K/Dir=D/Npix=N/*.parquet   (newer HATS: a partition split in files)

A HATS collection (``<collection>/collection.properties``, read with hats' own model of it)
stands for its main catalog, ``hats_primary_table_url`` (relative to the collection or absolute).

Each partition holds rows whose order-K nested HEALPix pixel is N, an order-29 nested
``_healpix_29`` column and the gaia_source columns (lowercase names). Only the columns the store
needs are read (Parquet column projection: over a URL only their byte ranges are fetched, unless
the caller passes the file's bytes), in any case, converted to the types the CSV reader uses, and
validated by the same code (:func:`astrodb.ingest.gaia_reader._validate`). No Python loop runs
over rows.

Remote catalogs go through fsspec (``fsspec.core.url_to_fs``): the protocol's implementation
must be installed (``s3fs`` for ``s3://``, ``aiohttp`` for ``https://``), and its options can be
set with fsspec's environment variables, e.g. ``FSSPEC_S3_ANON=true`` for a public bucket read
without credentials. Local paths (and ``file://`` URLs) are read directly.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import IngestError, one_line
from . import gaia_reader
from .gaia_reader import GaiaRows

__all__ = ["is_hats_catalog", "hats_partitions", "hats_partition_sizes", "hats_release",
           "partition_release", "read_hats_partition", "read_bytes", "is_remote", "local_path",
           "is_hats_collection", "resolve_catalog", "partition_path_match"]

#: Properties file names, newest first.
PROPERTIES_FILES: tuple[str, ...] = ("hats.properties", "properties")
PARTITION_INFO = "partition_info.csv"
#: A HATS collection's properties: ``hats_primary_table_url`` names its main catalog.
COLLECTION_PROPERTIES = "collection.properties"
DATASET_DIR = "dataset"
#: Properties that may name the catalog (and so its Gaia release), in order of precedence.
_NAME_KEYS = ("obs_collection", "hats_catalog_name", "catalog_name", "obs_title", "publisher_did")

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# "gaia_dr3", "GaiaEDR3", "Gaia DR2": a release not followed by another digit (not "dr16").
_RELEASE = re.compile(r"(?:^|[^a-z0-9]|gaia)(e?)dr\s*([123])(?![0-9])", re.I)
_PARTITION_PATH = re.compile(r"^(.*)[/\\]" + DATASET_DIR + r"[/\\]Norder=\d+[/\\]Dir=\d+[/\\]Npix=\d+"
                             r"(?:\.parquet|[/\\][^/\\]+)$")


# --- locations: a local path or a URL ----------------------------------------------------------

@dataclass(frozen=True)
class _Where:
    """A file or directory: ``fs`` None for a local path, else the fsspec filesystem, ``path``
    its path there (protocol stripped) and ``url`` the name shown and handed on."""

    fs: Any
    path: str
    url: str

    def join(self, *parts: str) -> _Where:
        if self.fs is None:
            joined = os.path.join(self.path, *parts)
            return _Where(None, joined, joined)
        tail = "/".join(parts)
        return _Where(self.fs, self.path.rstrip("/") + "/" + tail, self.url.rstrip("/") + "/" + tail)


def is_remote(path_or_url: str | os.PathLike) -> bool:
    """True for a URL other than ``file://`` (read through fsspec)."""
    text = os.fspath(path_or_url)
    return bool(_URL.match(text)) and not text.lower().startswith(("file://", "local://"))


def _where(path_or_url: str | os.PathLike) -> _Where:
    text = os.fspath(path_or_url)
    if not _URL.match(text):
        return _Where(None, text, text)
    try:
        from fsspec.core import url_to_fs
        from fsspec.implementations.local import LocalFileSystem

        fs, path = url_to_fs(text)
    except (ImportError, ValueError) as exc:
        raise IngestError(f"cannot open the URL: {exc}", source=text) from None
    if isinstance(fs, LocalFileSystem):
        return _Where(None, path, path)
    url = text.rstrip("/")
    return _Where(fs, path.rstrip("/") or path, text if url.endswith(":") else url)


def local_path(path_or_url: str | os.PathLike) -> str | None:
    """The local path of a path or ``file://`` URL; None for a remote URL."""
    w = _where(path_or_url)
    return w.path if w.fs is None else None


def _isfile(w: _Where) -> bool:
    if w.fs is None:
        return os.path.isfile(w.path)
    try:
        return bool(w.fs.isfile(w.path))
    except FileNotFoundError:
        return False
    except Exception as exc:  # noqa: BLE001 - network, permissions: one clear error
        raise IngestError(f"cannot read ({type(exc).__name__}: {exc})", source=w.url) from None


def _read(w: _Where, missing_ok: bool = False) -> bytes | None:
    """The bytes of a file (None when absent and ``missing_ok``)."""
    try:
        if w.fs is None:
            with open(w.path, "rb") as f:
                return f.read()
        return bytes(w.fs.cat_file(w.path))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        if missing_ok:
            return None
        raise IngestError("no such file", source=w.url) from None
    except Exception as exc:  # noqa: BLE001 - network, permissions: one clear error
        raise IngestError(f"cannot read ({type(exc).__name__}: {exc})", source=w.url) from None


def read_bytes(path_or_url: str | os.PathLike) -> bytes:
    """The whole content of a local file or URL.

    Raises
    ------
    IngestError
        Naming the file: it does not exist or cannot be read.
    """
    return _read(_where(path_or_url))


# --- catalog metadata --------------------------------------------------------------------------

def is_hats_collection(path_or_url: str | os.PathLike) -> bool:
    """Whether ``path_or_url`` is a HATS collection: a directory holding ``collection.properties``
    (and no catalog of its own), whose ``hats_primary_table_url`` names its main catalog."""
    w = _where(path_or_url)
    if w.fs is None and not os.path.isdir(w.path):
        return False
    return _isfile(w.join(COLLECTION_PROPERTIES)) and not _isfile(w.join(PARTITION_INFO))


def resolve_catalog(path_or_url: str | os.PathLike) -> str:
    """The catalog a location holds: a collection's main catalog (its ``hats_primary_table_url``,
    relative to the collection or absolute), else the location itself.

    Raises
    ------
    IngestError
        Naming the collection: its properties are not a valid HATS collection's.
    """
    text = os.fspath(path_or_url)
    if not is_hats_collection(text):
        return text
    w = _where(text)
    from hats.catalog.dataset.collection_properties import CollectionProperties

    data = _read(w.join(COLLECTION_PROPERTIES)).decode("utf-8", "replace")
    try:  # hats' own model of the file: the required keys and their checks
        props = CollectionProperties(**_parse_properties(data))
    except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError and the like
        raise IngestError(f"not a valid HATS collection ({one_line(exc)})",
                          source=w.join(COLLECTION_PROPERTIES).url) from None
    primary = props.hats_primary_table_url
    if _URL.match(primary) or os.path.isabs(primary):
        return primary  # as hats resolves it: an absolute location is used as it is
    inner = w.join(*[part for part in primary.replace("\\", "/").split("/") if part])
    return inner.url if inner.fs is not None else inner.path


def partition_path_match(path_or_url: str):
    """The match of a HATS partition file's path (``.../dataset/Norder=K/Dir=D/Npix=N.parquet``
    or a file of ``Npix=N/``); None for any other path."""
    return _PARTITION_PATH.match(os.fspath(path_or_url))


def is_hats_catalog(path_or_url: str | os.PathLike) -> bool:
    """Whether ``path_or_url`` is a HATS catalog directory: it holds ``hats.properties`` (or the
    older ``properties``) and ``partition_info.csv``, or it is a HATS collection whose main
    catalog is one.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        A local directory or an fsspec URL.

    Returns
    -------
    bool
        False for anything else, including a location that does not exist.

    Raises
    ------
    IngestError
        The URL's protocol is not available (its fsspec implementation is not installed) or the
        location cannot be read (network error, permission denied).
    """
    w = _where(path_or_url)
    if w.fs is None and not os.path.isdir(w.path):
        return False
    if _isfile(w.join(PARTITION_INFO)) and any(_isfile(w.join(name)) for name in PROPERTIES_FILES):
        return True
    if is_hats_collection(path_or_url):
        inner = resolve_catalog(path_or_url)
        return inner != os.fspath(path_or_url) and is_hats_catalog(inner)
    return False


def _parse_properties(text: str) -> dict[str, str]:
    """``key=value`` (or ``key: value``) lines; ``#``/``!`` comments; backslash escapes dropped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        m = re.match(r"((?:\\.|[^=:\s\\])+)\s*[=:\s]\s*(.*)$", line)
        if m:
            key = re.sub(r"\\(.)", r"\1", m.group(1))
            out[key] = re.sub(r"\\(.)", r"\1", m.group(2)).strip()
        else:
            out[re.sub(r"\\(.)", r"\1", line)] = ""
    return out


def _properties(w: _Where) -> dict[str, str]:
    for name in PROPERTIES_FILES:
        data = _read(w.join(name), missing_ok=True)
        if data is not None:
            return _parse_properties(data.decode("utf-8", "replace"))
    raise IngestError(f"not a HATS catalog: no {' or '.join(PROPERTIES_FILES)}", source=w.url)


def hats_release(path_or_url: str | os.PathLike) -> str | None:
    """The Gaia release a HATS catalog's properties name.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        The catalog directory (local path or fsspec URL).

    Returns
    -------
    {"dr1", "dr2", "edr3", "dr3"} or None
        From ``obs_collection`` (e.g. ``gaia_dr3``), else the other name properties
        (``hats_catalog_name``, ``catalog_name``, ``obs_title``, ``publisher_did``); None when none
        of them names a Gaia release.

    Raises
    ------
    IngestError
        The catalog has no properties file or it cannot be read.
    """
    props = _properties(_where(resolve_catalog(path_or_url)))
    for key in _NAME_KEYS:
        m = _RELEASE.search(props.get(key, ""))
        if m:
            return (m.group(1).lower() + "dr" + m.group(2))
    return None


def _partition_pixels(w: _Where) -> list[tuple[int, int]]:
    """(Norder, Npix) of each partition that ``partition_info.csv`` lists, sorted, unique."""
    info = w.join(PARTITION_INFO)
    data = _read(info)
    try:
        table = pacsv.read_csv(pa.BufferReader(data))
    except pa.ArrowException as exc:
        raise IngestError(f"malformed partition list ({exc})", source=info.url) from None
    names = {n.strip().lower(): n for n in table.column_names}
    missing = [c for c in ("Norder", "Npix") if c.lower() not in names]
    if missing:
        raise IngestError(f"no {' and '.join(missing)} column (it has {', '.join(table.column_names)})",
                          source=info.url)
    try:
        order = table[names["norder"]].cast(pa.int64()).to_numpy(zero_copy_only=False)
        pixel = table[names["npix"]].cast(pa.int64()).to_numpy(zero_copy_only=False)
    except pa.ArrowException as exc:
        raise IngestError(f"Norder and Npix must be integers ({exc})", source=info.url) from None
    pairs = sorted(set(zip(order.tolist(), pixel.tolist())))
    bad = [(k, n) for k, n in pairs if not (0 <= k <= 29 and 0 <= n < 12 * 4 ** k)]
    if bad:
        raise IngestError(f"invalid HEALPix pixel Norder={bad[0][0]} Npix={bad[0][1]}", source=info.url)
    return pairs


def _listing(w: _Where) -> dict[str, int]:
    """Remote catalogs: every file under ``dataset/`` and its size, in one recursive listing
    (empty when the filesystem cannot list, e.g. plain HTTP; each file is then looked up)."""
    if w.fs is None:
        return {}
    dataset = w.join(DATASET_DIR).path
    try:
        found = w.fs.find(dataset, detail=True)
    except Exception:  # noqa: BLE001 - listing is only a shortcut
        return {}
    return {w.fs._strip_protocol(name).rstrip("/"): int(info.get("size") or 0)
            for name, info in found.items() if info.get("type", "file") == "file"}


def _lookup(w: _Where, listing: dict[str, int], by_dir: dict[str, list[str]]) -> list[tuple[_Where, int]] | None:
    """The partition file ``w`` (``Npix=N.parquet``) or, if absent, the ``.parquet`` files of the
    directory ``Npix=N/``, with their sizes; None when neither exists."""
    stem = w.path[:-len(".parquet")]
    ustem = w.url[:-len(".parquet")]
    if w.fs is None:
        if os.path.isfile(w.path):
            return [(w, os.path.getsize(w.path))]
        if not os.path.isdir(stem):
            return None
        files = sorted(os.path.join(stem, f) for f in os.listdir(stem)
                       if f.endswith(".parquet") and not f.startswith((".", "_")))
        return [(_Where(None, f, f), os.path.getsize(f)) for f in files] or None
    if w.path in listing:
        return [(w, listing[w.path])]
    if stem in by_dir:
        return [(_Where(w.fs, stem + "/" + f, ustem + "/" + f), listing[stem + "/" + f])
                for f in sorted(by_dir[stem])]
    try:  # not listed (or no listing): ask for the file itself, then the directory
        info = w.fs.info(w.path)
        if info.get("type", "file") == "file":
            return [(w, int(info.get("size") or 0))]
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - network, permissions: one clear error
        raise IngestError(f"cannot read ({type(exc).__name__}: {exc})", source=w.url) from None
    try:
        entries = w.fs.ls(stem, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except Exception as exc:  # noqa: BLE001
        raise IngestError(f"cannot read ({type(exc).__name__}: {exc})", source=ustem) from None
    out = []
    for info in sorted(entries, key=lambda e: e["name"]):
        name = w.fs._strip_protocol(info["name"]).rstrip("/").rsplit("/", 1)[-1]
        if info.get("type", "file") == "file" and name.endswith(".parquet") and not name.startswith((".", "_")):
            out.append((_Where(w.fs, stem + "/" + name, ustem + "/" + name), int(info.get("size") or 0)))
    return out or None


def hats_partition_sizes(path_or_url: str | os.PathLike) -> list[tuple[str, int]]:
    """Every partition file of a HATS catalog with its size in bytes; see :func:`hats_partitions`."""
    w = _where(resolve_catalog(path_or_url))
    pixels = _partition_pixels(w)
    listing = _listing(w)
    by_dir: dict[str, list[str]] = {}
    for name in listing:
        head, _, tail = name.rpartition("/")
        if tail.endswith(".parquet") and not tail.startswith((".", "_")) and "/Npix=" in name:
            by_dir.setdefault(head, []).append(tail)
    out: list[tuple[str, int]] = []
    for order, pixel in pixels:
        f = w.join(DATASET_DIR, f"Norder={order}", f"Dir={pixel // 10000 * 10000}", f"Npix={pixel}.parquet")
        found = _lookup(f, listing, by_dir)
        if found is None:
            raise IngestError(f"partition Norder={order} Npix={pixel} listed in {PARTITION_INFO} is missing "
                              f"(neither the file nor a directory Npix={pixel}/ of .parquet files)", source=f.url)
        out += [(x.url, size) for x, size in found]
    return out


def hats_partitions(path_or_url: str | os.PathLike) -> list[str]:
    """Every partition file of a HATS catalog, as paths (local catalog) or URLs.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        The catalog directory (local path or fsspec URL).

    Returns
    -------
    list of str
        ``<catalog>/dataset/Norder=K/Dir=D/Npix=N.parquet`` for each (K, N) in
        ``partition_info.csv``, sorted by order and pixel; a partition stored as a directory
        ``Npix=N/`` gives its ``.parquet`` files, sorted by name.

    Raises
    ------
    IngestError
        Naming the file: no ``partition_info.csv`` or it lacks Norder/Npix, a listed partition
        is missing, the location cannot be read.
    """
    return [url for url, _ in hats_partition_sizes(path_or_url)]


# --- partitions ----------------------------------------------------------------------------------

def _catalog_of(w: _Where) -> _Where | None:
    """The catalog directory of a partition file, from its path (None if not in the layout)."""
    m, mu = _PARTITION_PATH.match(w.path), _PARTITION_PATH.match(w.url)
    if not (m and mu):
        return None
    return _Where(w.fs, m.group(1), mu.group(1))


def _properties_release(w: _Where) -> str | None:
    root = _catalog_of(w)
    if root is None:
        return None
    try:
        return hats_release(root.url if root.fs is not None else root.path)
    except IngestError:  # no properties beside the partition: the columns tell
        return None


def _open(w: _Where, data: bytes | None):
    """(ParquetFile, handle to close or None)."""
    if data is not None:
        return pq.ParquetFile(pa.BufferReader(data)), None
    if w.fs is None:
        return pq.ParquetFile(w.path), None
    handle = w.fs.open(w.path, "rb")
    try:
        return pq.ParquetFile(handle), handle
    except BaseException:
        handle.close()
        raise


def _header(names: list[str], meta_release: str | None) -> gaia_reader._Header:
    return gaia_reader._Header(names=names, delimiter=",", ecsv=False, meta_release=meta_release, lines=0)


def _failure(exc: BaseException, source: str) -> IngestError:
    if isinstance(exc, IngestError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return IngestError("no such file", source=source)
    if isinstance(exc, pa.ArrowInvalid):
        return IngestError(f"not a readable Parquet file ({exc})", source=source)
    return IngestError(f"cannot read ({type(exc).__name__}: {exc})", source=source)


def _release_of(w: _Where, names: list[str]) -> str:
    """The release the catalog's properties name and the columns agree with (either alone when
    the other does not tell)."""
    meta = _properties_release(w)
    try:
        by_columns = gaia_reader._infer_release(os.path.basename(w.path), _header(names, None), w.url)
    except IngestError:
        if meta is None:
            raise
        return meta
    if meta is not None and meta != by_columns:
        raise IngestError(f"the catalog's properties say Gaia {meta.upper()} but the columns are "
                          f"{by_columns.upper()}'s; pass release= to choose", source=w.url)
    return by_columns


def partition_release(path_or_url: str | os.PathLike) -> str:
    """The Gaia release of a HATS partition file: what its catalog's properties name and its
    columns say (only the Parquet footer is read).

    Raises
    ------
    IngestError
        Naming the file: unreadable, neither the properties nor the columns tell, or they
        disagree.
    """
    w = _where(path_or_url)
    try:
        pf, handle = _open(w, None)
        try:
            names = pf.schema_arrow.names
        finally:
            if handle is not None:
                handle.close()
    except Exception as exc:  # noqa: BLE001 - reported as the file's failure
        raise _failure(exc, w.url) from None
    return _release_of(w, names)


def _convert(table: pa.Table, types: dict[str, pa.DataType], source: str) -> pa.Table:
    """The columns in the CSV reader's types (float64, int64 source_id, int16 params)."""
    for i, name in enumerate(table.column_names):
        want = types[name]
        col = table.column(i)
        if col.type == want:
            continue
        try:
            col = col.cast(want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise IngestError(f"cannot convert {col.type} to {want} ({exc})", source=source, column=name) from None
        table = table.set_column(i, name, col)
    return table


def read_hats_partition(path_or_url: str | os.PathLike, release: str | None = None,
                        data: bytes | None = None) -> GaiaRows:
    """Read one HATS partition file of Gaia rows into the store's columns.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        ``.../dataset/Norder=K/Dir=D/Npix=N.parquet`` (or a file of a ``Npix=N/`` directory), a
        local path or fsspec URL; it names the rows in errors.
    release : {"dr1", "dr2", "edr3", "dr3"}, optional
        Default: what the catalog's properties name (``obs_collection=gaia_dr3``), checked
        against the columns, else what the columns say.
    data : bytes, optional
        The file's content, already fetched (e.g. to hash it): parsed from memory, not re-read.

    Returns
    -------
    GaiaRows
        ``source`` is ``path_or_url``.

    Raises
    ------
    IngestError
        Naming the file (and column and rows where known): not Parquet or damaged, missing
        required columns, a column of another type that does not convert, and every check of
        :func:`astrodb.ingest.gaia_reader.read_gaia_file` (ref_epoch, source_id, positions,
        uncertainties, correlations, astrometric solution).
    """
    w = _where(path_or_url)
    source = w.url
    if release is not None:
        release = gaia_reader._normalize_release(release, source)
    try:
        pf, handle = _open(w, data)
        try:
            header = _header(pf.schema_arrow.names, None)
            release = release or _release_of(w, header.names)
            names, types = gaia_reader._wanted(release, header, source)
            table = pf.read(columns=list(dict.fromkeys(names.values())), use_threads=gaia_reader._cpus() > 2)
        finally:
            if handle is not None:
                handle.close()
    except Exception as exc:  # noqa: BLE001 - reported as the file's failure
        raise _failure(exc, source) from None
    return gaia_reader._validate(_convert(table, types, source), names, release, source)
