"""The alignment provenance in the store (``prov_runs``, ``prov_images``, ``prov_chain``;
append-only): its format and writer, and its audits.

An aligner describes each run as a :class:`RunRecord` and hands it to :func:`record_run`
(:mod:`astrodb.provenance.record`, which owns the columns and their bytes: arrays in
:mod:`~astrodb.provenance.arrays`, WCSs in :mod:`~astrodb.provenance.wcs_bytes`, an aligned gwcs
as a correction of its input in :mod:`~astrodb.provenance.corrections`; :func:`resolve_wcs`
reads any of them back). Reading:

>>> from astrodb import provenance
>>> provenance.list_runs(store, image="jw02738_nrca1", since="2026-01-01")
>>> provenance.show_run(store, "3f2a")                 # a unique run id prefix is enough
>>> provenance.image_history(store, "jw02738_nrca1")   # every fit of one image, WCS lineage
>>> provenance.runs_using_file(store, "GaiaSource_000000-003111.csv.gz")
>>> provenance.stale_runs(store)                       # references changed since
>>> provenance.export_prov(store, "3f2a", "prov-json")  # W3C PROV
>>> provenance.plot_run(store, "3f2a", "fit.png")       # residual vectors and histograms
>>> head = provenance.chain_head(store)                  # (seq, digest) of the newest link: keep it
>>> provenance.verify_chain(store, head=head)            # every link recomputed; .ok, str(report)

``verify_run`` (re-run a recorded alignment with the installed aligner, found through an entry
point: :mod:`astrodb.provenance.plugins`) is in :mod:`astrodb.provenance.verify`, the hash chain
over the records (migration 0009) in :mod:`astrodb.provenance.chain`. The SQL views for
one-query audits in psql are described in docs/provenance.md.
"""
from .arrays import npz_bytes, npz_load
from .audit import (RunNotFoundError, image_history, list_fits, list_runs, resolve_run_id, runs_using_file,
                    show_run, stale_runs)
from .chain import chain_head, verify_chain
from .corrections import resolve_wcs
from .record import ImageRecord, ReferenceRecord, RunRecord, record_run
from .wcs_bytes import deserialize_wcs, serialize_wcs


def export_prov(store, run_id: str, fmt: str = "prov-json") -> str:
    """W3C PROV of one run (see :func:`astrodb.provenance.export.export_prov`)."""
    from .export import export_prov as _export
    return _export(store, run_id, fmt)


def plot_run(store, run_id: str, path, **kwargs):
    """Residual plots of one run (see :func:`astrodb.provenance.plot.plot_run`)."""
    from .plot import plot_run as _plot
    return _plot(store, run_id, path, **kwargs)


def fit_residuals(store, run_id: str):
    """Residuals of every matched pair of one run (see :func:`astrodb.provenance.plot.fit_residuals`)."""
    from .plot import fit_residuals as _res
    return _res(store, run_id)


def verify_run(store, run_id: str, **kwargs):
    """Re-run a recorded alignment and compare (see :func:`astrodb.provenance.verify.verify_run`)."""
    from .verify import verify_run as _verify
    return _verify(store, run_id, **kwargs)


__all__ = ["RunNotFoundError", "list_runs", "list_fits", "show_run", "image_history", "runs_using_file",
           "stale_runs", "resolve_run_id", "export_prov", "plot_run", "fit_residuals", "verify_run", "verify_chain",
           "chain_head", "RunRecord", "ImageRecord", "ReferenceRecord", "record_run", "npz_bytes", "npz_load",
           "serialize_wcs", "deserialize_wcs", "resolve_wcs"]
