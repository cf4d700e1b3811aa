"""The synthetic alignment scenes (tests/support/aligner_synth.py): truth, injected errors, noise,
reference catalog epochs, tweakwcs compatibility and the accuracy metrics."""
from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np
import pytest

import tests.support.aligner_synth as synth
from tests.support.aligner_synth import (absolute_error_mas, make_correctors, make_scene, reference_at_epoch,
                           relative_error_mas, wcs_error_mas)

KINDS = ("fits", "gwcs")
RAD2MAS = 180.0 / math.pi * 3.6e6


@pytest.fixture(autouse=True)
def _quiet_tweakwcs():
    logging.getLogger("tweakwcs").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def sky(wcs, x, y) -> np.ndarray:
    """Unit vectors of 0-based pixels through an astropy WCS or a gwcs."""
    return synth._pix2vec(wcs, np.asarray(x, float), np.asarray(y, float))


def world_to_pixel(wcs, ra, dec):
    """The WCS object's own inverse (astropy: iterative with SIP; gwcs: its backward transform)."""
    from astropy.wcs import WCS

    if isinstance(wcs, WCS):
        return wcs.all_world2pix(ra, dec, 0, tolerance=1e-10, maxiter=100)
    return wcs.invert(ra, dec, with_bounding_box=False)


