"""relative_align and absolute_align: stcal.tweakreg's API and defaults, one joint fit.

Flow (both steps): correctors -> :mod:`.images` (sources on the common tangent plane, by group)
-> offsets (2D histogram) and one-to-one matches (:mod:`.match`) -> links between groups and to
the reference -> :func:`.fit.joint_fit` (every group's correction at once, sigma clipping) ->
one re-match with the fitted corrections and a final fit -> checks (enough matches, correction
within the search radius) -> ``corrector.set_correction`` for the groups that passed. A group
that fails keeps its WCS untouched and its images' ``fit_info['status']`` says why.

Relative: the reference group (the first with ``enforce_user_order``, else the one overlapping
the most others) fixes the frame. Groups are matched in order of overlap with those already
placed (against the reference group's sources, or all placed sources with ``expand_refcat``),
then all corrections are refitted jointly with links to up to ``_NEIGHBOURS`` overlapping
groups each.

Absolute: every group is fitted against the reference catalog *and* its overlapping groups in
one solution (stcal merges all images into one catalog, where a star seen in k images is k
near-duplicates and the thinning keeps the lowest-y one: a bias growing with k).
"""
from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np

from . import refcat as refcats
from . import selection
from .errors import AlignmentError, AlignmentWarning, ParameterError
from .fit import (MIN_POINTS, NPARAMS, REFERENCE, GroupTransform, Links, decompose, joint_fit,
                  links_per_group)
from .heap import collect_new_objects_only
from .images import Group, load_images, make_groups, plane_for, project
from .match import bounds, find_offset, in_box, kdtree, match_pairs, thin, workers
from .plane import TangentPlane
from .results import REFERENCE as STATUS_REFERENCE, SUCCESS, FitResult
from .significance import DEFAULT_MAX_CHANCE, chance_probability, check_max_chance, needed, trials_within
from .threads import in_background, single_threaded_blas, thread_map

log = logging.getLogger(__name__)

_SQRT2 = math.sqrt(2.0)
#: Overlapping groups each group is linked to in the joint relative fit (besides the reference).
_NEIGHBOURS = 2
#: Sources of a group used for its first correction (a random subset of larger lists).
_PLACE_SOURCES = 5000
#: Sources per group (and pair of groups) matched in the first pass of the joint fit, whose only
#: use is to bring the corrections close enough to re-match within ten times its median residual.
_FIRST_PASS_SOURCES = 5000


# --- parameters -------------------------------------------------------------------------------

def _check(name: str, value, ok: bool, expected: str):
    if not ok:
        raise ParameterError(f"{name} must be {expected}, got {value!r}")


def _validate(prefix: str, searchrad, separation, tolerance, minobj, fitgeometry, nclip, sigma,
              xoffset=0.0, yoffset=0.0) -> None:
    def num(v):
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)

    _check(prefix + "searchrad", searchrad, num(searchrad) and searchrad > 0, "a positive number (arcsec)")
    _check(prefix + "tolerance", tolerance, num(tolerance) and tolerance > 0, "a positive number (arcsec)")
    _check(prefix + "separation", separation, num(separation) and separation >= 0, "a number >= 0 (arcsec)")
    _check("xoffset", xoffset, num(xoffset), "a finite number (arcsec)")
    _check("yoffset", yoffset, num(yoffset), "a finite number (arcsec)")
    if separation <= _SQRT2 * tolerance:
        raise ParameterError(f"{prefix}separation ({separation} arcsec) must be larger than {prefix}tolerance "
                             f"({tolerance} arcsec) by at least a factor of sqrt(2), to avoid source confusion")
    _check(prefix + "minobj", minobj, isinstance(minobj, (int, np.integer)) and not isinstance(minobj, bool)
           and minobj >= 1, "a positive integer")
    _check(prefix + "fitgeometry", fitgeometry, fitgeometry in NPARAMS, f"one of {', '.join(NPARAMS)}")
    _check(prefix + "nclip", nclip, isinstance(nclip, (int, np.integer)) and not isinstance(nclip, bool)
           and nclip >= 0, "an integer >= 0")
    _check(prefix + "sigma", sigma, num(sigma) and sigma > 0, "a positive number")


# --- matching helpers ---------------------------------------------------------------------------

def _box(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return bounds(xy) if len(xy) else (np.zeros(2), np.zeros(2))


def _link(ga: int, a: Group, ia: np.ndarray, gb: int, pb: np.ndarray, wb: np.ndarray, ib: np.ndarray,
          pa: np.ndarray) -> Links:
    wa = a.weight[ia]
    w = 1.0 / (1.0 / wa + 1.0 / wb)
    return Links(np.full(len(ia), ga, np.intp), pa, np.full(len(ia), gb, np.intp), pb, w, ia, ib)


def _random_subset(idx: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """``idx``, or a sorted random subset of it of size ``limit`` (seeded: runs repeat)."""
    if limit is None or len(idx) <= limit:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))


def _mutual(ref_tree, pts: np.ndarray, idx: np.ndarray, src_tree, back, radius: float
            ) -> tuple[np.ndarray, np.ndarray]:
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


def _match_groups(a: Group, ta: GroupTransform, b: Group, tb: GroupTransform, tolerance: float,
                  max_sources: int | None = None) -> Links:
    """Links between two groups' sources, matched at their current corrections; with
    ``max_sources``, only for a random subset of ``a``'s sources that large (each still paired
    with its mutual nearest neighbour among all of ``b``'s, so the pairs are those a full match
    would give for them)."""
    if ta.rigid and tb.rigid:
        ia, ib = _match_rigid(a, ta, b, tb, tolerance, max_sources)
        return _link(a.index, a, ia, b.index, b.xy[ib], b.weight[ib], ib, a.xy[ia])
    pa, pb = ta.apply(a.xy), tb.apply(b.xy)
    sa = np.nonzero(in_box(pa, tb.apply(np.stack([b.lo, b.hi])).min(0), tb.apply(np.stack([b.lo, b.hi])).max(0),
                           tolerance))[0]
    sa = _random_subset(sa, max_sources, a.index)
    sb = np.nonzero(in_box(pb, pa[sa].min(0) if len(sa) else np.zeros(2),
                           pa[sa].max(0) if len(sa) else np.zeros(2), tolerance))[0]
    i, j = match_pairs(pa[sa], pb[sb], tolerance)
    ia, ib = sa[i], sb[j]
    return _link(a.index, a, ia, b.index, b.xy[ib], b.weight[ib], ib, a.xy[ia])


