"""make_corrector for every WCS input kind (astropy WCS, gwcs, FITS file, header text, ASDF),
its errors, and write_wcs round trips (the corrected WCS comes back from disk unchanged)."""
from __future__ import annotations

import copy
import warnings

import asdf
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from tweakwcs.correctors import FITSWCSCorrector, JWSTWCSCorrector

import aligner
from aligner import CatalogError, ParameterError, make_corrector, write_wcs
from aligner.correctors import read_wcs, wcs_kind
from tests.support.aligner_synth import make_scene, wcs_error_mas


@pytest.fixture(scope="module")
def fits_scene():
    return make_scene(2, 300, kind="fits", sip=True, seed=11)


@pytest.fixture(scope="module")
def gwcs_scene():
    return make_scene(2, 300, kind="gwcs", seed=12)


def _same_sky(w1, w2, shape, tol_mas=1e-3):
    rms, mx = wcs_error_mas(w1, w2, shape)
    assert mx < tol_mas, (rms, mx)


def _header_with_size(im, **extra):
    h = im.wcs.to_header(relax=True)
    ny, nx = im.shape
    h.insert(0, ("NAXIS", 2))
    h.insert(1, ("NAXIS1", nx))
    h.insert(2, ("NAXIS2", ny))
    for k, v in extra.items():
        h[k] = v
    return h


# --- input kinds ------------------------------------------------------------------------------

def test_astropy_wcs_object(fits_scene):
    im = fits_scene.images[0]
    cat = im.catalog.copy()
    cat.add_row({"x": -50.0, "y": 10.0, "flux": 1.0})        # outside the image: filtered out
    cat.add_row({"x": 10.0, "y": im.shape[0] + 5.0, "flux": 1.0})
    c = make_corrector(im.wcs, cat, group_id=7, name="a", epoch=2024.25)
    assert isinstance(c, FITSWCSCorrector)
    assert c.meta["group_id"] == 7 and c.meta["name"] == "a" and c.meta["epoch"] == 2024.25
    assert len(c.meta["catalog"]) == len(im.catalog)
    _same_sky(c.wcs, im.wcs, im.shape)
    assert "wcs_path" not in c.meta


def test_fits_image_file_with_sip(fits_scene, tmp_path):
    im = fits_scene.images[0]
    assert im.wcs.sip is not None
    ny, nx = im.shape
    path = tmp_path / "img.fits"
    hdr = im.wcs.to_header(relax=True)
    hdr["DATE-OBS"] = "2024-07-02T00:00:00"
    fits.PrimaryHDU(np.zeros((ny, nx), np.uint8), header=hdr).writeto(path)
    cat = tmp_path / "img.ecsv"
    im.catalog.write(cat)
    c = make_corrector(path, cat)
    assert isinstance(c, FITSWCSCorrector)
    assert c.wcs.pixel_shape == (nx, ny) and c.wcs.sip is not None
    _same_sky(c.wcs, im.wcs, im.shape)
    assert c.meta["name"] == "img" and c.meta["group_id"] is None
    assert isinstance(c.meta["epoch"], Time) and abs(c.meta["epoch"].jyear - 2024.5) < 0.01  # from DATE-OBS
    assert len(c.meta["catalog"]) == len(im.catalog)
    assert c.meta["wcs_kind"] == "fits"


def test_fits_wcs_in_first_extension_and_compressed(fits_scene, tmp_path):
    im = fits_scene.images[1]
    ny, nx = im.shape
    path = tmp_path / "ext.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((ny, nx), np.uint8), header=im.wcs.to_header(relax=True))]
                 ).writeto(path)
    c = make_corrector(str(path), im.catalog)
    _same_sky(c.wcs, im.wcs, im.shape)
    comp = tmp_path / "comp.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.zeros((ny, nx), np.int16),
                                                       header=im.wcs.to_header(relax=True))]).writeto(comp)
    c = make_corrector(comp, im.catalog)
    assert c.wcs.pixel_shape == (nx, ny)
    _same_sky(c.wcs, im.wcs, im.shape)
    assert c.meta["name"] == "comp"


@pytest.mark.parametrize("style", ["text", "raw"])
def test_header_text_file(fits_scene, tmp_path, style):
    im = fits_scene.images[0]
    h = _header_with_size(im)
    h["MJD-OBS"] = 60400.0
    path = tmp_path / "img.hdr"
    if style == "text":
        h.totextfile(path)
    else:
        path.write_bytes(h.tostring().encode("ascii"))
    c = make_corrector(path, im.catalog, group_id="g")
    assert isinstance(c, FITSWCSCorrector) and c.meta["wcs_kind"] == "header"
    assert c.wcs.pixel_shape == im.wcs.pixel_shape
    _same_sky(c.wcs, im.wcs, im.shape)
    assert c.meta["name"] == "img" and c.meta["group_id"] == "g"
    assert abs(c.meta["epoch"].mjd - 60400.0) < 1e-9


