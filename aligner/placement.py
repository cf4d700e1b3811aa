"""The relative step's first corrections: each group placed against the groups already placed.

Groups are placed in order of overlap with those already placed (or in the given order), each by
its own offset (2D histogram or the guess), matches and fit against the placed groups it
overlaps; a placed group's first correction only has to be good enough for the joint fit that
follows (:mod:`.relative`) to match it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import chance, too_large
from .fit import MIN_POINTS, REFERENCE, GroupTransform, Links, joint_fit
from .images import Group
from .linking import NEIGHBOURS, first_radius, random_subset, rematch_radius
from .match import bounds, find_offset, in_box, match_pairs
from .messages import odds, relative_origin
from .parameters import RelativeParameters
from .significance import trials_within

#: Sources of a group used for its first correction (a random subset of larger lists).
PLACE_SOURCES = 5000


@dataclass
class Placement:
    """The groups placed so far: the reference group first, their corrections, and for each the
    placed groups its matches came from most (its links in the joint fit)."""

    reference: Group
    placed: list[Group]
    transforms: dict[int, GroupTransform]
    neighbours: dict[int, list[int]]


def place_groups(reference: Group, pending: list[Group], p: RelativeParameters, status: dict[int, str],
                 limit: float) -> Placement:
    """Place every group of ``pending`` against ``reference`` and the groups placed before it.

    A group that cannot be placed gets its failure in ``status``; ``limit`` (arcsec) is the
    largest correction accepted."""
    out = Placement(reference, [reference], {reference.index: GroupTransform()}, {})
    pending = list(pending)
    while pending:
        if p.enforce_user_order:
            g = pending.pop(0)
        else:
            g = max(pending, key=lambda c: max(c.overlap(q, p.searchrad) for q in out.placed))
            pending.remove(g)
        # Against the reference group (or, with expand_refcat, every group placed); a group
        # that does not overlap the reference group enough is matched against the groups
        # already placed instead, so chains of overlapping exposures align (stcal fails them).
        pools = [out.placed] if p.expand_refcat else [[reference], out.placed]
        failure = None
        for pool in pools:
            near = [q for q in pool if g.overlap(q, p.searchrad) > 0]
            placed_now, failure = place(g, near, out.transforms, p, limit)
            if placed_now is not None:
                out.transforms[g.index], out.neighbours[g.index] = placed_now
                out.placed.append(g)
                break
        else:
            status[g.index] = failure
    return out


def _cover(g: Group, near: list[Group], searchrad: float) -> tuple[list[Group], list[Group]]:
    """The placed groups that overlap ``g`` most, until they cover all of it (for the matches)
    or half of it (for the offset).

    Every group overlapping it would repeat the same stars k times: k times the chance pairs for
    the same histogram peak (in a mosaic's middle the histogram can lose its peak) and k times
    the points to search."""
    area = float(np.prod(g.hi - g.lo)) or 1.0
    covered, cover, use = 0.0, [], []
    for q in sorted(near, key=lambda q: -g.overlap(q, searchrad)):
        cover.append(q)
        if covered < 0.5 * area:
            use.append(q)
        covered += g.overlap(q, searchrad)
        if covered >= area:
            break
    return cover, use


def place(g: Group, near: list[Group], transforms: dict[int, GroupTransform], p: RelativeParameters,
          limit: float) -> tuple[tuple[GroupTransform, list[int]] | None, str | None]:
    """First correction of group ``g`` against the placed groups ``near``: offset, matches, fit.

    Returns ((transform, neighbour groups), None) or (None, the failure status)."""
    if not near:
        return None, "FAILED: no overlap with the images already aligned"
    cover, use = _cover(g, near, p.searchrad)
    rxy = np.concatenate([transforms[q.index].apply(q.xy) for q in cover])
    rw = np.concatenate([q.weight for q in cover])
    rgrp = np.concatenate([np.full(len(q.xy), q.index) for q in cover])
    rrow = np.concatenate([np.arange(len(q.xy)) for q in cover])
    inside = in_box(rxy, g.lo, g.hi, p.searchrad + p.tolerance)
    rxy, rw, rgrp, rrow = rxy[inside], rw[inside], rgrp[inside], rrow[inside]
    guess = (p.xoffset, p.yoffset)
    # The offset from every source (as tweakwcs: thinning by separation is for the matching;
    # in dense fields it leaves the two lists few stars in common).
    rall = np.concatenate([transforms[q.index].apply(q.xy_all) for q in use])
    rall = rall[in_box(rall, g.lo, g.hi, p.searchrad + p.tolerance)]
    off = find_offset(g.xy_all, rall, p.searchrad, p.tolerance, guess, max_chance=p.max_chance) \
        if p.use2dhist else None
    found = off is not None and off.significant
    shift = np.array([off.dx, off.dy]) if found else np.array(guess, float)
    # The first correction only has to be good enough to match (the joint fit uses every source
    # afterwards): a few thousand sources, drawn from where the placed groups' sources are so
    # that a partial overlap does not dilute them, fix it to a fraction of a mas.
    if len(rxy):
        sel = np.nonzero(in_box(g.xy + shift, *bounds(rxy), p.tolerance))[0]
    else:
        sel = np.arange(len(g.xy))
    sel = random_subset(sel, PLACE_SOURCES, g.index)
    gxy, gw = g.xy[sel], g.weight[sel]
    dense_radius = first_radius(p.tolerance, rxy)
    i, j = match_pairs(gxy + shift, rxy, dense_radius if found else p.tolerance)
    failure = _first_matches_failure(g, len(i), gxy + shift, rxy, shift, off, found, p)
    if failure is not None:
        return None, failure
    first = Links(np.full(len(i), g.index), gxy[i], np.full(len(i), REFERENCE), rxy[j],
                  1.0 / (1.0 / gw[i] + 1.0 / rw[j]), sel[i], rrow[j])
    f = joint_fit(first, [g.index], {g.index: g.center}, p.fitgeometry, p.nclip, p.sigma, p.clip_accum, p.minobj)
    t = f.transforms[g.index]
    if too_large(t, g, limit):
        return None, (f"FAILED: the correction exceeds {limit:g} arcsec (2 x (searchrad + tolerance)): "
                      "probably mismatched sources")
    failure = _first_fit_failure(f, t.apply(gxy), rxy, dense_radius, found, p)
    if failure is not None:
        return None, failure
    # Links to the groups it overlaps most, for the joint fit.
    counts = {q.index: int(np.count_nonzero(rgrp[j] == q.index)) for q in near}
    nbrs = [k for k, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:NEIGHBOURS] if counts[k] > 0]
    return (t, nbrs), None


def _first_matches_failure(g: Group, n: int, moved: np.ndarray, rxy: np.ndarray, shift: np.ndarray, off,
                           found: bool, p: RelativeParameters) -> str | None:
    """Why the ``n`` matches of ``g`` (at ``moved``, shifted by ``shift``) to the placed points
    ``rxy`` are not enough for a first fit, or None."""
    where = relative_origin(off, p.searchrad, (p.xoffset, p.yoffset))
    if n < max(p.minobj, MIN_POINTS[p.fitgeometry]):
        return (f"FAILED: not enough matches ({n} < minobj {p.minobj}; {p.fitgeometry} needs "
                f"{MIN_POINTS[p.fitgeometry]}) within tolerance {p.tolerance:g}\" {where}")
    # Without a significant histogram peak (no 2D histogram, or none found) the matches must
    # show the offset themselves: unlikely by chance at the one offset they were made at. (A
    # peak from every source is the better evidence in crowded fields, where thinning leaves
    # the lists few stars in common.)
    if not found:
        prob, expected = chance(n, moved, rxy, g.lo + shift, g.hi + shift, p.tolerance)
        if prob > p.max_chance:
            return (f"FAILED: not enough matches ({n} within tolerance {p.tolerance:g}\" {where}): "
                    f"{odds(n, expected, 1.0, prob, p.max_chance)}")
    return None


def _first_fit_failure(f, moved: np.ndarray, rxy: np.ndarray, dense_radius: float, found: bool,
                       p: RelativeParameters) -> str | None:
    """Why the first fit ``f`` (the group's sources at ``moved`` after it) is not convincing, or None.

    The fit must gather more matches than chance at its own precision (in dense fields a few
    dozen chance pairs can agree to a few mas): re-match within ten times its median residual,
    or less where chance matches would then be common (dense lists)."""
    r = min(rematch_radius(f, p.tolerance), dense_radius)
    n_r = len(match_pairs(moved, rxy, r)[0])
    trials = trials_within(p.searchrad if found else p.tolerance, r)
    prob, expected = chance(n_r, moved, rxy, *bounds(moved), r, trials)
    if prob > p.max_chance:
        return (f"FAILED: the first fit's {n_r} matches within {r * 1000:.0f} mas are not convincing: "
                f"{odds(n_r, expected, trials, prob, p.max_chance)}: probably mismatched sources")
    return None


def link_pairs(free: list[int], placed: list[Group], neighbours: dict[int, list[int]], pad: float
               ) -> list[tuple[int, int]]:
    """Pairs of groups matched in the joint fit: each free group with the groups it was placed
    against and with the ``NEIGHBOURS`` placed groups it overlaps most, each pair once.

    Every overlap a group has is a constraint: linking each only to the groups it was placed
    against makes a sparse chain along which the relative errors add up."""
    by_index = {g.index: g for g in placed}
    seen: set[tuple[int, int]] = set()
    out = []
    for a in free:
        g = by_index[a]
        near = sorted((h for h in placed if h is not g and g.overlap(h, pad) > 0), key=lambda h: -g.overlap(h))
        for b in list(neighbours.get(a, [])) + [h.index for h in near[:NEIGHBOURS]]:
            key = (min(a, b), max(a, b))
            if key not in seen:
                seen.add(key)
                out.append((a, b))
    return out
