"""Links for the joint fit: matches between two groups, or a group and the reference points,
at their current corrections, and the matching radii of the passes.

A link pairs a source of one group with a source of another group (or a reference point) in the
groups' own uncorrected plane coordinates, weighted by both sides' weights; :mod:`.fit` fits
every group's correction to all links at once.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .fit import GroupTransform, Links
from .images import Group
from .match import bounds, in_box, match_pairs, workers

#: Overlapping groups each group is linked to in the joint relative fit (besides the reference).
NEIGHBOURS = 2
#: Sources per group (and pair of groups) matched in the first pass of the joint fit, whose only
#: use is to bring the corrections close enough to re-match within ten times its median residual.
FIRST_PASS_SOURCES = 5000


def box(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box (lo, hi) of ``xy``; zeros when it is empty."""
    return bounds(xy) if len(xy) else (np.zeros(2), np.zeros(2))


def link(ga: int, a: Group, ia: np.ndarray, gb: int, pb: np.ndarray, wb: np.ndarray, ib: np.ndarray,
         pa: np.ndarray) -> Links:
    """Links between the sources ``ia`` of group ``a`` (index ``ga``, positions ``pa``) and the
    points ``ib`` of ``gb`` (positions ``pb``, weights ``wb``)."""
    wa = a.weight[ia]
    w = 1.0 / (1.0 / wa + 1.0 / wb)
    return Links(np.full(len(ia), ga, np.intp), pa, np.full(len(ia), gb, np.intp), pb, w, ia, ib)


def random_subset(idx: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """``idx``, or a sorted random subset of it of size ``limit`` (seeded: runs repeat)."""
    if limit is None or len(idx) <= limit:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))


def _mutual(ref_tree, pts: np.ndarray, idx: np.ndarray, src_tree, back: Callable[[np.ndarray], np.ndarray],
            radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours within ``radius``: the sources ``idx`` (at ``pts`` in the frame
    of ``ref_tree``) each with its nearest reference point, kept where that point's nearest
    source in ``src_tree`` (after ``back``: reference rows -> positions in that tree's frame)
    is the same source. Returns (source rows, reference rows)."""
    d, j = ref_tree.query(pts, k=1, distance_upper_bound=radius, workers=workers(len(pts)))
    ok = np.isfinite(d)
    i, j = idx[ok], j[ok]
    if not len(i):
        return i, j
    _, nearest = src_tree.query(back(j), k=1, workers=workers(len(j)))
    mutual = nearest == i
    return i[mutual], j[mutual]


def match_groups(a: Group, ta: GroupTransform, b: Group, tb: GroupTransform, tolerance: float,
                 max_sources: int | None = None) -> Links:
    """Links between two groups' sources, matched at their current corrections; with
    ``max_sources``, only for a random subset of ``a``'s sources that large (each still paired
    with its mutual nearest neighbour among all of ``b``'s, so the pairs are those a full match
    would give for them)."""
    if ta.rigid and tb.rigid:
        ia, ib = _match_rigid(a, ta, b, tb, tolerance, max_sources)
        return link(a.index, a, ia, b.index, b.xy[ib], b.weight[ib], ib, a.xy[ia])
    pa, pb = ta.apply(a.xy), tb.apply(b.xy)
    sa = np.nonzero(in_box(pa, tb.apply(np.stack([b.lo, b.hi])).min(0), tb.apply(np.stack([b.lo, b.hi])).max(0),
                           tolerance))[0]
    sa = random_subset(sa, max_sources, a.index)
    sb = np.nonzero(in_box(pb, pa[sa].min(0) if len(sa) else np.zeros(2),
                           pa[sa].max(0) if len(sa) else np.zeros(2), tolerance))[0]
    i, j = match_pairs(pa[sa], pb[sb], tolerance)
    ia, ib = sa[i], sb[j]
    return link(a.index, a, ia, b.index, b.xy[ib], b.weight[ib], ib, a.xy[ia])


def _match_rigid(a: Group, ta: GroupTransform, b: Group, tb: GroupTransform, tolerance: float,
                 max_sources: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`.match.match_pairs` of the two groups at rigid corrections, through each group's
    own KD-tree of its uncorrected positions: a rotation and shift keep distances, so the
    mutual nearest neighbours are the same, and the trees are built once per run instead of
    once per pair and pass."""
    pa_in_b = tb.inverse_apply(ta.apply(a.xy))
    sa = random_subset(np.nonzero(in_box(pa_in_b, b.lo, b.hi, tolerance))[0], max_sources, a.index)
    if not len(sa):
        return np.empty(0, np.intp), np.empty(0, np.intp)
    return _mutual(b.tree, pa_in_b[sa], sa, a.tree, lambda j: ta.inverse_apply(tb.apply(b.xy[j])), tolerance)


def match_reference(g: Group, t: GroupTransform, rpos: np.ndarray, ref_tree, radius: float,
                    max_sources: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mutual nearest neighbours within ``radius`` between group ``g`` at correction ``t`` and the
    reference points ``rpos`` (KD-tree ``ref_tree``, built once per run): (rows of g, rows of
    rpos, the corrected positions of the sources tried). With ``max_sources``, only a random
    subset of the group's sources that large is tried (each still checked against all)."""
    sub = random_subset(np.arange(len(g.xy)), max_sources, g.index)
    pa = t.apply(g.xy[sub])
    if ref_tree is None or not len(sub):
        return np.empty(0, np.intp), np.empty(0, np.intp), pa
    if not t.rigid:
        i, j = match_pairs(pa, rpos, radius)
        return sub[i], j, pa
    # Mutual among all the group's sources: the group's own tree, with the reference points
    # taken back through the (distance-keeping) correction.
    i, j = _mutual(ref_tree, pa, sub, g.tree, lambda j: t.inverse_apply(rpos[j]), radius)
    return i, j, pa


def first_radius(tolerance: float, ref_xy: np.ndarray) -> float:
    """Matching radius at a 2D-histogram offset: ``tolerance``, or less where the points matched
    against are so dense that more than one source in ten would find one within it by chance.

    The histogram's offset is good to a few mas, so only the rotation and scale left (tens of
    mas across a field) need room; at 10 stars/arcsec^2 a 0.7" radius would give nearly every
    source outside the true overlap a chance partner, and a fit that many of them dominate."""
    if len(ref_xy) < 2:
        return tolerance
    lo, hi = bounds(ref_xy)
    area = float(np.prod(np.maximum(hi - lo, tolerance)))
    density = len(ref_xy) / area
    return float(min(tolerance, math.sqrt(-math.log(0.9) / (math.pi * density))))


def rematch_radius(fitted, tolerance: float) -> float:
    """Matching radius of the pass after a fit: ten times the median residual of the links it
    used (true pairs sit in a core a few mas wide; chance pairs within ``tolerance`` spread over
    the whole disc, and in crowded fields they are many), never more than ``tolerance``."""
    norm = np.hypot(*fitted.residuals[fitted.used].T)
    if len(norm) == 0:
        return tolerance
    return float(min(tolerance, max(10.0 * np.median(norm), 1e-3)))