@pytest.mark.parametrize("layout", ["top", "jwst", "roman"])
def test_asdf_gwcs_file(gwcs_scene, tmp_path, layout):
    im = gwcs_scene.images[0]
    node = {"wcs": im.wcs, "wcsinfo": dict(im.wcsinfo)}
    tree = {"top": node, "jwst": {"meta": node}, "roman": {"roman": {"meta": node}}}[layout]
    path = tmp_path / "img.asdf"
    asdf.AsdfFile(tree).write_to(path)
    c = make_corrector(path, im.catalog, epoch="2024-07-01T00:00:00")
    assert isinstance(c, JWSTWCSCorrector)
    assert c.ref_angles == {k: im.wcsinfo[k] for k in ("v2_ref", "v3_ref", "roll_ref")}
    _same_sky(c.wcs, im.wcs, im.shape)
    assert c.meta["name"] == "img" and c.meta["wcs_kind"] == "asdf"


def test_gwcs_object_and_wcsinfo_override(gwcs_scene, tmp_path):
    im = gwcs_scene.images[1]
    c = make_corrector(copy.deepcopy(im.wcs), im.catalog, wcsinfo=im.wcsinfo, name="x")
    assert isinstance(c, JWSTWCSCorrector)
    _same_sky(c.wcs, im.wcs, im.shape)
    path = tmp_path / "bare.asdf"
    asdf.AsdfFile({"wcs": im.wcs}).write_to(path)            # no wcsinfo in the file
    c = make_corrector(path, im.catalog, wcsinfo=im.wcsinfo)
    assert isinstance(c, JWSTWCSCorrector)


def test_catalog_file_and_xcentroid_columns(fits_scene, tmp_path):
    im = fits_scene.images[0]
    cat = im.catalog.copy()
    cat.rename_columns(["x", "y"], ["xcentroid", "ycentroid"])
    path = tmp_path / "cat.fits"
    cat.write(path)
    c = make_corrector(im.wcs, str(path))
    assert c.meta["name"] == "cat" and len(c.meta["catalog"]) == len(cat)
    assert c.meta["catalog_path"] == str(path)


# --- errors -----------------------------------------------------------------------------------

def test_gwcs_without_wcsinfo(gwcs_scene, tmp_path):
    import gwcs
    from astropy.modeling.models import Shift

    from aligner.correctors import wcsinfo_from_gwcs

    im = gwcs_scene.images[0]
    # A JWST-style gwcs carries its reference angles in its v2v3 -> world rotation.
    assert wcsinfo_from_gwcs(im.wcs) == pytest.approx({k: im.wcsinfo[k] for k in ("v2_ref", "v3_ref", "roll_ref")})
    corr = make_corrector(im.wcs, im.catalog)
    assert corr.meta["catalog"] is not None
    path = tmp_path / "nowcsinfo.asdf"
    asdf.AsdfFile({"wcs": im.wcs}).write_to(path)
    assert read_wcs(path)[1] == pytest.approx(wcsinfo_from_gwcs(im.wcs))
    # One whose v2v3 -> world transform has no such rotation needs wcsinfo given.
    w = im.wcs
    frames = {f: getattr(w, f) for f in w.available_frames}
    odd = gwcs.WCS([(w.input_frame, w.get_transform(w.input_frame, "v2v3")),
                    (frames["v2v3"], Shift(0.0) & Shift(0.0)), (w.output_frame, None)])
    assert wcsinfo_from_gwcs(odd) is None
    with pytest.raises(ParameterError, match="needs wcsinfo with v2_ref, v3_ref, roll_ref"):
        make_corrector(odd, im.catalog)
    path = tmp_path / "odd.asdf"
    asdf.AsdfFile({"wcs": odd}).write_to(path)
    with pytest.raises(ParameterError, match=r"odd\.asdf.*needs wcsinfo with v2_ref, v3_ref, roll_ref"):
        make_corrector(path, im.catalog)
    with pytest.raises(ParameterError, match="lacks roll_ref"):
        make_corrector(im.wcs, im.catalog, wcsinfo={"v2_ref": 1.0, "v3_ref": 2.0})


def test_asdf_without_wcs_and_gwcs_without_v2v3(gwcs_scene, tmp_path):
    path = tmp_path / "empty.asdf"
    asdf.AsdfFile({"something": 1}).write_to(path)
    with pytest.raises(ParameterError, match=r"empty\.asdf.*no WCS in the ASDF tree"):
        make_corrector(path, Table({"x": [1.0], "y": [1.0]}))
    import gwcs

    im = gwcs_scene.images[0]
    w = im.wcs
    plain = gwcs.WCS([(w.input_frame, w.forward_transform), (w.output_frame, None)])
    with pytest.raises(ParameterError, match="'v2v3' frame"):
        make_corrector(plain, im.catalog, wcsinfo=im.wcsinfo)


