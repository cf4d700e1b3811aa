"""Nested HEALPix indexing: the order-29 pixel stored with each source, and the pixel ranges
that cover a cone.

Coverage uses astropy-healpix's cone search, which is only approximately inclusive (cdshealpix
0.9.0 was measured here to miss a cell for a 10 deg cone at (349.4513, -20.3864)); the cone is
therefore padded by two pixel sizes before the search, and the exact cut happens afterwards on
the rows themselves.
"""
from __future__ import annotations

import math

import astropy.units as u
import numpy as np
from astropy_healpix import HEALPix, lonlat_to_healpix

from ..store.schema import HEALPIX_ORDER

# Coarsest and finest orders used for coverage: order 3 pixels are 7.3 deg, order 20 ~0.2 arcsec.
_MIN_ORDER, _MAX_ORDER = 0, 20
# Pixels per cone radius aimed for: finer costs more ranges, coarser reads more rows.
_PIXELS_PER_RADIUS = 6.0


def hpx29(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Return the nested order-29 HEALPix pixel (int64) of each position (degrees)."""
    return lonlat_to_healpix(np.asarray(ra_deg, float) * u.deg, np.asarray(dec_deg, float) * u.deg,
                             2 ** HEALPIX_ORDER, order="nested").astype(np.int64)


def pixel_size_deg(order: int) -> float:
    """Return the side of a HEALPix pixel of ``order`` (square root of its area), in degrees."""
    return math.degrees(math.sqrt(4 * math.pi / (12 * 4 ** order)))


def coverage_order(radius_deg: float) -> int:
    """Return the order whose pixels are about radius / 6 across (clipped to 0..20)."""
    target = radius_deg / _PIXELS_PER_RADIUS
    order = math.floor(math.log2(pixel_size_deg(0) / max(target, 1e-12)))
    return int(min(max(order, _MIN_ORDER), _MAX_ORDER))


def cone_ranges(ra_deg: float, dec_deg: float, radius_deg: float) -> np.ndarray:
    """Return inclusive order-29 index ranges, shape (n, 2), covering a cone.

    Every position within ``radius_deg`` of (ra, dec) has its :func:`hpx29` pixel in one of
    the ranges; the ranges may also hold positions outside the cone.
    """
    if radius_deg >= 90.0:
        return np.array([[0, 12 * 4 ** HEALPIX_ORDER - 1]], dtype=np.int64)
    order = coverage_order(radius_deg)
    # Two pixel sizes of padding: the centre-to-corner distance of the most distorted HEALPix
    # pixel is below 1.4 pixel sizes, so no overlapping pixel can be left out.
    padded = min(radius_deg + 2.0 * pixel_size_deg(order), 180.0)
    hp = HEALPix(nside=2 ** order, order="nested")
    pix = np.sort(hp.cone_search_lonlat(ra_deg * u.deg, dec_deg * u.deg, padded * u.deg).astype(np.int64))
    return pixel_ranges(pix, order)


def pixel_ranges(pixels: np.ndarray, order: int) -> np.ndarray:
    """Turn sorted nested pixels of ``order`` into merged inclusive order-29 ranges, shape (n, 2)."""
    if pixels.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    shift = 2 * (HEALPIX_ORDER - order)
    breaks = np.nonzero(np.diff(pixels) != 1)[0]
    starts = np.concatenate(([pixels[0]], pixels[breaks + 1]))
    ends = np.concatenate((pixels[breaks], [pixels[-1]]))
    return np.stack((starts << shift, ((ends + 1) << shift) - 1), axis=1).astype(np.int64)
