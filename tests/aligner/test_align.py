"""relative_align / absolute_align end to end on synthetic scenes with known truth (FITS and gwcs)."""
from __future__ import annotations

import copy
import dataclasses
import inspect
import warnings

import numpy as np
import pytest
from astropy.table import Table

import aligner
from aligner import AlignmentError, AlignmentWarning, ParameterError
from tests.support.aligner_synth import (absolute_error_mas, make_correctors, make_scene, make_sparse_scene, relative_error_mas,
                           wcs_error_mas)


def _wcs_unchanged(c):
    return c.wcs is c.original_wcs or wcs_error_mas(c.wcs, c.original_wcs, (64, 64), n=4)[1] == 0.0


@pytest.mark.parametrize("kind", ["fits", "gwcs"])
def test_relative_then_absolute_alignment_recovers_the_truth(kind):
    scene = make_scene(4, 1500, kind, seed=3)
    corr = make_correctors(scene)
    assert absolute_error_mas(corr, scene) > 200
    aligner.relative_align(corr)
    assert relative_error_mas(corr, scene) < 0.5
    statuses = [c.meta["fit_info"]["status"] for c in corr]
    assert statuses.count("REFERENCE") == 1 and statuses.count("SUCCESS") == 3
    aligner.absolute_align(corr, scene.refcat)
    assert absolute_error_mas(corr, scene) < 0.5 and relative_error_mas(corr, scene) < 0.5
    r = corr[0].meta["fit_result"]
    assert isinstance(r, aligner.FitResult) and r.status == "SUCCESS" and r.step == "absolute"
    assert r.nref > 100 and r.nmatches >= r.nref and 0.001 < r.rmse < 0.01  # arcsec: a few mas
    assert abs(r.rotation) < 0.05 and abs(r.scale - 1) < 1e-9
    assert r.reference["source"] == "table" and len(r.reference["sha256"]) == 64
    assert len(r.matched_input_idx) == len(r.matched_ref_idx) == r.nmatches
    # stcal's fit_info keys are there too.
    for key in ("status", "fitgeom", "matrix", "shift", "rmse", "mae", "nmatches", "<rot>", "<scale>", "skew"):
        assert key in corr[0].meta["fit_info"]


def test_absolute_error_does_not_grow_with_the_number_of_overlapping_images():
    errors = {}
    for n in (2, 8):
        scene = make_scene(n, 1500, "fits", seed=11)
        corr = make_correctors(scene)
        aligner.absolute_align(corr, scene.refcat)
        errors[n] = absolute_error_mas(corr, scene)
    # stcal: 0.6 -> 1.9 mas from 2 to 8 images (duplicate bias); here it stays at the noise level.
    assert errors[8] < 0.35 and errors[8] < 1.5 * errors[2] + 0.05, errors


def test_groups_get_one_correction():
    scene = make_scene(8, 800, "gwcs", seed=5, group_size=4)
    corr = make_correctors(scene)
    aligner.relative_align(corr)
    fits = [c.meta["fit_result"] for c in corr]
    for g in (0, 4):
        assert all(np.array_equal(fits[g].matrix, fits[k].matrix) and np.array_equal(fits[g].shift, fits[k].shift)
                   for k in range(g, g + 4))
    assert relative_error_mas(corr, scene) < 0.5


def test_large_initial_error_found_by_the_2d_histogram_and_by_offsets():
    scene = make_scene(2, 1500, "fits", seed=7, shift_range=(5.0, 5.0), rot_range=(0.0, 0.0))
    ref = scene.refcat
    corr = make_correctors(scene)
    aligner.absolute_align(corr, ref, abs_searchrad=6.0)
    assert absolute_error_mas(corr, scene) < 0.5
    # Without the histogram nothing is within the tolerance: a clear failure, WCSs untouched.
    corr = make_correctors(scene)
    with pytest.raises(AlignmentError, match="not enough matches"):
        aligner.absolute_align(corr, ref, abs_use2dhist=False)
    assert all(_wcs_unchanged(c) for c in corr)


