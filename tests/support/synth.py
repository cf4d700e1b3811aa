"""Small realistic synthetic catalogs for tests (Gaia-like value distributions)."""
from __future__ import annotations

import numpy as np
from astropy.table import Table, vstack
import astropy.units as u


def sky_patch(n: int, ra: float, dec: float, radius: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` positions uniform on the sphere within ``radius`` deg of (ra, dec)."""
    cosr = np.cos(np.radians(radius))
    z = rng.uniform(cosr, 1.0, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    s = np.sqrt(1 - z * z)
    local = np.stack((s * np.cos(phi), s * np.sin(phi), z), axis=1)
    # rotate the pole (0, 0, 1) to (ra, dec)
    a, d = np.radians(ra), np.radians(dec)
    ez = np.array([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
    ex = np.array([-np.sin(a), np.cos(a), 0.0])
    ey = np.cross(ez, ex)
    v = local[:, :1] * ex + local[:, 1:2] * ey + local[:, 2:] * ez
    return np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0, np.degrees(np.arcsin(np.clip(v[:, 2], -1, 1)))


def gaia_like(n: int, ra: float, dec: float, radius: float, *, seed: int = 0, fast: int = 0,
              no_pm_fraction: float = 0.2, epoch: float = 2016.0) -> Table:
    """A Gaia-like catalog of ``n`` stars around (ra, dec), ``fast`` of them moving 1-10 arcsec/yr
    with large radial velocities, a fraction without proper motion/parallax (2-parameter)."""
    rng = np.random.default_rng(seed)
    r, d = sky_patch(n, ra, dec, radius, rng)
    plx = np.abs(rng.lognormal(np.log(0.5), 1.0, n))
    pmra = rng.normal(0, 6, n)
    pmdec = rng.normal(0, 6, n)
    rv = np.where(rng.uniform(size=n) < 0.3, rng.normal(0, 40, n), np.nan)
    if fast:
        k = rng.choice(n, fast, replace=False)
        speed = rng.uniform(1000, 10000, fast)
        ang = rng.uniform(0, 2 * np.pi, fast)
        pmra[k], pmdec[k] = speed * np.cos(ang), speed * np.sin(ang)
        plx[k] = rng.uniform(100, 800, fast)
        rv[k] = rng.uniform(-250, 250, fast)
    two_param = rng.uniform(size=n) < no_pm_fraction
    pmra[two_param] = pmdec[two_param] = plx[two_param] = rv[two_param] = np.nan
    t = Table()
    t["source_id"] = np.arange(n, dtype=np.int64) * 7 + 1000
    t["ra"] = r * u.deg
    t["dec"] = d * u.deg
    t["ra_error"] = rng.uniform(0.02, 1.0, n) * u.mas
    t["dec_error"] = rng.uniform(0.02, 1.0, n) * u.mas
    t["pmra"] = pmra * u.mas / u.yr
    t["pmdec"] = pmdec * u.mas / u.yr
    t["parallax"] = plx * u.mas
    t["radial_velocity"] = rv * u.km / u.s
    t["phot_g_mean_mag"] = rng.uniform(8, 21, n)
    t["ref_epoch"] = np.full(n, epoch) * u.yr
    return t


def sky_table(n: int, seed: int) -> Table:
    """Stars over the whole sky (both poles, RA 0/360) plus dense patches, fast movers included."""
    rng = np.random.default_rng(seed)
    parts = [gaia_like(n, 0.0, 0.0, 180.0, seed=seed, fast=30),
             gaia_like(n // 2, 359.95, 0.3, 1.0, seed=seed + 1, fast=10),     # across RA 0/360
             gaia_like(n // 4, 123.0, 89.7, 1.0, seed=seed + 2, fast=5),      # north pole
             gaia_like(n // 4, 300.0, -89.8, 1.0, seed=seed + 3, fast=5)]     # south pole
    t = vstack(parts)
    t["source_id"] = rng.permutation(len(t)).astype(np.int64) + 1
    return t
