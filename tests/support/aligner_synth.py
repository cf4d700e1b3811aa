"""Synthetic scenes with known truth for testing and benchmarking WCS alignment.

A *scene* is a field of true stars, a dither pattern of overlapping exposures (images), and for
every image the TRUE WCS, a PERTURBED WCS (the one an aligner starts from: a pointing error per
exposure group), a source catalog measured on the image (true stars + centroid noise + spurious
detections, shuffled) and, for the whole mosaic, a reference catalog (Gaia-like: its own
position noise, proper motions and parallaxes at its own reference epoch).

Everything is generated with vectorised numpy (loops only over images), so the benchmark
setups (up to 32 images x 100k sources) take seconds.

Geometry
--------
All pointing geometry is done with 3-D unit vectors and rotation matrices, so scenes work at
RA = 0 and near the celestial poles (not exactly *at* a pole: the local east/north basis is
undefined there).

An exposure (a *group* of ``group_size`` detectors sharing one pointing) has an attitude
matrix ``A`` (3x3) that maps focal-plane unit vectors (spherical coordinates V2, V3 in arcsec)
to ICRS unit vectors, with the JWST convention

    A = RotationSequence3D([v2_ref/3600, -v3_ref/3600, roll_ref, dec_ref, -ra_ref], 'zyxyz')

Each detector maps 0-based pixels ``(x, y)`` to focal-plane offsets by

    (u, v) = (x - cx, y - cy),  (cx, cy) = ((nx - 1)/2, (ny - 1)/2)
    (fu, fv) = (u + dx(u, v), v + dy(u, v))             optional polynomial distortion (pixels)
    focal plane = f_d + L @ (fu, fv),   L = s * R(theta_d) @ diag(-1, 1)

(``s`` the pixel scale, ``theta_d`` a small detector rotation, parity -1 so that images have
east to the left of north as usual). For ``kind="gwcs"`` the focal plane *is* (V2, V3) and the
WCS is a JWST-style gwcs pipeline ``detector -> v2v3 -> world``. For ``kind="fits"`` the
detector is instead projected gnomonically (TAN) about its centre, with CD matrix ``B @ L``
where ``B`` rotates the focal-plane axes at the detector centre to east/north on the sky;
the distortion becomes SIP A/B coefficients (no AP/BP: astropy inverts iteratively).

The pointing error of a group is a rigid rotation ``E`` of the sky: a rotation by ``theta``
(``rot_range``, random sign, positive = right-handed about the outward direction, i.e. from
east towards north) about the group centre followed by a shift of ``d`` arcsec (``shift_range``)
of the group centre towards position angle ``phi`` (uniform). The perturbed WCS is built from
``E @ A`` exactly as the true one is from ``A``, so ``wcs(x) = E(wcs_true(x))`` for every pixel
(an optional ``frame_error`` common to all groups is applied on top: ``F @ E @ A``).

Stars and image catalogs
------------------------
True stars are uniform in gnomonic coordinates along the exposures' V2/V3 axes at the field
centre, in a rectangle covering the mosaic plus a margin (2 x the largest shift + 10 arcsec),
at a density giving ``n_sources`` stars per image. A catalog holds every star whose true pixel
position (through the TRUE WCS) is on the image, plus Gaussian centroid noise, plus spurious
sources uniform on the image (``spurious_fraction`` of the rows), shuffled; centroids that the
noise pushed off the image are dropped (a gwcs returns NaN outside its bounding box).

Reference catalog and epochs
----------------------------
Image positions are the truth at the observation epoch ``epoch`` (Julian year, barycentric:
no annual parallax). The reference catalog is at ``ref_epoch = epoch - epoch_gap``. For a
reference star the catalog astrometry (position at ``ref_epoch``, pm, parallax, radial velocity)
is drawn first and its true position at ``epoch`` is computed with ERFA's ``pmsafe`` (the model
of ``SkyCoord.apply_space_motion`` and of :func:`astrodb.epoch.propagate`), so propagating the
noise-free catalog reproduces the truth exactly; the catalog positions then receive Gaussian
noise of ``ref_noise_mas`` per axis. Proper motions have a common bulk part ``pm_mean`` (so an
aligner that ignores the epoch is off by ``pm_mean * epoch_gap``) plus scatter and a few fast
movers. 2-parameter reference stars (``ref_two_param_fraction``) have NaN pm/parallax in the
catalog but still move in truth.
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from astropy.table import Table

__all__ = [
    "SimImage", "SimScene", "make_scene", "make_correctors", "wcs_error_mas",
    "absolute_error_mas", "relative_error_mas", "reference_at_epoch", "DEFAULT_V2V3_CENTER",
]

_DEG2RAD = math.pi / 180.0
_ARCSEC2RAD = _DEG2RAD / 3600.0
_RAD2MAS = 180.0 / math.pi * 3.6e6
_MAS2RAD = 1.0 / _RAD2MAS
_J2000_JD = 2451545.0

#: Focal-plane (V2, V3) position (arcsec) of the centre of an exposure (NIRCam-like values).
DEFAULT_V2V3_CENTER = (86.1, -493.2)

# Distortion (pixels) at normalised detector offsets (u/L, v/L), L = half the larger side:
# about 3 px in x and 1.6 px in y at the corners, no linear terms (the centre scale is exact).
_DIST_X = {(2, 0): 2.0, (1, 1): 1.0, (0, 2): -0.5, (3, 0): 1.5, (1, 2): -0.8}
_DIST_Y = {(2, 0): -1.0, (1, 1): 1.8, (0, 2): 1.2, (0, 3): 0.6, (2, 1): -1.0}


# ============================================================================================
# small vector helpers
# ============================================================================================
def _unit(ra_deg: Any, dec_deg: Any) -> np.ndarray:
    """Unit vectors (..., 3) of spherical coordinates in degrees."""
    a = np.radians(ra_deg)
    d = np.radians(dec_deg)
    cd = np.cos(d)
    return np.stack((cd * np.cos(a), cd * np.sin(a), np.sin(d)), axis=-1)


def _unit_xyz(ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Components of the unit vectors of (RA, Dec) in degrees."""
    a, d = np.radians(ra_deg), np.radians(dec_deg)
    cd = np.cos(d)
    return cd * np.cos(a), cd * np.sin(a), np.sin(d)


def _radec_xyz(vx: np.ndarray, vy: np.ndarray, vz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA in [0, 360) and Dec (deg) of vectors given by their components."""
    ra = np.degrees(np.arctan2(vy, vx)) % 360.0
    dec = np.degrees(np.arctan2(vz, np.hypot(vx, vy)))
    return ra, dec


def _radec(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA in [0, 360) and Dec (deg) of vectors (..., 3) (need not be normalised)."""
    v = np.asarray(v, dtype=np.float64)
    ra = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    dec = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return ra, dec


def _east_north(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local east and north unit vectors at unit vectors ``w`` (..., 3)."""
    w = np.asarray(w, dtype=np.float64)
    h = np.hypot(w[..., 0], w[..., 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.stack((-w[..., 1] / h, w[..., 0] / h, np.zeros_like(h)), axis=-1)
    n = np.cross(w, e)
    return e, n


def _rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    """Active right-handed rotation matrix by ``angle`` (rad) about unit vector ``axis``."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) * math.cos(angle) + math.sin(angle) * kx + (1.0 - math.cos(angle)) * np.outer(k, k)


def _rotation_taking(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector ``a`` to unit vector ``b``."""
    c = np.cross(a, b)
    s = np.linalg.norm(c)
    if s < 1e-300:
        return np.eye(3)
    return _rotation_about(c / s, math.atan2(s, float(np.dot(a, b))))


def _sky_error(c: np.ndarray, east: float, north: float, rot_deg: float) -> np.ndarray:
    """Rigid sky rotation: by ``rot_deg`` about unit vector ``c`` (right-handed about the
    outward direction: east towards north), then moving ``c`` by (east, north) arcsec."""
    e, n = _east_north(c)
    d = math.hypot(east, north)
    rot = _rotation_about(c, math.radians(rot_deg))
    if d == 0.0:
        return rot
    t = (east * e + north * n) / d
    return _rotation_about(np.cross(c, t), d * _ARCSEC2RAD) @ rot


def _passive(angle_deg: float, axis: str) -> np.ndarray:
    """The matrix of astropy's ``rotation_matrix(angle, axis)`` (a frame rotation)."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    if axis == "x":
        return np.array([[1.0, 0, 0], [0, c, s], [0, -s, c]])
    if axis == "y":
        return np.array([[c, 0, -s], [0, 1.0, 0], [s, 0, c]])
    return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1.0]])