def test_xoffset_yoffset_guide_the_relative_match():
    scene = make_scene(2, 1500, "fits", seed=8, shift_range=(0.0, 0.0), rot_range=(0.0, 0.0))
    corr = make_correctors(scene)
    # Displace the second image by 4" east: a known offset the guess must supply.
    from tweakwcs.correctors import FITSWCSCorrector
    w = copy.deepcopy(corr[1].wcs)
    w.wcs.crval = w.wcs.crval + [4.0 / 3600 / np.cos(np.radians(w.wcs.crval[1])), 0.0]
    w.wcs.set()
    corr[1] = FITSWCSCorrector(w, meta=dict(corr[1].meta))
    aligner.relative_align(corr, use2dhist=False, xoffset=-4.0, yoffset=0.0, enforce_user_order=True,
                           searchrad=1.0, tolerance=0.5)
    assert wcs_error_mas(corr[1].wcs, scene.images[1].wcs_true, scene.images[1].shape)[0] < 1.0


def test_half_bin_offset_is_recovered_exactly():
    # 0.175" is half of the histogram's bins (tolerance / 2 = 0.35"): tweakwcs#68 was off by that.
    scene = make_scene(1, 2000, "fits", seed=9, shift_range=(0.175, 0.175), rot_range=(0.0, 0.0))
    corr = make_correctors(scene)
    aligner.absolute_align(corr, scene.refcat, abs_fitgeometry="shift")
    assert absolute_error_mas(corr, scene) < 0.3


@pytest.mark.parametrize("geom", ["shift", "rshift", "rscale", "general"])
def test_every_fitgeometry_aligns(geom):
    scene = make_scene(2, 1500, "gwcs", seed=12, rot_range=(0.0, 0.0) if geom == "shift" else (0.005, 0.02))
    corr = make_correctors(scene)
    aligner.absolute_align(corr, scene.refcat, abs_fitgeometry=geom)
    assert absolute_error_mas(corr, scene) < 0.6
    assert corr[0].meta["fit_result"].fitgeometry == geom


def test_reference_weights_are_used():
    scene = make_scene(1, 2000, "fits", seed=13, rot_range=(0.0, 0.0))
    ref = scene.refcat.copy()
    bad = np.arange(len(ref)) % 2 == 0
    # Half the stars 6 mas off: within the noise, so clipping keeps them; only weights help.
    ref["RA"][bad] += 0.006 / 3600 / np.cos(np.radians(ref["DEC"][bad]))
    ref["weight"] = np.where(bad, 1e-6, 1.0)
    corr = make_correctors(scene)
    aligner.absolute_align(corr, ref)
    assert absolute_error_mas(corr, scene) < 0.5
    ref["weight"] = 1.0
    corr = make_correctors(scene)
    aligner.absolute_align(corr, ref)
    assert 2.0 < absolute_error_mas(corr, scene) < 4.0


def test_parameter_errors_are_value_errors():
    corr = make_correctors(make_scene(2, 200, "fits", seed=1))
    with pytest.raises(ParameterError, match="sqrt"):
        aligner.relative_align(corr, separation=0.9, tolerance=0.7)
    with pytest.raises(ValueError, match="abs_separation"):
        aligner.absolute_align(corr, Table({"RA": [1.0], "DEC": [1.0]}), abs_separation=0.5)
    # stcal's TweakregError is a BaseException; ours is a ValueError, caught by `except Exception`.
    with pytest.raises(ValueError, match="fitgeometry must be one of") as err:
        aligner.relative_align(corr, fitgeometry="affine")
    assert isinstance(err.value, ParameterError)
    with pytest.raises(ParameterError, match="minobj"):
        aligner.relative_align(corr, minobj=0)
    assert all(_wcs_unchanged(c) for c in corr)


