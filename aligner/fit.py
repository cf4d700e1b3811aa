"""Least-squares fit of one linear correction per group of images, all groups at once.

Every matched pair of sources is a *link* between two groups (or a group and the reference
catalog, index ``REFERENCE``): its residual is ``T_a(p_a) - T_b(p_b)``, each ``T`` a correction
``p -> M (p - c) + c + t`` about the group's centre ``c`` in the common tangent plane (arcsec).
Minimizing the weighted sum of squared residuals over every link fits each group against the
reference *and* against the groups it overlaps, so a star seen in k images counts k times with
its own measurements and nothing is averaged or thinned away: no duplicate bias, and the error
does not grow with the number of images (the idea of SCAMP's global solution, Bertin 2006,
ASP Conf. Ser. 351, 112). With no reference links, groups in ``fixed`` carry the frame.

Geometries (tweakwcs/stcal names): ``shift`` (t), ``rshift`` (rotation + t, scale 1),
``rscale`` (rotation + one scale + t), ``general`` (full 2x2 matrix + t). ``rshift`` is
non-linear in the angle and solved by Gauss-Newton; the others converge in one step.

Clipping (``nclip`` rounds): links with ``|r| > sigma * rmse`` are dropped, each judged against
the rmse of the other links (a wrong pair among a few inflates the rmse enough to hide itself); with
``clip_accum`` a dropped link stays dropped, else every round starts from all links (as
tweakwcs). Clipping stops early rather than leave a group with fewer than ``minobj`` links.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

REFERENCE = -1
#: Parameters per group, and the fewest links that determine them.
NPARAMS = {"shift": 2, "rshift": 3, "rscale": 4, "general": 6}
MIN_POINTS = {"shift": 1, "rshift": 2, "rscale": 2, "general": 3}


@dataclass
class Links:
    """Matched pairs: group ``ga`` position ``pa`` is the same star as group ``gb`` position ``pb``.

    ``ia``/``ib`` are the rows in each side's catalog (for reporting); ``w`` the weights.
    """

    ga: np.ndarray
    pa: np.ndarray
    gb: np.ndarray
    pb: np.ndarray
    w: np.ndarray
    ia: np.ndarray
    ib: np.ndarray

    def __len__(self) -> int:
        return len(self.ga)

    def subset(self, mask: np.ndarray) -> Links:
        """The links where ``mask`` is True."""
        return Links(*(getattr(self, f)[mask] for f in ("ga", "pa", "gb", "pb", "w", "ia", "ib")))

    @classmethod
    def concat(cls, parts: list[Links]) -> Links:
        if not parts:
            e = np.empty(0, np.intp)
            return cls(e, np.empty((0, 2)), e, np.empty((0, 2)), np.empty(0), e, e)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("ga", "pa", "gb", "pb", "w", "ia", "ib")))


def affine(p: np.ndarray, matrix: np.ndarray, shift) -> np.ndarray:
    """``p @ matrix.T + shift`` for points ``p`` (..., 2), computed column by column.

    numpy applies a 2-vector or a 2x2 matrix to (n, 2) rows one short row at a time: for 20k
    points ``(p - c) @ m.T + c + s`` took 0.61 ms and ``p + s`` alone 0.09 ms (a scalar: 0.007),
    the columns 0.06 ms; the joint fit's residuals and steps apply it to every link (profiled:
    ~0.14 s of an absolute 32 x 10k fit).
    """
    p = np.asarray(p, float)
    out = np.empty(p.shape)
    x, y = p[..., 0], p[..., 1]
    for k in (0, 1):
        o = out[..., k]
        np.multiply(x, matrix[k, 0], out=o)
        o += matrix[k, 1] * y
        o += shift[k]
    return out


@dataclass
class GroupTransform:
    """``p -> matrix @ p + shift`` in the tangent plane (arcsec)."""

    matrix: np.ndarray = field(default_factory=lambda: np.eye(2))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(2))

    def apply(self, p: np.ndarray) -> np.ndarray:
        return affine(p, self.matrix, self.shift)

    @property
    def rigid(self) -> bool:
        """A rotation and shift (distances kept): shift and rshift corrections."""
        return bool(np.allclose(self.matrix.T @ self.matrix, np.eye(2), rtol=0.0, atol=1e-12))

    def inverse_apply(self, p: np.ndarray) -> np.ndarray:
        """The point q with ``apply(q) == p``."""
        return np.linalg.solve(self.matrix, (p - self.shift).T).T


@dataclass
class JointFit:
    """Result of :func:`joint_fit`."""

    transforms: dict[int, GroupTransform]
    used: np.ndarray               # links kept after clipping
    residuals: np.ndarray          # (n, 2) arcsec, every link, at the final solution
    rmse: float                    # arcsec, over the used links (weighted)
    iterations: int


def _matrix(fitgeom: str, p: np.ndarray) -> np.ndarray:
    """(G, 2, 2) matrices from (G, k) parameters."""
    g = len(p)
    if fitgeom == "shift":
        return np.broadcast_to(np.eye(2), (g, 2, 2)).copy()
    if fitgeom == "rshift":
        c, s = np.cos(p[:, 0]), np.sin(p[:, 0])
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    if fitgeom == "rscale":
        a, b = p[:, 0], p[:, 1]
        return np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], -2)
    return p[:, :4].reshape(g, 2, 2).copy()


def _initial(fitgeom: str, g: int) -> np.ndarray:
    p = np.zeros((g, NPARAMS[fitgeom]))
    if fitgeom == "rscale":
        p[:, 0] = 1.0
    elif fitgeom == "general":
        p[:, 0] = p[:, 3] = 1.0
    return p


def _derivatives(fitgeom: str, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each parameter's column of the Jacobian of ``M q + t`` is ``L_j q + E_j``: ``L``
    (G, k, 2, 2) per group (it depends on the parameters for rshift only), ``E`` (k, 2)."""
    g, k = len(p), NPARAMS[fitgeom]
    lin = np.zeros((g, k, 2, 2))
    e = np.zeros((k, 2))
    e[k - 2, 0] = e[k - 1, 1] = 1.0
    if fitgeom == "rshift":
        c, s = np.cos(p[:, 0]), np.sin(p[:, 0])
        lin[:, 0, 0, 0], lin[:, 0, 0, 1], lin[:, 0, 1, 0], lin[:, 0, 1, 1] = -s, -c, c, -s
    elif fitgeom == "rscale":
        lin[:, 0, 0, 0] = lin[:, 0, 1, 1] = 1.0
        lin[:, 1, 0, 1], lin[:, 1, 1, 0] = -1.0, 1.0
    elif fitgeom == "general":
        for j, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            lin[:, j, a, b] = 1.0
    return lin, e