def _jwst_matrix(v2_ref: float, v3_ref: float, roll_ref: float, ra_ref: float, dec_ref: float) -> np.ndarray:
    """Matrix of ``RotationSequence3D([v2/3600, -v3/3600, roll, dec, -ra], 'zyxyz')`` (v2, v3 arcsec)."""
    return (_passive(-ra_ref, "z") @ _passive(dec_ref, "y") @ _passive(roll_ref, "x")
            @ _passive(-v3_ref / 3600.0, "y") @ _passive(v2_ref / 3600.0, "z"))


def _jwst_angles(att: np.ndarray, v2_ref: float, v3_ref: float) -> tuple[float, float, float]:
    """``(ra_ref, dec_ref, roll_ref)`` (deg) such that :func:`_jwst_matrix` equals ``att``."""
    ra, dec = _radec(att @ _unit(v2_ref / 3600.0, v3_ref / 3600.0))
    ra, dec = float(ra), float(dec)
    p = _passive(-ra, "z") @ _passive(dec, "y")
    q = _passive(-v3_ref / 3600.0, "y") @ _passive(v2_ref / 3600.0, "z")
    x = p.T @ att @ q.T
    roll = math.degrees(math.atan2(x[1, 2], x[1, 1]))
    check = _jwst_matrix(v2_ref, v3_ref, roll, ra, dec)
    if not np.allclose(check, att, rtol=0, atol=1e-12):  # pragma: no cover - internal consistency
        raise RuntimeError("attitude is not a JWST v2v3 rotation sequence")
    return ra, dec, roll


def _sep_mas(v1: np.ndarray, v2: np.ndarray) -> np.ndarray:
    """Angular separation (mas) between unit vectors, accurate at tiny angles."""
    chord = np.linalg.norm(np.asarray(v1) - np.asarray(v2), axis=-1)
    return 2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0)) * _RAD2MAS


