"""Re-running a recorded alignment from its record and checking that it reproduces.

The re-run needs the aligner that made the record: :func:`verify_run` finds the installed one
through the ``astrodb.verifiers`` entry point (:mod:`astrodb.provenance.plugins`), which reads
the record with :func:`load_run` and answers with a :class:`VerifyReport`. What is checked:
each image's input WCS and catalog rows as used, every parameter, and the reference (the rows
recorded for a file or a Table, a file also against its recorded sha256; for a store catalog,
the same query re-run and its rows' hash compared with the recorded one) give again the same
status per image and corrected WCSs within ``tolerance_uas``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from ..errors import QueryError
from . import plugins

__all__ = ["VerifyReport", "load_run", "verify_run"]


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_run`: ``ok`` and the lines that say what agreed or differed."""

    run_id: str
    ok: bool = True
    lines: list[str] = field(default_factory=list)
    max_difference_uas: float = 0.0

    def fail(self, line: str) -> None:
        """Record a difference: the run does not reproduce."""
        self.ok = False
        self.lines.append("DIFFERS: " + line)

    def __str__(self) -> str:
        head = (f"run {self.run_id}: reproduces (largest WCS difference {self.max_difference_uas:.3g} µas)"
                if self.ok else f"run {self.run_id}: does NOT reproduce")
        return "\n".join([head, *("  " + s for s in self.lines)])


def load_run(store, run_id: str) -> tuple[dict, list[dict]]:
    """The full rows of one run, blobs included.

    Parameters
    ----------
    store : astrodb.Store
    run_id : str
        The run's UUID or a unique prefix of it.

    Returns
    -------
    tuple of (dict, list of dict)
        The ``prov_runs`` row and its ``prov_images`` rows in image order.

    Raises
    ------
    astrodb.QueryError
        No run has that id or prefix, or the prefix is ambiguous.
    """
    from ..store.schema import prov_images, prov_runs

    with store.engine.connect() as conn:
        runs = conn.execute(sa.select(prov_runs).where(prov_runs.c.run_id.like(run_id + "%"))).mappings().all()
        if not runs:
            raise QueryError(f"no recorded run {run_id!r} in {store.url}")
        if len(runs) > 1:
            raise QueryError(f"run id prefix {run_id!r} is ambiguous: {', '.join(r['run_id'] for r in runs[:5])}")
        run = dict(runs[0])
        images = [dict(r) for r in conn.execute(sa.select(prov_images).where(prov_images.c.run_id == run["run_id"])
                                                .order_by(prov_images.c.image_index)).mappings()]
    return run, images


def verify_run(store, run_id: str, *, tolerance_uas: float = 1.0) -> VerifyReport:
    """Re-run a recorded alignment and compare its outcome with the record.

    Parameters
    ----------
    store : astrodb.Store
        The store holding the record (and, for store references, the catalog).
    run_id : str
        The run's UUID or a unique prefix of it.
    tolerance_uas : float
        Largest accepted difference between a recomputed and a recorded WCS (micro-arcsec).

    Returns
    -------
    VerifyReport

    Raises
    ------
    astrodb.provenance.plugins.NoAlignerError
        No aligner is installed to re-run it.
    astrodb.QueryError
        Unknown or ambiguous run id.
    """
    verifier = plugins.load(plugins.VERIFIERS, "re-running a recorded alignment")
    return verifier.verify_run(store, run_id, tolerance_uas=tolerance_uas)