def test_failures_leave_the_wcs_untouched_and_say_why():
    scene = make_scene(3, 1000, "fits", seed=2)
    corr = make_correctors(scene)
    corr[2].meta["catalog"] = corr[2].meta["catalog"][:0]  # empty catalog
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        aligner.relative_align(corr)
    assert any(issubclass(w.category, AlignmentWarning) for w in caught)
    assert corr[2].meta["fit_info"]["status"] == "FAILED: empty source catalog" and _wcs_unchanged(corr[2])
    assert not corr[2].meta["fit_result"].ok

    corr = make_correctors(scene)
    with pytest.raises(AlignmentError, match="minobj") as err:
        aligner.relative_align(corr, minobj=100000)
    assert all(_wcs_unchanged(c) for c in corr)
    assert all(r.status.startswith("FAILED") or r.status == "REFERENCE" for r in err.value.results)

    far = Table({"RA": scene.refcat["RA"] + 1.0, "DEC": scene.refcat["DEC"]})  # a degree away
    corr = make_correctors(scene)
    with pytest.raises(AlignmentError, match="reference"):
        aligner.absolute_align(corr, far)
    assert all(_wcs_unchanged(c) and c.meta["fit_info"]["status"].startswith("FAILED") for c in corr)

    corr = make_correctors(make_scene(1, 1000, "fits", seed=2))
    with pytest.raises(AlignmentError, match="at least two"):
        aligner.relative_align(corr)


def test_no_absolute_step_for_an_empty_refcat():
    corr = make_correctors(make_scene(1, 300, "fits", seed=4))
    assert aligner.absolute_align(corr, "") is corr and "fit_info" not in corr[0].meta
    assert aligner.absolute_align(corr, None) is corr


def test_reference_catalog_from_a_file_and_saved_catalog(tmp_path):
    scene = make_scene(2, 1000, "fits", seed=6)
    path = tmp_path / "ref.ecsv"
    scene.refcat["RA", "DEC"].write(path)
    corr = make_correctors(scene)
    aligner.absolute_align(corr, str(path), save_abs_catalog=True, abs_catalog_output_dir=str(tmp_path / "out"))
    assert absolute_error_mas(corr, scene) < 0.5
    saved = Table.read(tmp_path / "out" / "fit_user_ref.ecsv")
    assert len(saved) > 100 and {"RA", "DEC"} <= set(saved.colnames)
    with pytest.raises(ParameterError, match="neither a known catalog name"):
        aligner.absolute_align(make_correctors(scene), str(tmp_path / "missing.ecsv"))


def test_filter_catalog_by_bounding_box():
    t = Table({"x": [0.0, 5.0, 10.0], "y": [5.0, 5.0, 5.0]})
    assert list(aligner.filter_catalog_by_bounding_box(t, ((0, 10), (0, 10)))["x"]) == [5.0]
    assert aligner.filter_catalog_by_bounding_box(t, None) is t
    t2 = Table({"xcentroid": [1.0, 20.0], "ycentroid": [1.0, 1.0]})
    assert len(aligner.filter_catalog_by_bounding_box(t2, ((0, 10), (0, 10)))) == 1


def test_a_wide_mosaic_aligns_through_chains_of_overlaps():
    # 18 exposures on a grid: the outer ones barely (or do not) overlap the reference one; each is
    # matched against the exposures already placed, with its offset from the 2D histogram.
    scene = make_scene(18, 3000, "fits", seed=14)
    corr = make_correctors(scene)
    aligner.relative_align(corr)
    assert all(c.meta["fit_result"].ok for c in corr), [c.meta["fit_info"]["status"] for c in corr]
    # measured 0.13 mas (0.52 before each image was linked to the images it overlaps most)
    assert relative_error_mas(corr, scene) < 0.5


def _aligned_subset(correctors, scene):
    import dataclasses
    ok = [i for i, c in enumerate(correctors) if c.meta["fit_info"]["status"] in ("SUCCESS", "REFERENCE")]
    return [correctors[i] for i in ok], dataclasses.replace(scene, images=[scene.images[i] for i in ok])


