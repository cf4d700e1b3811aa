"""The common tangent plane in which all matching and fitting happens.

One gnomonic (TAN) projection about the centre of the images' combined footprint, in arcsec,
``xi`` towards increasing RA (east) and ``eta`` towards north, for every WCS kind: so
``searchrad``, ``tolerance``, ``separation`` and the offsets are arcsec whatever the images' WCSs
are (tweakwcs' FITS corrector works in pixels instead).

A fitted correction ``p -> M p + s`` in this plane is handed to each tweakwcs corrector through
:meth:`TangentPlane.corrector`, a ``FITSWCSCorrector`` whose "tangent-plane" coordinates are
exactly these arcsec coordinates; tweakwcs then re-expresses it in the image's own plane
(v2v3 for gwcs, CRVAL/CD for FITS).
"""
from __future__ import annotations

import numpy as np
from astropy.wcs import WCS

_ARCSEC_PER_RAD = 180.0 * 3600.0 / np.pi


def unit_vectors(ra, dec) -> np.ndarray:
    """(n, 3) unit vectors of ICRS (ra, dec) in degrees."""
    a, d = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    cd = np.cos(d)
    return np.stack([cd * np.cos(a), cd * np.sin(a), np.sin(d)], axis=-1)


class TangentPlane:
    """Gnomonic projection about (ra0, dec0) in arcsec.

    Parameters
    ----------
    ra0, dec0 : float
        Tangent point (deg, ICRS).
    """

    def __init__(self, ra0: float, dec0: float) -> None:
        self.ra0, self.dec0 = float(ra0) % 360.0, float(dec0)
        a, d = np.radians(self.ra0), np.radians(self.dec0)
        # Rows: east, north and the tangent point's direction.
        self._basis = np.array([[-np.sin(a), np.cos(a), 0.0],
                                [-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)],
                                [np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)]])
        self._corrector = None

    @classmethod
    def around(cls, ra, dec) -> TangentPlane:
        """The plane centred on the mean direction of the given points (deg)."""
        v = unit_vectors(np.ravel(ra), np.ravel(dec)).sum(axis=0)
        if not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
            raise ValueError("cannot centre a tangent plane on these positions")
        v /= np.linalg.norm(v)
        return cls(np.degrees(np.arctan2(v[1], v[0])), np.degrees(np.arcsin(np.clip(v[2], -1, 1))))

    def to_plane(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        """(ra, dec) deg -> (xi, eta) arcsec; points 90 deg or more away give NaN."""
        e = unit_vectors(ra, dec) @ self._basis.T
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(e[..., 2] > 0, e[..., 2], np.nan)
            return e[..., 0] / z * _ARCSEC_PER_RAD, e[..., 1] / z * _ARCSEC_PER_RAD

    def to_sky(self, xi, eta) -> tuple[np.ndarray, np.ndarray]:
        """(xi, eta) arcsec -> (ra, dec) deg."""
        x, y = np.asarray(xi, float) / _ARCSEC_PER_RAD, np.asarray(eta, float) / _ARCSEC_PER_RAD
        v = x[..., None] * self._basis[0] + y[..., None] * self._basis[1] + self._basis[2]
        v /= np.linalg.norm(v, axis=-1, keepdims=True)
        return (np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0,
                np.degrees(np.arcsin(np.clip(v[..., 2], -1.0, 1.0))))

    def wcs(self) -> WCS:
        """A TAN WCS whose 0-based pixel coordinates are (xi, eta) in arcsec."""
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [self.ra0, self.dec0]
        w.wcs.crpix = [1.0, 1.0]
        w.wcs.cd = np.eye(2) / 3600.0
        w.pixel_shape = (3600, 3600)
        w.wcs.set()
        return w

    def corrector(self):
        """A tweakwcs corrector for this plane: the ``ref_tpwcs`` of ``set_correction``."""
        if self._corrector is None:
            from tweakwcs.correctors import FITSWCSCorrector
            self._corrector = FITSWCSCorrector(self.wcs())
        return self._corrector
