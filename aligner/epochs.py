"""Observation epochs of the images: the epoch of one absolute run, and runs of images by epoch.

A store reference is moved to one epoch per run; images whose observation times span more than
:data:`EPOCH_SPAN_YR` are better aligned in separate runs, each at its own epoch
(:func:`epoch_runs`), than at the mean of all.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ParameterError, warn

__all__ = ["EPOCH_SPAN_YR", "epoch_runs", "observation_epoch"]

#: Images whose observation times span at most this (Julian years) are aligned to the store's
#: reference positions at their mean time; a wider span is split into runs of at most this span.
EPOCH_SPAN_YR = 0.1


def julian_year(value: object, what: str) -> float:
    """``value`` (Julian year 2024.5, 'J2024.5', an ISO time or an astropy Time) as a Julian year.

    Raises
    ------
    ParameterError
        ``value`` is none of these; the message names it as ``what``.
    """
    from astrodb.epoch import to_julian_year

    try:
        return float(to_julian_year(value))
    except (ValueError, TypeError):
        raise ParameterError(f"{what} must be a Julian year (2024.5), 'J2024.5', an ISO time or an astropy "
                             f"Time, got {value!r}") from None


def observation_epoch(epoch: object, correctors: Sequence) -> float | None:
    """The epoch (Julian year) of one run: ``epoch``, else the mean of the correctors'
    ``meta['epoch']`` (an :class:`~aligner.errors.AlignmentWarning` when they span more than
    :data:`EPOCH_SPAN_YR`), else None.

    Parameters
    ----------
    epoch : float, str, astropy.time.Time or None
        The run's epoch as given (None or '' for the images' own).
    correctors : sequence of tweakwcs correctors
        The run's images (``meta['epoch']``, ``meta['name']``).

    Returns
    -------
    float or None
        The Julian year, or None where neither gives one.
    """
    if epoch is not None and not (isinstance(epoch, str) and not epoch.strip()):
        return julian_year(epoch, "epoch")
    found = [(str(c.meta.get("name") or f"image {i}"), c.meta["epoch"]) for i, c in enumerate(correctors)
             if c.meta.get("epoch") is not None]
    if not found:
        return None
    years = np.array([julian_year(e, f"meta['epoch'] of {name}") for name, e in found])
    if np.ptp(years) > EPOCH_SPAN_YR:
        warn(f"absolute_align: the images' epochs span {np.ptp(years):.2f} yr; the reference is taken "
             f"at their mean J{years.mean():.3f} (align groups of images taken together separately)")
    return float(years.mean())


def _year_or_none(value: object) -> float | None:
    from astrodb.epoch import to_julian_year

    return None if value is None else float(to_julian_year(value))


def epoch_runs(correctors: Sequence, span: float = EPOCH_SPAN_YR) -> list[tuple[float | None, list]]:
    """Split images into runs whose observation times span at most ``span`` years.

    Images of one ``meta['group_id']`` stay together (placed by their mean time; no group_id:
    an image alone); images without a ``meta['epoch']`` join the largest run.

    Parameters
    ----------
    correctors : sequence of tweakwcs correctors
        The images, each with optional ``meta['epoch']`` (any form
        :func:`astrodb.epoch.to_julian_year` reads) and ``meta['group_id']``.
    span : float
        The widest span of one run (Julian years).

    Returns
    -------
    list of (float or None, list)
        Per run, in time order: the mean epoch of its timed images (Julian year) and its
        correctors in their input order. Without any time: one run, epoch None.
    """
    groups: dict = {}
    for i, c in enumerate(correctors):
        gid = c.meta.get("group_id")
        groups.setdefault(("image", i) if gid is None else ("id", gid), []).append(c)
    timed, untimed = [], []
    for members in groups.values():
        years = [y for y in (_year_or_none(m.meta.get("epoch")) for m in members) if y is not None]
        if years:
            timed.append((float(np.mean(years)), members))
        else:
            untimed.append(members)
    if not timed:
        return [(None, list(correctors))]
    timed.sort(key=lambda t: t[0])
    runs: list[list] = []
    for year, members in timed:
        if runs and year - runs[-1][0][0] <= span:
            runs[-1].append((year, members))
        else:
            runs.append([(year, members)])
    out = []
    for run in runs:
        cs = [m for _, members in run for m in members]
        years = [_year_or_none(m.meta.get("epoch")) for m in cs]
        out.append([float(np.mean([y for y in years if y is not None])), cs])
    biggest = max(out, key=lambda r: len(r[1]))
    for members in untimed:
        biggest[1].extend(members)
    order = {id(c): k for k, c in enumerate(correctors)}
    return [(year, sorted(cs, key=lambda c: order[id(c)])) for year, cs in out]
