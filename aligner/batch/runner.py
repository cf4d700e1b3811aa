"""A batch run: associations submitted to a Dask cluster, each recorded once, then summarized.

The client reads the batch and keys each association (:func:`.associations.task_key`), skips
the keys the store holds as done (unless forced), submits one task per association
(:func:`.task.align_association`) and, as each finishes, writes its runs and its
``prov_batch_tasks`` row in one transaction (:func:`astrodb.provenance.batch.record_batch_task`).
A worker that dies takes its tasks to another worker (Dask's scheduler reruns them); a retried
task returns the same run ids, and only the client writes, so every association is recorded
exactly once.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field


from ..errors import ParameterError
from .associations import Association, read_associations, task_key
from .task import AssociationResult, align_association, output_folder

__all__ = ["BatchResult", "BatchRow", "align_batch", "default_options"]

#: Options that do not change an association's result (left out of its key).
_NOT_IN_KEY = {"store", "record_store", "provenance"}


@dataclass
class BatchRow:
    """One association's line of the summary."""

    association: str
    status: str               # success, partial, failed, done (recorded earlier, skipped)
    images: int
    aligned: int
    rmse_mas: float | None
    seconds: float | None
    worker: str = ""
    note: str = ""


@dataclass
class BatchResult:
    """A batch's outcome: one row per association, in the batch's order."""

    rows: list[BatchRow] = field(default_factory=list)
    seconds: float = 0.0
    outdir: str = ""

    @property
    def ok(self) -> bool:
        """True when every association is aligned (now or by an earlier run)."""
        return all(r.status in ("success", "done") for r in self.rows)

    def table(self):
        """The summary as an astropy Table."""
        from astropy.table import Table

        return Table(rows=[(r.association, r.status, r.images, r.aligned,
                            math.nan if r.rmse_mas is None else r.rmse_mas,
                            math.nan if r.seconds is None else r.seconds, r.worker, r.note) for r in self.rows],
                     names=("association", "status", "images", "aligned", "rmse_mas", "seconds", "worker", "note"),
                     dtype=(str, str, int, int, float, float, str, str))

    def summary(self) -> str:
        """The summary table and a closing line, as ``aligner align-batch`` prints them."""
        t = self.table()
        t["rmse_mas"].format = ".2f"
        t["seconds"].format = ".1f"
        counts = {s: sum(r.status == s for r in self.rows) for s in ("success", "done", "partial", "failed")}
        lines = t.pformat(max_lines=-1, max_width=-1)
        lines.append(f"{len(self.rows)} association(s): {counts['success']} aligned, {counts['done']} already "
                     f"recorded (skipped), {counts['partial']} partly aligned, {counts['failed']} failed; "
                     f"{self.seconds:.1f} s; outputs in {self.outdir}")
        return "\n".join(lines)


def default_options() -> dict:
    """Every ``aligner align`` option with its default (no reference catalog)."""
    from ..cli import _parser

    args = vars(_parser().parse_args(["align", "MANIFEST", "-o", "OUTDIR"]))
    for k in ("command", "manifest", "outdir"):
        args.pop(k)
    return args


