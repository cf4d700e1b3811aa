"""relative_align and absolute_align: stcal.tweakreg's API and defaults, one joint fit.

Flow (both steps): correctors -> :mod:`.images` (sources on the common tangent plane, by group)
-> offsets (2D histogram) and one-to-one matches (:mod:`.match`, :mod:`.linking`) -> links
between groups and to the reference -> :func:`.fit.joint_fit` (every group's correction at
once, sigma clipping) -> one re-match with the fitted corrections and a final fit -> checks
(:mod:`.checks`: matches unlikely by chance, enough of them, correction within the search
radius) -> :func:`.outcome.finish` (``corrector.set_correction`` for the groups that passed).
A group that fails keeps its WCS untouched and its images' ``fit_info['status']`` says why.

This module is the public front: it checks the parameters (:mod:`.parameters`), keeps the
run's provenance record (:mod:`.outcome`) and runs the step, :mod:`.relative` or
:mod:`.absolute`, with the process settings of :mod:`.runtime`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from . import refcat as refcats
from .absolute import align_absolute
from .outcome import recorded, recorder
from .parameters import AbsoluteParameters, RelativeParameters
from .relative import align_relative
from .runtime.heap import collect_new_objects_only
from .runtime.threads import single_threaded_blas
from .significance import DEFAULT_MAX_CHANCE

__all__ = ["relative_align", "absolute_align"]

log = logging.getLogger(__name__)


@collect_new_objects_only()  # full collections would walk every object the imports made, each time
@single_threaded_blas()  # BLAS threads on top of the aligner's own stall on busy cores
def relative_align(correctors: list, searchrad: float = 2.0, separation: float = 1.0, use2dhist: bool = True,
                   tolerance: float = 0.7, xoffset: float = 0.0, yoffset: float = 0.0,
                   enforce_user_order: bool = False, expand_refcat: bool = False, minobj: int = 15,
                   fitgeometry: str = "rshift", nclip: int = 3, sigma: float = 3.0,
                   clip_accum: bool = False, *, store=None, provenance: bool | Callable = True,
                   max_chance: float = DEFAULT_MAX_CHANCE, brightest: int | None = None,
                   flux_column: str = "flux") -> list:
    """Align images to each other (stcal.tweakreg.relative_align, same parameters and defaults).

    Parameters
    ----------
    correctors : list of tweakwcs correctors
        ``FITSWCSCorrector`` / ``JWSTWCSCorrector`` with ``meta['catalog']`` (Table or file of
        0-based ``x``/``y`` or ``xcentroid``/``ycentroid``, optional ``weight``), optional
        ``meta['group_id']`` (same id: one correction) and ``meta['name']``.
    searchrad : float
        Search radius (arcsec) of the 2D-histogram offset search.
    separation : float
        Sources closer than this (arcsec) to another of the same group are not used; must
        exceed sqrt(2) * ``tolerance``.
    use2dhist : bool
        Find the initial offset with a 2D histogram (else use ``xoffset``/``yoffset``).
    tolerance : float
        Matching radius (arcsec) after the offset.
    xoffset, yoffset : float
        Initial offset guess (arcsec, east and north in the tangent plane): reference ~ image + offset.
    enforce_user_order : bool
        The first group is the reference and groups are aligned in the given order.
    expand_refcat : bool
        Match each group against the sources of every group already placed, not only the
        reference group's. Without it, a group that does not overlap the reference group enough
        is still matched against the groups placed before it (stcal fails such a group).
    minobj : int
        Fewest matches a group needs (at least what ``fitgeometry`` needs: shift 1, rshift and
        rscale 2, general 3). Matches must also be convincing (``max_chance``).
    fitgeometry : {'shift', 'rshift', 'rscale', 'general'}
    nclip : int
        Sigma-clipping rounds.
    sigma : float
        Clipping limit in units of the rmse.
    clip_accum : bool
        Clipped links stay clipped in later rounds.
    store : astrodb.Store or URL, optional
        With a store, the run is recorded in its provenance tables (parameters, inputs, fits,
        output WCSs; also when it fails), unless ``provenance`` is False.
    provenance : bool or callable
        False: no record. A callable gets the run's record
        (:class:`astrodb.provenance.record.RunRecord`) instead of the store, which is then only
        read (batch workers hand their records to the client that writes them:
        :mod:`aligner.batch`).
    max_chance : float
        Largest accepted probability that a group's matches arise by chance between unrelated
        source lists (Poisson tail of the chance matches expected, the offsets searched counted
        as trials; :mod:`aligner.significance`). Sparse fields: 3 matches where chance gives
        0.003 pass; crowded ones need a clear excess over their many chance pairs.
    brightest : int, optional
        Use only the ``brightest`` sources of each image (on the detector), by ``flux_column``
        (sources without a finite flux count as faintest); None: every source.
    flux_column : str
        The image catalogs' flux column for ``brightest`` (any case).

    Returns
    -------
    list
        ``correctors``; each has ``meta['fit_info']`` (stcal's keys) and ``meta['fit_result']``
        (:class:`~aligner.results.FitResult`); ``corrector.wcs`` is corrected where the status
        is "SUCCESS".

    Raises
    ------
    ParameterError
        A parameter out of range (a ``ValueError``).
    AlignmentError
        Fewer than two groups with sources, or no group could be aligned.

    Notes
    -----
    While it runs, two settings of the whole process change, to be undone when the last
    concurrent run ends (:mod:`aligner.runtime`): the BLAS libraries of numpy and scipy use one
    thread each (threadpoolctl), and garbage collections skip the objects that existed before
    the run (``gc.freeze``; not where the process froze objects itself). Other threads of the
    process see both meanwhile. Per-image and per-group work runs on up to
    ``ALIGNER_THREADS`` threads (default: up to 4, one per core); results do not depend on it.
    """
    arguments = dict(locals())
    rec = recorder("relative", arguments, correctors, store, provenance)
    with recorded(rec):
        align_relative(correctors, RelativeParameters.from_mapping(arguments), rec)
    return correctors


@collect_new_objects_only()  # full collections would walk every object the imports made, each time
@single_threaded_blas()  # BLAS threads on top of the aligner's own stall on busy cores
def absolute_align(correctors: list, abs_refcat, ref_wcs=None, ref_wcsinfo=None, epoch=None,
                   save_abs_catalog: bool = False, abs_catalog_output_dir: str | None = None,
                   abs_searchrad: float = 6.0, abs_separation: float = 1.0, abs_use2dhist: bool = True,
                   abs_tolerance: float = 0.7, abs_minobj: int = 15, abs_fitgeometry: str = "rshift",
                   abs_nclip: int = 3, abs_sigma: float = 3.0, clip_accum: bool = False, store=None, *,
                   observer=None, centroid_error: float = refcats.DEFAULT_CENTROID_ERROR_MAS,
                   timeout: float | None = None, provenance: bool | Callable = True,
                   max_chance: float = DEFAULT_MAX_CHANCE, brightest: int | None = None,
                   flux_column: str = "flux", abs_mag_min: float | None = None, abs_mag_max: float | None = None,
                   abs_brightest: int | None = None, abs_mag_column: str = "mag") -> list:
    """Align images to an absolute reference catalog (stcal.tweakreg.absolute_align's parameters).

    Parameters
    ----------
    correctors : list of tweakwcs correctors
        As for :func:`relative_align`.
    abs_refcat : str, path or Table
        A string is, in this order: 'GAIADR1', 'GAIADR2', 'GAIADR3' (also 'GAIAREFCAT',
        'GAIADR3_S3': DR3) from the store; an existing file any ``Table.read`` format reads with
        RA/DEC (deg) and optional weight; the name of any other catalog in the store (queried at
        the epoch like the Gaia releases). Or a Table (e.g. from ``Store.cone``/``footprint``;
        masked or NaN weights are derived from the position errors, else 1). None or '' for no
        absolute step (the correctors are returned unchanged).
    ref_wcs, ref_wcsinfo
        Accepted for stcal compatibility; the query region comes from all correctors' footprints.
    epoch : float, str or astropy.time.Time, optional
        Observation time: store references are moved to it (space motion) and the annual
        parallax seen from the Earth's barycentric position then is added. None: the mean of
        the correctors' ``meta['epoch']``, else the catalog's epoch (with a warning).
    save_abs_catalog, abs_catalog_output_dir
        Write the reference catalog used as ``fit_<name>_ref.ecsv`` in that directory (default:
        the current one).
    abs_searchrad, abs_separation, abs_use2dhist, abs_tolerance, abs_minobj, abs_fitgeometry,
    abs_nclip, abs_sigma, clip_accum
        As the relative parameters (arcsec).
    store : astrodb.Store or URL, optional
        Where the Gaia releases and store catalogs are (default: ``astrodb.connect()``). A store
        given here also records the run in its provenance tables (unless ``provenance`` is False).
    provenance : bool or callable
        False: no record. A callable gets the run's record
        (:class:`astrodb.provenance.record.RunRecord`) instead of the store, which is then only
        read (batch workers hand their records to the client that writes them:
        :mod:`aligner.batch`).
    observer : array-like (3,), optional
        Observer's barycentric position (AU) instead of the Earth's (e.g. a spacecraft at L2).
    centroid_error : float
        Typical centroid error (mas) of the image sources: a store reference star with position
        error sigma at the epoch weighs ``1 / (1 + (sigma / centroid_error)^2)``.
    timeout
        Accepted for stcal compatibility (the store is local).
    max_chance : float
        As for :func:`relative_align`: the largest accepted probability that a group's matches
        to the reference arise by chance. ``abs_minobj`` is honoured down to what
        ``abs_fitgeometry`` needs (shift 1, rshift 2, general 3 stars).
    brightest, flux_column
        As for :func:`relative_align`: the brightest image sources only.
    abs_mag_min, abs_mag_max : float, optional
        Use only reference stars with ``abs_mag_min <= mag <= abs_mag_max`` (either limit may
        be None; stars without a magnitude are left out by a limit): e.g. no stars saturated on
        the images, or none too faint to be detected.
    abs_brightest : int, optional
        Then use only the ``abs_brightest`` brightest reference stars over the images.
    abs_mag_column : str
        The reference's magnitude column for these (any case; the store's Gaia releases:
        ``mag``, the G magnitude).

    Returns
    -------
    list
        ``correctors``, corrected and annotated as by :func:`relative_align`.

    Raises
    ------
    ParameterError
        A parameter out of range (a ``ValueError``).
    AlignmentError
        No group could be aligned.

    Notes
    -----
    As for :func:`relative_align`: while it runs, BLAS uses one thread and garbage collections
    skip the older objects, process-wide. A store reference is queried on a background thread.
    """
    if abs_refcat is None or (isinstance(abs_refcat, str) and not abs_refcat.strip()):
        log.info("abs_refcat is empty: no absolute alignment")
        return correctors
    arguments = dict(locals())
    rec = recorder("absolute", arguments, correctors, store, provenance, capture=False)
    with recorded(rec):
        align_absolute(correctors, abs_refcat, AbsoluteParameters.from_mapping(arguments), epoch=epoch,
                       observer=observer, store=store, rec=rec)
    return correctors