class _Model:
    """Parameters of the free groups and the evaluation of every link under them.

    Each run of links between the same two groups is a *segment*, evaluated over contiguous
    slices with the two groups' matrices (no per-link gathers: at 3.5M links those dominated
    the time); :func:`joint_fit` sorts links that come in many short runs.

    A side's correction is linear in its points relative to its centre, ``q``, and so is each
    column of its Jacobian (:func:`_derivatives`): the normal equations of a segment depend on
    its links only through the weighted moments of ``(1, q_a, q_b)`` (a 5 x 5 matrix). They
    are summed once per set of weights (:meth:`moments`, one small matrix product per segment),
    and each Gauss-Newton step is then a few products of (segments, 5, 5) arrays, however many
    links there are. (At 210k links, 32 groups, 61 segments: per-link Jacobians at every step
    took 15 ms a step; this, 1.3 ms a step plus 1.3 ms per set of weights. The absolute 32 x
    10k fit's two joint fits: 0.17 + 0.08 s -> 0.05 + 0.04 s, the same solution to 1e-14 ".)
    """

    def __init__(self, fitgeom: str, free: list[int], centers: dict[int, np.ndarray], links: Links) -> None:
        self.fitgeom, self.free = fitgeom, list(free)
        self.index = {g: i for i, g in enumerate(self.free)}
        self.k = NPARAMS[fitgeom]
        self.params = _initial(fitgeom, len(self.free))
        self.centers = centers
        self.pa, self.pb = np.ascontiguousarray(links.pa, float), np.ascontiguousarray(links.pb, float)
        n = len(links)
        if n:
            cut = np.nonzero((np.diff(links.ga) != 0) | (np.diff(links.gb) != 0))[0] + 1
            starts, ends = np.r_[0, cut], np.r_[cut, n]
        else:
            starts = ends = np.empty(0, np.intp)

        def side(group: int) -> tuple[int, np.ndarray]:
            row = self.index.get(int(group), -1)
            c = np.asarray(centers.get(int(group), np.zeros(2)), float) if row >= 0 else np.zeros(2)
            return row, c

        # (start, end, row of side a (-1: fixed), its centre, row of side b, its centre)
        self.segments = [(int(a), int(b), *side(links.ga[a]), *side(links.gb[a])) for a, b in zip(starts, ends)]
        self.n = n
        # The segments with a free side, for the normal equations: rows, and the centres the
        # moments are taken about (a fixed side, left as it is, about the free side's centre:
        # smaller moments).
        fit = [sg for sg in self.segments if sg[2] >= 0 or sg[4] >= 0]
        self.fit_ra = np.array([sg[2] for sg in fit], np.intp)
        self.fit_rb = np.array([sg[4] for sg in fit], np.intp)
        ca = np.array([sg[3] if sg[2] >= 0 else sg[5] for sg in fit], float).reshape(-1, 2)
        cb = np.array([sg[5] if sg[4] >= 0 else sg[3] for sg in fit], float).reshape(-1, 2)
        self.fit_ca, self.fit_cb = ca, cb
        self.fit_slices = [(sg[0], sg[1]) for sg in fit]
        # (1, q_a, q_b) of every link of those segments, as rows of a (5, n) array.
        self.q = np.empty((5, n))
        self.q[0] = 1.0
        for (s0, s1), c_a, c_b in zip(self.fit_slices, ca, cb):
            for i, (p, c) in enumerate(((self.pa, c_a), (self.pb, c_b))):
                np.subtract(p[s0:s1, 0], c[0], out=self.q[1 + 2 * i, s0:s1])
                np.subtract(p[s0:s1, 1], c[1], out=self.q[2 + 2 * i, s0:s1])

    def _moved(self, p: np.ndarray, row: int, c: np.ndarray, mats: np.ndarray) -> np.ndarray:
        if row < 0:
            return p
        # (p - c) @ M.T + c + s, with the constant terms folded into one shift.
        m = mats[row]
        return affine(p, m, c + self.params[row, -2:] - m @ c)

    def residuals(self) -> np.ndarray:
        mats = _matrix(self.fitgeom, self.params)
        r = np.empty((self.n, 2))
        for s0, s1, ra, ca, rb, cb in self.segments:
            r[s0:s1] = self._moved(self.pa[s0:s1], ra, ca, mats) - self._moved(self.pb[s0:s1], rb, cb, mats)
        return r

    def moments(self, w: np.ndarray) -> np.ndarray:
        """(segments with a free side, 5, 5): sum of ``w x x^T`` over each segment's links,
        ``x = (1, q_a, q_b)``."""
        out = np.empty((len(self.fit_slices), 5, 5))
        for i, (s0, s1) in enumerate(self.fit_slices):
            x = self.q[:, s0:s1]
            np.matmul(x * w[s0:s1], x.T, out=out[i])
        return out

    def transforms(self) -> dict[int, GroupTransform]:
        out = {}
        m = _matrix(self.fitgeom, self.params)
        for g, i in self.index.items():
            c = self.centers.get(g, np.zeros(2))
            out[g] = GroupTransform(m[i], c + self.params[i, -2:] - m[i] @ c)
        return out


