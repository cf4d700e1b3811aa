"""Sky regions a query can ask for: a cone, a spherical polygon, or a WCS footprint.

Each region knows a bounding cap (centre + radius, for the index pre-filter) and tests
membership exactly and vectorized (:meth:`contains`), so that a query returns precisely the
sources a brute-force selection would.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.coordinates import SkyCoord, angular_separation
import astropy.units as u

from ..errors import QueryError, one_line


def to_degrees(value, name: str) -> float:
    """Return ``value`` (number in degrees, Angle or angular Quantity) as float degrees."""
    if isinstance(value, u.Quantity):
        try:
            return float(value.to_value(u.deg))
        except u.UnitConversionError:
            raise QueryError(f"{name} must be an angle, got unit {value.unit}") from None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise QueryError(f"{name} must be a number of degrees or an angle, got {value!r}") from None
    if not math.isfinite(out):
        raise QueryError(f"{name} must be finite, got {value!r}")
    return out


def unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    """Return ICRS unit vectors, shape (n, 3), for positions in degrees."""
    ra = np.radians(np.asarray(ra_deg, float))
    dec = np.radians(np.asarray(dec_deg, float))
    cd = np.cos(dec)
    return np.stack((cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)), axis=-1)


def separation_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Angular distance in degrees (Vincenty formula: accurate at all separations)."""
    return np.degrees(angular_separation(np.radians(ra1), np.radians(dec1),
                                         np.radians(ra2), np.radians(dec2)))


def _check_center(ra: float, dec: float) -> tuple[float, float]:
    if not -90.0 <= dec <= 90.0:
        raise QueryError(f"dec must be within [-90, 90] deg, got {dec}")
    return ra % 360.0, dec


@dataclass(frozen=True)
class Cone:
    """All positions within ``radius`` degrees of (``ra``, ``dec``)."""

    ra: float
    dec: float
    radius: float

    @classmethod
    def create(cls, ra, dec, radius) -> "Cone":
        """Build a cone from degrees or angles, validating every value."""
        ra_d, dec_d = _check_center(to_degrees(ra, "ra"), to_degrees(dec, "dec"))
        r = to_degrees(radius, "radius")
        if not 0.0 < r <= 180.0:
            raise QueryError(f"radius must be within (0, 180] deg, got {r}")
        return cls(ra_d, dec_d, r)

    @property
    def cap(self) -> tuple[float, float, float]:
        """Bounding cap (ra, dec, radius) in degrees."""
        return self.ra, self.dec, self.radius

    def contains(self, ra, dec) -> np.ndarray:
        return separation_deg(self.ra, self.dec, ra, dec) <= self.radius


def _check_simple(x: np.ndarray, y: np.ndarray) -> None:
    """Raise :class:`QueryError` unless the polygon (x, y) (gnomonic, so great-circle edges are
    straight) has an area and no two of its edges cross: a region, not a line or a bow tie."""
    n = len(x)
    if n >= 4:
        _check_no_crossing(x, y)
    span = max(float(np.ptp(x)), float(np.ptp(y)), 1e-300)
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    if area <= 1e-12 * span * span:
        raise QueryError("polygon has no area: its vertices lie on one great circle")


def _check_no_crossing(x: np.ndarray, y: np.ndarray) -> None:
    """Raise :class:`QueryError` if two edges of the polygon (x, y) cross (a bow tie)."""
    n = len(x)
    # Edge k runs from vertex k to k + 1; edges sharing a vertex are not compared.
    ax, ay, bx, by = x, y, np.roll(x, -1), np.roll(y, -1)
    i, j = np.triu_indices(n, 2)
    keep = ~((i == 0) & (j == n - 1))
    i, j = i[keep], j[keep]
    # Orientations within rounding of zero count as touching, not crossing (a repeated vertex,
    # an edge of length 1e-16, three nearly collinear vertices).
    eps = 1e-12 * max(float(np.ptp(x)), float(np.ptp(y)), 1e-300) ** 2

    def side(px, py, qx, qy, rx, ry):
        cross = (qx - px) * (ry - py) - (qy - py) * (rx - px)
        return np.where(np.abs(cross) > eps, np.sign(cross), 0.0)

    d1 = side(ax[i], ay[i], bx[i], by[i], ax[j], ay[j])
    d2 = side(ax[i], ay[i], bx[i], by[i], bx[j], by[j])
    d3 = side(ax[j], ay[j], bx[j], by[j], ax[i], ay[i])
    d4 = side(ax[j], ay[j], bx[j], by[j], bx[i], by[i])
    if np.any((d1 * d2 < 0) & (d3 * d4 < 0)):
        raise QueryError("polygon edges cross each other: give the vertices in order around the region")