@pytest.mark.parametrize("n, kind, seed", [(8, "fits", 1), (16, "gwcs", 2)])
def test_crowded_fields_align_and_never_report_a_false_success(n, kind, seed):
    # 10 stars/arcsec^2 (100k per 2048^2 image at 0.05"/px; small 512^2 images here) with the
    # default separation/tolerance: the sweep-thinned lists used to share few stars, and chance
    # matches gave wrong "successes" 0.1-2" off. Now dense lists are matched whole, and a group
    # whose matches do not beat chance at the fit's precision fails instead.
    scene = make_scene(n, 6250, kind, seed=seed, shape=(512, 512))
    corr = make_correctors(scene)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlignmentWarning)
        aligner.relative_align(corr)
    status = [c.meta["fit_info"]["status"] for c in corr]
    ok_corr, ok_scene = _aligned_subset(corr, scene)
    assert relative_error_mas(ok_corr, ok_scene) < 0.2  # every image said aligned is aligned
    assert len(ok_corr) == n, status                       # and all are (measured 0.037 / 0.052 mas)

    corr = make_correctors(scene)
    aligner.absolute_align(corr, scene.refcat)
    assert all(c.meta["fit_info"]["status"] == "SUCCESS" for c in corr)
    assert absolute_error_mas(corr, scene) < 0.2


def test_expand_refcat_matches_against_every_placed_image():
    scene = make_scene(6, 1500, "fits", seed=4)
    corr = make_correctors(scene)
    aligner.relative_align(corr, expand_refcat=True)
    assert all(c.meta["fit_result"].ok for c in corr), [c.meta["fit_info"]["status"] for c in corr]
    assert relative_error_mas(corr, scene) < 0.5  # measured 0.12


def test_a_common_frame_error_beyond_the_groups_search_is_found():
    """Every image 4" off in the same direction plus its own 0.3-1" error: the groups' own searches
    near the common offset (or over abs_searchrad where the quick common search finds nothing)
    align every image."""
    scene = make_scene(8, 3000, "fits", seed=21, frame_error=(4.0, -1.5, 0.0))
    corr = make_correctors(scene)
    aligner.absolute_align(corr, scene.refcat)
    assert all(c.meta["fit_result"].status == "SUCCESS" for c in corr)
    assert absolute_error_mas(corr, scene) < 0.5


# --- sparse references --------------------------------------------------------------------------

def _absolute(corr, ref, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlignmentWarning)
        try:
            aligner.absolute_align(corr, ref, provenance=False, **kw)
        except AlignmentError:
            pass
    return corr[0].meta["fit_info"]["status"]


@pytest.mark.parametrize("kind", ["fits", "gwcs"])
@pytest.mark.parametrize("n_ref, spurious, shift", [(3, 0.9, 3.0), (3, 0.5, 0.5), (5, 0.9, 2.0), (8, 0.1, 1.0)])
def test_a_few_reference_stars_are_enough(kind, n_ref, spurious, shift):
    # 3-8 stars on the chip among up to 10x as many other detections, ~0.01 chance matches
    # expected: a handful of coincident matches is overwhelming evidence (it used to take ~6).
    for seed in range(3):
        scene, ref = make_sparse_scene(n_ref, spurious, shift, kind, seed=seed)
        corr = make_correctors(scene)
        assert absolute_error_mas(corr, scene) > 400
        status = _absolute(corr, ref, abs_minobj=min(5, n_ref))
        assert status == "SUCCESS", status
        assert corr[0].meta["fit_result"].nref == n_ref
        assert absolute_error_mas(corr, scene) < 25  # a few mas from 3-8 stars at 2 mas noise


