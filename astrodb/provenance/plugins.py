"""What astrodb finds of an installed aligner, through entry points (astrodb never imports one).

Re-running a recorded alignment needs the software that made it. An aligner registers, in its
distribution's metadata:

* group ``astrodb.verifiers``: an object (e.g. a module) with
  ``verify_run(store, run_id, *, tolerance_uas) -> VerifyReport`` (re-run a record and compare,
  see :class:`astrodb.provenance.verify.VerifyReport`) and
  ``requery_reference(store, run) -> reference or None`` (a store reference's recorded query run
  again: an object with ``ra``, ``dec`` and ``checksum()``, the hash ``prov_runs.ref_sha256``
  holds; None when the catalog cannot be queried any more) and
  ``apply_correction(wcs, correction) -> wcs`` (a recorded correction document, see
  :mod:`astrodb.provenance.corrections`, applied to the WCS it corrects);
* group ``astrodb.demos``: a callable ``run(out=print)``, the alignment part of ``astrodb demo``.

This distribution registers its own ``aligner`` package in both (pyproject.toml).
"""
from __future__ import annotations

from importlib import metadata

from ..errors import AstrodbError, one_line

__all__ = ["VERIFIERS", "DEMOS", "NoAlignerError", "load"]

VERIFIERS = "astrodb.verifiers"
DEMOS = "astrodb.demos"


class NoAlignerError(AstrodbError):
    """No installed aligner provides what was asked for (or it cannot be loaded)."""


def load(group: str, what: str):
    """The object the installed aligner registers in ``group``.

    Parameters
    ----------
    group : str
        :data:`VERIFIERS` or :data:`DEMOS`.
    what : str
        What it is needed for, for the error message (e.g. "re-running a recorded run").

    Returns
    -------
    object
        The entry point's object; the first by name when several aligners register one.

    Raises
    ------
    NoAlignerError
        None is registered, or the registered one cannot be imported.
    """
    found = sorted(metadata.entry_points(group=group), key=lambda ep: ep.name)
    if not found:
        raise NoAlignerError(f"{what} needs an aligner, and none is installed (no entry point in the group "
                             f"{group!r}; `pip install astrodb` brings the aligner)")
    ep = found[0]
    try:
        return ep.load()
    except Exception as exc:  # noqa: BLE001 - whatever the aligner's import raises, said in one line
        raise NoAlignerError(f"{what} needs the aligner {ep.value!r}, which cannot be loaded: "
                             f"{one_line(exc)}") from None
