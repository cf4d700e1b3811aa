"""The relative step: every group aligned to the others in one joint fit.

The reference group (the first with ``enforce_user_order``, else the one overlapping the most
others) fixes the frame. Groups are placed in order of overlap with those already placed
(:mod:`.placement`), then all corrections are refitted jointly with links to up to
:data:`~aligner.linking.NEIGHBOURS` overlapping groups each: matched at the current
corrections, fitted, matched again within the fit's precision and fitted again. Groups whose
matches chance would give too often, too few matches or too large a correction fail; the
others' WCSs are corrected (:func:`.outcome.finish`).
"""
from __future__ import annotations

from collections.abc import Sequence

from .checks import drop_unconfirmed, too_large, unconfirmed
from .errors import AlignmentError
from .fit import MIN_POINTS, GroupTransform, Links, joint_fit, links_per_group
from .images import Group, load_images, make_groups, plane_for, project
from .linking import FIRST_PASS_SOURCES, match_groups, rematch_radius
from .outcome import apply, finish, group_results
from .parameters import RelativeParameters
from .placement import link_pairs, place_groups
from .results import REFERENCE as STATUS_REFERENCE, FitResult
from .runtime.threads import thread_map

__all__ = ["align_relative"]


def align_relative(correctors: Sequence, p: RelativeParameters, rec=None) -> list[FitResult]:
    """Align the correctors' groups to each other (the body of :func:`aligner.relative_align`).

    Parameters
    ----------
    correctors : sequence of tweakwcs correctors
        As for :func:`aligner.relative_align`; corrected in place.
    p : RelativeParameters
        The step's parameters.
    rec : aligner.provenance.Recorder, optional
        The run's provenance recorder.

    Returns
    -------
    list of FitResult
        One per corrector, in their order (also in each one's ``meta``).

    Raises
    ------
    AlignmentError
        Fewer than two groups with sources, or no group could be aligned.
    """
    images = load_images(correctors, p.brightest, p.flux_column)
    if rec is not None:
        rec.set_images(images)
    plane = plane_for(images)
    project(images, plane)
    groups = make_groups(images, p.separation)
    status: dict[int, str] = {g.index: "FAILED: empty source catalog" for g in groups if len(g.xy) == 0}
    live = [g for g in groups if g.index not in status]
    if len(live) < 2:
        res = group_results(groups, Links.concat([]), None, {g.index: status.get(g.index, "FAILED: nothing to "
                            "align it to (at least two images or groups with sources are needed)") for g in groups},
                            p.fitgeometry, "relative", plane)
        results = apply(groups, res, plane)
        raise AlignmentError("relative alignment needs at least two images (or groups) with non-empty "
                             f"catalogs; got {len(live)}", results)

    ref = live[0] if p.enforce_user_order else \
        max(live, key=lambda g: (sum(g.overlap(h) > 0 for h in live if h is not g), len(g.xy)))
    status[ref.index] = STATUS_REFERENCE
    limit = 2.0 * ((p.searchrad if p.use2dhist else max(abs(p.xoffset), abs(p.yoffset))) + p.tolerance)
    placement = place_groups(ref, [g for g in live if g is not ref], p, status, limit)
    transforms = placement.transforms
    free = [g.index for g in placement.placed if g is not ref]
    pairs = link_pairs(free, placement.placed, placement.neighbours, p.searchrad)
    links, fitted, matched_within = _joint_passes(groups, free, pairs, transforms, p)
    bad = unconfirmed(free, groups, transforms, links, fitted, matched_within,
                      search=p.searchrad if p.use2dhist else p.tolerance, max_chance=p.max_chance)
    if bad:
        free, links, fitted = drop_unconfirmed(bad, status, free, links, groups, p.fitgeometry, p.nclip, p.sigma,
                                               p.clip_accum, p.minobj)
        if fitted is not None:
            transforms.update(fitted.transforms)
    per_group = links_per_group(links, fitted.used, free)
    for a in free:
        n = per_group[a]
        if n < max(p.minobj, MIN_POINTS[p.fitgeometry]):
            status[a] = f"FAILED: not enough matches ({n} < minobj {p.minobj}) after the joint fit"
        elif too_large(fitted.transforms[a], groups[a], limit):
            status[a] = f"FAILED: the correction exceeds {limit:g} arcsec (2 x (searchrad + tolerance))"
    return finish(groups, links, fitted, status, p.fitgeometry, "relative", plane)


def _joint_passes(groups: list[Group], free: list[int], pairs: list[tuple[int, int]],
                  transforms: dict[int, GroupTransform], p: RelativeParameters) -> tuple[Links, object, float]:
    """Match the ``pairs`` of groups at the current corrections and fit all ``free`` groups
    jointly; once more within ten times the fit's median residual. ``transforms`` is updated.

    Returns the last pass's links, its fit and the radius it matched within."""
    fitted = None
    links = Links.concat([])
    radius = matched_within = p.tolerance
    for npass in range(2):
        # The first pass only has to bring the corrections close enough for the re-match:
        # a subset of each pair's sources does.
        cap = None if npass else FIRST_PASS_SOURCES
        # thread_map returns before the loop moves on: radius and cap are this pass's (bound for clarity).
        parts = thread_map(lambda ab, radius=radius, cap=cap: match_groups(groups[ab[0]], transforms[ab[0]],
                                                                           groups[ab[1]], transforms[ab[1]],
                                                                           radius, cap), pairs)
        links = Links.concat(parts)
        fitted = joint_fit(links, free, {a: groups[a].center for a in free}, p.fitgeometry, p.nclip, p.sigma,
                           p.clip_accum, p.minobj)
        transforms.update(fitted.transforms)
        matched_within, radius = radius, rematch_radius(fitted, p.tolerance)
    return links, fitted, matched_within
