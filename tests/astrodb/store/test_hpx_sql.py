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


def _require_pg(store):
    if store.backend != "postgresql":
        pytest.skip("the SQL functions exist on PostgreSQL only")


def test_hpx_pixel_is_the_nested_pixel_holding_the_position(store):
    """astrodb._hpx_pixel (the density map's pixel under a cone's centre) against astropy-healpix,
    on random positions and on the poles, the faces' corners and RA 0/360."""
    _require_pg(store)
    rng = np.random.default_rng(7)
    ra, dec = rng.uniform(0, 360, 4000), np.degrees(np.arcsin(rng.uniform(-1, 1, 4000)))
    special = [(0.0, 90.0), (10.0, -90.0), (17.0, 89.9999), (200.0, -89.9999), (0.0, 0.0), (359.9999999999, 0.0),
               (45.0, 41.8103148958), (90.0, -41.8103148958), (135.0, 41.81031), (315.0, -41.81032), (360.0, 12.0)]
    ra, dec = np.r_[ra, [s[0] for s in special]], np.r_[dec, [s[1] for s in special]]
    with store.engine.connect() as conn:
        for k in (0, 1, 4, 7, 10, 15):
            got = np.array(conn.execute(sa.text("SELECT astrodb._hpx_pixel(:k, r, d) FROM unnest(CAST(:ra AS float8[]), "
                                                "CAST(:dec AS float8[])) WITH ORDINALITY AS t(r, d, i) ORDER BY i"),
                                        dict(k=k, ra=ra.tolist(), dec=dec.tolist())).scalars().all())
            hp = HEALPix(2 ** k, order="nested")
            want = hp.lonlat_to_healpix(ra * u.deg, dec * u.deg)
            # a point on a pixel's edge (the corner at RA 0, Dec 0) may go to either side
            near = [hp.lonlat_to_healpix((ra + a) * u.deg, np.clip(dec + b, -90, 90) * u.deg)
                    for a in (-1e-9, 0.0, 1e-9) for b in (-1e-9, 0.0, 1e-9)]
            ok = (got == want) | np.any([got == n for n in near], axis=0)
            assert ok.all() and (got == want).mean() > 0.99, (k, ra[~ok][:3], dec[~ok][:3])


def test_the_cover_at_every_order_it_may_take_holds_the_disc(store):
    """The cone's cover order runs from k0 (pixels 1-2 radii across) to k0 + 3: each covers the disc."""
    _require_pg(store)
    rng = np.random.default_rng(31)
    size0 = math.degrees(math.sqrt(4 * math.pi / 12))
    with store.engine.connect() as conn:
        for _order, ra, dec, radius in _discs(rng, 40):
            k0 = 0 if radius >= size0 else min(20, int(math.floor(math.log2(size0 / radius))))
            pix = hpx29(*_in_disc(rng, ra, dec, radius, 2000))
            for k in range(k0, min(20, k0 + 3) + 1):
                rows = conn.execute(sa.text("SELECT lo, hi FROM astrodb._hpx_cover(:ra, :dec, :r, :k) ORDER BY lo"),
                                    dict(ra=ra, dec=dec, r=radius, k=k)).all()
                lo, hi = np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64)
                assert (lo <= hi).all() and (hi[:-1] + 1 < lo[1:]).all()
                i = np.searchsorted(lo, pix, side="right") - 1
                assert ((i >= 0) & (pix <= hi[np.maximum(i, 0)])).all(), (ra, dec, radius, k)


def test_cones_choose_their_cover_by_density_and_return_the_same_rows(store):
    """A dense catalog's cones take finer covers than an empty sky's, and whatever order the
    density map leads to (none, as loaded, dense everywhere), a cone returns the same rows."""
    _require_pg(store)
    from tests.support.synth import gaia_like
    store.ingest_catalog(gaia_like(20_000, 150.0, 20.0, 2.0, seed=5), "cover_density", epoch=2016.0,
                         id_column="source_id")
    with store.engine.connect() as conn:
        cid = conn.execute(sa.text("SELECT id FROM astrodb.catalogs WHERE name = 'cover_density'")).scalar_one()

        def order(ra, dec, r):
            return conn.execute(sa.text("SELECT astrodb._cover_order(:c, :ra, :dec, :r)"),
                                dict(c=cid, ra=ra, dec=dec, r=r)).scalar_one()
        k0 = int(math.floor(math.log2(math.degrees(math.sqrt(4 * math.pi / 12)) / 0.1)))
        assert order(300.0, -40.0, 0.1) == k0  # no rows there
        assert order(150.0, 20.0, 0.1) == k0 + 2  # ~1,600 rows/deg2: ~50 rows in a 6' cone
        assert conn.execute(sa.text("SELECT astrodb._cover_order(NULL, 150, 20, 0.1)")).scalar_one() == k0 + 2

        rng = np.random.default_rng(3)
        cones = [(150.0 + rng.uniform(-1.5, 1.5), 20.0 + rng.uniform(-1.5, 1.5), r) for r in (1 / 60, 0.1, 0.5, 1.9)]
        cones += [(150.0, 20.0, 2.5), (149.0, 19.5, 0.3)]

        def answers(epoch=None):
            sql = ("SELECT source_id FROM astrodb.cone('cover_density', :ra, :dec, :r"
                   + (", :t)" if epoch else ")") + " ORDER BY source_id")
            return [conn.execute(sa.text(sql), dict(ra=ra, dec=dec, r=r, t=epoch)).scalars().all() for ra, dec, r in cones]
        loaded, moved = answers(), answers(2040.0)
        assert all(len(a) for a in loaded)
        conn.execute(sa.text("UPDATE astrodb.catalog_density SET count = count * 100000 WHERE catalog_id = :c"), dict(c=cid))
        assert order(150.0, 20.0, 0.1) == k0 + 3
        assert answers() == loaded and answers(2040.0) == moved
        conn.execute(sa.text("DELETE FROM astrodb.catalog_density WHERE catalog_id = :c"), dict(c=cid))
        assert order(150.0, 20.0, 0.1) == k0
        assert answers() == loaded and answers(2040.0) == moved
        conn.rollback()
