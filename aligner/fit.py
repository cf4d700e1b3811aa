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

Clipping (``nclip`` rounds): links with ``|r| > sigma * rmse`` are dropped; with
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
    the columns 0.06 ms; the joint fit's residuals and steps apply it to every link (session 6
    profile: ~0.14 s of an absolute 32 x 10k fit).
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


def _jacobian(fitgeom: str, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(n, 2, k) derivatives of ``M q + t`` with respect to one group's parameters ``p`` (k,)
    at the points ``q`` (n, 2), relative to the group's centre."""
    n = len(q)
    k = NPARAMS[fitgeom]
    j = np.zeros((n, 2, k))
    j[:, 0, k - 2] = j[:, 1, k - 1] = 1.0
    qx, qy = q[:, 0], q[:, 1]
    if fitgeom == "rshift":
        c, s = math.cos(p[0]), math.sin(p[0])
        j[:, 0, 0] = -s * qx - c * qy
        j[:, 1, 0] = c * qx - s * qy
    elif fitgeom == "rscale":
        j[:, 0, 0], j[:, 1, 0] = qx, qy
        j[:, 0, 1], j[:, 1, 1] = -qy, qx
    elif fitgeom == "general":
        j[:, 0, 0], j[:, 0, 1] = qx, qy
        j[:, 1, 2], j[:, 1, 3] = qx, qy
    return j


class _Model:
    """Parameters of the free groups and the evaluation of every link under them.

    Each run of links between the same two groups is a *segment*, evaluated over contiguous
    slices with the two groups' matrices (no per-link gathers: at 3.5M links those dominated
    the time); :func:`joint_fit` sorts links that come in many short runs."""

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

    def transforms(self) -> dict[int, GroupTransform]:
        out = {}
        m = _matrix(self.fitgeom, self.params)
        for g, i in self.index.items():
            c = self.centers.get(g, np.zeros(2))
            out[g] = GroupTransform(m[i], c + self.params[i, -2:] - m[i] @ c)
        return out


def _solve_step(model: _Model, w: np.ndarray) -> np.ndarray:
    """One Gauss-Newton step (weights ``w`` per link; 0 = unused).

    A link touches at most two groups: each segment of links between groups a and b adds its
    products to the normal-matrix blocks (a, a), (a, b), (b, a), (b, b), as a few small matrix
    products over contiguous slices. (A sparse (2n, P) design matrix and its products took
    ~5x longer at 32 images x 10k sources.)
    """
    g, k = len(model.free), model.k
    if g == 0:
        return np.zeros((g, k))
    mats = _matrix(model.fitgeom, model.params)
    normal = np.zeros((g, g, k, k))
    grad = np.zeros((g, k))
    for s0, s1, ra, ca, rb, cb in model.segments:
        if ra < 0 and rb < 0:
            continue
        pa, pb = model.pa[s0:s1], model.pb[s0:s1]
        rs = (model._moved(pa, ra, ca, mats) - model._moved(pb, rb, cb, mats)).ravel()
        ws = np.repeat(w[s0:s1], 2)[:, None]
        if ra >= 0:
            a = _jacobian(model.fitgeom, model.params[ra], pa - ca).reshape(-1, k)
            aw = a * ws
            normal[ra, ra] += aw.T @ a
            grad[ra] += aw.T @ rs
        if rb >= 0:
            b = -_jacobian(model.fitgeom, model.params[rb], pb - cb).reshape(-1, k)
            bw = b * ws
            normal[rb, rb] += bw.T @ b
            grad[rb] += bw.T @ rs
        if ra >= 0 and rb >= 0:
            x = aw.T @ b
            normal[ra, rb] += x
            normal[rb, ra] += x.T
    normal = normal.transpose(0, 2, 1, 3).reshape(g * k, g * k)
    step = np.linalg.lstsq(normal, -grad.ravel(), rcond=None)[0]
    return step.reshape(g, k)


def links_per_group(links: Links, use: np.ndarray, free: list[int]) -> dict[int, int]:
    """Per group of ``free``: the links in ``use`` that touch it (one pass over the links)."""
    counts = np.bincount(np.concatenate([links.ga[use], links.gb[use]]) + 1,
                         minlength=max(free, default=0) + 2)
    return {g: int(counts[g + 1]) for g in free}


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
        w = np.where(use, links.w, 0.0)
        for _ in range(20):
            step = _solve_step(model, w)
            model.params += step
            iterations += 1
            if fitgeom != "rshift" or np.abs(step[:, 0]).max(initial=0.0) < 1e-6:
                break
        return model.residuals()

    r = solve(use)
    for _ in range(nclip):
        norm = np.hypot(r[:, 0], r[:, 1])
        ww = links.w[use]
        rmse = float(np.sqrt(np.sum(ww * norm[use] ** 2) / np.sum(ww))) if use.any() else 0.0
        base = use if clip_accum else all_links
        new = base & (norm <= sigma * rmse)
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