class Polygon:
    """A spherical polygon with great-circle edges, given by its vertices (any orientation).

    The interior is the smaller of the two regions the boundary encloses, which must fit within
    a hemisphere (every image footprint does). Membership is decided in the gnomonic projection
    about the vertices' mean direction, where great circles are straight lines, so the planar
    even-odd rule is exact on the sphere.
    """

    def __init__(self, ra_deg, dec_deg) -> None:
        ra = np.asarray(ra_deg, float).ravel()
        dec = np.asarray(dec_deg, float).ravel()
        if ra.shape != dec.shape or ra.size < 3:
            raise QueryError(f"a polygon needs at least 3 (ra, dec) vertices, got {ra.size}")
        if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
            raise QueryError("polygon vertices must be finite")
        if np.any(np.abs(dec) > 90):
            raise QueryError("polygon vertex dec must be within [-90, 90] deg")
        v = unit_vectors(ra, dec)
        c = v.sum(axis=0)
        norm = np.linalg.norm(c)
        if norm < 1e-12 or np.min(v @ (c / norm)) <= 1e-9:
            raise QueryError("polygon does not fit within a hemisphere; split it into smaller ones")
        self.ra, self.dec = ra % 360.0, dec
        self._c = c / norm
        # Tangent-plane basis at the centre (any orthonormal pair will do).
        ref = np.array([0.0, 0.0, 1.0]) if abs(self._c[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        e1 = np.cross(ref, self._c)
        self._e1 = e1 / np.linalg.norm(e1)
        self._e2 = np.cross(self._c, self._e1)
        self._x, self._y = self._project(v)
        _check_simple(self._x, self._y)
        cra = math.degrees(math.atan2(self._c[1], self._c[0])) % 360.0
        cdec = math.degrees(math.asin(max(-1.0, min(1.0, self._c[2]))))
        # A cap of radius < 90 deg is convex, so it holds the great-circle edges between vertices.
        self._cap = (cra, cdec, float(np.max(separation_deg(cra, cdec, self.ra, self.dec))))

    @classmethod
    def create(cls, vertices) -> "Polygon":
        """Build from a SkyCoord, an (n, 2) array of (ra, dec) degrees, or a Polygon."""
        if isinstance(vertices, Polygon):
            return vertices
        if isinstance(vertices, SkyCoord):
            icrs = vertices.icrs
            return cls(icrs.ra.deg, icrs.dec.deg)
        arr = np.asarray(vertices, float)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise QueryError(f"polygon vertices must have shape (n, 2) as (ra, dec) degrees, got {arr.shape}")
        return cls(arr[:, 0], arr[:, 1])

    @property
    def cap(self) -> tuple[float, float, float]:
        """Bounding cap (ra, dec, radius) in degrees."""
        return self._cap

    @property
    def vertices(self) -> np.ndarray:
        """Vertices as an (n, 2) array of (ra, dec) degrees."""
        return np.stack((self.ra, self.dec), axis=1)

    def _project(self, v: np.ndarray):
        d = v @ self._c
        with np.errstate(divide="ignore", invalid="ignore"):
            return (v @ self._e1) / d, (v @ self._e2) / d

    def contains(self, ra, dec) -> np.ndarray:
        v = unit_vectors(ra, dec).reshape(-1, 3)
        x, y = self._project(v)
        inside = np.zeros(len(v), dtype=bool)
        xs, ys = self._x, self._y
        for i in range(len(xs)):  # loop over the few edges, vectorized over the sources
            j = i - 1
            xi, yi, xj, yj = xs[i], ys[i], xs[j], ys[j]
            crosses = (yi > y) != (yj > y)
            with np.errstate(divide="ignore", invalid="ignore"):
                x_at = (xj - xi) * (y - yi) / (yj - yi) + xi
            inside ^= crosses & (x < x_at)
        return inside & (v @ self._c > 0)


def linear_wcs_finite(wcs) -> bool:
    """False for an astropy WCS whose CD/PC matrix, CRVAL or CRPIX is not finite (True for any
    other WCS, e.g. a gwcs): wcslib maps every pixel of a NaN CD to finite nonsense, so the
    mapped positions alone cannot tell."""
    prm = getattr(wcs, "wcs", None)
    if prm is None or not hasattr(prm, "get_pc"):
        return True
    matrix = prm.cd if prm.has_cd() else prm.get_pc() * np.asarray(prm.cdelt, float)[:, None]
    return bool(np.all(np.isfinite(matrix)) and np.all(np.isfinite(prm.crval)) and np.all(np.isfinite(prm.crpix)))


class WCSFootprint:
    """The sky area an image of ``shape`` (ny, nx) covers through ``wcs``.

    ``wcs`` is anything with the APE 14 low-level API (astropy.wcs.WCS, gwcs.WCS) whose world
    coordinates are (ra, dec) in degrees. A source is inside when its pixel position lies within
    the image's outer pixel edges (-0.5 .. n - 0.5), which follows distortion exactly.
    """

    _SAMPLES_PER_EDGE = 32

    def __init__(self, wcs, shape) -> None:
        if len(shape) != 2 or min(shape) <= 0:
            raise QueryError(f"image shape must be (ny, nx) with positive sizes, got {shape}")
        self.wcs = wcs
        self.ny, self.nx = int(shape[0]), int(shape[1])
        t = np.linspace(0.0, 1.0, self._SAMPLES_PER_EDGE, endpoint=False)
        x0, x1, y0, y1 = -0.5, self.nx - 0.5, -0.5, self.ny - 0.5
        bx = np.concatenate((x0 + t * (x1 - x0), np.full_like(t, x1), x1 - t * (x1 - x0), np.full_like(t, x0)))
        by = np.concatenate((np.full_like(t, y0), y0 + t * (y1 - y0), np.full_like(t, y1), y1 - t * (y1 - y0)))
        if not linear_wcs_finite(wcs):
            raise QueryError("the WCS has a non-finite CD/PC matrix or CRVAL: it maps the image nowhere")
        try:
            bra, bdec = (np.asarray(a, float) for a in wcs.pixel_to_world_values(bx, by))
            cra, cdec = (float(a) for a in wcs.pixel_to_world_values((self.nx - 1) / 2.0, (self.ny - 1) / 2.0))
        except Exception as exc:  # noqa: BLE001 - wcslib's SingularMatrixError and the like
            raise QueryError(f"the WCS cannot map pixels to the sky ({type(exc).__name__}: {one_line(exc)}): a "
                             "singular CD/PC matrix?") from None
        if not (np.all(np.isfinite(bra)) and np.all(np.isfinite(bdec)) and math.isfinite(cra)):
            raise QueryError("the WCS does not map the image's edges to the sky")
        self.boundary = np.stack((bra % 360.0, bdec), axis=1)
        r = float(np.max(separation_deg(cra, cdec, bra, bdec)))
        # Between two samples an edge can bulge outwards; 2% of the radius plus a sample spacing
        # is far above that for any real optical distortion.
        spacing = float(np.max(separation_deg(bra, bdec, np.roll(bra, 1), np.roll(bdec, 1))))
        self._cap = (cra % 360.0, cdec, min(r * 1.02 + spacing, 180.0))

    @property
    def cap(self) -> tuple[float, float, float]:
        """Bounding cap (ra, dec, radius) in degrees."""
        return self._cap

    def contains(self, ra, dec) -> np.ndarray:
        ra = np.asarray(ra, float)
        dec = np.asarray(dec, float)
        near = separation_deg(self._cap[0], self._cap[1], ra, dec) <= self._cap[2]
        inside = np.zeros(ra.shape, dtype=bool)
        if near.any():
            x, y = (np.asarray(a, float) for a in self.wcs.world_to_pixel_values(ra[near], dec[near]))
            with np.errstate(invalid="ignore"):
                inside[near] = (x >= -0.5) & (x < self.nx - 0.5) & (y >= -0.5) & (y < self.ny - 0.5)
        return inside


def _positive_int(header, *names: str) -> int | None:
    """The first of ``names`` that the header holds as a positive integer, else None."""
    for name in names:
        value = header.get(name)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


def image_shape(header) -> tuple[int, int] | None:
    """Image shape (NY, NX) of a FITS header, as ``aligner.make_corrector`` reads it.

    Parameters
    ----------
    header : astropy.io.fits.Header
        Header holding the image WCS.

    Returns
    -------
    tuple of int or None
        From NAXIS1/NAXIS2, else ZNAXIS1/ZNAXIS2 (tile-compressed images seen raw), else
        IMAGEW/IMAGEH (header-only files such as astrometry.net's); None when none is there.
    """
    # NAXISn count only when NAXIS says the HDU has two axes: a header-only file has NAXIS = 0.
    if header.get("NAXIS", 0) >= 2:
        nx, ny = _positive_int(header, "NAXIS1"), _positive_int(header, "NAXIS2")
        if nx and ny:
            return ny, nx
    nx, ny = _positive_int(header, "ZNAXIS1", "IMAGEW"), _positive_int(header, "ZNAXIS2", "IMAGEH")
    return (ny, nx) if nx and ny else None


def make_region(region):
    """Normalize a footprint ``region`` argument to a region object.

    Accepts a :class:`Polygon`, :class:`WCSFootprint`, ``(wcs, shape)`` tuple, SkyCoord of
    vertices, or an (n, 2) array of (ra, dec) vertices in degrees.
    """
    if isinstance(region, (Polygon, WCSFootprint, Cone)):
        return region
    if isinstance(region, tuple) and len(region) == 2 and hasattr(region[0], "world_to_pixel_values"):
        return WCSFootprint(region[0], region[1])
    return Polygon.create(region)
