"""Batch tasks in the provenance: an association's runs recorded once, whoever ran them.

A batch (``aligner align-batch``) aligns many associations on workers that only read the store;
each task hands its runs' records back and the batch's client writes them here, with one
``prov_batch_tasks`` row, in one transaction. The row's key is the sha256 of what determines the
result (the manifest, its inputs, the parameters, the software's versions) and an attempt
number: a task that was retried, or a batch run again, finds its key recorded and writes nothing
twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from ..store.schema import prov_batch_tasks
from .record import RunRecord, insert_run, jsonable, run_rows

__all__ = ["BatchTask", "TaskState", "record_batch_task", "task_states"]


@dataclass
class BatchTask:
    """One association's task as a batch records it (a ``prov_batch_tasks`` row).

    ``status`` is ``'success'`` (every image aligned), ``'partial'`` or ``'failed'``;
    ``run_ids`` are those of the runs recorded with it, in order.
    """

    task_key: str
    attempt: int
    association: str
    manifest: str
    manifest_sha256: str
    status: str
    n_images: int
    n_aligned: int
    message: str | None = None
    rmse: float | None = None
    seconds: float | None = None
    worker: str | None = None
    run_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TaskState:
    """What the store holds of a task key: how many attempts were recorded and whether one of
    them ended without failing (the task is then done)."""

    attempts: int
    done: bool


def task_states(store: Any, keys: list[str]) -> dict[str, TaskState]:
    """The recorded state of each of ``keys`` (keys never recorded are left out).

    Parameters
    ----------
    store : astrodb.Store
    keys : list of str
        Task keys (sha256 hex).
    """
    out: dict[str, TaskState] = {}
    t = prov_batch_tasks.c
    with store.engine.connect() as conn:
        for k in range(0, len(keys), 500):
            rows = conn.execute(sa.select(t.task_key, sa.func.count(), sa.func.sum(
                sa.case((t.status != "failed", 1), else_=0))).where(t.task_key.in_(keys[k:k + 500]))
                .group_by(t.task_key))
            for key, n, ok in rows:
                out[key] = TaskState(int(n), bool(ok))
    return out


def record_batch_task(store: Any, task: BatchTask, runs: list[RunRecord]) -> bool:
    """Record a task's runs and its row in one transaction, once.

    Parameters
    ----------
    store : astrodb.Store
    task : BatchTask
        Its ``run_ids`` are set from ``runs``.
    runs : list of RunRecord
        The runs the task made, in order (their ids must be new to the store).

    Returns
    -------
    bool
        False when the store already held the task's key and attempt (nothing was written).
    """
    store._require_schema()
    task.run_ids = [r.run_id for r in runs]
    rows = [run_rows(store, r) for r in runs]
    key = prov_batch_tasks.c
    with store.engine.begin() as conn:
        if conn.execute(sa.select(key.task_key).where(key.task_key == task.task_key,
                                                      key.attempt == task.attempt)).first() is not None:
            return False
        # The task's row first: a writer racing for the same key and attempt fails on its primary key
        # before it writes a run.
        conn.execute(prov_batch_tasks.insert().values(
            task_key=task.task_key, attempt=int(task.attempt), association=task.association,
            manifest=task.manifest, manifest_sha256=task.manifest_sha256, status=task.status,
            message=task.message, run_ids=jsonable(task.run_ids), n_images=int(task.n_images),
            n_aligned=int(task.n_aligned), rmse=task.rmse, seconds=task.seconds, worker=task.worker,
            recorded_at=datetime.now(timezone.utc)))
        for row, images in rows:
            insert_run(conn, row, images)
    return True
