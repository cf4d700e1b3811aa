"""Test-only comparison with the anchor, stcal.tweakreg 1.20 (tweakwcs 0.9.3), on the same inputs
where it finishes and has no overlap bias: the corrected WCSs agree within 1 mas."""
from __future__ import annotations

import warnings

import pytest

import aligner
from tests.support.aligner_synth import absolute_error_mas, make_correctors, make_scene, wcs_error_mas

tweakreg = pytest.importorskip("stcal.tweakreg.tweakreg", reason="stcal (test extra) not installed")


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def test_absolute_alignment_of_one_image_agrees_with_stcal(tmp_path):
    # gwcs images: stcal's JWST corrector works in arcsec like ours (its FITS corrector in pixels).
    scene = make_scene(1, 2000, "gwcs", seed=31)
    path = tmp_path / "ref.ecsv"
    scene.refcat["RA", "DEC"].write(path)
    ours, theirs = make_correctors(scene), make_correctors(scene)
    aligner.absolute_align(ours, str(path))
    _quiet(tweakreg.absolute_align, theirs, str(path), None, None, None)
    assert theirs[0].meta["fit_info"]["status"] == "SUCCESS"
    im = scene.images[0]
    assert wcs_error_mas(ours[0].wcs, theirs[0].wcs, im.shape)[0] < 1.0
    assert absolute_error_mas(ours, scene) < 0.5


def test_relative_alignment_of_two_images_agrees_with_stcal():
    scene = make_scene(2, 2000, "gwcs", seed=32)
    ours, theirs = make_correctors(scene), make_correctors(scene)
    aligner.relative_align(ours, enforce_user_order=True)
    _quiet(tweakreg.relative_align, theirs, enforce_user_order=True)
    assert [c.meta["fit_info"]["status"] for c in theirs] == ["REFERENCE", "SUCCESS"]
    assert [c.meta["fit_info"]["status"] for c in ours] == ["REFERENCE", "SUCCESS"]
    im = scene.images[1]
    assert wcs_error_mas(ours[1].wcs, theirs[1].wcs, im.shape)[0] < 1.0