def tangent(v: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Component of vectors ``v`` tangent to the sphere at unit vectors ``at``."""
    return v - np.sum(v * at, axis=-1, keepdims=True) * at


# --------------------------------------------------------------------------------------------
# truth consistency
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sip", [False, True])
def test_true_wcs_is_the_truth(kind, sip):
    scene = make_scene(2, 2000, kind, sip=sip, seed=1)
    for im in scene.images:
        assert wcs_error_mas(im.wcs_true, im.wcs_true, im.shape) == (0.0, 0.0)
        # the numpy generator and the WCS object agree everywhere on the image
        x, y = synth._grid(im.shape, 24)
        assert synth._sep_mas(im.geom.pix2vec(x, y), sky(im.wcs_true, x, y)).max() < 1e-5
        # noise-free catalog positions: wcs_true maps them onto the true stars
        real = im.truth_index >= 0
        st = scene.stars[im.truth_index[real]]
        xt, yt = im.geom.vec2pix(synth._unit(st["ra"], st["dec"]))
        assert synth._sep_mas(sky(im.wcs_true, xt, yt), synth._unit(st["ra"], st["dec"])).max() < 1e-5
        # and the WCS object's own inverse lands on the same pixels
        xo, yo = world_to_pixel(im.wcs_true, np.asarray(st["ra"]), np.asarray(st["dec"]))
        assert np.abs(xo - xt).max() < 1e-4 and np.abs(yo - yt).max() < 1e-4
    assert absolute_error_mas([im.wcs_true for im in scene.images], scene) == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_perturbation_is_the_injected_shift_and_rotation(kind):
    scene = make_scene(6, 200, kind, seed=2)
    for im in scene.images:
        d = math.hypot(*im.shift_arcsec) * 1000.0
        rot = math.radians(im.rotation_deg)
        assert 300.0 <= d <= 1000.0 and 0.005 <= abs(im.rotation_deg) <= 0.02
        # single-image groups, symmetric grid about the rotation centre:
        # rms**2 = d**2 + rot**2 <rho**2>, the error at the centre pixel is d
        x, y = synth._grid(im.shape, 16)
        rho2 = np.mean(np.arccos(np.clip(im.geom.pix2vec(x, y) @ im.group_center, -1, 1)) ** 2) * RAD2MAS ** 2
        rms, mx = wcs_error_mas(im.wcs, im.wcs_true, im.shape)
        assert rms == pytest.approx(math.sqrt(d * d + rot * rot * rho2), rel=1e-4)
        assert d - 1e-6 <= mx <= d + abs(rot) * math.sqrt(2 * rho2) * 1.5
        ny, nx = im.shape
        c = ((nx - 1) / 2.0, (ny - 1) / 2.0)
        cx, cy = np.array([c[0]]), np.array([c[1]])
        assert synth._sep_mas(sky(im.wcs, cx, cy), sky(im.wcs_true, cx, cy))[0] == pytest.approx(d, abs=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_groups_share_one_pointing_error(kind):
    """Every pixel of every detector of a group moves by shift + rotation about the group centre."""
    scene = make_scene(8, 200, kind, group_size=4, seed=3, sip=True)
    assert [im.group_id for im in scene.images] == [0, 0, 0, 0, 1, 1, 1, 1]
    for im in scene.images:
        first = scene.images[4 * im.group_id]
        assert np.array_equal(im.shift_arcsec, first.shift_arcsec) and im.rotation_deg == first.rotation_deg
        c = im.group_center
        e, n = synth._east_north(c)
        shift = (im.shift_arcsec[0] * e + im.shift_arcsec[1] * n) * math.pi / 180 / 3600
        x, y = synth._grid(im.shape, 12)
        p = sky(im.wcs_true, x, y)
        predicted = tangent(shift + math.radians(im.rotation_deg) * np.cross(c, p), p)
        measured = tangent(sky(im.wcs, x, y) - p, p)
        assert np.abs(measured - predicted).max() * RAD2MAS < 0.01


def test_large_initial_error():
    scene = make_scene(2, 100, "fits", shift_range=(5.0, 5.0), rot_range=(0.0, 0.0))
    for im in scene.images:
        rms, mx = wcs_error_mas(im.wcs, im.wcs_true, im.shape)
        assert rms == pytest.approx(5000.0, rel=1e-6) and mx == pytest.approx(5000.0, rel=1e-6)


# --------------------------------------------------------------------------------------------
# catalogs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_catalog_spurious_fraction_and_centroid_noise(kind):
    scene = make_scene(1, 20000, kind, seed=4, sip=True)
    im = scene.images[0]
    cat = im.catalog
    ny, nx = im.shape
    assert cat.colnames == ["x", "y", "flux"] and cat.meta["name"] == im.name
    assert "truth" not in " ".join(cat.colnames)
    assert len(cat) == len(im.truth_index) == len(im.sigma_px)
    assert np.all((cat["x"] >= -0.5) & (cat["x"] < nx - 0.5) & (cat["y"] >= -0.5) & (cat["y"] < ny - 0.5))
    spurious = im.truth_index < 0
    assert spurious.mean() == pytest.approx(0.1, abs=0.003)
    assert 19000 < (~spurious).sum() < 21000  # ~n_sources real stars
    assert not np.all(np.diff(im.truth_index[~spurious]) > 0)  # shuffled
    # every star whose true position is on the image is in the catalog, once
    st = scene.stars
    x, y = im.geom.vec2pix(synth._unit(st["ra"], st["dec"]))
    inside = np.nonzero((x >= -0.5 + 0.2) & (x < nx - 0.7) & (y >= -0.5 + 0.2) & (y < ny - 0.7))[0]
    assert np.isin(inside, im.truth_index).all()
    assert len(np.unique(im.truth_index[~spurious])) == (~spurious).sum()
    # centroid noise: 2 mas per axis, measured on the sky through the true WCS
    real = ~spurious
    s = st[im.truth_index[real]]
    truth = synth._unit(s["ra"], s["dec"])
    meas = sky(im.wcs_true, cat["x"][real], cat["y"][real])
    e, n = synth._east_north(truth)
    d = meas - truth
    de, dn = np.sum(d * e, axis=1) * RAD2MAS, np.sum(d * n, axis=1) * RAD2MAS
    for comp in (de, dn):
        assert abs(comp.mean()) < 0.05
        assert comp.std() == pytest.approx(2.0, rel=0.03)  # pixel noise, local scale within 1%
    assert im.sigma_px == pytest.approx(np.full(len(cat), 0.04))


def test_weights_and_individual_noise():
    scene = make_scene(1, 20000, "fits", seed=5, weights=True, spurious_fraction=0.0,
                       centroid_noise_mas=5.0)
    im = scene.images[0]
    cat = im.catalog
    assert cat.colnames == ["x", "y", "flux", "weight"]
    assert np.allclose(cat["weight"], 1.0 / im.sigma_px ** 2)
    assert np.sqrt(np.mean(im.sigma_px ** 2)) == pytest.approx(0.1, rel=0.01)
    st = scene.stars[im.truth_index]
    xt, yt = im.geom.vec2pix(synth._unit(st["ra"], st["dec"]))
    z = np.concatenate(((cat["x"] - xt) / im.sigma_px, (cat["y"] - yt) / im.sigma_px))
    assert z.std() == pytest.approx(1.0, rel=0.02)


def test_overlapping_dithers_see_stars_several_times():
    scene = make_scene(16, 300, "fits", seed=6)
    counts = np.bincount(np.concatenate([im.truth_index[im.truth_index >= 0] for im in scene.images]),
                         minlength=len(scene.stars))
    seen = counts[counts > 0]
    assert seen.max() >= 9 and np.mean(seen) > 3
    # every image overlaps at least one other
    assert relative_error_mas([im.wcs for im in scene.images], scene) > 0


# --------------------------------------------------------------------------------------------
# reference catalog
# --------------------------------------------------------------------------------------------
def test_refcat_epoch_propagation_reproduces_truth():
    from astrodb.epoch import propagate

    scene = make_scene(4, 3000, "gwcs", seed=7, epoch_gap=8.5, ref_two_param_fraction=0.2,
                       ref_fraction=0.5)
    ref, p = scene.refcat, scene.params
    for col in ("RA", "DEC", "source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec",
                "parallax", "radial_velocity", "ref_epoch", "mag"):
        assert col in ref.colnames
    assert p["ref_epoch"] == 2016.0 and np.all(ref["ref_epoch"] == 2016.0)
    assert len(np.unique(ref["source_id"])) == len(ref)
    assert len(ref) == round(0.5 * len(scene.stars))
    assert ref["mag"].max() <= np.min(scene.stars["mag"][scene.stars["ref_row"] < 0])  # the brightest
    assert np.array_equal(scene.stars["ref_row"][scene.ref_truth_index], np.arange(len(ref)))
    five = np.isfinite(ref["pmra"])
    assert np.mean(~five) == pytest.approx(0.2, abs=0.02)
    assert np.all(np.isnan(ref["parallax"][~five]))

    def offsets(propagated: bool):
        cols = [np.asarray(ref[c], float)
                for c in ("ra", "dec", "pmra", "pmdec", "parallax", "radial_velocity", "ref_epoch")]
        if propagated:
            r = propagate(*cols, p["epoch"])
            ra, dec = r.ra, r.dec
        else:
            ra, dec = cols[0], cols[1]
        st = scene.stars[scene.ref_truth_index]
        return synth._sep_mas(synth._unit(ra, dec), synth._unit(st["ra"], st["dec"]))

    d = offsets(True)
    assert np.sqrt(np.mean(d[five] ** 2) / 2) == pytest.approx(1.0, rel=0.05)  # 1 mas per axis
    assert np.median(d[~five]) > 20  # 2-parameter stars still moved (unknown to the catalog)
    raw = offsets(False)
    assert np.median(raw[five]) > 30  # ignoring the epoch: ~|pm_mean| x 8.5 yr = 42 mas

    exact = make_scene(4, 3000, "gwcs", seed=7, epoch_gap=8.5, ref_noise_mas=0.0)
    r = exact.refcat
    st = exact.stars[exact.ref_truth_index]
    prop = propagate(*(np.asarray(r[c], float) for c in ("ra", "dec", "pmra", "pmdec", "parallax",
                                                         "radial_velocity", "ref_epoch")), 2024.5)
    assert synth._sep_mas(synth._unit(prop.ra, prop.dec), synth._unit(st["ra"], st["dec"])).max() < 1e-3
    at = reference_at_epoch(exact)
    assert synth._sep_mas(synth._unit(at["RA"], at["DEC"]), synth._unit(st["ra"], st["dec"])).max() < 1e-3


def test_refcat_is_readable_by_the_store():
    from astrodb.ingest.table_reader import read_catalog

    scene = make_scene(2, 500, "fits", seed=8, epoch_gap=8.0, ref_two_param_fraction=0.1)
    rows = read_catalog(scene.refcat)
    assert len(rows) == len(scene.refcat) and rows.ref_epoch == pytest.approx(scene.params["ref_epoch"])
    assert np.array_equal(rows.columns["ra"], np.asarray(scene.refcat["ra"]))
    assert np.array_equal(rows.columns["pmra"], np.asarray(scene.refcat["pmra"]), equal_nan=True)


def test_refcat_covers_the_mosaic():
    scene = make_scene(9, 500, "fits", seed=9, shift_range=(5.0, 5.0))
    ref = synth._unit(scene.refcat["RA"], scene.refcat["DEC"])
    for im in scene.images:  # every pixel of the PERTURBED footprint has reference stars nearby
        x, y = synth._grid(im.shape, 8)
        p = sky(im.wcs, x, y)
        nearest = np.arccos(np.clip((p @ ref.T).max(axis=1), -1, 1)) * RAD2MAS / 1000.0
        assert nearest.max() < 10.0


# --------------------------------------------------------------------------------------------
# sky positions that break naive code
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("center", [(0.0005, 1.0), (359.9995, -60.0), (200.0, 89.0), (10.0, -89.5)])
@pytest.mark.parametrize("kind", KINDS)
def test_ra_zero_and_poles(center, kind):
    scene = make_scene(4, 300, kind, center=center, seed=10, sip=True, group_size=2, epoch_gap=5.0,
                       ref_noise_mas=0.0)
    for im in scene.images:
        x, y = synth._grid(im.shape, 8)
        assert synth._sep_mas(im.geom.pix2vec(x, y), sky(im.wcs_true, x, y)).max() < 1e-5
        d = math.hypot(*im.shift_arcsec) * 1000.0
        rms, mx = wcs_error_mas(im.wcs, im.wcs_true, im.shape)
        assert d * 0.9 < rms < d + 200 and mx < d + 200
    for col in ("ra", "RA"):
        assert np.all((scene.refcat[col] >= 0) & (scene.refcat[col] < 360))
    c = synth._unit(*center)
    stars = synth._unit(scene.stars["ra"], scene.stars["dec"])
    assert np.arccos(np.clip(stars @ c, -1, 1)).max() < math.radians(0.1)
    at = reference_at_epoch(scene)
    st = scene.stars[scene.ref_truth_index]
    assert synth._sep_mas(synth._unit(at["RA"], at["DEC"]), synth._unit(st["ra"], st["dec"])).max() < 1e-3


# --------------------------------------------------------------------------------------------
# tweakwcs correctors and metrics
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_correctors_accept_the_wcs(kind):
    from tweakwcs.correctors import FITSWCSCorrector, JWSTWCSCorrector

    scene = make_scene(2, 300, kind, seed=11, sip=True, group_size=2)
    cors = make_correctors(scene)
    im = scene.images[0]
    assert isinstance(cors[0], JWSTWCSCorrector if kind == "gwcs" else FITSWCSCorrector)
    assert [c.meta["group_id"] for c in cors] == [0, 0]
    assert [c.meta["name"] for c in cors] == [m.name for m in scene.images]
    assert cors[0].meta["catalog"] is not im.catalog and cors[0].wcs is not im.wcs
    if kind == "gwcs":
        assert cors[0].ref_angles == {k: im.wcsinfo[k] for k in ("v2_ref", "v3_ref", "roll_ref")}
        assert cors[0].tanp_center_pixel_scale == pytest.approx(0.05, rel=1e-4)  # arcsec
        shift = [0.1, 0.0]  # tangent plane in arcsec
    else:
        # pixels (tweakwcs evaluates it at the 1-based CRPIX as a 0-based pixel: SIP changes it by 4e-6)
        assert cors[0].tanp_center_pixel_scale == pytest.approx(1.0, rel=1e-5)
        shift = [0.1 / 0.05, 0.0]
    before = wcs_error_mas(cors[0], im.wcs_true, im.shape)
    assert before == pytest.approx(wcs_error_mas(im.wcs, im.wcs_true, im.shape), abs=1e-9)
    cors[0].set_correction(np.eye(2), shift)
    rms, mx = wcs_error_mas(cors[0], im.wcs, im.shape)
    assert rms == pytest.approx(100.0, abs=1e-3) and mx == pytest.approx(100.0, abs=1e-3)
    # the scene is untouched and a new call gives fresh correctors
    assert wcs_error_mas(make_correctors(scene)[0], im.wcs, im.shape) == (0.0, 0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_tweakwcs_recovers_the_truth(kind):
    """End-to-end check of the truth: tweakwcs aligns the perturbed WCSs to ~0.1 mas."""
    import tweakwcs
    from tweakwcs.matchutils import XYXYMatch

    scene = make_scene(2, 500, kind, seed=12, sip=True)
    cors = make_correctors(scene)
    unit = 1.0 if kind == "gwcs" else 1.0 / scene.params["pixel_scale"]  # tangent-plane units
    assert absolute_error_mas(cors, scene) > 300.0
    tweakwcs.align_wcs(cors, scene.refcat, fitgeom="rshift",
                       match=XYXYMatch(searchrad=2.0 * unit, separation=0.1 * unit, tolerance=0.7 * unit))
    assert all(c.meta["fit_info"]["status"] == "SUCCESS" for c in cors)
    assert absolute_error_mas(cors, scene) < 0.3
    assert relative_error_mas(cors, scene) < 0.3


def test_relative_error_ignores_a_common_frame_error():
    scene = make_scene(4, 100, "gwcs", seed=13, shift_range=(0, 0), rot_range=(0, 0),
                       frame_error=(0.4, -0.3, 0.015))  # one pointing error for all
    wcss = [im.wcs for im in scene.images]
    assert absolute_error_mas(wcss, scene) > 490.0
    assert relative_error_mas(wcss, scene) < 1e-3
    assert relative_error_mas([im.wcs_true for im in scene.images], scene) < 1e-6
    independent = make_scene(4, 100, "gwcs", seed=13)
    rel = relative_error_mas([im.wcs for im in independent.images], independent)
    assert 100.0 < rel < absolute_error_mas([im.wcs for im in independent.images], independent) * 1.5
    # a single image shifted by 10 mas while the others are true: its excess shows
    wcss = [im.wcs_true for im in independent.images]
    from tweakwcs.correctors import JWSTWCSCorrector

    im0 = independent.images[0]
    shifted = JWSTWCSCorrector(im0.wcs_true, im0.wcsinfo_true)
    shifted.set_correction(np.eye(2), [0.01, 0.0])  # 10 mas
    wcss[0] = shifted.wcs
    assert 3.0 < relative_error_mas(wcss, independent) < 10.0
    assert absolute_error_mas(wcss, independent) == pytest.approx(10.0 / 2.0, rel=1e-3)  # sqrt(100/4)


# --------------------------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------------------------
def test_benchmark_sizes_generation_time(capsys):
    """The largest benchmark setup (32 images x 100k sources); the time is printed, not asserted.
    (kind="gwcs" costs a few tenths of a second more: 64 gwcs objects are built.)"""
    t0 = time.perf_counter()
    scene = make_scene(32, 100_000, "fits", seed=14)
    dt = time.perf_counter() - t0
    n = [len(im.catalog) for im in scene.images]
    assert 100_000 < np.mean(n) < 125_000
    with capsys.disabled():
        print(f"\nmake_scene(32, 100_000, 'fits'): {dt:.2f} s, {scene.params['n_stars']} stars, "
              f"{np.mean(n):.0f} catalog rows per image")