def test_wcs_file_errors(fits_scene, tmp_path):
    im = fits_scene.images[0]
    with pytest.raises(ParameterError, match=r"missing\.fits.*no such file"):
        make_corrector(tmp_path / "missing.fits", im.catalog)
    nowcs = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(np.zeros((4, 4), np.uint8)).writeto(nowcs)
    with pytest.raises(ParameterError, match=r"nowcs\.fits.*no HDU has a celestial WCS"):
        make_corrector(nowcs, im.catalog)
    nosize = tmp_path / "nosize.hdr"
    im.wcs.to_header(relax=True).totextfile(nosize)         # no NAXISn
    with pytest.raises(ParameterError, match=r"nosize\.hdr.*no image size"):
        make_corrector(nosize, im.catalog)
    junk = tmp_path / "junk.txt"
    junk.write_text("hello world\n")
    with pytest.raises(ParameterError, match=r"junk\.txt"):
        make_corrector(junk, im.catalog)
    with pytest.raises(ParameterError, match="wcs must be an astropy WCS"):
        make_corrector(42, im.catalog)
    with pytest.raises(ParameterError, match="epoch must be"):
        make_corrector(im.wcs, im.catalog, epoch="not a time", name="e")


def test_catalog_errors(fits_scene, tmp_path):
    im = fits_scene.images[0]
    with pytest.raises(CatalogError, match=r"nocat\.ecsv.*no such file"):
        make_corrector(im.wcs, tmp_path / "nocat.ecsv")
    bad = tmp_path / "bad.ecsv"
    Table({"ra": [1.0], "dec": [2.0]}).write(bad)
    with pytest.raises(CatalogError, match=r"bad\.ecsv.*needs columns 'x' and 'y'"):
        make_corrector(im.wcs, bad)
    assert issubclass(CatalogError, ValueError) and issubclass(ParameterError, ValueError)


# --- kinds and writing ------------------------------------------------------------------------

def test_wcs_kind(tmp_path):
    assert wcs_kind(tmp_path / "a.fits") == "fits"
    assert wcs_kind(tmp_path / "a.fits.gz") == "fits"
    assert wcs_kind(tmp_path / "a.hdr") == "header"
    assert wcs_kind(tmp_path / "a.asdf") == "asdf"
    odd = tmp_path / "a.wcs"                                   # astrometry.net: a FITS file
    fits.PrimaryHDU().writeto(odd)
    assert wcs_kind(odd) == "fits"
    with pytest.raises(ParameterError, match="cannot tell"):
        wcs_kind(tmp_path / "a.xyz")


def _aligned_pair(scene, make):
    cs = [make(im) for im in scene.images]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aligner.relative_align(cs)
    moved = [c for c in cs if c.meta["fit_result"].status == "SUCCESS"]
    assert moved
    return cs


@pytest.mark.parametrize("kind", ["fits", "header"])
def test_write_fits_and_header_round_trip(fits_scene, tmp_path, kind):
    cs = _aligned_pair(fits_scene, lambda im: make_corrector(im.wcs.deepcopy(), im.catalog.copy(), name=im.name))
    for c, im in zip(cs, fits_scene.images):
        suffix = ".fits" if kind == "fits" else ".hdr"
        out = write_wcs(c, tmp_path / f"{im.name}{suffix}", like=kind)
        assert wcs_kind(out) == kind
        if kind == "fits":
            with fits.open(out) as hdul:
                assert hdul[0].data is None and hdul[0].header["IMAGEW"] == im.shape[1]
                assert hdul[0].header["CTYPE1"].endswith("-SIP") and "A_ORDER" in hdul[0].header
        back, info, k, _ = read_wcs(out)
        assert info is None and k == kind and back.sip is not None
        assert back.pixel_shape == c.wcs.pixel_shape
        _same_sky(back, c.wcs, im.shape)


def test_write_asdf_round_trip_of_corrected_gwcs(gwcs_scene, tmp_path):
    cs = _aligned_pair(gwcs_scene, lambda im: make_corrector(copy.deepcopy(im.wcs), im.catalog.copy(),
                                                             wcsinfo=im.wcsinfo, name=im.name))
    src = tmp_path / "in.asdf"
    asdf.AsdfFile({"meta": {"wcs": gwcs_scene.images[0].wcs}}).write_to(src)
    for c, im in zip(cs, gwcs_scene.images):
        out = write_wcs(c, tmp_path / f"{im.name}.asdf", like=src)
        with asdf.open(out) as af:
            assert set(af.tree["wcsinfo"]) == {"v2_ref", "v3_ref", "roll_ref"}
        c2 = make_corrector(out, im.catalog)
        _same_sky(c2.wcs, c.wcs, im.shape)
        if c.meta["fit_result"].status == "SUCCESS":
            assert "v2v3corr" in c2.wcs.available_frames
            assert wcs_error_mas(c2.wcs, im.wcs, im.shape)[0] > 10.0   # really the corrected one
