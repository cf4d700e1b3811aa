"""The absolute step: every group fitted against the reference catalog and its overlapping groups.

One solution for all groups (stcal merges all images into one catalog, where a star seen in k
images is k near-duplicates and the thinning keeps the lowest-y one: a bias growing with k).
The reference is queried over the images' combined footprint while their sources are thinned
(:mod:`.reference_points` selects and thins it); each group starts at its 2D-histogram offset
(its own, else the one common to all), is matched to the reference and to its overlapping
groups, and all are fitted jointly, matched again within the fit's precision and fitted again.
Groups whose matches chance would give too often, too few matches or too large a correction
fail; the others' WCSs are corrected (:func:`.outcome.finish`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import refcat as refcats
from .checks import chance, drop_unconfirmed, too_large, unconfirmed
from .epochs import observation_epoch
from .fit import MIN_POINTS, REFERENCE, GroupTransform, Links, joint_fit, links_per_group
from .images import Group, load_images, make_groups, plane_for, project
from .linking import FIRST_PASS_SOURCES, NEIGHBOURS, box, link, match_groups, match_reference, rematch_radius
from .match import Offset, find_offset, kdtree
from .messages import absolute_origin, odds
from .outcome import finish
from .parameters import AbsoluteParameters
from .reference_points import ReferencePoints, reference_points, start_query
from .results import FitResult
from .runtime.threads import thread_map

__all__ = ["align_absolute"]


def align_absolute(correctors: Sequence, abs_refcat, p: AbsoluteParameters, *, epoch=None, observer=None,
                   store=None, rec=None) -> list[FitResult]:
    """Align the correctors' groups to ``abs_refcat`` (the body of :func:`aligner.absolute_align`).

    Parameters
    ----------
    correctors : sequence of tweakwcs correctors
        As for :func:`aligner.absolute_align`; corrected in place.
    abs_refcat, epoch, observer, store
        As for :func:`aligner.absolute_align` (``abs_refcat`` not empty).
    p : AbsoluteParameters
        The step's parameters.
    rec : aligner.provenance.Recorder, optional
        The run's provenance recorder, created with ``capture=False``: it captures the input
        WCSs while the reference query runs.

    Returns
    -------
    list of FitResult
        One per corrector, in their order (also in each one's ``meta``).

    Raises
    ------
    AlignmentError
        No group could be aligned.
    """
    # Only a store reference is moved to the epoch; a file or table is used as it is.
    jy = observation_epoch(epoch, correctors) if refcats.from_store(abs_refcat) else None
    images = load_images(correctors, p.brightest, p.flux_column)
    if rec is not None:
        rec.set_images(images)
    plane = plane_for(images)
    project(images, plane)
    query = start_query(abs_refcat, images, plane, jy, observer, store, p)
    if rec is not None:
        # While the database works on the query, rather than later beside the thinning's threads.
        rec.capture_inputs()
    groups = make_groups(images, p.abs_separation)
    ref = query.result()
    if rec is not None:
        rec.reference = ref
    groups, refpts = reference_points(ref, plane, groups, images, abs_refcat, p)
    live = [g for g in groups if len(g.xy)]
    status: dict[int, str] = {g.index: "FAILED: empty source catalog" for g in groups if len(g.xy) == 0}
    if len(refpts.rows) < p.abs_minobj:
        for g in live:
            status[g.index] = refpts.shortage(p)
    starts = _Starts.none(groups)
    if len(refpts.rows) >= p.abs_minobj and live:
        starts = _Starts.search(groups, live, refpts.offset_points, p)
    free = [g.index for g in live if g.index not in status]
    free, links, fitted = _fit(groups, live, free, status, refpts, starts, p)
    if fitted is not None:
        _final_checks(groups, free, links, fitted, status, p)
    used = {"source": ref.source, "query": ref.query, "rows": int(len(refpts.rows)), "sha256": ref.checksum()}
    return finish(groups, links, fitted, status, p.abs_fitgeometry, "absolute", plane, reference=used)


@dataclass
class _Starts:
    """Each group's starting correction (its offset) and where that came from."""

    transforms: dict[int, GroupTransform]
    offsets: dict[int, np.ndarray] = field(default_factory=dict)
    searches: dict[int, Offset | None] = field(default_factory=dict)  # each group's own offset search
    peak: dict[int, bool] = field(default_factory=dict)         # a significant peak, own or common
    common_significant: bool = False

    @classmethod
    def none(cls, groups: list[Group]) -> _Starts:
        """Every group at its current WCS."""
        return cls({g.index: GroupTransform() for g in groups})

    @classmethod
    def search(cls, groups: list[Group], live: list[Group], rall: np.ndarray, p: AbsoluteParameters) -> _Starts:
        """The offsets of the ``live`` groups to the reference points ``rall`` (2D histograms of
        all the groups' sources at once, then of each group's own near that common offset)."""
        out = cls.none(groups)
        common = np.zeros(2)
        # One KD-tree of the reference for every group's offset search, rather than one per search.
        rall_tree = kdtree(rall) if p.abs_use2dhist and len(rall) else None
        if p.abs_use2dhist:
            allxy = np.concatenate([g.xy_all for g in live])
            # Quick: where it finds nothing (e.g. each group off in its own direction), each
            # group is searched over the whole radius below.
            off = find_offset(allxy, rall, p.abs_searchrad, p.abs_tolerance, quick=True, ref_tree=rall_tree,
                              max_chance=p.max_chance)
            if off.significant:
                common = np.array([off.dx, off.dy])
                out.common_significant = True

        def own_offset(g: Group) -> Offset:
            # Near the common offset first (a small, cheap search), over the whole search
            # radius if that finds no significant peak.
            own = find_offset(g.xy_all, rall, min(2.0 * p.abs_tolerance, p.abs_searchrad), p.abs_tolerance,
                              tuple(common), ref_tree=rall_tree, max_chance=p.max_chance)
            if not own.significant:
                own = find_offset(g.xy_all, rall, p.abs_searchrad, p.abs_tolerance, ref_tree=rall_tree,
                                  max_chance=p.max_chance)
            return own

        owns = thread_map(own_offset, live) if p.abs_use2dhist else [None] * len(live)
        for g, own in zip(live, owns):
            o = np.array([own.dx, own.dy]) if own is not None and own.significant else common
            out.offsets[g.index] = o
            out.searches[g.index] = own
            out.peak[g.index] = p.abs_use2dhist and (own.significant or out.common_significant)
            out.transforms[g.index] = GroupTransform(np.eye(2), o.copy())
        return out

    def origin(self, a: int, p: AbsoluteParameters) -> str:
        """Where group ``a``'s matching offset came from, for failure messages."""
        return absolute_origin(self.searches.get(a), self.offsets.get(a, np.zeros(2)), p.abs_use2dhist,
                               self.common_significant, p.abs_searchrad)


def _fit(groups: list[Group], live: list[Group], free: list[int], status: dict[int, str], refpts: ReferencePoints,
         starts: _Starts, p: AbsoluteParameters) -> tuple[list[int], Links, object]:
    """Match the ``free`` groups to the reference and their overlapping groups at their starts
    and fit them jointly; once more within ten times the fit's median residual; drop the groups
    whose matches chance would give too often. ``status`` gets the failures.

    Returns the groups still free, the last links and fit (None: nothing was fitted)."""
    free = list(free)
    transforms = starts.transforms
    fitted = None
    links = Links.concat([])
    nbrs = {g.index: [h.index for h in sorted((h for h in live if h is not g and h.index in free
                                               and g.overlap(h) > 0), key=lambda h: -g.overlap(h))][:NEIGHBOURS]
            for g in live}
    radius = matched_within = p.abs_tolerance
    ref_tree = kdtree(refpts.pos) if len(refpts.pos) else None
    for npass in range(2):
        if not free:
            break
        # The first pass only has to bring the corrections close enough for the re-match:
        # a subset of each group's sources does.
        cap = None if npass else FIRST_PASS_SOURCES
        parts = _reference_links(groups, free, transforms, refpts, ref_tree, radius, cap, npass == 0, starts,
                                 status, p)
        # thread_map returns before the loop moves on: radius and cap are this pass's (bound for clarity).
        parts += thread_map(lambda ab, radius=radius, cap=cap: match_groups(groups[ab[0]], transforms[ab[0]],
                                                                            groups[ab[1]], transforms[ab[1]],
                                                                            radius, cap),
                            [(a, b) for a in free for b in nbrs[a] if b > a])
        links = Links.concat(parts)
        to_ref = np.bincount(links.ga[links.gb == REFERENCE] + 1, minlength=max(free, default=0) + 2)
        n_ref = sum(int(to_ref[a + 1]) for a in free)
        if n_ref < p.abs_minobj:
            for a in free:
                status[a] = (f"FAILED: not enough matches to the reference ({n_ref} < abs_minobj "
                             f"{p.abs_minobj}) within abs_tolerance {p.abs_tolerance:g}\" {starts.origin(a, p)}")
            return [], links, None
        fitted = joint_fit(links, free, {a: groups[a].center for a in free}, p.abs_fitgeometry, p.abs_nclip,
                           p.abs_sigma, p.clip_accum, p.abs_minobj)
        transforms.update(fitted.transforms)
        matched_within, radius = radius, rematch_radius(fitted, p.abs_tolerance)
    if fitted is None:
        return free, links, None
    bad = unconfirmed(free, groups, transforms, links, fitted, matched_within, refpts.pos,
                      search=p.abs_searchrad if p.abs_use2dhist else p.abs_tolerance, max_chance=p.max_chance)
    if bad:
        free, links, fitted = drop_unconfirmed(bad, status, free, links, groups, p.abs_fitgeometry, p.abs_nclip,
                                               p.abs_sigma, p.clip_accum, p.abs_minobj)
        if fitted is not None:
            transforms.update(fitted.transforms)
    return free, links, fitted


def _reference_links(groups: list[Group], free: list[int], transforms: dict[int, GroupTransform],
                     refpts: ReferencePoints, ref_tree, radius: float, cap: int | None, first: bool,
                     starts: _Starts, status: dict[int, str], p: AbsoluteParameters) -> list[Links]:
    """Each free group's links to the reference points, matched within ``radius`` at its
    current correction. In the ``first`` pass a group without a histogram peak (own or common)
    whose matches chance would give too often fails: it is removed from ``free``."""
    matched = thread_map(lambda a: match_reference(groups[a], transforms[a], refpts.pos, ref_tree, radius, cap),
                         free)
    parts = []
    for a, (i, j, pa) in zip(list(free), matched):
        g = groups[a]
        if first and not starts.peak.get(a, False):
            # No histogram peak of its own or in common: the matches at the offset used must
            # show it themselves (one offset tried).
            prob, expected = chance(len(i), pa, refpts.pos, *box(pa), p.abs_tolerance)
            if prob > p.max_chance:
                status[a] = (f"FAILED: not enough matches to the reference ({len(i)} within abs_tolerance "
                             f"{p.abs_tolerance:g}\" {starts.origin(a, p)}): "
                             f"{odds(len(i), expected, 1.0, prob, p.max_chance)}")
                free.remove(a)
                continue
        parts.append(link(a, g, i, REFERENCE, refpts.pos[j], refpts.weight[j], refpts.rows[j], g.xy[i]))
    return parts


def _final_checks(groups: list[Group], free: list[int], links: Links, fitted, status: dict[int, str],
                  p: AbsoluteParameters) -> None:
    """Fail (in ``status``) the fitted groups left with too few matches after clipping, or whose
    correction exceeds twice the search."""
    limit = 2.0 * (p.abs_searchrad + p.abs_tolerance)
    per_group = links_per_group(links, fitted.used, free)
    for a in free:
        n = per_group[a]
        if n < max(p.abs_minobj, MIN_POINTS[p.abs_fitgeometry]):
            status[a] = (f"FAILED: not enough matches ({n} < abs_minobj {p.abs_minobj}; {p.abs_fitgeometry} "
                         f"needs {MIN_POINTS[p.abs_fitgeometry]}) after the fit and its clipping "
                         f"(abs_nclip {p.abs_nclip}, abs_sigma {p.abs_sigma:g})")
        elif too_large(fitted.transforms[a], groups[a], limit):
            status[a] = f"FAILED: the correction exceeds {limit:g} arcsec (2 x (abs_searchrad + abs_tolerance))"