def _solve_step(model: _Model, mom: np.ndarray) -> np.ndarray:
    """One Gauss-Newton step from the segments' weighted moments ``mom`` (:meth:`_Model.moments`).

    With ``x = (1, q_a, q_b)`` and ``r = M_a q_a - M_b q_b + d`` (``d``: the centres and
    shifts), a parameter column ``u_j = L_j q + E_j`` gives sums such as
    ``sum w u_j . u_l = tr(L_j^T L_l Q_aa) + E_j . L_l Q_a + E_l . L_j Q_a + S E_j . E_l``
    (``S``, ``Q_a``, ``Q_aa``: the moments of order 0, 1, 2), for both sides and the cross
    terms; side b enters the residual with a minus sign.
    """
    g, k = len(model.free), model.k
    if g == 0 or len(mom) == 0:
        return np.zeros((g, k))
    p = model.params
    mats, lin, e = _matrix(model.fitgeom, p), *_derivatives(model.fitgeom, p)
    ra, rb = model.fit_ra, model.fit_rb
    fa, fb = ra >= 0, rb >= 0
    eye = np.eye(2)
    ma = np.where(fa[:, None, None], mats[ra], eye)
    mb = np.where(fb[:, None, None], mats[rb], eye)
    zero = np.zeros((1, k, 2, 2))
    la = np.where(fa[:, None, None, None], lin[ra], zero)
    lb = np.where(fb[:, None, None, None], lin[rb], zero)
    ta = np.where(fa[:, None], p[ra, -2:], 0.0)
    tb = np.where(fb[:, None], p[rb, -2:], 0.0)
    d = model.fit_ca + ta - model.fit_cb - tb
    s0 = mom[:, 0, 0]
    q_a, q_b = mom[:, 0, 1:3], mom[:, 0, 3:5]
    q_aa, q_bb, q_ab = mom[:, 1:3, 1:3], mom[:, 3:5, 3:5], mom[:, 1:3, 3:5]
    ee = e @ e.T

    def block(sel, l1, q1, l2, q2, q12):
        # sum w u1_j . u2_l over the segments sel, u = L q + E, for sides with moments q1, q2, q12.
        l1, q1, l2, q2, q12 = l1[sel], q1[sel], l2[sel], q2[sel], q12[sel]
        v1, v2 = np.einsum("sjab,sb->sja", l1, q1), np.einsum("slab,sb->sla", l2, q2)
        return (np.einsum("sjab,slac,sbc->sjl", l1, l2, q12) + np.einsum("ja,sla->sjl", e, v2)
                + np.einsum("sja,la->sjl", v1, e) + s0[sel, None, None] * ee)

    # r's sums against q_a, q_b and 1: sum w r q_a^T, sum w r q_b^T, sum w r.
    r_qa = ma @ q_aa - mb @ q_ab.transpose(0, 2, 1) + d[:, :, None] * q_a[:, None, :]
    r_qb = ma @ q_ab - mb @ q_bb + d[:, :, None] * q_b[:, None, :]
    r_1 = np.einsum("sac,sc->sa", ma, q_a) - np.einsum("sac,sc->sa", mb, q_b) + s0[:, None] * d
    ga = np.einsum("sjab,sab->sj", la, r_qa) + r_1 @ e.T
    gb = -(np.einsum("sjab,sab->sj", lb, r_qb) + r_1 @ e.T)

    normal = np.zeros((g, g, k, k))
    grad = np.zeros((g, k))
    if fa.any():
        np.add.at(normal, (ra[fa], ra[fa]), block(fa, la, q_a, la, q_a, q_aa))
        np.add.at(grad, ra[fa], ga[fa])
    if fb.any():
        np.add.at(normal, (rb[fb], rb[fb]), block(fb, lb, q_b, lb, q_b, q_bb))
        np.add.at(grad, rb[fb], gb[fb])
    both = fa & fb
    if both.any():
        x = -block(both, la, q_a, lb, q_b, q_ab)
        np.add.at(normal, (ra[both], rb[both]), x)
        np.add.at(normal, (rb[both], ra[both]), x.transpose(0, 2, 1))
    normal = normal.transpose(0, 2, 1, 3).reshape(g * k, g * k)
    step = np.linalg.lstsq(normal, -grad.ravel(), rcond=None)[0]
    return step.reshape(g, k)