def _match_rigid(a: Group, ta: GroupTransform, b: Group, tb: GroupTransform, tolerance: float,
                 max_sources: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`.match.match_pairs` of the two groups at rigid corrections, through each group's
    own KD-tree of its uncorrected positions: a rotation and shift keep distances, so the
    mutual nearest neighbours are the same, and the trees are built once per run instead of
    once per pair and pass (at 32 images x 100k sources the builds were a third of matching)."""
    pa_in_b = tb.inverse_apply(ta.apply(a.xy))
    sa = _random_subset(np.nonzero(in_box(pa_in_b, b.lo, b.hi, tolerance))[0], max_sources, a.index)
    if not len(sa):
        return np.empty(0, np.intp), np.empty(0, np.intp)
    return _mutual(b.tree, pa_in_b[sa], sa, a.tree, lambda j: ta.inverse_apply(tb.apply(b.xy[j])), tolerance)


def _match_reference(g: Group, t: GroupTransform, rpos: np.ndarray, ref_tree, radius: float,
                     max_sources: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mutual nearest neighbours within ``radius`` between group ``g`` at correction ``t`` and the
    reference points ``rpos`` (KD-tree ``ref_tree``, built once per run): (rows of g, rows of
    rpos, the corrected positions of the sources tried). With ``max_sources``, only a random
    subset of the group's sources that large is tried (each still checked against all)."""
    sub = _random_subset(np.arange(len(g.xy)), max_sources, g.index)
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


def _chance(n_matched: int, src_xy: np.ndarray, ref_xy: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            radius: float, trials: float = 1.0) -> tuple[float, float]:
    """How likely ``n_matched`` one-to-one matches within ``radius`` between the sources
    ``src_xy`` and the reference points over the box (lo, hi) are to be chance. Returns (the
    probability of as many at one of ``trials`` independent offsets, the chance matches
    expected at one offset)."""
    inside = ref_xy[in_box(ref_xy, lo, hi, 0.0)]
    if not len(inside):
        return (1.0 if n_matched == 0 else 0.0), 0.0
    # Where the reference points are (a partial overlap must not dilute the density) and the
    # sources that could meet them there.
    rlo, rhi = bounds(inside)
    area = float(np.prod(np.maximum(rhi - rlo, radius)))
    n_src = int(np.count_nonzero(in_box(src_xy, rlo, rhi, radius)))
    # Each source has a reference point within the radius by chance with probability
    # 1 - exp(-density * pi * radius^2); the count is nearly Poisson (its tail a little heavier
    # than the binomial's: the judgement errs on the safe side).
    expected = n_src * -math.expm1(-len(inside) / area * math.pi * radius ** 2)
    return chance_probability(n_matched, expected, trials), expected


def _odds(n: int, expected: float, trials: float, p: float, max_chance: float) -> str:
    """The numbers behind a chance judgement, for failure messages."""
    at = f" at each of ~{trials:.3g} offsets searched" if trials > 1.5 else ""
    return (f"chance gives {expected:.2g}{at}, so {needed(expected, trials, max_chance)} or more are needed "
            f"(the chance probability of {n} is {p:.2g}, above max_chance {max_chance:g})")


def _unconfirmed(free: list[int], groups: list[Group], transforms, links: Links, fitted, radius: float,
                 reference: np.ndarray | None = None, search: float = 0.0,
                 max_chance: float = DEFAULT_MAX_CHANCE) -> dict[int, str]:
    """Groups whose fit rests on matches that chance gives too often at the radius they were
    matched within: {group: failure status}.

    In dense fields a tight cluster of chance pairs can survive clipping (at 10 stars/arcsec^2,
    31 "matches" with an rmse of 8 mas put an image 2.5" off): the links the fit kept must be
    unlikely (``max_chance``) as chance one-to-one matches within ``radius`` between the group's
    sources and the points it was matched to (``reference``; else its linked groups' sources),
    counting as trials the offsets of that precision within ``search`` (arcsec) of the start
    that the offset search and the fit could have settled on.
    """
    bad = {}
    trials = trials_within(search, radius)

    def density(xy: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
        return len(xy) / max(float(np.prod(np.maximum(hi - lo, radius))), 1e-12)

    ref_density = density(reference, *bounds(reference)) \
        if reference is not None and len(reference) else 0.0
    for a in free:
        if reference is not None:
            counted = fitted.used & (links.ga == a) & (links.gb == REFERENCE)
            partners: set = set()
            what = "the reference"
        else:
            counted = fitted.used & ((links.ga == a) | (links.gb == a))
            partners = (set(links.gb[links.ga == a].tolist()) | set(links.ga[links.gb == a].tolist())) - {a}
            what = "the overlapping images"
        n = int(np.count_nonzero(counted))
        # Clearly above chance even at twice the partners' mean density and with every source
        # of the group in the overlap: confirmed without placing the points (the usual case).
        dens = ref_density + sum(density(groups[b].xy, groups[b].lo, groups[b].hi) for b in partners)
        worst = len(groups[a].xy) * -math.expm1(-2.0 * dens * math.pi * radius ** 2)
        if chance_probability(n, worst, trials) <= max_chance:
            continue
        ta = transforms[a]
        src = ta.apply(groups[a].xy)
        if reference is not None:
            pts = reference
        else:
            pts = (np.concatenate([transforms[b].apply(groups[b].xy) for b in sorted(partners)])
                   if partners else np.empty((0, 2)))
        box = ta.apply(np.stack([groups[a].lo, groups[a].hi]))
        p, expected = _chance(n, src, pts, box.min(0), box.max(0), radius, trials)
        if p > max_chance:
            bad[a] = (f"FAILED: the fit's {n} matches to {what} within {radius * 1000:.0f} mas are not convincing: "
                      f"{_odds(n, expected, trials, p, max_chance)}: probably mismatched sources")
    return bad


def _drop_unconfirmed(bad: dict[int, str], status: dict, free: list[int], links: Links, fitted, groups,
                      fitgeometry, nclip, sigma, clip_accum, minobj):
    """Mark ``bad`` groups failed and fit the others again without their links."""
    status.update(bad)
    free = [a for a in free if a not in bad]
    links = links.subset(~np.isin(links.ga, list(bad)) & ~np.isin(links.gb, list(bad)))
    fitted = joint_fit(links, free, {a: groups[a].center for a in free}, fitgeometry, nclip, sigma,
                       clip_accum, minobj) if free else None
    return free, links, fitted


def _first_radius(tolerance: float, ref_xy: np.ndarray) -> float:
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


def _link_pairs(free: list[int], placed: list[Group], neighbours: dict[int, list[int]], pad: float
                ) -> list[tuple[int, int]]:
    """Pairs of groups matched in the joint fit: each free group with the groups it was placed
    against and with the ``_NEIGHBOURS`` placed groups it overlaps most, each pair once.

    Every overlap a group has is a constraint: linking each only to the groups it was placed
    against makes a sparse chain along which the relative errors add up (32 images x 10k
    sources: 0.17-0.22 mas with 2 links per group)."""
    by_index = {g.index: g for g in placed}
    seen: set[tuple[int, int]] = set()
    out = []
    for a in free:
        g = by_index[a]
        near = sorted((h for h in placed if h is not g and g.overlap(h, pad) > 0), key=lambda h: -g.overlap(h))
        for b in list(neighbours.get(a, [])) + [h.index for h in near[:_NEIGHBOURS]]:
            key = (min(a, b), max(a, b))
            if key not in seen:
                seen.add(key)
                out.append((a, b))
    return out


def _rematch_radius(fitted, tolerance: float) -> float:
    """Matching radius of the pass after a fit: ten times the median residual of the links it
    used (true pairs sit in a core a few mas wide; chance pairs within ``tolerance`` spread over
    the whole disc, and in crowded fields they are many), never more than ``tolerance``."""
    norm = np.hypot(*fitted.residuals[fitted.used].T)
    if len(norm) == 0:
        return tolerance
    return float(min(tolerance, max(10.0 * np.median(norm), 1e-3)))


def _large(t: GroupTransform, g: Group, limit: float) -> bool:
    """True if the correction moves any corner of the group's footprint by more than ``limit``."""
    c = g.corners if len(g.corners) else np.stack([g.lo, g.hi])
    return bool(np.any(np.hypot(*(t.apply(c) - c).T) > limit))


# --- results --------------------------------------------------------------------------------

def _group_results(groups: list[Group], links: Links, fitted, status: dict[int, str], fitgeometry: str,
                   step: str, plane: TangentPlane) -> dict[int, list[FitResult]]:
    out: dict[int, list[FitResult]] = {}
    # Each group's links, found once (not a pass over every link per group and image: at 32
    # images x 100k sources that took 4 s).
    norm = np.zeros(0) if fitted is None else np.hypot(fitted.residuals[:, 0], fitted.residuals[:, 1])
    used = np.zeros(len(links), bool) if fitted is None else fitted.used
    side_links = []
    for gcol in (links.ga, links.gb):
        order = np.argsort(gcol, kind="stable")
        side_links.append((order, gcol[order]))

    def links_of(side: int, gv: int) -> np.ndarray:
        order, sorted_g = side_links[side]
        lo, hi = np.searchsorted(sorted_g, [gv, gv + 1])
        return np.sort(order[lo:hi])

    image_index = {g.index: np.array([im.index for im in g.images], np.intp) for g in groups}

    def partners(sel: np.ndarray, other_g: np.ndarray, other_i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        og, oi = other_g[sel], other_i[sel]
        rows = np.full(len(og), -1, np.intp)
        imgs = np.full(len(og), -1, np.intp)
        ref = og == REFERENCE
        rows[ref] = oi[ref]
        for gv in np.unique(og[~ref]):
            m = og == gv
            other = groups[gv]
            rows[m] = other.row[oi[m]]
            imgs[m] = image_index[gv][other.image[oi[m]]]
        return rows, imgs

    for g in groups:
        st = status.get(g.index, SUCCESS)
        results = []
        t = fitted.transforms.get(g.index) if fitted is not None and st == SUCCESS else None
        la, lb = links_of(0, g.index), links_of(1, g.index)
        img_a = g.image[links.ia[la]] if len(la) else np.zeros(0, np.intp)
        img_b = g.image[links.ib[lb]] if len(lb) else np.zeros(0, np.intp)
        for k, im in enumerate(g.images):
            r = FitResult(name=im.name, group_id=im.group_id, status=st, fitgeometry=fitgeometry, step=step,
                          plane_center=(plane.ra0, plane.dec0), center=tuple(g.center.tolist()))
            if st.startswith("FAILED"):
                r.message = st[len("FAILED: "):]
            if t is not None or (st == STATUS_REFERENCE and fitted is not None):
                all_a, all_b = la[img_a == k], lb[img_b == k]
                mine_a, mine_b = all_a[used[all_a]], all_b[used[all_b]]
                both = np.concatenate([mine_a, mine_b])
                r.nmatches = len(both)
                r.nref = int(np.count_nonzero(links.gb[mine_a] == REFERENCE))
                r.rmse = float(np.sqrt(np.mean(norm[both] ** 2))) if len(both) else float("nan")
                r.mae = float(np.mean(norm[both])) if len(both) else float("nan")
                r.matched_input_idx = np.concatenate([g.row[links.ia[mine_a]], g.row[links.ib[mine_b]]])
                (rows_a, imgs_a), (rows_b, imgs_b) = partners(mine_a, links.gb, links.ib), \
                    partners(mine_b, links.ga, links.ia)
                r.matched_ref_idx = np.concatenate([rows_a, rows_b])
                r.matched_ref_image = np.concatenate([imgs_a, imgs_b])
                r.nclipped = len(all_a) + len(all_b) - r.nmatches
            if t is not None:
                r.matrix, r.shift = t.matrix.copy(), t.shift.copy()
                d = decompose(t.matrix)
                r.rotation, r.scale, r.skew = d["rotation"], d["geomean_scale"], d["skew"]
            results.append(r)
        out[g.index] = results
    return out


def _apply(groups: list[Group], results: dict[int, list[FitResult]], plane: TangentPlane, rec=None
           ) -> list[FitResult]:
    """Correct the WCS of every image of the successful groups; store results on each corrector;
    hand each corrected WCS to the provenance recorder ``rec`` (if any) as soon as it exists."""
    flat = []
    ref_tp = plane.corrector()
    for g in groups:
        for im, r in zip(g.images, results[g.index]):
            if r.status == SUCCESS:
                im.corrector.set_correction(matrix=r.matrix, shift=r.shift, ref_tpwcs=ref_tp,
                                            meta={"fit_info": r.fit_info(), "fit_result": r})
                if rec is not None:
                    rec.corrected(im.index, im.corrector)
            else:
                im.corrector.meta["fit_info"] = r.fit_info()
                im.corrector.meta["fit_result"] = r
            flat.append((im.index, r))
    return [r for _, r in sorted(flat, key=lambda p: p[0])]


def _report_failures(results: list[FitResult], step: str) -> None:
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    lines = "; ".join(f"{r.name}: {r.message}" for r in failed[:10])
    if len(failed) == len(results) or all(r.status != SUCCESS for r in results):
        raise AlignmentError(f"{step} alignment failed for every image, WCSs unchanged: {lines}", results)
    warnings.warn(f"{step} alignment: {len(failed)} of {len(results)} image(s) not aligned (WCS unchanged): "
                  f"{lines}", AlignmentWarning, stacklevel=3)


# --- provenance ---------------------------------------------------------------------------------

def _recorder(step: str, arguments: dict, correctors, store, provenance: bool, capture: bool = True):
    """A provenance recorder when a store is given (and recording not switched off); with
    ``capture=False`` the caller has it capture the input WCSs before it changes them."""
    if store is None or not provenance:
        return None
    from .provenance import Recorder

    params = {k: v for k, v in arguments.items() if k not in ("correctors", "store", "provenance")}
    return Recorder(step, params, correctors, store, capture=capture)


def _record(rec, error: BaseException | None = None) -> None:
    if rec is None:
        return
    try:
        rec.write(error)
    except Exception as exc:  # noqa: BLE001
        if error is None:
            raise
        # The fit's own error matters more; say the record failed too.
        error.add_note(f"(its provenance record could not be written: {exc})")


def _offset_origin(prefix: str, off, searchrad: float, guess) -> str:
    """Where the matching offset came from, for failure messages (naming only the parameters
    that were in play)."""
    if off is None:
        return (f"at the offset ({guess[0]:g}\", {guess[1]:g}\") given, without the 2D histogram "
                f"({prefix}use2dhist=False: set it to search up to {prefix}searchrad {searchrad:g}\" for the offset)")
    if off.significant:
        return f"at the 2D histogram's offset ({off.dx:.3f}\", {off.dy:.3f}\")"
    return (f"at the offset ({guess[0]:g}\", {guess[1]:g}\"), as the 2D histogram found no convincing one within "
            f"{prefix}searchrad {searchrad:g}\" ({_peak(off, prefix)})")


def _peak(off, prefix: str) -> str:
    """What was wrong with an offset search's best peak, for failure messages."""
    what = f"best peak {off.peak} pairs, {off.background:.2g} expected by chance, chance probability {off.chance:.2g}"
    if off.peak and not off.settled:
        return f"{what}, but its pairs do not gather within {prefix}tolerance of one offset"
    return f"{what}; a larger {prefix}searchrad searches farther"


#: A group with fewer reference stars than this over its footprint matches all its sources
#: (and a reference with fewer than this per group is not thinned either).
_SPARSE_REFERENCE = 50


def _unthinned_where_sparse(groups: list[Group], images, rxy: np.ndarray, separation: float) -> list[Group]:
    """``groups``, each whose footprint holds fewer than ``_SPARSE_REFERENCE`` reference stars
    replaced by the same group with all its sources (not thinned by ``separation``).

    Thinning drops both sources of a close pair; against a sparse reference that loses a star
    whenever a faint detection lies within ``separation`` of it (5 stars among 45 other
    detections on a 100" chip: about one fit in fifteen lost a star it needed), while the ambiguity
    it avoids is settled by the mutual nearest neighbours at the histogram's offset."""
    finite = rxy[np.all(np.isfinite(rxy), axis=1)]
    sparse = [len(g.xy_all) > len(g.xy) and np.count_nonzero(in_box(finite, g.lo, g.hi)) < _SPARSE_REFERENCE
              for g in groups]
    if not any(sparse):
        return groups
    whole = make_groups(images, 0.0)
    return [w if s else g for g, w, s in zip(groups, whole, sparse)]


def _absolute_origin(search, offset: np.ndarray, use2dhist: bool, common: bool, searchrad: float) -> str:
    """Where an absolute group's matching offset came from, for failure messages."""
    if not use2dhist:
        return ("at the images' current WCS (abs_use2dhist=False: set it to search up to abs_searchrad "
                f"{searchrad:g}\" for the offset)")
    at = f"({offset[0]:.3f}\", {offset[1]:.3f}\")"
    if search is not None and search.significant:
        return f"at its 2D histogram's offset {at}"
    if common:
        return f"at the common offset {at} of all the images (the 2D histogram found no convincing own one)"
    if search is None:
        return "at the images' current WCS"
    return (f"at the images' current WCS, as the 2D histogram found no convincing offset within abs_searchrad "
            f"{searchrad:g}\" ({_peak(search, 'abs_')})")


def _place(g: Group, near: list[Group], transforms, searchrad, tolerance, xoffset, yoffset, use2dhist, minobj,
           fitgeometry, nclip, sigma, clip_accum, limit, max_chance=DEFAULT_MAX_CHANCE):
    """First correction of group ``g`` against the placed groups ``near``: offset, matches, fit.

    Returns ((transform, neighbour groups), None) or (None, the failure status)."""
    if not near:
        return None, "FAILED: no overlap with the images already aligned"
    # The placed groups that overlap g most, until they cover all of it (for the matches) or
    # half of it (for the offset). Every group overlapping it would repeat the same stars k
    # times: k times the chance pairs for the same histogram peak (at 32 images x 100k sources
    # a mosaic's middle had 586k such points and the histogram lost its peak) and k times the
    # points to search.
    area = float(np.prod(g.hi - g.lo)) or 1.0
    covered, cover, use = 0.0, [], []
    for p in sorted(near, key=lambda p: -g.overlap(p, searchrad)):
        cover.append(p)
        if covered < 0.5 * area:
            use.append(p)
        covered += g.overlap(p, searchrad)
        if covered >= area:
            break
    rxy = np.concatenate([transforms[p.index].apply(p.xy) for p in cover])
    rw = np.concatenate([p.weight for p in cover])
    rgrp = np.concatenate([np.full(len(p.xy), p.index) for p in cover])
    rrow = np.concatenate([np.arange(len(p.xy)) for p in cover])
    box = in_box(rxy, g.lo, g.hi, searchrad + tolerance)
    rxy, rw, rgrp, rrow = rxy[box], rw[box], rgrp[box], rrow[box]
    guess = (xoffset, yoffset)
    # The offset from every source (as tweakwcs: thinning by separation is for the matching;
    # in dense fields it leaves the two lists few stars in common).
    rall = np.concatenate([transforms[p.index].apply(p.xy_all) for p in use])
    rall = rall[in_box(rall, g.lo, g.hi, searchrad + tolerance)]
    off = find_offset(g.xy_all, rall, searchrad, tolerance, guess, max_chance=max_chance) if use2dhist else None
    found = off is not None and off.significant
    shift = np.array([off.dx, off.dy]) if found else np.array(guess, float)
    # The first correction only has to be good enough to match (the joint fit uses every source
    # afterwards): a few thousand sources fix it to a fraction of a mas, at a fraction of the
    # cost for lists of 100k. They are drawn from where the placed groups' sources are, so
    # that a partial overlap does not dilute them.
    if len(rxy):
        sel = np.nonzero(in_box(g.xy + shift, *bounds(rxy), tolerance))[0]
    else:
        sel = np.arange(len(g.xy))
    sel = _random_subset(sel, _PLACE_SOURCES, g.index)
    gxy, gw = g.xy[sel], g.weight[sel]
    dense_radius = _first_radius(tolerance, rxy)
    i, j = match_pairs(gxy + shift, rxy, dense_radius if found else tolerance)
    where = _offset_origin("", off, searchrad, guess)
    if len(i) < max(minobj, MIN_POINTS[fitgeometry]):
        return None, (f"FAILED: not enough matches ({len(i)} < minobj {minobj}; {fitgeometry} needs "
                      f"{MIN_POINTS[fitgeometry]}) within tolerance {tolerance:g}\" {where}")
    # Without a significant histogram peak (no 2D histogram, or none found) the matches must
    # show the offset themselves: unlikely by chance at the one offset they were made at. (A
    # peak from every source is the better evidence in crowded fields, where thinning leaves
    # the lists few stars in common.)
    if not found:
        p, expected = _chance(len(i), gxy + shift, rxy, g.lo + shift, g.hi + shift, tolerance)
        if p > max_chance:
            return None, (f"FAILED: not enough matches ({len(i)} within tolerance {tolerance:g}\" {where}): "
                          f"{_odds(len(i), expected, 1.0, p, max_chance)}")
    first = Links(np.full(len(i), g.index), gxy[i], np.full(len(i), REFERENCE), rxy[j],
                  1.0 / (1.0 / gw[i] + 1.0 / rw[j]), sel[i], rrow[j])
    f = joint_fit(first, [g.index], {g.index: g.center}, fitgeometry, nclip, sigma, clip_accum, minobj)
    t = f.transforms[g.index]
    if _large(t, g, limit):
        return None, (f"FAILED: the correction exceeds {limit:g} arcsec (2 x (searchrad + tolerance)): "
                      "probably mismatched sources")
    # The fit must gather more matches than chance at its own precision (in dense fields a few
    # dozen chance pairs can agree to a few mas): re-match within ten times its median residual,
    # or less where chance matches would then be common (dense lists).
    r = min(_rematch_radius(f, tolerance), dense_radius)
    moved = t.apply(gxy)
    n_r = len(match_pairs(moved, rxy, r)[0])
    trials = trials_within(searchrad if found else tolerance, r)
    p, expected = _chance(n_r, moved, rxy, *bounds(moved), r, trials)
    if p > max_chance:
        return None, (f"FAILED: the first fit's {n_r} matches within {r * 1000:.0f} mas are not convincing: "
                      f"{_odds(n_r, expected, trials, p, max_chance)}: probably mismatched sources")
    # Links to the groups it overlaps most, for the joint fit.
    counts = {p.index: int(np.count_nonzero(rgrp[j] == p.index)) for p in near}
    nbrs = [k for k, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:_NEIGHBOURS] if counts[k] > 0]
    return (t, nbrs), None


# --- relative ---------------------------------------------------------------------------------

@collect_new_objects_only()  # see aligner.heap: 0.4 s of full collections otherwise
@single_threaded_blas()  # see aligner.threads: OpenBLAS threads stall on busy cores
def relative_align(correctors: list, searchrad: float = 2.0, separation: float = 1.0, use2dhist: bool = True,
                   tolerance: float = 0.7, xoffset: float = 0.0, yoffset: float = 0.0,
                   enforce_user_order: bool = False, expand_refcat: bool = False, minobj: int = 15,
                   fitgeometry: str = "rshift", nclip: int = 3, sigma: float = 3.0,
                   clip_accum: bool = False, *, store=None, provenance: bool = True,
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
    """
    _arguments = dict(locals())
    rec = _recorder('relative', _arguments, correctors, store, provenance)
    try:
        _validate("", searchrad, separation, tolerance, minobj, fitgeometry, nclip, sigma, xoffset, yoffset)
        check_max_chance(max_chance)
        selection.check(brightest, flux_column)
        images = load_images(correctors, brightest, flux_column)
        if rec is not None:
            rec.set_images(images)
        plane = plane_for(images)
        project(images, plane)
        groups = make_groups(images, separation)
        status: dict[int, str] = {g.index: "FAILED: empty source catalog" for g in groups if len(g.xy) == 0}
        live = [g for g in groups if g.index not in status]
        if len(live) < 2:
            res = _group_results(groups, Links.concat([]), None, {g.index: status.get(g.index, "FAILED: nothing to "
                                 "align it to (at least two images or groups with sources are needed)") for g in groups},
                                 fitgeometry, "relative", plane)
            results = _apply(groups, res, plane, rec)
            raise AlignmentError("relative alignment needs at least two images (or groups) with non-empty "
                                 f"catalogs; got {len(live)}", results)

        # Reference group and order.
        if enforce_user_order:
            ref = live[0]
        else:
            ref = max(live, key=lambda g: (sum(g.overlap(h) > 0 for h in live if h is not g), len(g.xy)))
        status[ref.index] = STATUS_REFERENCE
        transforms: dict[int, GroupTransform] = {ref.index: GroupTransform()}
        placed = [ref]
        pending = [g for g in live if g is not ref]
        limit = 2.0 * ((searchrad if use2dhist else max(abs(xoffset), abs(yoffset))) + tolerance)
        neighbours: dict[int, list[int]] = {}
        while pending:
            if enforce_user_order:
                g = pending.pop(0)
            else:
                g = max(pending, key=lambda c: max(c.overlap(p, searchrad) for p in placed))
                pending.remove(g)
            # Against the reference group (or, with expand_refcat, every group placed); a group
            # that does not overlap the reference group enough is matched against the groups
            # already placed instead, so chains of overlapping exposures align (stcal fails them).
            pools = [placed] if expand_refcat else [[ref], placed]
            failure = None
            for pool in pools:
                near = [p for p in pool if g.overlap(p, searchrad) > 0]
                placed_now, failure = _place(g, near, transforms, searchrad, tolerance, xoffset, yoffset, use2dhist,
                                             minobj, fitgeometry, nclip, sigma, clip_accum, limit, max_chance)
                if placed_now is not None:
                    transforms[g.index], neighbours[g.index] = placed_now
                    placed.append(g)
                    break
            else:
                status[g.index] = failure

        free = [g.index for g in placed if g is not ref]
        pairs = _link_pairs(free, placed, neighbours, searchrad)
        fitted = None
        links = Links.concat([])
        radius = tolerance
        for npass in range(2):  # match at the current corrections, fit all jointly; once more after the fit
            # The first pass only has to bring the corrections close enough for the re-match:
            # a subset of each pair's sources does (_FIRST_PASS_SOURCES).
            cap = None if npass else _FIRST_PASS_SOURCES
            parts = thread_map(lambda ab: _match_groups(groups[ab[0]], transforms[ab[0]], groups[ab[1]],
                                                        transforms[ab[1]], radius, cap), pairs)
            links = Links.concat(parts)
            fitted = joint_fit(links, free, {a: groups[a].center for a in free}, fitgeometry, nclip, sigma,
                               clip_accum, minobj)
            transforms.update(fitted.transforms)
            matched_within, radius = radius, _rematch_radius(fitted, tolerance)
        bad = _unconfirmed(free, groups, transforms, links, fitted, matched_within,
                           search=searchrad if use2dhist else tolerance, max_chance=max_chance)
        if bad:
            free, links, fitted = _drop_unconfirmed(bad, status, free, links, fitted, groups, fitgeometry, nclip,
                                                    sigma, clip_accum, minobj)
            if fitted is not None:
                transforms.update(fitted.transforms)
        per_group = links_per_group(links, fitted.used, free)
        for a in free:
            n = per_group[a]
            if n < max(minobj, MIN_POINTS[fitgeometry]):
                status[a] = f"FAILED: not enough matches ({n} < minobj {minobj}) after the joint fit"
            elif _large(fitted.transforms[a], groups[a], limit):
                status[a] = f"FAILED: the correction exceeds {limit:g} arcsec (2 x (searchrad + tolerance))"
        res = _group_results(groups, links, fitted, status, fitgeometry, "relative", plane)
        results = _apply(groups, res, plane, rec)
        _report_failures(results, "relative")
    except Exception as exc:
        _record(rec, exc)
        raise
    _record(rec)
    return correctors


# --- absolute ---------------------------------------------------------------------------------

def _epoch(epoch, correctors) -> float | None:
    """The observation epoch (Julian year): ``epoch``, else the mean of the correctors'
    ``meta['epoch']`` (warning when they span more than a tenth of a year)."""
    from astrodb.epoch import to_julian_year

    def year(value, what):
        try:
            return float(to_julian_year(value))
        except (ValueError, TypeError):
            raise ParameterError(f"{what} must be a Julian year (2024.5), 'J2024.5', an ISO time or an astropy "
                                 f"Time, got {value!r}") from None

    if epoch is not None and not (isinstance(epoch, str) and not epoch.strip()):
        return year(epoch, "epoch")
    found = [(str(c.meta.get("name") or f"image {i}"), c.meta["epoch"]) for i, c in enumerate(correctors)
             if c.meta.get("epoch") is not None]
    if not found:
        return None
    years = np.array([year(e, f"meta['epoch'] of {name}") for name, e in found])
    if np.ptp(years) > 0.1:
        warnings.warn(f"absolute_align: the images' epochs span {np.ptp(years):.2f} yr; the reference is taken "
                      f"at their mean J{years.mean():.3f} (align groups of images taken together separately)",
                      AlignmentWarning, stacklevel=3)
    return float(years.mean())


@collect_new_objects_only()  # see aligner.heap: 0.4 s of full collections otherwise
@single_threaded_blas()  # see aligner.threads: OpenBLAS threads stall on busy cores
def absolute_align(correctors: list, abs_refcat, ref_wcs=None, ref_wcsinfo=None, epoch=None,
                   save_abs_catalog: bool = False, abs_catalog_output_dir: str | None = None,
                   abs_searchrad: float = 6.0, abs_separation: float = 1.0, abs_use2dhist: bool = True,
                   abs_tolerance: float = 0.7, abs_minobj: int = 15, abs_fitgeometry: str = "rshift",
                   abs_nclip: int = 3, abs_sigma: float = 3.0, clip_accum: bool = False, store=None, *,
                   observer=None, centroid_error: float = refcats.DEFAULT_CENTROID_ERROR_MAS,
                   timeout: float | None = None, provenance: bool = True,
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
    """
    if abs_refcat is None or (isinstance(abs_refcat, str) and not abs_refcat.strip()):
        log.info("abs_refcat is empty: no absolute alignment")
        return correctors
    _arguments = dict(locals())
    rec = _recorder('absolute', _arguments, correctors, store, provenance, capture=False)
    try:
        _validate("abs_", abs_searchrad, abs_separation, abs_tolerance, abs_minobj, abs_fitgeometry, abs_nclip,
                  abs_sigma)
        check_max_chance(max_chance)
        selection.check(brightest, flux_column, abs_brightest, abs_mag_min, abs_mag_max, abs_mag_column)
        # Only a store reference is moved to the epoch; a file or table is used as it is.
        jy = _epoch(epoch, correctors) if refcats.from_store(abs_refcat) else None
        images = load_images(correctors, brightest, flux_column)
        if rec is not None:
            rec.set_images(images)
        plane = plane_for(images)
        project(images, plane)

        # One cone over the combined footprint, padded by the search radius.
        corners = np.concatenate([np.stack([im.corners_ra, im.corners_dec], -1) for im in images
                                  if len(im.corners_ra)] + [np.stack([im.ra, im.dec], -1) for im in images])
        from astrodb.query.regions import separation_deg
        radius = float(np.max(separation_deg(plane.ra0, plane.dec0, corners[:, 0], corners[:, 1]))) \
            + abs_searchrad / 3600.0
        observer_pos = None
        if refcats.from_store(abs_refcat):
            if jy is None:
                warnings.warn("absolute_align: no epoch given (epoch= or meta['epoch']): reference positions are "
                              "at the catalog's epoch, not the observation's", AlignmentWarning, stacklevel=2)
            elif observer is None:
                from astrodb.epoch import earth_barycentric_position
                observer_pos = earth_barycentric_position(jy)
            if observer is not None:
                observer_pos = np.asarray(observer, float).reshape(3)
        # The query runs while the images' sources are thinned: with a remote server its wait is
        # hidden; with a local one the server's work (~0.1 s for 75k rows; the client's, packed
        # records, ~0.01 s) takes one of the cores the thinning would use.
        query = in_background(lambda: refcats.resolve(
            abs_refcat, center=(plane.ra0, plane.dec0), radius=min(radius, 180.0), epoch=jy,
            observer=observer_pos, store=store, centroid_error_mas=centroid_error))
        if rec is not None:
            # While the database works on the query (on the other core), rather than later
            # beside the thinning's two threads: 0.1 s for 32 gwcs.
            rec.capture_inputs()
        groups = make_groups(images, abs_separation)
        ref = query.result()
        if rec is not None:
            rec.reference = ref
        rxy = np.stack(plane.to_plane(ref.ra, ref.dec), -1) if len(ref.ra) else np.empty((0, 2))
        near = np.zeros(len(rxy), bool)
        for g in groups:
            if len(g.xy_all):
                near |= in_box(rxy, g.lo, g.hi, abs_searchrad + abs_tolerance)
        near &= np.all(np.isfinite(rxy), axis=1)
        ridx = selection.reference_stars(ref.table, np.nonzero(near)[0], mag_min=abs_mag_min, mag_max=abs_mag_max,
                                         brightest=abs_brightest, mag_column=abs_mag_column,
                                         what=f"reference catalog {ref.source}")
        n_near, n_selected = int(np.count_nonzero(near)), len(ridx)
        groups = _unthinned_where_sparse(groups, images, rxy[ridx], abs_separation)
        live = [g for g in groups if len(g.xy)]
        if save_abs_catalog:
            out = Path(abs_catalog_output_dir or ".")
            out.mkdir(parents=True, exist_ok=True)
            label = abs_refcat if isinstance(abs_refcat, str) and refcats.from_store(abs_refcat) else "user"
            ref.table[ridx].write(out / f"fit_{str(label).lower()}_ref.ecsv", format="ascii.ecsv", overwrite=True)
        rall = rxy[ridx]  # before thinning: for the offsets
        # A sparse reference is matched whole as well (two stars 0.98" apart are two stars to
        # fit, told apart by mutual nearest neighbours at the histogram's offset).
        sparse_ref = len(ridx) < _SPARSE_REFERENCE * max(len(live), 1)
        keep = np.ones(len(ridx), bool) if sparse_ref else thin(rxy[ridx], abs_separation)
        ridx = ridx[keep]
        rpos, rw = rxy[ridx], ref.weight[ridx]

        status: dict[int, str] = {g.index: "FAILED: empty source catalog" for g in groups if len(g.xy) == 0}
        if len(ridx) < abs_minobj:
            for g in live:
                chosen = (f", {n_selected} of them selected by abs_mag_min/abs_mag_max/abs_brightest"
                          if n_selected < n_near else "")
                thinned = "" if sparse_ref else (f"; those closer than abs_separation {abs_separation:g}\" to "
                                                 "another are not used")
                status[g.index] = (f"FAILED: not enough reference sources ({len(ridx)} < abs_minobj {abs_minobj}) "
                                   f"in {ref.source} over the images ({n_near} there{chosen}{thinned})")
        limit = 2.0 * (abs_searchrad + abs_tolerance)
        transforms = {g.index: GroupTransform() for g in groups}
        offsets: dict[int, np.ndarray] = {}
        searches: dict[int, object] = {}   # each group's offset search (for failure messages)
        peak: dict[int, bool] = {}
        common_significant = False
        if len(ridx) >= abs_minobj and live:
            common = np.zeros(2)
            common_significant = False
            # One KD-tree of the reference for every group's offset search (20 ms at 75k points;
            # each search built one of the points near its group, ~4 ms).
            rall_tree = kdtree(rall) if abs_use2dhist and len(rall) else None
            if abs_use2dhist:
                allxy = np.concatenate([g.xy_all for g in live])
                # Quick: where it finds nothing (e.g. each group off in its own direction), each
                # group is searched over the whole radius below.
                off = find_offset(allxy, rall, abs_searchrad, abs_tolerance, quick=True, ref_tree=rall_tree,
                                  max_chance=max_chance)
                if off.significant:
                    common = np.array([off.dx, off.dy])
                    common_significant = True

            def own_offset(g: Group):
                # Each group's own offset: near the common one first (a small, cheap search),
                # over the whole search radius if that finds no significant peak.
                own = find_offset(g.xy_all, rall, min(2.0 * abs_tolerance, abs_searchrad), abs_tolerance,
                                  tuple(common), ref_tree=rall_tree, max_chance=max_chance)
                if not own.significant:
                    own = find_offset(g.xy_all, rall, abs_searchrad, abs_tolerance, ref_tree=rall_tree,
                                      max_chance=max_chance)
                return own

            owns = thread_map(own_offset, live) if abs_use2dhist else [None] * len(live)
            for g, own in zip(live, owns):
                o = np.array([own.dx, own.dy]) if own is not None and own.significant else common
                offsets[g.index] = o
                searches[g.index] = own
                peak[g.index] = abs_use2dhist and (own.significant or common_significant)
                transforms[g.index] = GroupTransform(np.eye(2), o.copy())
        free = [g.index for g in live if g.index not in status]
        fitted = None
        links = Links.concat([])
        nbrs = {g.index: [h.index for h in sorted((h for h in live if h is not g and h.index in free
                                                   and g.overlap(h) > 0), key=lambda h: -g.overlap(h))][:_NEIGHBOURS]
                for g in live}
        radius = abs_tolerance
        ref_tree = kdtree(rpos) if len(rpos) else None
        for npass in range(2):
            if not free:
                break
            parts = []
            # The first pass only has to bring the corrections close enough for the re-match:
            # a subset of each group's sources does (_FIRST_PASS_SOURCES).
            cap = None if npass else _FIRST_PASS_SOURCES
            matched = thread_map(lambda a: _match_reference(groups[a], transforms[a], rpos, ref_tree, radius, cap),
                                 free)
            for a, (i, j, pa) in zip(list(free), matched):
                g = groups[a]
                if npass == 0 and not peak.get(a, False):
                    # No histogram peak of its own or in common: the matches at the offset used
                    # must show it themselves (one offset tried).
                    p, expected = _chance(len(i), pa, rpos, *_box(pa), abs_tolerance)
                    if p > max_chance:
                        where = _absolute_origin(searches.get(a), offsets.get(a, np.zeros(2)), abs_use2dhist,
                                                 common_significant, abs_searchrad)
                        status[a] = (f"FAILED: not enough matches to the reference ({len(i)} within abs_tolerance "
                                     f"{abs_tolerance:g}\" {where}): {_odds(len(i), expected, 1.0, p, max_chance)}")
                        free.remove(a)
                        continue
                parts.append(_link(a, g, i, REFERENCE, rpos[j], rw[j], ridx[j], g.xy[i]))
            parts += thread_map(lambda ab: _match_groups(groups[ab[0]], transforms[ab[0]], groups[ab[1]],
                                                         transforms[ab[1]], radius, cap),
                                [(a, b) for a in free for b in nbrs[a] if b > a])
            links = Links.concat(parts)
            to_ref = np.bincount(links.ga[links.gb == REFERENCE] + 1, minlength=max(free, default=0) + 2)
            nref = {a: int(to_ref[a + 1]) for a in free}
            if sum(nref.values()) < abs_minobj:
                for a in free:
                    where = _absolute_origin(searches.get(a), offsets.get(a, np.zeros(2)), abs_use2dhist,
                                             common_significant, abs_searchrad)
                    status[a] = (f"FAILED: not enough matches to the reference ({sum(nref.values())} < abs_minobj "
                                 f"{abs_minobj}) within abs_tolerance {abs_tolerance:g}\" {where}")
                free, fitted = [], None
                break
            fitted = joint_fit(links, free, {a: groups[a].center for a in free}, abs_fitgeometry, abs_nclip,
                               abs_sigma, clip_accum, abs_minobj)
            transforms.update(fitted.transforms)
            matched_within, radius = radius, _rematch_radius(fitted, abs_tolerance)
        if fitted is not None:
            bad = _unconfirmed(free, groups, transforms, links, fitted, matched_within, rpos,
                               search=abs_searchrad if abs_use2dhist else abs_tolerance, max_chance=max_chance)
            if bad:
                free, links, fitted = _drop_unconfirmed(bad, status, free, links, fitted, groups, abs_fitgeometry,
                                                        abs_nclip, abs_sigma, clip_accum, abs_minobj)
                if fitted is not None:
                    transforms.update(fitted.transforms)
        if fitted is not None:
            per_group = links_per_group(links, fitted.used, free)
            for a in free:
                n = per_group[a]
                if n < max(abs_minobj, MIN_POINTS[abs_fitgeometry]):
                    status[a] = (f"FAILED: not enough matches ({n} < abs_minobj {abs_minobj}; {abs_fitgeometry} "
                                 f"needs {MIN_POINTS[abs_fitgeometry]}) after the fit and its clipping "
                                 f"(abs_nclip {abs_nclip}, abs_sigma {abs_sigma:g})")
                elif _large(fitted.transforms[a], groups[a], limit):
                    status[a] = f"FAILED: the correction exceeds {limit:g} arcsec (2 x (abs_searchrad + abs_tolerance))"
        res = _group_results(groups, links, fitted, status, abs_fitgeometry, "absolute", plane)
        used = {"source": ref.source, "query": ref.query, "rows": int(len(ridx)), "sha256": ref.checksum()}
        for rs in res.values():
            for r in rs:
                r.reference = dict(used)
        results = _apply(groups, res, plane, rec)
        _report_failures(results, "absolute")
    except Exception as exc:
        _record(rec, exc)
        raise
    _record(rec)
    return correctors