@pytest.mark.parametrize("fitgeometry, minobj", [("shift", 1), ("rshift", 2), ("general", 3)])
def test_minobj_is_honoured_down_to_what_the_geometry_needs(fitgeometry, minobj):
    scene, ref = make_sparse_scene(3, 0.5, 1.0, "fits", seed=5)
    corr = make_correctors(scene)
    assert _absolute(corr, ref, abs_minobj=minobj, abs_fitgeometry=fitgeometry) == "SUCCESS"
    assert absolute_error_mas(corr, scene) < 50
    corr = make_correctors(scene)
    status = _absolute(corr, ref, abs_minobj=4, abs_fitgeometry=fitgeometry)
    assert "not enough reference sources (3 < abs_minobj 4)" in status


@pytest.mark.parametrize("n_ref", [1, 2, 3, 5, 15, 200])
@pytest.mark.parametrize("spurious", [0.1, 0.9])
def test_an_unrelated_reference_never_gives_a_success(n_ref, spurious):
    # Reference points with nothing to do with the image (uniform over the same region): every
    # geometry must fail, whatever minobj allows.
    rng = np.random.default_rng(n_ref)
    for seed in range(3):
        scene, _ = make_sparse_scene(10, spurious, 1.0, "fits", seed=seed)
        ra, dec = np.asarray(scene.refcat["RA"]), np.asarray(scene.refcat["DEC"])
        ref = Table({"RA": ra.min() + rng.uniform(size=n_ref) * np.ptp(ra),
                     "DEC": dec.min() + rng.uniform(size=n_ref) * np.ptp(dec)})
        for fitgeometry, minobj in (("shift", 1), ("rshift", 2), ("general", 3)):
            corr = make_correctors(scene)
            status = _absolute(corr, ref, abs_minobj=minobj, abs_fitgeometry=fitgeometry)
            assert status.startswith("FAILED") and _wcs_unchanged(corr[0]), status


def test_failure_messages_give_the_numbers_and_only_the_parameters_in_play():
    scene, ref = make_sparse_scene(5, 0.9, 3.0, "fits", seed=1)
    # Without the histogram the images are matched at their WCS, 3" off: nothing within 0.7".
    status = _absolute(make_correctors(scene), ref, abs_minobj=5, abs_use2dhist=False)
    assert status.startswith("FAILED: not enough matches to the reference (0 within abs_tolerance 0.7\"")
    assert "abs_use2dhist=False" in status and "expected" not in status.split("(")[0]
    assert "chance gives" in status and "or more are needed" in status
    # With a search radius too small for the error, the histogram's search is what is named.
    status = _absolute(make_correctors(scene), ref, abs_minobj=5, abs_searchrad=1.5, abs_separation=2.0,
                       abs_tolerance=0.5)
    assert status.startswith("FAILED") and "abs_searchrad 1.5\"" in status and "chance probability" in status
    assert "abs_use2dhist" not in status
    # max_chance decides: the same five matches pass at the default and fail at an absurd limit.
    assert _absolute(make_correctors(scene), ref, abs_minobj=5) == "SUCCESS"
    status = _absolute(make_correctors(scene), ref, abs_minobj=5, max_chance=1e-300)
    assert status.startswith("FAILED") and "max_chance 1e-300" in status


@pytest.mark.parametrize("kind", ["fits", "gwcs"])
def test_a_crowded_field_against_a_displaced_reference_never_succeeds(kind):
    # 10 stars/arcsec^2 and the reference 20" away (beyond abs_searchrad): thousands of chance
    # pairs within the tolerance at every offset tried, and not one convincing.
    scene = make_scene(4, 6250, kind, seed=3, shape=(512, 512))
    far = Table({"RA": scene.refcat["RA"] + 20.0 / 3600 / np.cos(np.radians(scene.refcat["DEC"])),
                 "DEC": scene.refcat["DEC"]})
    for minobj in (15, 3):
        corr = make_correctors(scene)
        _absolute(corr, far, abs_minobj=minobj)
        statuses = [c.meta["fit_info"]["status"] for c in corr]
        assert all(s.startswith("FAILED") for s in statuses), statuses
        assert all(_wcs_unchanged(c) for c in corr)
    # Relative: every other image matched at a wrong offset given (20" east, no histogram).
    corr = make_correctors(scene)
    with pytest.raises(AlignmentError, match="not enough matches"):
        aligner.relative_align(corr, xoffset=20.0, use2dhist=False, minobj=3)
    assert not any(c.meta["fit_info"]["status"] == "SUCCESS" for c in corr)


