"""A store catalog written as a HATS collection (catalog + margin cache) for LSDB users.

The rows are read in chunks at the requested epoch (:mod:`astrodb.export.rows`), staged as
Parquet files, then partitioned by ``hats-import`` on a Dask cluster: the collection it builds
holds the catalog (HEALPix-partitioned on the positions at that epoch, with ``_healpix_29``) and
a margin cache, so ``lsdb.read_hats(DIR)`` gives a catalog ready for cone searches and
cross-matches. Everything is written beside ``DIR`` and moved into place at the end: a failed
export leaves no catalog behind.

References: HATS (Hierarchical Adaptive Tiling Scheme), https://hats.readthedocs.io;
hats-import's collection pipeline, https://hats-import.readthedocs.io.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..dask_client import dask_client
from ..errors import AstrodbError, QueryError
from ..query.columns import OUTPUT_COLUMNS
from .rows import CatalogRows, catalog_rows

__all__ = ["HatsExport", "export_hats", "DEFAULT_MARGIN_ARCSEC"]

#: The margin cache's width by default (arcsec): hats-import's and LSDB's usual cross-match radius.
DEFAULT_MARGIN_ARCSEC = 10.0

_EXTRA = {"ra_pmra_corr": "correlation of ra and pmra (Gaia)", "dec_pmdec_corr": "correlation of dec and pmdec (Gaia)"}


@dataclass(frozen=True)
class HatsExport:
    """What :func:`export_hats` wrote."""

    path: Path
    catalog: str
    rows: int
    epoch: float | None
    margin_arcsec: float
    partitions: int
    margin_rows: int


def _schema(names: list[str]) -> pa.Schema:
    fields = []
    for n in names:
        unit, description = OUTPUT_COLUMNS[n] if n in OUTPUT_COLUMNS else (None, _EXTRA[n])
        kind = pa.int64() if n == "source_id" else pa.bool_() if n == "propagated" else pa.float64()
        meta = {"description": description}
        if unit is not None:
            meta["unit"] = unit.to_string()
        fields.append(pa.field(n, kind, nullable=n != "source_id", metadata=meta))
    return pa.schema(fields)


def _arrow(values: dict[str, np.ndarray], schema: pa.Schema) -> pa.Table:
    arrays = []
    for f in schema:
        v = values[f.name]
        # A missing float is a Parquet null (NaN only where the store has none).
        arrays.append(pa.array(v, f.type, mask=np.isnan(v)) if v.dtype.kind == "f" else pa.array(v, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _stage(chunks, folder: Path) -> list[Path]:
    """Write the chunks as Parquet files in ``folder``; the files."""
    files, schema = [], None
    for i, values in enumerate(chunks):
        if schema is None:
            names = [n for n in OUTPUT_COLUMNS if n in values and n != "distance"] + list(_EXTRA)
            schema = _schema(names)
        path = folder / f"rows_{i:05d}.parquet"
        pq.write_table(_arrow(values, schema), path)
        files.append(path)
    return files


def _properties(info: CatalogRows) -> dict:
    epoch = "each row's ref_epoch" if info.epoch is None else f"J{info.epoch:g}"
    props = {
        "obs_title": f"{info.name} at {epoch}",
        "obs_description": info.description or f"astrodb catalog {info.name} ({info.kind})",
        "prov_progenitor": f"astrodb {__version__} catalog {info.name} ({info.kind}, {info.row_count} rows)",
        "astrodb_catalog": info.name,
        "astrodb_kind": info.kind,
        # J2000-style Julian year of ra/dec, or 'ref_epoch' where each row keeps its own.
        "astrodb_epoch": "ref_epoch" if info.epoch is None else f"{info.epoch:.6f}",
    }
    if info.region_limited:
        props["astrodb_region_limited"] = "true"
    return props


def _relocated(target: Path, built: Path) -> None:
    """Point the properties that name the folder it was built in (the margin's
    ``hats_primary_table_url``) at ``target``."""
    for path in target.rglob("*properties"):
        text = path.read_text()
        if str(built) in text:
            path.write_text(text.replace(str(built), str(target)))


def _summary(target: Path) -> tuple[int, int, int]:
    """(rows, partitions, margin rows) of the collection at ``target``."""
    import hats

    collection = hats.read_hats(target)
    main = collection.main_catalog
    margin = hats.read_hats(collection.default_margin_catalog_dir)
    return int(main.catalog_info.total_rows), len(main.get_healpix_pixels()), int(margin.catalog_info.total_rows)


def export_hats(store, catalog: str, directory, *, epoch=None, margin_arcsec: float = DEFAULT_MARGIN_ARCSEC,
                pixel_threshold: int = 1_000_000, highest_order: int = 10, chunk_rows: int = 500_000,
                client=None, scheduler: str | None = None, workers: int = 1,
                progress: bool = False) -> HatsExport:
    """Write ``catalog`` as a HATS collection (catalog + margin cache) in ``directory``.

    Parameters
    ----------
    store : astrodb.Store
        The store.
    catalog : str
        The catalog to export.
    directory : str or path
        The collection's folder: must not exist or be empty. ``lsdb.read_hats(directory)`` reads
        it, the margin cache included.
    epoch : float, str, astropy.time.Time, optional
        Epoch of ``ra``/``dec`` (Julian year, 'J2030', ISO time); None: each row at its own
        ``ref_epoch``, as stored. With an epoch the rows also carry ``ra_ref``/``dec_ref`` (the
        stored positions), ``propagated`` and ``ra_epoch_error``/``dec_epoch_error`` (the
        position errors at ``epoch``), as :meth:`astrodb.Store.cone` gives them.
    margin_arcsec : float
        Width of the margin cache (arcsec), > 0.
    pixel_threshold : int
        Most rows in one HATS partition (hats-import's ``pixel_threshold``).
    highest_order : int
        Finest HEALPix order of a partition (hats-import's ``highest_healpix_order``).
    chunk_rows : int
        Rows read from the store per staged Parquet file.
    client : dask.distributed.Client, optional
        The cluster to partition on (else ``scheduler``, else a local cluster of ``workers``
        processes). Its workers must see ``directory``'s parent folder.
    scheduler : str, optional
        Address of an existing Dask scheduler (tcp://HOST:PORT).
    workers : int
        Worker processes of the local cluster.
    progress : bool
        Show hats-import's progress bars.

    Returns
    -------
    HatsExport
        The collection's path, rows, epoch, margin, partitions and margin rows.

    Raises
    ------
    CatalogNotFoundError
        No such catalog.
    QueryError
        A bad epoch, margin or folder.
    """
    from hats_import.collection.arguments import CollectionArguments
    from hats_import.pipeline import pipeline_with_client

    target = Path(directory).expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise QueryError(f"{target} exists and is not an empty folder: give a new folder for the HATS catalog")
    if not (isinstance(margin_arcsec, (int, float)) and np.isfinite(margin_arcsec) and margin_arcsec > 0):
        raise QueryError(f"margin must be a number of arcsec > 0, got {margin_arcsec!r}")
    if not (isinstance(pixel_threshold, int) and pixel_threshold >= 1):
        raise QueryError(f"pixel_threshold must be an integer >= 1, got {pixel_threshold!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target, so that the finished collection is moved into place by a rename.
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.export-", dir=target.parent))
    try:
        staged = work / "staged"
        staged.mkdir()
        with catalog_rows(store, catalog, epoch=epoch, chunk_rows=chunk_rows) as (info, chunks):
            files = _stage(chunks, staged)
        if not files:
            raise QueryError(f"catalog {catalog!r} holds no rows: nothing to export")
        args = (CollectionArguments(output_artifact_name=target.name, output_path=work / "out",
                                    tmp_dir=work / "tmp", progress_bar=progress, resume=False)
                .catalog(output_artifact_name=catalog, input_file_list=[str(f) for f in files],
                         file_reader="parquet", ra_column="ra", dec_column="dec",
                         pixel_threshold=pixel_threshold, highest_healpix_order=highest_order,
                         addl_hats_properties=_properties(info))
                .add_margin(margin_threshold=float(margin_arcsec), is_default=True))
        with dask_client(client, scheduler, workers) as on:
            pipeline_with_client(args, on)
        built = work / "out" / target.name
        if target.exists():
            target.rmdir()
        os.replace(built, target)
        _relocated(target, built)
    except AstrodbError:
        raise
    except Exception as exc:
        raise AstrodbError(f"HATS export of {catalog!r} to {target} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows, partitions, margin_rows = _summary(target)
    return HatsExport(target, catalog, rows, info.epoch, float(margin_arcsec), partitions, margin_rows)
