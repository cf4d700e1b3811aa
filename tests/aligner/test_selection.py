"""Selection of the sources and reference stars used: brightest image sources, reference
magnitude range and brightest reference stars."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

import aligner
from aligner import CatalogError, ParameterError
from aligner.selection import brightest_sources, check, reference_stars
from tests.support.aligner_synth import absolute_error_mas, make_correctors, make_scene


def test_brightest_sources_by_flux_without_a_flux_last():
    t = Table({"x": np.arange(6.0), "FLUX": [5.0, np.nan, 9.0, 1.0, 7.0, 3.0]})
    rows = np.arange(6)
    assert brightest_sources(t, rows, 3, "flux", "cat").tolist() == [0, 2, 4]   # any case, catalog order
    assert brightest_sources(t, rows[[1, 3]], 1, "flux", "cat").tolist() == [3]  # NaN counts as faintest
    assert brightest_sources(t, rows, None, "flux", "cat") is rows
    assert brightest_sources(t, rows, 10, "nope", "cat") is rows                # nothing to drop
    with pytest.raises(CatalogError, match="cat: brightest=2 needs a flux column 'nope'"):
        brightest_sources(t, rows, 2, "nope", "cat")


def test_reference_magnitude_range_then_brightest():
    t = Table({"RA": np.zeros(6), "phot_g_mean_mag": np.ma.masked_array([12.0, 18.0, 15.0, 9.0, 16.0, 14.0],
                                                                       mask=[0, 0, 0, 0, 1, 0])})
    idx = np.arange(6)
    sel = dict(mag_column="phot_g_mean_mag", what="ref")
    assert reference_stars(t, idx, mag_min=10, mag_max=16, brightest=None, **sel).tolist() == [0, 2, 5]
    assert reference_stars(t, idx, mag_min=None, mag_max=None, brightest=2, **sel).tolist() == [0, 3]
    assert reference_stars(t, idx, mag_min=10, mag_max=None, brightest=2, **sel).tolist() == [0, 5]
    assert reference_stars(t, idx, mag_min=None, mag_max=None, brightest=None, **sel) is idx
    with pytest.raises(CatalogError, match="needs the column 'mag'"):
        reference_stars(t, idx, mag_min=1, mag_max=None, brightest=None, mag_column="mag", what="ref")


@pytest.mark.parametrize("kw, match", [({"brightest": 0}, "brightest"), ({"abs_brightest": 2.5}, "abs_brightest"),
                                       ({"abs_mag_min": float("nan")}, "abs_mag_min"),
                                       ({"abs_mag_min": 20, "abs_mag_max": 12}, "must not exceed"),
                                       ({"flux_column": ""}, "flux_column")])
def test_bad_selection_parameters(kw, match):
    args = dict(brightest=None, flux_column="flux", abs_brightest=None, abs_mag_min=None, abs_mag_max=None,
                abs_mag_column="mag")
    args.update(kw)
    with pytest.raises(ParameterError, match=match):
        check(**args)


def test_selections_in_absolute_align():
    scene = make_scene(1, 1500, "fits", seed=31)
    ref = scene.refcat
    corr = make_correctors(scene)
    aligner.absolute_align(corr, ref, provenance=False)
    full = corr[0].meta["fit_result"]
    # The 30 brightest reference stars, the 300 brightest sources: a fit on fewer stars, still good.
    corr = make_correctors(scene)
    aligner.absolute_align(corr, ref, abs_brightest=30, brightest=300, abs_minobj=5, provenance=False)
    r = corr[0].meta["fit_result"]
    assert r.status == "SUCCESS" and 5 <= r.nref <= 30 < full.nref and absolute_error_mas(corr, scene) < 5
    # Every star used is among the 30 brightest over the images' box, which holds the chip: no
    # fainter than the 30th brightest on the chip.
    im = scene.images[0]
    x, y = im.wcs_true.world_to_pixel_values(np.asarray(ref["RA"]), np.asarray(ref["DEC"]))
    on_chip = (x > 0) & (x < im.shape[1]) & (y > 0) & (y < im.shape[0])
    used = np.asarray(ref["mag"])[r.matched_ref_idx]
    assert used.max() <= np.sort(np.asarray(ref["mag"])[on_chip])[29]
    # A magnitude range: only stars inside it are matched.
    lo, hi = np.percentile(ref["mag"], [20, 60])
    corr = make_correctors(scene)
    aligner.absolute_align(corr, ref, abs_mag_min=lo, abs_mag_max=hi, provenance=False)
    r = corr[0].meta["fit_result"]
    mags = np.asarray(ref["mag"])[r.matched_ref_idx]
    assert r.status == "SUCCESS" and mags.min() >= lo and mags.max() <= hi
    # A range that leaves no star says so.
    corr = make_correctors(scene)
    with pytest.raises(aligner.AlignmentError, match="selected by abs_mag_min/abs_mag_max/abs_brightest"):
        aligner.absolute_align(corr, ref, abs_mag_min=40.0, provenance=False)


def test_brightest_sources_in_relative_align():
    scene = make_scene(3, 2000, "gwcs", seed=32)
    corr = make_correctors(scene)
    aligner.relative_align(corr, brightest=400, provenance=False)
    rs = [c.meta["fit_result"] for c in corr]
    assert sorted(r.status for r in rs) == ["REFERENCE", "SUCCESS", "SUCCESS"]
    for c, r in zip(corr, rs):
        if r.status == "SUCCESS":
            flux = np.asarray(c.meta["catalog"]["flux"])
            assert 15 <= r.nmatches <= 2 * 400   # its own 400 (linked to up to two images)
            assert np.all(flux[r.matched_input_idx] >= np.sort(flux)[::-1][399])
