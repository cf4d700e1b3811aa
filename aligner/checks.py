"""Checks a fit must pass: matches unlikely by chance, and corrections within the search.

In dense fields a tight cluster of chance pairs can survive clipping, so a group's matches must
be unlikely (``max_chance``) as chance one-to-one matches at the precision they were made at;
a group that fails is dropped and the others are fitted again without its links.
"""
from __future__ import annotations

import math

import numpy as np

from .fit import REFERENCE, GroupTransform, Links, joint_fit
from .images import Group
from .match import bounds, in_box
from .messages import odds
from .significance import DEFAULT_MAX_CHANCE, chance_probability, trials_within


def chance(n_matched: int, src_xy: np.ndarray, ref_xy: np.ndarray, lo: np.ndarray, hi: np.ndarray,
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


def _density(xy: np.ndarray, lo: np.ndarray, hi: np.ndarray, radius: float) -> float:
    return len(xy) / max(float(np.prod(np.maximum(hi - lo, radius))), 1e-12)


def unconfirmed(free: list[int], groups: list[Group], transforms: dict[int, GroupTransform], links: Links,
                fitted, radius: float, reference: np.ndarray | None = None, search: float = 0.0,
                max_chance: float = DEFAULT_MAX_CHANCE) -> dict[int, str]:
    """Groups whose fit rests on matches that chance gives too often at the radius they were
    matched within: {group: failure status}.

    The links the fit kept must be unlikely (``max_chance``) as chance one-to-one matches within
    ``radius`` between the group's sources and the points it was matched to (``reference``;
    else its linked groups' sources), counting as trials the offsets of that precision within
    ``search`` (arcsec) of the start that the offset search and the fit could have settled on.
    """
    bad = {}
    trials = trials_within(search, radius)
    ref_density = _density(reference, *bounds(reference), radius) \
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
        dens = ref_density + sum(_density(groups[b].xy, groups[b].lo, groups[b].hi, radius) for b in partners)
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
        corners = ta.apply(np.stack([groups[a].lo, groups[a].hi]))
        p, expected = chance(n, src, pts, corners.min(0), corners.max(0), radius, trials)
        if p > max_chance:
            bad[a] = (f"FAILED: the fit's {n} matches to {what} within {radius * 1000:.0f} mas are not convincing: "
                      f"{odds(n, expected, trials, p, max_chance)}: probably mismatched sources")
    return bad


def drop_unconfirmed(bad: dict[int, str], status: dict[int, str], free: list[int], links: Links, groups: list[Group],
                     fitgeometry: str, nclip: int, sigma: float, clip_accum: bool, minobj: int
                     ) -> tuple[list[int], Links, object]:
    """Mark ``bad`` groups failed in ``status`` and fit the others again without their links.

    Returns the groups still free, their links and the new fit (None when none is left)."""
    status.update(bad)
    free = [a for a in free if a not in bad]
    links = links.subset(~np.isin(links.ga, list(bad)) & ~np.isin(links.gb, list(bad)))
    fitted = joint_fit(links, free, {a: groups[a].center for a in free}, fitgeometry, nclip, sigma,
                       clip_accum, minobj) if free else None
    return free, links, fitted


def too_large(t: GroupTransform, g: Group, limit: float) -> bool:
    """True if the correction moves any corner of the group's footprint by more than ``limit``."""
    c = g.corners if len(g.corners) else np.stack([g.lo, g.hi])
    return bool(np.any(np.hypot(*(t.apply(c) - c).T) > limit))