# ============================================================================================
# detector model
# ============================================================================================
class _Distortion:
    """``(u, v) -> (u + dx(u, v), v + dy(u, v))``; ``dx``, ``dy`` polynomials in pixels."""

    def __init__(self, cx: dict[tuple[int, int], float], cy: dict[tuple[int, int], float]) -> None:
        self.cx, self.cy = dict(cx), dict(cy)

    @classmethod
    def default(cls, shape: tuple[int, int], scale: float = 1.0) -> "_Distortion":
        half = max(shape) / 2.0
        return cls({k: scale * c / half ** sum(k) for k, c in _DIST_X.items()},
                   {k: scale * c / half ** sum(k) for k, c in _DIST_Y.items()})

    @staticmethod
    def _powers(u: np.ndarray, deg: int) -> list:
        out = [1.0, u]
        for _ in range(deg - 1):
            out.append(out[-1] * u)
        return out

    @property
    def degree(self) -> int:
        return max(p + q for p, q in (*self.cx, *self.cy))

    def _eval(self, u: np.ndarray, v: np.ndarray, jac: bool = False):
        """``dx, dy`` and, with ``jac``, their derivatives ``dx_u, dx_v, dy_u, dy_v``."""
        deg = self.degree
        pu, pv = self._powers(u, deg), self._powers(v, deg)
        zero = np.zeros(np.broadcast(u, v).shape)
        out = []
        for c in (self.cx, self.cy):
            val, du, dv = zero, zero, zero
            for (p, q), a in c.items():
                val = val + a * pu[p] * pv[q]
                if jac and p:
                    du = du + (a * p) * pu[p - 1] * pv[q]
                if jac and q:
                    dv = dv + (a * q) * pu[p] * pv[q - 1]
            out.append((val, du, dv))
        return out

    def __call__(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (dx, _, _), (dy, _, _) = self._eval(u, v)
        return u + dx, v + dy

    def inverse(self, fu: np.ndarray, fv: np.ndarray, tol: float = 1e-11) -> tuple[np.ndarray, np.ndarray]:
        """Solve ``self(u, v) = (fu, fv)`` by Newton iterations (vectorised)."""
        u, v = np.array(fu, dtype=np.float64), np.array(fv, dtype=np.float64)
        for _ in range(30):
            (dx, xu, xv), (dy, yu, yv) = self._eval(u, v, jac=True)
            ru, rv = u + dx - fu, v + dy - fv
            j00, j01, j10, j11 = 1.0 + xu, xv, yu, 1.0 + yv
            det = j00 * j11 - j01 * j10
            u = u - (j11 * ru - j01 * rv) / det
            v = v - (j00 * rv - j10 * ru) / det
            if max(np.max(np.abs(ru), initial=0.0), np.max(np.abs(rv), initial=0.0)) < tol:
                break
        return u, v

    def fit_inverse(self, shape: tuple[int, int], degree: int = 7) -> tuple[dict, dict, float]:
        """Polynomials ``(u - fu)(fu, fv)``, ``(v - fv)(fu, fv)`` (all terms up to ``degree``)
        fitted over 1.2x the detector; returns both coefficient dicts and the max residual (px)."""
        half = max(shape) / 2.0
        g = np.linspace(-1.2, 1.2, 61) * half
        u, v = (a.ravel() for a in np.meshgrid(g, g))
        fu, fv = self(u, v)
        terms = [(p, q) for p in range(degree + 1) for q in range(degree + 1 - p)]
        design = np.stack([(fu / half) ** p * (fv / half) ** q for p, q in terms], axis=1)
        out = []
        resid = 0.0
        for target in (u - fu, v - fv):
            coef = np.linalg.lstsq(design, target, rcond=None)[0]
            resid = max(resid, float(np.abs(design @ coef - target).max()))
            out.append({t: c / half ** sum(t) for t, c in zip(terms, coef)})
        return out[0], out[1], resid


@functools.lru_cache(maxsize=8)
def _fitted_inverse(shape: tuple[int, int], scale: float) -> tuple[dict, dict, float]:
    """Cached :meth:`_Distortion.fit_inverse` of the default distortion."""
    return _Distortion.default(shape, scale).fit_inverse(shape)


@dataclass
class _Geom:
    """Exact numpy model of one detector's pixel <-> sky mapping (the truth generator).

    ``kind == "gwcs"``: ``att`` (3x3) maps focal-plane unit vectors to ICRS; ``f`` is the
    detector centre in (V2, V3) arcsec, ``lin`` the 2x2 arcsec/pixel matrix.
    ``kind == "fits"``: ``w``, ``e``, ``n`` are CRVAL and its east/north vectors and ``lin``
    the CD matrix (deg/pixel).
    """

    kind: str
    shape: tuple[int, int]
    lin: np.ndarray
    dist: _Distortion | None
    att: np.ndarray | None = None
    f: np.ndarray | None = None
    w: np.ndarray | None = None
    e: np.ndarray | None = None
    n: np.ndarray | None = None

    @property
    def center(self) -> tuple[float, float]:
        ny, nx = self.shape
        return (nx - 1) / 2.0, (ny - 1) / 2.0

    def pix2vec(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        cx, cy = self.center
        u, v = np.asarray(x, dtype=np.float64) - cx, np.asarray(y, dtype=np.float64) - cy
        fu, fv = self.dist(u, v) if self.dist is not None else (u, v)
        a = self.lin[0, 0] * fu + self.lin[0, 1] * fv
        b = self.lin[1, 0] * fu + self.lin[1, 1] * fv
        if self.kind == "gwcs":
            q = _unit((self.f[0] + a) / 3600.0, (self.f[1] + b) / 3600.0)
            return q @ self.att.T
        out = self.w + np.radians(a)[..., None] * self.e + np.radians(b)[..., None] * self.n
        return out / np.linalg.norm(out, axis=-1, keepdims=True)

    def vec2pix(self, vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixels of unit vectors ``vec`` (..., 3)."""
        vec = np.asarray(vec, dtype=np.float64)
        return self.xyz2pix(vec[..., 0], vec[..., 1], vec[..., 2])

    def xyz2pix(self, vx: np.ndarray, vy: np.ndarray, vz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixels of unit vectors given by their components (fast path, no (N, 3) copies)."""
        if self.kind == "gwcs":
            m = self.att  # q = att.T @ v
            q0 = m[0, 0] * vx + m[1, 0] * vy + m[2, 0] * vz
            q1 = m[0, 1] * vx + m[1, 1] * vy + m[2, 1] * vz
            q2 = m[0, 2] * vx + m[1, 2] * vy + m[2, 2] * vz
            a = np.arctan2(q1, q0) * (3600.0 / _DEG2RAD) - self.f[0]
            b = np.arctan2(q2, np.hypot(q0, q1)) * (3600.0 / _DEG2RAD) - self.f[1]
        else:
            w, e, n = self.w, self.e, self.n
            k = (1.0 / _DEG2RAD) / (w[0] * vx + w[1] * vy + w[2] * vz)
            a = (e[0] * vx + e[1] * vy + e[2] * vz) * k
            b = (n[0] * vx + n[1] * vy + n[2] * vz) * k
        inv = np.linalg.inv(self.lin)
        fu = inv[0, 0] * a + inv[0, 1] * b
        fv = inv[1, 0] * a + inv[1, 1] * b
        u, v = self.dist.inverse(fu, fv) if self.dist is not None else (fu, fv)
        cx, cy = self.center
        return u + cx, v + cy


def _detector_geom(kind: str, att: np.ndarray, f_det: np.ndarray, lin_fp: np.ndarray,
                   shape: tuple[int, int], dist: _Distortion | None) -> _Geom:
    """Geometry of a detector centred at focal-plane ``f_det`` under attitude ``att``."""
    if kind == "gwcs":
        return _Geom("gwcs", shape, lin_fp, dist, att=att, f=np.asarray(f_det, dtype=np.float64))
    # TAN about the detector centre; focal-plane axes at f_det rotated onto east/north.
    w = att @ _unit(f_det[0] / 3600.0, f_det[1] / 3600.0)
    e, n = _east_north(w)
    e2, n2 = _east_north(_unit(f_det[0] / 3600.0, f_det[1] / 3600.0))  # V2, V3 directions
    b = np.array([[e @ att @ e2, e @ att @ n2], [n @ att @ e2, n @ att @ n2]])
    return _Geom("fits", shape, b @ lin_fp / 3600.0, dist, w=w, e=e, n=n)


def _fits_wcs(g: _Geom):
    from astropy.wcs import WCS, Sip

    ny, nx = g.shape
    cx, cy = g.center
    ra, dec = _radec(g.w)
    w = WCS(naxis=2)
    sip = g.dist is not None
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"] if sip else ["RA---TAN", "DEC--TAN"]
    w.wcs.crpix = [cx + 1.0, cy + 1.0]
    w.wcs.crval = [float(ra), float(dec)]
    w.wcs.cd = g.lin
    w.wcs.radesys = "ICRS"
    w.wcs.cunit = ["deg", "deg"]
    if sip:
        order = max(p + q for p, q in (*g.dist.cx, *g.dist.cy))
        a = np.zeros((order + 1, order + 1))
        b = np.zeros((order + 1, order + 1))
        for (p, q), c in g.dist.cx.items():
            a[p, q] = c
        for (p, q), c in g.dist.cy.items():
            b[p, q] = c
        w.sip = Sip(a, b, None, None, w.wcs.crpix)
    w.wcs.set()
    w.pixel_shape = (nx, ny)
    return w


def _poly2d(degree: int, coeffs: dict, linear: tuple[int, int], name: str):
    from astropy.modeling.models import Polynomial2D

    params = {f"c{p}_{q}": c for (p, q), c in coeffs.items() if p + q <= degree}
    params[f"c{linear[0]}_{linear[1]}"] = params.get(f"c{linear[0]}_{linear[1]}", 0.0) + 1.0
    return Polynomial2D(degree, name=name, **params)


def _gwcs_wcs(g: _Geom, name: str, inverse_dist: tuple[dict, dict] | None):
    import astropy.units as u
    import gwcs
    from astropy.coordinates import ICRS
    from astropy.modeling.models import (AffineTransformation2D, Mapping, RotationSequence3D,
                                         Scale, Shift)
    from gwcs import coordinate_frames as cf
    from gwcs.geometry import CartesianToSpherical, SphericalToCartesian

    ny, nx = g.shape
    cx, cy = g.center
    v2_ref, v3_ref = float(g.f[0]), float(g.f[1])
    ra_ref, dec_ref, roll_ref = _jwst_angles(g.att, v2_ref, v3_ref)

    det2v23 = Shift(-cx, name="x0") & Shift(-cy, name="y0")
    if g.dist is not None:
        deg = max(p + q for p, q in (*g.dist.cx, *g.dist.cy))
        fwd = Mapping((0, 1, 0, 1)) | (_poly2d(deg, g.dist.cx, (1, 0), "dist_x")
                                        & _poly2d(deg, g.dist.cy, (0, 1), "dist_y"))
        ideg = max(p + q for p, q in inverse_dist[0])
        inv = Mapping((0, 1, 0, 1)) | (_poly2d(ideg, inverse_dist[0], (1, 0), "inv_dist_x")
                                       & _poly2d(ideg, inverse_dist[1], (0, 1), "inv_dist_y"))
        fwd.inverse = inv
        fwd.name = "distortion"
        det2v23 = det2v23 | fwd
    det2v23 = det2v23 | AffineTransformation2D(matrix=g.lin, translation=g.f, name="det_to_v2v3")
    det2v23.name = "detector_to_v2v3"

    v23sky = ((Scale(1 / 3600.0) & Scale(1 / 3600.0)) | SphericalToCartesian(wrap_lon_at=180)
              | RotationSequence3D([v2_ref / 3600.0, -v3_ref / 3600.0, roll_ref, dec_ref, -ra_ref],
                                   axes_order="zyxyz")
              | CartesianToSpherical(wrap_lon_at=360))
    v23sky.name = "v23tosky"

    det = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    v2v3 = cf.Frame2D(name="v2v3", axes_order=(0, 1), axes_names=("v2", "v3"),
                      unit=(u.arcsec, u.arcsec))
    world = cf.CelestialFrame(reference_frame=ICRS(), name="world", axes_order=(0, 1),
                              unit=(u.deg, u.deg))
    w = gwcs.WCS([(det, det2v23), (v2v3, v23sky), (world, None)], name=name)
    w.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    w.pixel_shape = (nx, ny)
    wcsinfo = {"v2_ref": v2_ref, "v3_ref": v3_ref, "roll_ref": roll_ref,
               "ra_ref": ra_ref, "dec_ref": dec_ref}
    return w, wcsinfo


# ============================================================================================
# public data structures
# ============================================================================================
@dataclass
class SimImage:
    """One synthetic image (detector exposure).

    Attributes
    ----------
    wcs : astropy.wcs.WCS or gwcs.WCS
        The PERTURBED WCS: the aligner's starting point.
    wcs_true : astropy.wcs.WCS or gwcs.WCS
        The true WCS (``catalog`` rows of real stars were measured with it).
    wcsinfo : dict or None
        For ``kind="gwcs"``: ``v2_ref``, ``v3_ref`` (arcsec), ``roll_ref``, ``ra_ref``,
        ``dec_ref`` (deg) of the perturbed WCS (what a JWST header would say); None for FITS.
    catalog : astropy.table.Table
        Measured sources: ``x``, ``y`` (0-based pixels), ``flux``, and ``weight`` (1/sigma^2,
        pixel^-2) when ``weights=True``; ``meta['name']``.
    truth_index : numpy.ndarray of int64
        Per catalog row, the index of the true star in ``SimScene.stars`` (-1: spurious).
    group_id : int
        Images of one exposure share a group id and a pointing error.
    shape : tuple of int
        ``(ny, nx)``, numpy order.
    name : str
        Image name (also ``catalog.meta['name']``).
    epoch : float
        Observation epoch (Julian year, TDB).
    wcsinfo_true : dict or None
        ``wcsinfo`` of the true WCS.
    shift_arcsec : numpy.ndarray
        The injected pointing shift of the group centre, (east, north) in arcsec.
    rotation_deg : float
        The injected rotation about the group centre (deg, positive from east towards north).
    group_center : numpy.ndarray
        Unit vector of the group centre (the rotation centre) in the TRUE frame.
    sigma_px : numpy.ndarray
        Per catalog row, the centroid noise (pixels, per axis) that was added.
    geom : object
        The exact numpy model of ``wcs_true`` (``pix2vec``, ``vec2pix``) used to make the
        catalogs and by :func:`relative_error_mas`.
    """

    wcs: Any
    wcs_true: Any
    wcsinfo: dict | None
    catalog: Table
    truth_index: np.ndarray
    group_id: int
    shape: tuple[int, int]
    name: str
    epoch: float
    wcsinfo_true: dict | None = None
    shift_arcsec: np.ndarray = field(default_factory=lambda: np.zeros(2))
    rotation_deg: float = 0.0
    group_center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    sigma_px: np.ndarray = field(default_factory=lambda: np.zeros(0))
    geom: _Geom | None = field(default=None, repr=False)


@dataclass
class SimScene:
    """A synthetic alignment problem with its truth.

    Attributes
    ----------
    images : list of SimImage
    refcat : astropy.table.Table
        Reference catalog at ``params['ref_epoch']``: ``RA``, ``DEC`` (deg; the catalog
        positions, for tweakwcs), and the store columns ``source_id``, ``ra``, ``dec``,
        ``ra_error``, ``dec_error`` (mas), ``pmra``, ``pmdec`` (mas/yr, pmra includes cos dec),
        ``parallax`` (mas), ``radial_velocity`` (km/s, mostly NaN), ``ref_epoch`` (yr),
        ``mag``. ``RA``/``DEC`` duplicate ``ra``/``dec`` (note: astrodb matches column names
        case-insensitively, the values being equal makes that harmless).
    stars : astropy.table.Table
        The true stars at the observation epoch: ``ra``, ``dec`` (deg), ``mag``, ``pmra``,
        ``pmdec``, ``parallax``, ``radial_velocity`` (the motion used for the truth; NaN
        radial velocity = 0), ``ref_row`` (row in ``refcat`` or -1).
    params : dict
        All :func:`make_scene` arguments plus derived values (``ref_epoch``, ``n_stars``,
        ``n_groups``, ``n_ref``, ``sigma_px``, ``star_density_arcsec2``,
        ``mosaic_radius_arcsec``, ``star_box_arcsec``, ``dither_offsets_arcsec``,
        ``inverse_distortion_residual_px`` (gwcs: max error of the fitted inverse distortion
        used by ``wcs.invert``; the catalogs themselves are exact)).
    ref_truth_index : numpy.ndarray of int64
        Per ``refcat`` row, the index of the star in ``stars``.
    """

    images: list[SimImage]
    refcat: Table
    stars: Table
    params: dict
    ref_truth_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


# ============================================================================================
# scene generation
# ============================================================================================
def _draw_mags(rng: np.random.Generator, n: int, bright: float, faint: float,
               slope: float = 0.3) -> np.ndarray:
    """Magnitudes with dN/dm ~ 10**(slope m) between ``bright`` and ``faint``."""
    lo, hi = 10.0 ** (slope * bright), 10.0 ** (slope * faint)
    return np.log10(lo + rng.uniform(size=n) * (hi - lo)) / slope


def _grid_offsets(n: int, step: tuple[float, float]) -> np.ndarray:
    """``n`` offsets on a centred row-major grid with spacing ``step``."""
    ncol = math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    k = np.arange(n)
    return np.stack(((k % ncol - (ncol - 1) / 2.0) * step[0],
                     (k // ncol - (nrow - 1) / 2.0) * step[1]), axis=1)


def _jyear_jd(year: float) -> tuple[float, float]:
    return _J2000_JD, (year - 2000.0) * 365.25


def _pmsafe(ra: np.ndarray, dec: np.ndarray, pmra: np.ndarray, pmdec: np.ndarray, plx: np.ndarray,
            rv: np.ndarray, ep1: float, ep2: float) -> tuple[np.ndarray, ...]:
    """ERFA ``pmsafe`` in catalog units (deg, mas/yr with cos dec, mas, km/s, Julian years),
    threaded over blocks (ERFA releases the GIL). Returns ra, dec, pmra, pmdec, parallax at ep2."""
    import os
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    import erfa

    def run(sl: slice) -> tuple[np.ndarray, ...]:
        d = np.radians(dec[sl])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", erfa.ErfaWarning)
            r2, d2, pr2, pd2, px2, _ = erfa.pmsafe(
                np.radians(ra[sl]), d, pmra[sl] * _MAS2RAD / np.cos(d), pmdec[sl] * _MAS2RAD,
                plx[sl] / 1000.0, rv[sl], *_jyear_jd(ep1), *_jyear_jd(ep2))
        return (np.degrees(r2) % 360.0, np.degrees(d2), pr2 * np.cos(d2) / _MAS2RAD, pd2 / _MAS2RAD,
                px2 * 1000.0)

    n = len(ra)
    block = 1 << 17
    slices = [slice(i, min(i + block, n)) for i in range(0, n, block)]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(len(slices), cpus))
    if workers == 1:
        parts = [run(sl) for sl in slices]
    else:
        with ThreadPoolExecutor(workers) as ex:
            parts = list(ex.map(run, slices))
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(5))


def make_scene(n_images: int = 4, n_sources: int = 2000, kind: str = "fits", *, seed: int = 0,
               shift_range: tuple[float, float] = (0.3, 1.0),
               rot_range: tuple[float, float] = (0.005, 0.02),
               centroid_noise_mas: float = 2.0, spurious_fraction: float = 0.1,
               ref_noise_mas: float = 1.0, ref_fraction: float = 1.0,
               ref_two_param_fraction: float = 0.0, group_size: int = 1,
               pixel_scale: float = 0.05, shape: tuple[int, int] = (2048, 2048),
               sip: bool | float = False, center: tuple[float, float] = (53.16, -27.79),
               frame_error: tuple[float, float, float] | None = None,
               position_angle: float = 30.0, dither: float | Sequence[Sequence[float]] = 0.3,
               chip_gap: float = 3.0, detector_rotation: float = 0.3,
               epoch: float = 2024.5, epoch_gap: float = 0.0,
               pm_mean: tuple[float, float] = (3.0, -4.0), pm_sigma: float = 5.0,
               fast_fraction: float = 0.01, completeness: float = 1.0, weights: bool = False,
               mag_range: tuple[float, float] = (16.0, 24.0)) -> SimScene:
    """Generate a synthetic alignment scene with known truth.

    Parameters
    ----------
    n_images : int
        Number of images (detectors); a multiple of ``group_size``.
    n_sources : int
        Expected number of true stars per image (spurious sources come on top).
    kind : {"fits", "gwcs"}
        ``"fits"``: astropy TAN(-SIP) WCS with ``pixel_shape``; ``"gwcs"``: JWST-style gwcs
        ``detector -> v2v3 -> world`` with ``wcsinfo``.
    seed : int
        Seed; independent streams are spawned for the geometry, the pointing errors, the stars,
        the reference catalog and each image catalog (e.g. changing ``n_sources`` keeps the
        pointing errors).
    shift_range : (float, float)
        Range (arcsec) of the pointing shift magnitude per group (uniform; random direction).
        ``(5, 5)`` gives a large initial error, ``(0, 0)`` none.
    rot_range : (float, float)
        Range (deg) of the rotation magnitude about the group centre (random sign).
    frame_error : (float, float, float), optional
        A pointing error common to all groups, ``(east, north, rotation)`` in (arcsec, arcsec,
        deg) about the field centre, applied after the per-group errors (e.g. a guide-star
        catalog offset shared by a visit). ``SimImage.shift_arcsec``/``rotation_deg`` hold the
        per-group parts only.
    centroid_noise_mas : float
        Gaussian centroid noise per axis (mas), converted to pixels with ``pixel_scale``.
    spurious_fraction : float
        Fraction of catalog rows that are spurious (uniform on the image, not in the sky).
    ref_noise_mas : float
        Gaussian noise per axis of the reference catalog positions (mas); also ``ra_error`` and
        ``dec_error``.
    ref_fraction : float
        Fraction of the stars (the brightest) that are in the reference catalog.
    ref_two_param_fraction : float
        Fraction of reference stars published without pm/parallax (they still move).
    group_size : int
        Detectors per exposure sharing one pointing error (laid out on a grid with ``chip_gap``).
    pixel_scale : float
        Arcsec per pixel.
    shape : (int, int)
        Image shape ``(ny, nx)``.
    sip : bool or float
        Add the polynomial distortion (a few pixels at the corners; a float scales it): SIP for
        FITS, a Polynomial2D step (with a fitted inverse) for gwcs.
    center : (float, float)
        Field centre (RA, Dec) in deg.
    position_angle : float
        ``roll_ref`` (deg) of the exposure attitude at the field centre.
    dither : float or array_like
        A float: grid of exposures with a spacing of that fraction of the exposure footprint
        (0.3: stars in the middle of a 32-exposure mosaic are seen ~10 times); or an
        ``(n_groups, 2)`` array of (V2, V3) offsets in arcsec.
    chip_gap : float
        Gap between detectors of one exposure (arcsec).
    detector_rotation : float
        Maximum absolute rotation (deg) of a detector's axes with respect to V2/V3 (drawn).
    epoch : float
        Observation epoch (Julian year).
    epoch_gap : float
        Years from the reference catalog's ``ref_epoch`` to ``epoch``.
    pm_mean, pm_sigma : (float, float), float
        Bulk proper motion (pmra*, pmdec) and the per-axis scatter (mas/yr).
    fast_fraction : float
        Fraction of stars moving 30-300 mas/yr (parallax 5-30 mas).
    completeness : float
        Probability that a star on an image is detected.
    weights : bool
        Give sources individual noise (0.5-1.5 x, rms = ``centroid_noise_mas``) and a ``weight``
        column (1/sigma^2 in pixel^-2).
    mag_range : (float, float)
        Star magnitudes (dN/dm ~ 10**(0.3 m)).

    Returns
    -------
    SimScene
    """
    if kind not in ("fits", "gwcs"):
        raise ValueError(f"kind must be 'fits' or 'gwcs', not {kind!r}")
    if n_images < 1 or group_size < 1 or n_images % group_size:
        raise ValueError("n_images must be a positive multiple of group_size")
    if not 0.0 <= spurious_fraction < 1.0:
        raise ValueError("spurious_fraction must be in [0, 1)")
    params = dict(n_images=n_images, n_sources=n_sources, kind=kind, seed=seed,
                  shift_range=tuple(shift_range), rot_range=tuple(rot_range), frame_error=frame_error,
                  centroid_noise_mas=centroid_noise_mas, spurious_fraction=spurious_fraction,
                  ref_noise_mas=ref_noise_mas, ref_fraction=ref_fraction,
                  ref_two_param_fraction=ref_two_param_fraction, group_size=group_size,
                  pixel_scale=pixel_scale, shape=tuple(shape), sip=sip, center=tuple(center),
                  position_angle=position_angle, dither=dither, chip_gap=chip_gap,
                  detector_rotation=detector_rotation, epoch=epoch, epoch_gap=epoch_gap,
                  pm_mean=tuple(pm_mean), pm_sigma=pm_sigma, fast_fraction=fast_fraction,
                  completeness=completeness, weights=weights, mag_range=tuple(mag_range))
    ss = np.random.SeedSequence(seed)
    rng_geom, rng_pert, rng_star, rng_ref, rng_cat = (np.random.default_rng(s) for s in ss.spawn(5))
    cat_seeds = np.random.SeedSequence(seed + 7919).spawn(n_images)
    ny, nx = shape
    n_groups = n_images // group_size
    ref_epoch = epoch - epoch_gap

    # ---------------- instrument: detectors of one exposure in the focal plane -----------------
    f0 = np.asarray(DEFAULT_V2V3_CENTER, dtype=np.float64)
    width, height = nx * pixel_scale, ny * pixel_scale
    det_off = _grid_offsets(group_size, (width + chip_gap, height + chip_gap))
    ncol = math.ceil(math.sqrt(group_size))
    nrow = math.ceil(group_size / ncol)
    foot = (ncol * width + (ncol - 1) * chip_gap, nrow * height + (nrow - 1) * chip_gap)
    theta_d = np.radians(rng_geom.uniform(-detector_rotation, detector_rotation, group_size))
    parity = np.diag([-1.0, 1.0])
    lins = [pixel_scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) @ parity
            for t in theta_d]
    dist = None
    inv_dist = None
    inv_resid = 0.0
    if sip:
        dist = _Distortion.default(shape, 1.0 if sip is True else float(sip))
        if kind == "gwcs":
            ix, iy, inv_resid = _fitted_inverse(tuple(shape), 1.0 if sip is True else float(sip))
            inv_dist = (ix, iy)

    # ---------------- exposures: attitudes, dithers, pointing errors ---------------------------
    att_c = _jwst_matrix(f0[0], f0[1], position_angle, center[0], center[1])
    if np.isscalar(dither):
        offsets = _grid_offsets(n_groups, (float(dither) * foot[0], float(dither) * foot[1]))
    else:
        offsets = np.asarray(dither, dtype=np.float64).reshape(n_groups, 2)
    u0 = _unit(f0[0] / 3600.0, f0[1] / 3600.0)
    frame = np.eye(3) if frame_error is None else _sky_error(_unit(*center), *frame_error)
    att_true, att_pert, shifts, rots, gcenters = [], [], [], [], []
    for g in range(n_groups):
        fo = f0 + offsets[g]
        a = att_c @ _rotation_taking(u0, _unit(fo[0] / 3600.0, fo[1] / 3600.0))
        c = a @ u0
        d = rng_pert.uniform(*shift_range)
        phi = rng_pert.uniform(0.0, 2.0 * math.pi)
        rot = rng_pert.uniform(*rot_range) * rng_pert.choice((-1.0, 1.0))
        shift = np.array([d * math.sin(phi), d * math.cos(phi)])  # (east, north)
        att_true.append(a)
        att_pert.append(frame @ _sky_error(c, shift[0], shift[1], rot) @ a)
        shifts.append(shift)
        rots.append(rot)
        gcenters.append(c)

    geoms_true, geoms_pert = [], []
    for i in range(n_images):
        g, k = divmod(i, group_size)
        fd = f0 + det_off[k]
        geoms_true.append(_detector_geom(kind, att_true[g], fd, lins[k], shape, dist))
        geoms_pert.append(_detector_geom(kind, att_pert[g], fd, lins[k], shape, dist))

    # ---------------- stars: a rectangle (in the tangent plane at the centre) over the mosaic ---
    # Stars are uniform in gnomonic coordinates (xi, eta) along the exposures' V2/V3 axes at the
    # field centre (uniform on the sky to ~1.5 theta**2, i.e. 1e-6 over arcminutes), generated
    # already sorted by xi so that each exposure's candidates are a contiguous slice.
    c0 = _unit(*center)
    e2c, n2c = _east_north(u0)
    ex, ey = att_c @ e2c, att_c @ n2c

    def plane(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = v @ c0
        return (v @ ex) / d, (v @ ey) / d

    cx = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    cy = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    corners = [gm.pix2vec(cx, cy) for gm in geoms_true]
    cxi, ceta = plane(np.concatenate(corners))
    r_mosaic = float(np.max(np.arccos(np.clip(np.concatenate(corners) @ c0, -1, 1))))
    margin = (2.0 * max(shift_range) + 10.0) * _ARCSEC2RAD + math.radians(max(rot_range)) * r_mosaic
    xi0, xi1 = cxi.min() - margin, cxi.max() + margin
    eta0, eta1 = ceta.min() - margin, ceta.max() + margin
    area_img = nx * ny * (pixel_scale * _ARCSEC2RAD) ** 2
    n_stars = int(round(n_sources / area_img * (xi1 - xi0) * (eta1 - eta0)))
    gaps = rng_star.exponential(size=n_stars + 1)
    xi = np.cumsum(gaps)
    xi = xi0 + (xi1 - xi0) * (xi[:n_stars] / xi[n_stars])   # sorted uniform order statistics
    eta = rng_star.uniform(eta0, eta1, n_stars)
    vx = c0[0] + xi * ex[0] + eta * ey[0]
    vy = c0[1] + xi * ex[1] + eta * ey[1]
    vz = c0[2] + xi * ex[2] + eta * ey[2]
    norm = 1.0 / np.sqrt(vx * vx + vy * vy + vz * vz)
    vx *= norm
    vy *= norm
    vz *= norm
    mag = _draw_mags(rng_star, n_stars, *mag_range)
    pmra = pm_mean[0] + rng_star.normal(0.0, pm_sigma, n_stars)
    pmdec = pm_mean[1] + rng_star.normal(0.0, pm_sigma, n_stars)
    plx = np.maximum(rng_star.lognormal(math.log(0.5), 0.7, n_stars), 0.1)
    fast = np.nonzero(rng_star.uniform(size=n_stars) < fast_fraction)[0]
    speed, ang = rng_star.uniform(30.0, 300.0, fast.size), rng_star.uniform(0.0, 2.0 * math.pi, fast.size)
    pmra[fast], pmdec[fast] = speed * np.sin(ang), speed * np.cos(ang)
    plx[fast] = rng_star.uniform(5.0, 30.0, fast.size)
    rv = np.where(rng_star.uniform(size=n_stars) < 0.1, rng_star.normal(0.0, 40.0, n_stars), np.nan)
    ra_s, dec_s = _radec_xyz(vx, vy, vz)

    # ---------------- reference catalog ------------------------------------------------------
    n_ref = int(round(ref_fraction * n_stars))
    ref_idx = np.sort(np.argpartition(mag, n_ref - 1)[:n_ref]) if 0 < n_ref < n_stars else np.arange(n_ref)
    two_par = rng_ref.uniform(size=n_ref) < ref_two_param_fraction
    ra_cat, dec_cat = ra_s[ref_idx], dec_s[ref_idx]  # noise-free catalog positions at ref_epoch
    pmra_t, pmdec_t, plx_t = pmra.copy(), pmdec.copy(), plx.copy()
    if epoch_gap != 0.0 and n_ref:
        ra2, dec2, pmr2, pmd2, px2 = _pmsafe(ra_cat, dec_cat, pmra[ref_idx], pmdec[ref_idx], plx[ref_idx],
                                             np.nan_to_num(rv[ref_idx]), ref_epoch, epoch)
        ra_s[ref_idx], dec_s[ref_idx] = ra2, dec2
        rx, ry, rz = _unit_xyz(ra2, dec2)
        vx[ref_idx], vy[ref_idx], vz[ref_idx] = rx, ry, rz
        pmra_t[ref_idx], pmdec_t[ref_idx], plx_t[ref_idx] = pmr2, pmd2, px2  # motion at `epoch`
    # catalog noise: small-angle offsets east/north (second-order error ~1e-15 rad)
    cosd = np.cos(np.radians(dec_cat))
    dec_n = dec_cat + rng_ref.normal(0.0, ref_noise_mas, n_ref) / 3.6e6
    ra_n = (ra_cat + rng_ref.normal(0.0, ref_noise_mas, n_ref) / 3.6e6 / cosd) % 360.0
    cat_pmra, cat_pmdec, cat_plx, cat_rv = (a[ref_idx] for a in (pmra, pmdec, plx, rv))
    for a in (cat_pmra, cat_pmdec, cat_plx, cat_rv):
        a[two_par] = np.nan
    refcat = Table({
        "RA": ra_n, "DEC": dec_n,
        "source_id": np.arange(n_ref, dtype=np.int64) * 16 + 4_000_000_000_000_003,
        "ra": ra_n, "dec": dec_n,
        "ra_error": np.full(n_ref, float(ref_noise_mas)), "dec_error": np.full(n_ref, float(ref_noise_mas)),
        "pmra": cat_pmra, "pmdec": cat_pmdec, "parallax": cat_plx, "radial_velocity": cat_rv,
        "ref_epoch": np.full(n_ref, float(ref_epoch)), "mag": mag[ref_idx],
    }, copy=False, meta={"name": "refcat", "ref_epoch": float(ref_epoch), "obs_epoch": float(epoch)})
    for col, unit in (("RA", "deg"), ("DEC", "deg"), ("ra", "deg"), ("dec", "deg"), ("ra_error", "mas"),
                      ("dec_error", "mas"), ("pmra", "mas / yr"), ("pmdec", "mas / yr"),
                      ("parallax", "mas"), ("radial_velocity", "km / s"), ("ref_epoch", "yr")):
        refcat[col].unit = unit

    ref_row = np.full(n_stars, -1, np.int64)
    ref_row[ref_idx] = np.arange(n_ref)
    stars = Table({"ra": ra_s, "dec": dec_s, "mag": mag, "pmra": pmra_t, "pmdec": pmdec_t,
                   "parallax": plx_t, "radial_velocity": rv, "ref_row": ref_row}, copy=False)

    # ---------------- images: WCS objects and catalogs ---------------------------------------
    sigma_px = centroid_noise_mas / (1000.0 * pixel_scale)
    flux = 10.0 ** (-0.4 * (mag - 25.0))
    images: list[SimImage] = []
    for g in range(n_groups):
        members = range(g * group_size, (g + 1) * group_size)
        gxi, geta = plane(np.concatenate([corners[i] for i in members]))
        pad = 2.0 * _ARCSEC2RAD
        lo, hi = np.searchsorted(xi, [gxi.min() - pad, gxi.max() + pad])
        sel = np.nonzero((eta[lo:hi] >= geta.min() - pad) & (eta[lo:hi] <= geta.max() + pad))[0] + lo
        gx, gy, gz = vx[sel], vy[sel], vz[sel]
        for i in members:
            crng = np.random.default_rng(cat_seeds[i])
            gm = geoms_true[i]
            x, y = gm.xyz2pix(gx, gy, gz)
            keep = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
            if completeness < 1.0:
                keep &= crng.uniform(size=keep.size) < completeness
            idx = sel[keep]
            x, y = x[keep], y[keep]
            n_real = idx.size
            n_spur = int(round(n_real * spurious_fraction / (1.0 - spurious_fraction)))
            n_tot = n_real + n_spur
            if weights:
                sig = sigma_px * crng.uniform(0.5, 1.5, n_tot) / math.sqrt(13.0 / 12.0)
            else:
                sig = np.full(n_tot, sigma_px)
            perm = crng.permutation(n_tot)
            xs = np.concatenate((x, crng.uniform(-0.5, nx - 0.5, n_spur)))[perm]
            ys = np.concatenate((y, crng.uniform(-0.5, ny - 0.5, n_spur)))[perm]
            sig = sig[perm]
            xs += crng.normal(0.0, 1.0, n_tot) * sig
            ys += crng.normal(0.0, 1.0, n_tot) * sig
            spur_flux = 10.0 ** (-0.4 * (_draw_mags(crng, n_spur, *mag_range) - 25.0))
            fl = np.concatenate((flux[idx], spur_flux))[perm]
            truth = np.concatenate((idx, np.full(n_spur, -1, np.int64)))[perm]
            # a measured centroid is on the image (gwcs returns NaN outside its bounding box)
            ok = (xs >= -0.5) & (xs < nx - 0.5) & (ys >= -0.5) & (ys < ny - 0.5)
            if not ok.all():
                xs, ys, sig, fl, truth = xs[ok], ys[ok], sig[ok], fl[ok], truth[ok]
            name = f"g{g:03d}_d{i - g * group_size}" if group_size > 1 else f"im{i:03d}"
            cols = {"x": xs, "y": ys, "flux": fl}
            if weights:
                cols["weight"] = 1.0 / sig ** 2
            cat = Table(cols, copy=False, meta={"name": name})
            if kind == "fits":
                wt, wp, info_t, info_p = _fits_wcs(gm), _fits_wcs(geoms_pert[i]), None, None
            else:
                wt, info_t = _gwcs_wcs(gm, name, inv_dist)
                wp, info_p = _gwcs_wcs(geoms_pert[i], name, inv_dist)
            images.append(SimImage(
                wcs=wp, wcs_true=wt, wcsinfo=info_p, catalog=cat, truth_index=truth,
                group_id=g, shape=(ny, nx), name=name, epoch=float(epoch), wcsinfo_true=info_t,
                shift_arcsec=shifts[g], rotation_deg=float(rots[g]), group_center=gcenters[g],
                sigma_px=sig, geom=gm))

    params.update(ref_epoch=float(ref_epoch), n_stars=n_stars, n_ref=n_ref, n_groups=n_groups,
                  sigma_px=sigma_px, star_density_arcsec2=n_sources / (nx * ny * pixel_scale ** 2),
                  mosaic_radius_arcsec=r_mosaic / _ARCSEC2RAD,
                  star_box_arcsec=((xi0 / _ARCSEC2RAD, xi1 / _ARCSEC2RAD),
                                   (eta0 / _ARCSEC2RAD, eta1 / _ARCSEC2RAD)),
                  v2v3_center=tuple(f0), dither_offsets_arcsec=offsets,
                  inverse_distortion_residual_px=inv_resid)
    return SimScene(images=images, refcat=refcat, stars=stars, params=params, ref_truth_index=ref_idx)


# ============================================================================================
# tweakwcs correctors
# ============================================================================================
def make_correctors(scene: SimScene) -> list:
    """tweakwcs correctors of the PERTURBED WCSs (fresh copies of WCS and catalog each call).

    Parameters
    ----------
    scene : SimScene

    Returns
    -------
    list
        ``FITSWCSCorrector(wcs, meta=...)`` or ``JWSTWCSCorrector(wcs, wcsinfo, meta=...)``, in
        ``scene.images`` order, with ``meta = {"catalog": Table, "group_id": int, "name": str}``.
    """
    from tweakwcs.correctors import FITSWCSCorrector, JWSTWCSCorrector

    out = []
    for im in scene.images:
        meta = {"catalog": im.catalog.copy(), "group_id": im.group_id, "name": im.name}
        if im.wcsinfo is None:
            out.append(FITSWCSCorrector(im.wcs.deepcopy(), meta=meta))
        else:
            out.append(JWSTWCSCorrector(copy.deepcopy(im.wcs), dict(im.wcsinfo), meta=meta))
    return out


def write_fits_inputs(scene: SimScene, folder, tag: str) -> list[dict]:
    """Write a FITS scene's images as ``aligner`` inputs in ``folder``: each WCS as a text header
    (``<tag>_<name>.hdr``, with NAXIS1/2) and its catalog as ECSV; returns their manifest entries
    (paths relative to ``folder``)."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for im in scene.images:
        h = im.wcs.to_header(relax=True)
        h.insert(0, ("NAXIS", 2))
        h.insert(1, ("NAXIS1", im.shape[1]))
        h.insert(2, ("NAXIS2", im.shape[0]))
        h.totextfile(folder / f"{tag}_{im.name}.hdr", overwrite=True)
        im.catalog.write(folder / f"{tag}_{im.name}_cat.ecsv", overwrite=True)
        images.append({"wcs": f"{tag}_{im.name}.hdr", "catalog": f"{tag}_{im.name}_cat.ecsv",
                       "group_id": im.group_id, "epoch": im.epoch})
    return images


def reference_at_epoch(scene: SimScene, epoch: float | None = None) -> Table:
    """The reference catalog with ``RA``/``DEC`` propagated to ``epoch`` (default: the
    observation epoch) by :func:`astrodb.epoch.propagate` (2-parameter rows stay put).

    Parameters
    ----------
    scene : SimScene
    epoch : float, optional
        Julian year.

    Returns
    -------
    astropy.table.Table
        A copy of ``scene.refcat`` with ``RA``, ``DEC`` replaced.
    """
    from astrodb.epoch import propagate

    cat = scene.refcat.copy()
    ep = scene.params["epoch"] if epoch is None else epoch
    p = propagate(np.asarray(cat["ra"]), np.asarray(cat["dec"]), np.asarray(cat["pmra"]),
                  np.asarray(cat["pmdec"]), np.asarray(cat["parallax"]),
                  np.asarray(cat["radial_velocity"]), np.asarray(cat["ref_epoch"]), ep)
    cat["RA"], cat["DEC"] = p.ra, p.dec
    cat.meta["epoch"] = float(ep)
    return cat


def make_sparse_scene(n_ref: int, spurious: float, shift: float, kind: str = "fits", *, seed: int = 0,
                      rotation: float = 0.005, **kwargs) -> tuple[SimScene, Table]:
    """One image whose reference has exactly ``n_ref`` stars on the chip (a high-latitude field
    against Gaia): the image's detections are those stars plus others that are not in the
    reference, a fraction ``spurious`` of all detections.

    Parameters
    ----------
    n_ref : int
        Reference stars on the chip (all detected).
    spurious : float
        Fraction of the detections that are not reference stars, in [0, 1).
    shift : float
        Pointing error (arcsec, random direction); ``rotation`` (deg, random sign) on top.
    kind : {"fits", "gwcs"}
    seed : int
    **kwargs
        Passed to :func:`make_scene`.

    Returns
    -------
    (SimScene, astropy.table.Table)
        The scene (its image catalog trimmed) and the reference (``RA``, ``DEC``, ``mag``, at
        the observation epoch).
    """
    n_other = int(round(n_ref * spurious / (1.0 - spurious)))
    scene = make_scene(1, max(4 * (n_ref + n_other), 200), kind, seed=seed, shift_range=(shift, shift),
                       rot_range=(rotation, rotation), spurious_fraction=0.5, **kwargs)
    im = scene.images[0]
    rng = np.random.default_rng([seed, 7])
    detected = np.isin(scene.ref_truth_index, im.truth_index[im.truth_index >= 0])
    if np.count_nonzero(detected) < n_ref:
        raise ValueError(f"only {np.count_nonzero(detected)} reference stars on the chip, {n_ref} asked")
    pick = rng.choice(np.nonzero(detected)[0], n_ref, replace=False)
    ref = reference_at_epoch(scene)[pick]["RA", "DEC", "mag"]
    is_ref = np.isin(im.truth_index, scene.ref_truth_index[pick])
    others = np.nonzero(~is_ref)[0]
    if len(others) < n_other:
        raise ValueError(f"only {len(others)} other detections, {n_other} asked")
    keep = np.sort(np.concatenate([np.nonzero(is_ref)[0], rng.choice(others, n_other, replace=False)]))
    im.catalog = im.catalog[keep]
    im.truth_index = im.truth_index[keep]
    if len(im.sigma_px) == len(is_ref):
        im.sigma_px = im.sigma_px[keep]
    return scene, ref


# ============================================================================================
# accuracy metrics
# ============================================================================================
def _wcs_of(obj: Any) -> Any:
    """The WCS of a WCS, a tweakwcs corrector (``.wcs``) or a SimImage (``.wcs``)."""
    if hasattr(obj, "pixel_to_world_values") and not isinstance(obj, SimImage):
        return obj
    return obj.wcs


def _pix2vec(wcs: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Unit vectors of 0-based pixels through ``wcs`` (astropy WCS incl. SIP, or gwcs without
    its bounding box)."""
    from astropy.wcs import WCS

    if isinstance(wcs, WCS):
        ra, dec = wcs.all_pix2world(x, y, 0)
    elif hasattr(wcs, "forward_transform"):
        ra, dec = wcs(x, y, with_bounding_box=False)
    else:
        ra, dec = wcs.pixel_to_world_values(x, y)
    return _unit(np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64))


def _grid(shape: tuple[int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    x, y = np.meshgrid(np.linspace(0.0, nx - 1.0, n), np.linspace(0.0, ny - 1.0, n))
    return x.ravel(), y.ravel()


def wcs_error_mas(wcs: Any, wcs_true: Any, shape: tuple[int, int], n: int = 16) -> tuple[float, float]:
    """Sky separation between two WCSs over an image.

    Parameters
    ----------
    wcs, wcs_true : astropy.wcs.WCS or gwcs.WCS (or a tweakwcs corrector)
    shape : (int, int)
        Image shape ``(ny, nx)``.
    n : int
        The pixels compared are the ``n x n`` grid ``linspace(0, nx - 1, n) x
        linspace(0, ny - 1, n)`` (first to last pixel centre, 0-based).

    Returns
    -------
    rms, max : float
        RMS and maximum over the grid of the great-circle distance (mas) between the sky
        positions the two WCSs give to the same pixel.
    """
    x, y = _grid(shape, n)
    d = _sep_mas(_pix2vec(_wcs_of(wcs), x, y), _pix2vec(_wcs_of(wcs_true), x, y))
    return float(np.sqrt(np.mean(d * d))), float(d.max())


def absolute_error_mas(correctors_or_wcss: Sequence[Any], scene: SimScene, n: int = 16) -> float:
    """Absolute astrometric error of a set of WCSs against the truth.

    Parameters
    ----------
    correctors_or_wcss : sequence
        One WCS (or tweakwcs corrector, or SimImage) per ``scene.images``, same order.
    scene : SimScene
    n : int
        Grid size of :func:`wcs_error_mas`.

    Returns
    -------
    float
        ``sqrt(mean_i rms_i**2)`` with ``rms_i = wcs_error_mas(w_i, images[i].wcs_true)[0]``:
        the RMS (mas) over all grid points of all images of the distance between the position
        a WCS gives and the true one.
    """
    if len(correctors_or_wcss) != len(scene.images):
        raise ValueError("one WCS per scene image is needed")
    r = [wcs_error_mas(w, im.wcs_true, im.shape, n)[0] for w, im in zip(correctors_or_wcss, scene.images)]
    return float(np.sqrt(np.mean(np.square(r))))


def relative_error_mas(correctors_or_wcss: Sequence[Any], scene: SimScene, n: int = 16) -> float:
    """How well the images agree with each other, independent of any error common to all.

    Definition. Let ``P_i`` be the true sky positions of the ``n x n`` pixel grid of image
    ``i`` (as in :func:`wcs_error_mas`) and ``P`` their union. For each image ``j`` and sky
    point ``p`` of ``P`` inside image ``j`` (``p`` maps through ``wcs_true_j`` into the pixel
    area ``[-0.5, nx - 0.5) x [-0.5, ny - 0.5)``), the error vector of image ``j`` at ``p`` is

        e_j(p) = s(w_j(x_j)) - s(p),   x_j = wcs_true_j^-1(p)

    (``s`` the unit vector, so ``e_j`` is the tangent error vector in radians, reported in
    mas). The mean error field at ``p`` is ``m(p) = mean of e_j(p)`` over the ``k(p)`` images
    containing ``p``. Then, over the points with ``k(p) >= 2``,

        rel_i = sqrt(mean over p in P_i of |e_i(p) - m(p)|**2)
        relative error = sqrt(mean over images i of rel_i**2)

    (images without such points are left out; NaN if there are none). An error field common
    to all images (any shift, rotation or affine map of the frame) cancels. For independent
    per-image errors of RMS ``sigma`` at a point seen by ``k`` images, the expected value of
    ``|e_i - m|**2`` is ``sigma**2 (k - 1)/k`` (no Bessel correction is applied).

    Parameters
    ----------
    correctors_or_wcss : sequence
        One WCS (or tweakwcs corrector, or SimImage) per ``scene.images``, same order.
    scene : SimScene
    n : int
        Grid size per image.

    Returns
    -------
    float
        Relative error (mas).
    """
    ims = scene.images
    if len(correctors_or_wcss) != len(ims):
        raise ValueError("one WCS per scene image is needed")
    pts = [im.geom.pix2vec(*_grid(im.shape, n)) for im in ims]
    owner = np.repeat(np.arange(len(ims)), [p.shape[0] for p in pts])
    allp = np.concatenate(pts)
    m = allp.shape[0]
    err = np.full((len(ims), m, 3), np.nan)
    for j, (w, im) in enumerate(zip(correctors_or_wcss, ims)):
        ny, nx = im.shape
        near = allp @ im.group_center > 0.5  # cheap hemisphere guard for the projection
        x = np.full(m, np.nan)
        y = np.full(m, np.nan)
        x[near], y[near] = im.geom.vec2pix(allp[near])
        inside = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
        if inside.any():
            err[j, inside] = _pix2vec(_wcs_of(w), x[inside], y[inside]) - allp[inside]
    covered = ~np.isnan(err[..., 0])
    k = covered.sum(axis=0)
    mean = np.nansum(err, axis=0) / np.maximum(k, 1)[:, None]
    res = err[owner, np.arange(m)] - mean
    d2 = np.sum(res * res, axis=1) * _RAD2MAS ** 2
    use = k >= 2
    per_image = [np.mean(d2[(owner == i) & use]) for i in range(len(ims)) if np.any((owner == i) & use)]
    if not per_image:
        return float("nan")
    return float(np.sqrt(np.mean(per_image)))
