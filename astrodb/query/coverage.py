"""Sky coverage as sets of nested HEALPix cells at one order: the cover of a region widened by a
distance, the cells a catalog is complete for, and membership of positions in them.

A coverage is held two ways: as a :class:`mocpy.MOC` while it is computed (unions, dilation,
complements), and as merged half-open ranges ``[lo, hi)`` of nested cells at :data:`COVER_ORDER`
(an ``(n, 2)`` int64 array) where it is stored and tested against rows. The tests on rows
(:func:`contains`) need numpy only, so they run in worker processes without importing mocpy.

Covers are outer approximations: every position within the requested distance of the region is
in a cell of the cover; the cover may hold a little more (up to about one cell).
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from ..store.schema import HEALPIX_ORDER
from .healpix import pixel_size_deg

#: HEALPix order (nested) of the cells a catalog's region is recorded at: 1.7' cells.
COVER_ORDER = 11
#: Bound on the distance from a cell's centre to its vertices, in cell sizes (the most
#: distorted HEALPix cells stay below 1.4; see :func:`astrodb.query.healpix.cone_ranges`).
_CELL_RADIUS = 1.5


def cell_radius_deg(order: int) -> float:
    """An upper bound (deg) on the distance from any order-``order`` cell's centre to its edge."""
    return _CELL_RADIUS * pixel_size_deg(order)


# --- ranges (numpy only) -------------------------------------------------------------------------

def contains(ranges: np.ndarray, order: int, hpx29: np.ndarray) -> np.ndarray:
    """Whether each order-29 pixel lies in one of the half-open order-``order`` cell ranges.

    Parameters
    ----------
    ranges : (n, 2) int64 array
        Sorted, disjoint ``[lo, hi)`` ranges of nested cells at ``order``.
    order : int
        Their HEALPix order.
    hpx29 : int64 array
        Nested order-29 pixels (:func:`astrodb.query.healpix.hpx29`).

    Returns
    -------
    numpy.ndarray of bool
    """
    cells = np.asarray(hpx29, np.int64) >> (2 * (HEALPIX_ORDER - order))
    if len(ranges) == 0:
        return np.zeros(cells.shape, bool)
    i = np.searchsorted(ranges[:, 0], cells, side="right") - 1
    ok = i >= 0
    out = np.zeros(cells.shape, bool)
    out[ok] = cells[ok] < ranges[i[ok], 1]
    return out


def union_ranges(parts: list[np.ndarray]) -> np.ndarray:
    """The merged union of several sets of ``[lo, hi)`` ranges."""
    parts = [np.asarray(p, np.int64).reshape(-1, 2) for p in parts if len(p)]
    if not parts:
        return np.empty((0, 2), np.int64)
    r = np.concatenate(parts)
    r = r[np.argsort(r[:, 0], kind="stable")]
    # A range starts a new run when it begins after every earlier range ended.
    ends = np.maximum.accumulate(r[:, 1])
    starts = np.concatenate(([True], r[1:, 0] > ends[:-1]))
    first = np.nonzero(starts)[0]
    last = np.concatenate((first[1:], [len(r)])) - 1
    return np.stack((r[first, 0], ends[last]), axis=1)


def cell_count(ranges: np.ndarray) -> int:
    """How many cells the ranges hold."""
    return int(np.sum(ranges[:, 1] - ranges[:, 0])) if len(ranges) else 0


def full_sky(order: int) -> np.ndarray:
    """The whole sky as ranges at ``order``."""
    return np.array([[0, 12 * 4 ** order]], np.int64)


def is_full_sky(ranges: np.ndarray, order: int) -> bool:
    return cell_count(ranges) == 12 * 4 ** order


def to_bytes(ranges: np.ndarray) -> bytes:
    """Ranges as stored: little-endian int64 pairs."""
    return np.ascontiguousarray(ranges, "<i8").tobytes()


def from_bytes(data: bytes | None) -> np.ndarray:
    """The ranges :func:`to_bytes` stored."""
    if not data:
        return np.empty((0, 2), np.int64)
    return np.frombuffer(bytes(data), "<i8").astype(np.int64).reshape(-1, 2)