def test_bad_aligner_inputs_are_clear_errors():
    # No correctors, a WCS whose CD matrix is NaN, a catalog column of words: a ParameterError or
    # CatalogError naming the image and what is wrong, never numpy's or scipy's own ValueError.
    with pytest.raises(ParameterError, match="no correctors given"):
        aligner.relative_align([])
    with pytest.raises(ParameterError, match="no correctors given"):
        aligner.absolute_align([], Table({"RA": [1.0], "DEC": [1.0]}))
    scene = make_scene(2, 300, "fits", seed=1)
    corr = make_correctors(scene)
    corr[0].wcs.wcs.cd = np.full((2, 2), np.nan)
    corr[0].wcs.wcs.set()
    for call in (lambda c: aligner.relative_align(c), lambda c: aligner.absolute_align(c, scene.refcat)):
        with pytest.raises(ParameterError, match="the WCS of im000 maps the image to no area of the sky"):
            call(corr)
    corr = make_correctors(scene)
    t = corr[1].meta["catalog"]
    t["x"] = np.array([f"s{i}" for i in range(len(t))])
    with pytest.raises(aligner.CatalogError, match="catalog of im001: column 'x' must hold numbers, found 's0'"):
        aligner.relative_align(corr)


@pytest.mark.parametrize("cls, func", [(aligner.RelativeParameters, aligner.relative_align),
                                       (aligner.AbsoluteParameters, aligner.absolute_align)])
def test_parameter_sets_have_the_functions_names_and_defaults(cls, func):
    params = inspect.signature(func).parameters
    for f in dataclasses.fields(cls):
        assert params[f.name].default == f.default, f.name
    taken = {"correctors", "store", "provenance", "abs_refcat", "ref_wcs", "ref_wcsinfo", "epoch", "observer",
             "timeout"}
    assert set(params) - taken == {f.name for f in dataclasses.fields(cls)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        cls().clip_accum = True


def test_parameter_sets_validate_with_the_steps_names():
    assert aligner.RelativeParameters().searchrad == 2.0 and aligner.AbsoluteParameters().abs_searchrad == 6.0
    with pytest.raises(ParameterError, match=r"^separation \(0.9 arcsec\) must be larger than tolerance"):
        aligner.RelativeParameters(separation=0.9)
    with pytest.raises(ParameterError, match=r"^abs_separation \(0.9 arcsec\) must be larger than abs_tolerance"):
        aligner.AbsoluteParameters(abs_separation=0.9)
    with pytest.raises(ParameterError, match="^abs_nclip must be an integer >= 0"):
        aligner.AbsoluteParameters(abs_nclip=-1)
    with pytest.raises(ParameterError, match="^yoffset must be a finite number"):
        aligner.RelativeParameters(yoffset=float("inf"))
    with pytest.raises(ParameterError, match="abs_brightest"):
        aligner.AbsoluteParameters(abs_brightest=0)
    with pytest.raises(ParameterError, match="max_chance"):
        dataclasses.replace(aligner.RelativeParameters(), max_chance=0.0)
    p = aligner.RelativeParameters.from_mapping({"minobj": 5, "store": None, "abs_minobj": 1})
    assert p.minobj == 5 and p == aligner.RelativeParameters(minobj=5)


def test_warnings_point_at_the_callers_line():
    scene = make_scene(3, 1000, "fits", seed=2)
    corr = make_correctors(scene)
    corr[2].meta["catalog"] = corr[2].meta["catalog"][:0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        aligner.relative_align(corr)
    mine = [w for w in caught if issubclass(w.category, AlignmentWarning)]
    assert mine and all(w.filename == __file__ for w in mine)