def align_batch(source, outdir, *, options: dict | None = None, column: str = "association",
                scheduler: str | None = None, workers: int | None = None, client=None, force: bool = False,
                progress: bool = False) -> BatchResult:
    """Align every association of a batch, each as one task on a Dask cluster.

    Parameters
    ----------
    source : path
        A folder of manifests (one association each, named by the file's stem) or a table with
        an association column (:func:`aligner.batch.read_associations`).
    outdir : path
        Each association's outputs go to ``OUTDIR/<association>/`` (as ``aligner align -o``).
    options : dict, optional
        ``aligner align`` options by their Python names (``abs_refcat``, ``abs_fitgeometry``,
        ``store``, ...); the rest take their defaults (:func:`default_options`).
    column : str
        A table's association column.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://HOST:PORT``); default: a local cluster.
    workers : int, optional
        The local cluster's worker processes (default: one per core).
    client : distributed.Client, optional
        A client to submit to instead (``scheduler``/``workers`` are then not used).
    force : bool
        Align associations the store records as done again (as a new attempt).
    progress : bool
        A progress bar on stderr.

    Returns
    -------
    BatchResult

    Raises
    ------
    ParameterError
        A batch that cannot be read or parameters that are wrong for every association (before
        any task is submitted).
    """
    from astrodb.dask_client import dask_client
    from astrodb.provenance.batch import task_states

    from ..cli import _check_parameters, record_store
    from ..provenance import software_versions

    t0 = time.perf_counter()
    opts = default_options()
    unknown = set(options or {}) - set(opts)
    if unknown:
        raise ParameterError(f"unknown option(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(opts))})")
    opts.update(options or {})
    assocs = read_associations(source, column)
    names = [a.name for a in assocs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ParameterError(f"batch {str(source)!r}: association name(s) {', '.join(map(repr, dup))} appear "
                             f"more than once (each needs an output folder of its own)")
    # Validate the parameters (and find a store reference) once, here, before any task.
    args = argparse.Namespace(**opts, manifest=None, outdir=str(outdir))
    store = _check_parameters(args, True, bool(opts["abs_refcat"]))
    record = bool(opts["provenance"]) and store is not None  # as aligner align records
    if record and getattr(store, "backend", None) == "http":
        # The workers read an astrodb service; the client records into a database.
        store = record_store(args)
    parameters = {k: v for k, v in opts.items() if k not in _NOT_IN_KEY}
    software = software_versions()
    result = BatchResult(outdir=str(outdir))
    rows: dict[str, BatchRow] = {}
    pending: list[tuple[Association, str, int]] = []
    keys: dict[str, str] = {}
    for a in assocs:
        try:
            keys[a.name] = task_key(a, parameters, software)
        except ParameterError as exc:
            rows[a.name] = BatchRow(a.name, "failed", len(a.entries), 0, None, None, note=str(exc))
    states = task_states(store, list(keys.values())) if record else {}
    for a in assocs:
        if a.name not in keys:
            continue
        state = states.get(keys[a.name])
        if state is not None and state.done and not force:
            rows[a.name] = BatchRow(a.name, "done", len(a.entries), len(a.entries), None, None,
                                    note="recorded earlier with the same inputs, parameters and software "
                                         "(--force aligns it again)")
            continue
        pending.append((a, keys[a.name], 0 if state is None else state.attempts))

    if pending:
        with dask_client(client, scheduler, workers) as on:
            _run(on, pending, opts, outdir, record, store, rows, progress)
    result.rows = [rows[a.name] for a in assocs]
    result.seconds = time.perf_counter() - t0
    return result


def _run(client, pending, opts, outdir, record, store, rows, progress) -> None:
    from distributed import as_completed
    from tqdm import tqdm

    from astrodb.provenance.batch import BatchTask, record_batch_task

    from .task import warm_up

    client.run(warm_up)  # every worker, before the first task
    futures = {}
    for a, key, attempt in pending:
        fut = client.submit(align_association, a, opts, output_folder(outdir, a), key, attempt, record,
                            key=f"align-{key[:16]}-{attempt}", pure=False)
        futures[fut] = (a, key, attempt)
    bar = tqdm(total=len(futures), unit="assoc", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for fut in as_completed(futures):
            a, key, attempt = futures[fut]
            try:
                res: AssociationResult = fut.result()
            except Exception as exc:  # noqa: BLE001 - a task that could not run (e.g. its workers kept dying)
                res = AssociationResult(a.name, "failed", len(a.entries), 0, math.nan, "",
                                        message=f"task failed: {type(exc).__name__}: {exc}")
            note = "; ".join(([res.message] if res.message else []) + [f"warning: {w}" for w in res.warnings])
            if record:
                task = BatchTask(task_key=key, attempt=attempt, association=a.name, manifest=a.manifest,
                                 manifest_sha256=a.manifest_sha256, status=res.status, n_images=res.n_images,
                                 n_aligned=res.n_aligned, message=res.message, rmse=res.rmse,
                                 seconds=None if math.isnan(res.seconds) else res.seconds, worker=res.worker)
                if not record_batch_task(store, task, res.runs):
                    note = (note + "; " if note else "") + "already recorded by another client"
            rows[a.name] = BatchRow(a.name, res.status, res.n_images, res.n_aligned,
                                    None if res.rmse is None else res.rmse * 1000.0,
                                    None if math.isnan(res.seconds) else res.seconds, res.worker, note)
            bar.update(1)
            bar.set_postfix_str(f"{a.name}: {res.status}", refresh=False)
    finally:
        bar.close()