def digest(ranges: np.ndarray, order: int, *extra) -> str:
    """A sha256 (hex) naming a set of cells (and ``extra`` values, e.g. epochs)."""
    h = hashlib.sha256(f"order {order};".encode())
    h.update(to_bytes(ranges))
    h.update(repr(tuple(extra)).encode())
    return h.hexdigest()


def describe_area(ranges: np.ndarray, order: int) -> str:
    """``12.3 deg²`` of the cells."""
    area = cell_count(ranges) * (4 * math.pi / (12 * 4 ** order)) * (180 / math.pi) ** 2
    return f"{area:.3g} deg²"


# --- MOCs (mocpy, imported when needed) ----------------------------------------------------------

def _u():
    import astropy.units as u

    return u


def empty_moc(order: int = COVER_ORDER):
    from mocpy import MOC

    return MOC.new_empty(order)


def moc_from_ranges(ranges: np.ndarray, order: int = COVER_ORDER):
    """A MOC of max order ``order`` holding the cells of ``ranges``."""
    from mocpy import MOC

    shift = 2 * (HEALPIX_ORDER - order)
    r = np.asarray(ranges, np.uint64).reshape(-1, 2) << np.uint64(shift)
    return MOC.from_depth29_ranges(order, r)


def moc_ranges(moc, order: int = COVER_ORDER) -> np.ndarray:
    """The cells of ``moc`` at ``order`` as merged ``[lo, hi)`` ranges (cells of a finer MOC
    are rounded outwards to whole order-``order`` cells)."""
    moc = at_order(moc, order)
    shift = 2 * (HEALPIX_ORDER - order)
    r = np.asarray(moc.to_depth29_ranges, np.uint64).reshape(-1, 2)
    if len(r) == 0:
        return np.empty((0, 2), np.int64)
    return (r >> np.uint64(shift)).astype(np.int64)


def at_order(moc, order: int):
    """``moc`` with max order ``order``: degraded (outwards) when finer, else the same cells."""
    from mocpy import MOC

    if moc.max_order > order:
        return moc.degrade_to_order(order)
    if moc.max_order < order:
        return MOC.from_depth29_ranges(order, moc.to_depth29_ranges)
    return moc


def _cones(ra, dec, radius: float, order: int):
    from mocpy import MOC

    u = _u()
    ra = np.atleast_1d(np.asarray(ra, float)) % 360.0
    dec = np.clip(np.atleast_1d(np.asarray(dec, float)), -90.0, 90.0)
    if len(ra) == 0:
        return empty_moc(order)
    if radius >= 180.0:
        return MOC.from_depth29_ranges(order, np.array([[0, 12 * 4 ** HEALPIX_ORDER]], np.uint64))
    if len(ra) == 1:
        return MOC.from_cone(lon=ra[0] * u.deg, lat=dec[0] * u.deg, radius=radius * u.deg, max_depth=order)
    return MOC.from_cones(lon=ra * u.deg, lat=dec * u.deg, radius=radius * u.deg, max_depth=order,
                          union_strategy="small_cones", n_threads=1)


