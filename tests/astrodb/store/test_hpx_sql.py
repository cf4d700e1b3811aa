"""astrodb.hpx_disc and astrodb._hpx_ranges (PostgreSQL): the HEALPix cover of a disc in SQL that
the SQL cone and footprint read the (catalog_id, hpx29) index with. Every pixel that meets the
disc is there (checked against astropy-healpix on points inside the disc, many on its edge),
at every order, at the poles, across RA 0/360 and on the faces' boundaries."""
from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest
import sqlalchemy as sa
from astropy_healpix import HEALPix

from astrodb.query.healpix import hpx29
from astrodb.store.sql_functions import _max_pixrad


def _unit(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _in_disc(rng, ra, dec, radius, n):
    """Points within radius (deg) of (ra, dec): a third of them on the edge."""
    c = _unit(ra, dec)
    e = np.cross([0.0, 0.0, 1.0], c)
    e = e / np.linalg.norm(e) if np.linalg.norm(e) > 1e-9 else np.array([1.0, 0.0, 0.0])
    nn = np.cross(c, e)
    th = np.radians(radius) * np.sqrt(rng.uniform(0, 1, n))
    th[: n // 3] = np.radians(radius) * (1 - 1e-12)
    ph = rng.uniform(0, 2 * np.pi, n)
    v = np.cos(th)[:, None] * c + np.sin(th)[:, None] * (np.cos(ph)[:, None] * e + np.sin(ph)[:, None] * nn)
    return np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0, np.degrees(np.arcsin(np.clip(v[:, 2], -1, 1)))


@pytest.mark.parametrize("order", range(9))
def test_the_largest_pixel_radius_bounds_every_pixel(order):
    hp = HEALPix(2 ** order, order="nested")
    n = 12 * 4 ** order
    pix = np.arange(n) if n <= 50_000 else np.random.default_rng(order).integers(0, n, 50_000)
    lon, lat = hp.healpix_to_lonlat(pix)
    blon, blat = hp.boundaries_lonlat(pix, step=4)
    centre = _unit(lon.to_value(u.deg), lat.to_value(u.deg))
    edge = _unit(blon.to_value(u.deg), blat.to_value(u.deg))
    reach = np.arccos(np.clip(np.einsum("ij,ikj->ik", centre, edge), -1, 1)).max()
    assert reach <= _max_pixrad(order) * (1 + 1e-9) + 1e-12


def _discs(rng, count):
    special = [(0.0, 90.0), (0.0, -90.0), (17.0, 89.9999), (200.0, -89.9999), (0.0, 0.0), (359.9999999, 0.0),
               (45.0, 41.8103149), (90.0, -41.8103149), (0.0, 41.81), (135.0, 0.0)]
    for t in range(count):
        k = int(rng.integers(0, 30))
        if t < len(special):
            ra, dec = special[t]
        else:
            ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))
        size = math.degrees(math.sqrt(4 * math.pi / (12 * 4 ** k)))
        yield k, ra, dec, min(size * 10 ** rng.uniform(-2, 1.3), 179.0)


def test_hpx_disc_holds_every_pixel_that_meets_the_disc(store):
    if store.backend != "postgresql":
        pytest.skip("the SQL functions exist on PostgreSQL only")
    rng = np.random.default_rng(2026)
    with store.engine.connect() as conn:
        for k, ra, dec, radius in _discs(rng, 250):
            got = np.array(conn.execute(sa.text("SELECT pixel FROM astrodb.hpx_disc(:k, :ra, :dec, :r)"),
                                        dict(k=k, ra=ra, dec=dec, r=radius)).scalars().all(), np.int64)
            assert len(np.unique(got)) == len(got) and ((got >= 0) & (got < 12 * 4 ** k)).all()
            hp = HEALPix(2 ** k, order="nested")
            pra, pdec = _in_disc(rng, ra, dec, radius, 3000)
            need = np.unique(hp.lonlat_to_healpix(pra * u.deg, pdec * u.deg))
            assert not len(np.setdiff1d(need, got)), (k, ra, dec, radius)
            # and nothing beyond the documented margin: centres within radius + the largest pixel radius
            lon, lat = hp.healpix_to_lonlat(got)
            centres, c = _unit(lon.to_value(u.deg), lat.to_value(u.deg)), _unit(ra, dec)
            d = np.arctan2(np.linalg.norm(np.cross(centres, c), axis=-1), centres @ c)
            assert (d <= math.radians(radius) + _max_pixrad(k) * (1 + 1e-6) + 1e-9).all(), (k, ra, dec, radius)


def test_hpx_ranges_cover_the_order_29_pixels_of_the_disc(store):
    if store.backend != "postgresql":
        pytest.skip("the SQL functions exist on PostgreSQL only")
    rng = np.random.default_rng(29)
    with store.engine.connect() as conn:
        for _order, ra, dec, radius in _discs(rng, 120):
            rows = conn.execute(sa.text("SELECT lo, hi FROM astrodb._hpx_ranges(:ra, :dec, :r) ORDER BY lo"),
                                dict(ra=ra, dec=dec, r=radius)).all()
            lo, hi = np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64)
            assert (lo <= hi).all() and (hi[:-1] + 1 < lo[1:]).all()  # disjoint, merged
            pix = hpx29(*_in_disc(rng, ra, dec, radius, 3000))
            i = np.searchsorted(lo, pix, side="right") - 1
            assert ((i >= 0) & (pix <= hi[np.maximum(i, 0)])).all(), (ra, dec, radius)
        with pytest.raises(sa.exc.DBAPIError, match="order must be within"):
            conn.execute(sa.text("SELECT * FROM astrodb.hpx_disc(30, 0, 0, 1)")).all()