def links_per_group(links: Links, use: np.ndarray, free: list[int]) -> dict[int, int]:
    """Per group of ``free``: the links in ``use`` that touch it (one pass over the links)."""
    counts = np.bincount(np.concatenate([links.ga[use], links.gb[use]]) + 1,
                         minlength=max(free, default=0) + 2)
    return {g: int(counts[g + 1]) for g in free}


def _clip_scale(norm: np.ndarray, w: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Per link, the weighted rmse the clipping compares its residual with: that of the other
    links in use (for a link not in use, of all those in use).

    With the rmse of all links, one wrong pair among a few hides itself: among 9 links its
    residual is ~0.89 of its offset and 3 x rmse ~1.0 of it, so it stays in and pulls the fit
    (a sparse field's fit 83 mas off at 2 mas noise). Without it, its residual stands out. With
    many links the two are the same."""
    S, W = float(np.sum(w[use] * norm[use] ** 2)), float(np.sum(w[use]))
    scale = np.full(len(norm), np.sqrt(S / W) if W > 0 else 0.0)
    others = W - w[use]
    loo = np.where(others > 0, np.maximum(S - w[use] * norm[use] ** 2, 0.0) / np.where(others > 0, others, 1.0),
                   S / W if W > 0 else 0.0)
    scale[use] = np.sqrt(loo)
    return scale


def joint_fit(links: Links, free: list[int], centers: dict[int, np.ndarray], fitgeom: str = "rshift",
              nclip: int = 3, sigma: float = 3.0, clip_accum: bool = False, minobj: int = 1) -> JointFit:
    """Fit one correction per group in ``free`` from ``links``; other groups stay fixed.

    Parameters
    ----------
    links : Links
        Matched pairs (arcsec positions in the common plane, weights).
    free : list of int
        Groups whose corrections are fitted; ``REFERENCE`` and groups not listed are fixed.
    centers : dict
        Each free group's centre (arcsec): the rotation/scale pivot (numerical conditioning).
    fitgeom, nclip, sigma, clip_accum, minobj
        See the module docstring.
    """
    if fitgeom not in NPARAMS:
        raise ValueError(f"fitgeometry must be one of {', '.join(NPARAMS)}, got {fitgeom!r}")
    # The model works on runs of links between the same two groups (as the aligner builds
    # them: one run per matched pair of groups); links in any other order are sorted by group
    # pair first, and the results go back in the given order.
    runs = int(np.count_nonzero((np.diff(links.ga) != 0) | (np.diff(links.gb) != 0))) + 1 if len(links) else 0
    back = None
    if runs > 4 * (len(free) + 1) ** 2:
        order = np.lexsort((links.gb, links.ga))
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        links = links.subset(order)
    model = _Model(fitgeom, free, centers, links)
    all_links = np.ones(len(links), bool)
    use = all_links.copy()
    iterations = 0

    def solve(use):
        # Gauss-Newton from the previous solution: linear geometries converge in one step;
        # for rshift the angle's error after a step is ~ (the step)^2, so a step below 1e-6 rad
        # leaves < 1e-12 rad (0.2 nano-arcsec per arcsec of radius): done.
        nonlocal iterations
        mom = model.moments(np.where(use, links.w, 0.0))
        for _ in range(20):
            step = _solve_step(model, mom)
            model.params += step
            iterations += 1
            if fitgeom != "rshift" or np.abs(step[:, 0]).max(initial=0.0) < 1e-6:
                break
        return model.residuals()

    r = solve(use)
    for _ in range(nclip):
        norm = np.hypot(r[:, 0], r[:, 1])
        # The residuals' rmse underestimates the noise by the parameters fitted (2n coordinates,
        # k parameters): a few links' fit would otherwise clip true pairs at ~2.6 sigma.
        n2, k = 2 * int(np.count_nonzero(use)), NPARAMS[fitgeom] * len(free)
        dof = math.sqrt(n2 / (n2 - k)) if n2 > k else 1.0
        new = (use if clip_accum else all_links) & (norm <= sigma * dof * _clip_scale(norm, links.w, use))
        if np.array_equal(new, use):
            break
        if min(links_per_group(links, new, free).values(), default=minobj) < minobj:
            break
        use = new
        r = solve(use)
    norm = np.hypot(r[:, 0], r[:, 1])
    rmse = float(np.sqrt(np.sum(links.w[use] * norm[use] ** 2) / np.sum(links.w[use]))) if use.any() else float("nan")
    if back is not None:
        use, r = use[back], r[back]
    return JointFit(model.transforms(), use, r, rmse, iterations)


def decompose(matrix: np.ndarray) -> dict[str, float]:
    """Rotation (deg), scales and skew (deg) of a 2x2 correction matrix, tweakwcs-style."""
    m = np.asarray(matrix, float)
    sx, sy = float(np.hypot(m[0, 0], m[1, 0])), float(np.hypot(m[0, 1], m[1, 1]))
    rotx = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
    roty = float(np.degrees(np.arctan2(-m[0, 1], m[1, 1])))
    det = float(np.linalg.det(m))
    return {"rot": (rotx, roty), "proper_rot": (rotx + roty) / 2.0, "rotation": (rotx + roty) / 2.0,
            "scale": (sx, sy), "geomean_scale": float(np.sqrt(abs(det))), "skew": roty - rotx,
            "proper": det > 0}