def _edge_samples(ra: np.ndarray, dec: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points along the closed great-circle path through the vertices, no two consecutive
    ones more than ``step`` deg apart."""
    from .regions import separation_deg, unit_vectors

    a = unit_vectors(ra, dec)
    b = np.roll(a, -1, axis=0)
    length = separation_deg(ra, dec, np.roll(ra, -1), np.roll(dec, -1))
    # Points on the chord, normalized: their angular spacing is at most 1.42 times the even one
    # for edges below 90 deg, so 1.5 times as many points keep every gap under ``step``.
    n = np.maximum(np.ceil(1.5 * length / step).astype(int), 1)
    edge = np.repeat(np.arange(len(a)), n)
    t = (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
    p = a[edge] * (1 - t)[:, None] + b[edge] * t[:, None]
    p /= np.linalg.norm(p, axis=1)[:, None]
    return np.degrees(np.arctan2(p[:, 1], p[:, 0])) % 360.0, np.degrees(np.arcsin(np.clip(p[:, 2], -1, 1)))


def polygon_cover(ra, dec, pad_deg: float, order: int = COVER_ORDER, slack: float | None = None,
                  step: float | None = None):
    """Cells within ``pad_deg`` of the spherical polygon (great-circle edges) with these vertices.

    The interior (mocpy's polygon cover) and, around the boundary, cones of radius
    ``pad + step / 2 + slack`` at points no more than ``step`` apart along every edge (default
    ``step``: the larger of the pad and a cell).
    """
    from mocpy import MOC

    u = _u()
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    slack = cell_radius_deg(order) if slack is None else slack
    step = max(pad_deg, pixel_size_deg(order)) if step is None else step
    sra, sdec = _edge_samples(ra, dec, step)
    inside = MOC.from_polygon(lon=ra * u.deg, lat=dec * u.deg, max_depth=order)
    return inside.union(_cones(sra, sdec, pad_deg + step / 2 + slack, order))


def dilate(moc, distance_deg: float, order: int):
    """Cells (at ``order``) within ``distance_deg`` of ``moc``'s cells: cones of radius
    ``distance + cell radius`` around the centres of its border cells, added to it."""
    from astropy_healpix import healpix_to_lonlat

    moc = at_order(moc, order)
    if distance_deg <= 0 or moc.empty():
        return moc
    border = moc.difference(moc.contracted())
    cells = np.asarray(border.flatten(), np.int64)
    if len(cells) == 0:  # the whole sky
        return moc
    lon, lat = healpix_to_lonlat(cells, 2 ** order, order="nested")
    return moc.union(_cones(lon.deg, lat.deg, distance_deg + cell_radius_deg(order), order))


def erode(moc, distance_deg: float, order: int):
    """Cells (at ``order``) of ``moc`` farther than ``distance_deg`` from any cell outside it."""
    moc = at_order(moc, order)
    outside = moc.complement()
    if outside.empty():
        return moc
    return dilate(outside, distance_deg, order).complement()


def region_cover(shape, pad_deg: float, order: int = COVER_ORDER, slack: float | None = None,
                 step: float | None = None):
    """Cells within ``pad_deg`` of a region, at ``order`` (an outer cover, as a MOC).

    Parameters
    ----------
    shape : Cone, Polygon, WCSFootprint or mocpy.MOC
        The region (:mod:`astrodb.query.regions`), or a MOC (its cells).
    pad_deg : float
        Distance (deg) the region is widened by.
    order : int
        HEALPix order of the cells.
    slack : float, optional
        Extra radius (deg) against rounding in the covers; default one cell radius.
    step : float, optional
        Spacing (deg) of the points along a polygon's edges (:func:`polygon_cover`).

    Returns
    -------
    mocpy.MOC
    """
    from .regions import Cone, Polygon, WCSFootprint

    slack = cell_radius_deg(order) if slack is None else slack
    if isinstance(shape, Cone):
        return _cones(shape.ra, shape.dec, min(shape.radius + pad_deg + slack, 180.0), order)
    if isinstance(shape, Polygon):
        return polygon_cover(shape.ra, shape.dec, pad_deg, order, slack, step)
    if isinstance(shape, WCSFootprint):
        b = shape.boundary
        # Between two boundary samples an image edge can bulge out of the great circle by a
        # small fraction of their spacing; one spacing more is far above it (as for its cap).
        spacing = float(np.max(_gaps(b[:, 0], b[:, 1])))
        return polygon_cover(b[:, 0], b[:, 1], pad_deg + spacing, order, slack, step)
    if hasattr(shape, "to_depth29_ranges"):
        moc = at_order(shape, order)
        return dilate(moc, pad_deg, order) if pad_deg > 0 else moc
    raise TypeError(f"not a region: {type(shape).__name__}")


def _gaps(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    from .regions import separation_deg

    return separation_deg(ra, dec, np.roll(ra, -1), np.roll(dec, -1))
