"""The ``aligner`` command: end to end on FITS headers + ECSV catalogs of a synthetic scene
(relative + absolute against a reference ECSV file), reports, exit statuses and messages,
--help, and the installed console script."""
from __future__ import annotations

import contextlib
import re
import inspect
import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

import aligner
from aligner import cli
from aligner.correctors import read_wcs
from tests.support.aligner_synth import make_scene, relative_error_mas, wcs_error_mas


class _Tty(io.StringIO):
    def isatty(self):
        return True


def run(argv, tty=False):
    """main(argv) in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), (_Tty() if tty else io.StringIO())
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _write_wcs_file(im, path: Path) -> None:
    """The image's (perturbed) WCS as a text header, a data-less FITS header, or a
    tile-compressed FITS image (the three ways headers come)."""
    ny, nx = im.shape
    h = im.wcs.to_header(relax=True)
    if path.suffix == ".hdr":
        h.insert(0, ("NAXIS", 2))
        h.insert(1, ("NAXIS1", nx))
        h.insert(2, ("NAXIS2", ny))
        h.totextfile(path)
    elif path.suffix == ".fz":
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.zeros((ny, nx), np.int16), header=h)]).writeto(path)
    else:
        h["IMAGEW"], h["IMAGEH"] = nx, ny
        fits.PrimaryHDU(header=h).writeto(path)


SUFFIXES = [".hdr", ".fits", ".fits.fz", ".hdr"]


@pytest.fixture(scope="module")
def scene():
    return make_scene(4, 2000, kind="fits", seed=21)


@pytest.fixture(scope="module")
def work(scene, tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "in").mkdir()
    images = []
    for im, suffix in zip(scene.images, SUFFIXES):
        _write_wcs_file(im, d / "in" / f"{im.name}{suffix}")
        im.catalog.write(d / "in" / f"{im.name}_cat.ecsv")
        images.append({"wcs": f"in/{im.name}{suffix}", "catalog": f"in/{im.name}_cat.ecsv",
                       "group_id": im.group_id, "epoch": im.epoch})
    (d / "manifest.json").write_text(json.dumps({"images": images}))
    scene.refcat.write(d / "ref.ecsv")
    return d


@pytest.fixture(scope="module")
def aligned(work):
    rc, out, err = run(["align", work / "manifest.json", "--abs-refcat", work / "ref.ecsv", "-o", work / "out"])
    return SimpleNamespace(rc=rc, out=out, err=err, dir=work / "out")


# --- end to end -------------------------------------------------------------------------------

def test_end_to_end_relative_then_absolute(scene, aligned):
    assert aligned.rc == 0, aligned.err
    assert aligned.err == ""                      # not a terminal: quiet
    assert "4 of 4 image(s) aligned" in aligned.out
    for im, suffix in zip(scene.images, SUFFIXES):
        before = wcs_error_mas(im.wcs, im.wcs_true, im.shape)[0]
        path = aligned.dir / f"{im.name}{suffix}"
        assert path.is_file()
        w, _, kind, _ = read_wcs(path)
        assert kind == ("header" if suffix == ".hdr" else "fits")
        assert w.pixel_shape == (im.shape[1], im.shape[0])
        rms, mx = wcs_error_mas(w, im.wcs_true, im.shape)
        assert before > 100.0 and mx < 5.0, (im.name, before, rms, mx)


def test_fit_reports(scene, aligned):
    statuses = []
    for im in scene.images:
        t = Table.read(aligned.dir / f"{im.name}_fit.ecsv")
        assert list(t["step"]) == ["relative", "absolute"]
        assert t["status"][1] == "SUCCESS"
        statuses.append(t["status"][0])
        assert t["rmse"].unit == "arcsec" and 0 < t["rmse"][1] < 0.01 and t["nmatches"][1] > 100
        for col in ("message", "xshift", "yshift", "rotation", "scale", "matrix", "nref"):
            assert col in t.colnames
        assert t.meta["status"] == "SUCCESS" and t.meta["output"].endswith(im.name + SUFFIXES[im.group_id])
        doc = json.loads((aligned.dir / f"{im.name}_fit.json").read_text())
        assert doc["status"] == "SUCCESS" and doc["epoch"] == pytest.approx(im.epoch)
        assert [s["step"] for s in doc["steps"]] == ["relative", "absolute"]
        assert set(aligner.FitResult(name="", group_id=0, status="").to_dict()) <= set(doc["steps"][1])
        assert doc["steps"][1]["reference"]["source"].endswith("ref.ecsv")
    assert sorted(statuses) == ["REFERENCE", "SUCCESS", "SUCCESS", "SUCCESS"]


def test_table_manifest_mjd_times_absolute_only_with_progress(scene, work, tmp_path):
    t = Table({"wcs": [str(work / "in" / f"{im.name}{s}") for im, s in zip(scene.images, SUFFIXES)],
               "catalog": [str(work / "in" / f"{im.name}_cat.ecsv") for im in scene.images],
               "time": [Time(im.epoch, format="jyear", scale="tdb").utc.mjd for im in scene.images],
               "name": [f"n{k}" for k in range(4)]})
    t.write(tmp_path / "m.ecsv")
    rc, out, err = run(["align", tmp_path / "m.ecsv", "--no-relative", "--abs-refcat", work / "ref.ecsv",
                        "--abs-fitgeometry", "rscale", "-o", tmp_path / "out"], tty=True)
    assert rc == 0, err
    assert "[1/4] reading" in err and "absolute alignment of 4 image(s)" in err and "[4/4] writing" in err
    assert "relative alignment" not in err
    for k, im in enumerate(scene.images):
        rep = Table.read(tmp_path / "out" / f"{im.name}_fit.ecsv")
        assert list(rep["step"]) == ["absolute"] and rep["fitgeometry"][0] == "rscale"
        assert rep.meta["name"] == f"n{k}" and rep.meta["epoch"] == pytest.approx(im.epoch, abs=1e-6)
    assert "n0" in out


def test_some_images_not_aligned_exit_3(scene, work, tmp_path):
    far = SimpleNamespace(wcs=scene.images[2].wcs.deepcopy(), shape=scene.images[2].shape)
    far.wcs.wcs.crval = far.wcs.wcs.crval + [0.0, 1.0]     # 1 deg away: overlaps nothing
    _write_wcs_file(far, tmp_path / "far.hdr")
    images = [{"wcs": str(work / "in" / "im000.hdr"), "catalog": str(work / "in" / "im000_cat.ecsv")},
              {"wcs": str(work / "in" / "im001.fits"), "catalog": str(work / "in" / "im001_cat.ecsv")},
              {"wcs": "far.hdr", "catalog": str(work / "in" / "im002_cat.ecsv")}]
    (tmp_path / "m.json").write_text(json.dumps(images))
    rc, out, err = run(["align", tmp_path / "m.json", "-o", tmp_path / "out"])
    assert rc == 3
    assert "2 of 3 image(s) aligned" in out and "far: relative FAILED" in out
    assert err.startswith("aligner: warning: relative alignment: 1 of 3") and err.count("\n") == 1
    assert not (tmp_path / "out" / "far.hdr").exists()        # only aligned images are written
    assert (tmp_path / "out" / "im000.hdr").exists() and (tmp_path / "out" / "im001.fits").exists()
    rep = Table.read(tmp_path / "out" / "far_fit.ecsv")
    assert rep["status"][0] == "FAILED" and "no overlap" in rep["message"][0] and rep.meta["output"] is None
    assert json.loads((tmp_path / "out" / "far_fit.json").read_text())["status"].startswith("FAILED")


def test_gwcs_asdf_images(tmp_path):
    """JWST-style gwcs in ASDF files (wcsinfo in the file or in the manifest) come back as ASDF."""
    import asdf

    sc = make_scene(2, 800, kind="gwcs", seed=23)
    images = []
    for k, im in enumerate(sc.images):
        tree = {"meta": {"wcs": im.wcs, "wcsinfo": im.wcsinfo}} if k else {"wcs": im.wcs}
        asdf.AsdfFile(tree).write_to(tmp_path / f"{im.name}.asdf")
        im.catalog.write(tmp_path / f"{im.name}.ecsv")
        e = {"wcs": f"{im.name}.asdf", "catalog": f"{im.name}.ecsv"}
        if not k:
            e["wcsinfo"] = {key: im.wcsinfo[key] for key in ("v2_ref", "v3_ref", "roll_ref")}
        images.append(e)
    (tmp_path / "m.json").write_text(json.dumps({"images": images}))
    rc, out, err = run(["align", tmp_path / "m.json", "-o", tmp_path / "out"])
    assert rc == 0, err
    ws = [read_wcs(tmp_path / "out" / f"{im.name}.asdf") for im in sc.images]
    assert all(kind == "asdf" and info is not None for _, info, kind, _ in ws)
    # relative alignment: the two images now agree (a common frame error remains)
    assert relative_error_mas([im.wcs for im in sc.images], sc) > 100.0
    assert relative_error_mas([w for w, *_ in ws], sc) < 5.0


def test_gaia_store_reference_at_the_images_epoch(tmp_path):
    """--abs-refcat GAIADR3 from an astrodb store: references moved to the images' epoch (8 years
    after the catalog's); a wrong --epoch leaves the bulk proper motion (~40 mas) in; images at
    epochs far apart are aligned in separate runs, each at its own epoch."""
    import astrodb

    sc = make_scene(4, 2000, kind="fits", seed=22, epoch_gap=8.0)
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store = astrodb.connect(url)
    store.init()
    images = []
    for im in sc.images:
        _write_wcs_file(im, tmp_path / f"{im.name}.hdr")
        im.catalog.write(tmp_path / f"{im.name}_cat.ecsv")
        images.append({"wcs": f"{im.name}.hdr", "catalog": f"{im.name}_cat.ecsv", "epoch": im.epoch})
    (tmp_path / "m.json").write_text(json.dumps(images))
    argv = ["align", tmp_path / "m.json", "--abs-refcat", "GAIADR3", "--store", url]

    rc, out, err = run(argv + ["-o", tmp_path / "o"])
    assert rc == 2 and "needs the catalog 'gaia_dr3'" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()

    ref = sc.refcat.copy()
    ref.remove_columns(["RA", "DEC"])
    store.ingest_catalog(ref, "gaia_dr3")
    rc, out, err = run(argv + ["-o", tmp_path / "out"])
    assert rc == 0, err
    rc2, _, _ = run(argv + ["--epoch", str(sc.params["ref_epoch"]), "--no-relative", "-o", tmp_path / "wrong"])
    assert rc2 == 0
    for im in sc.images:
        good = wcs_error_mas(read_wcs(tmp_path / "out" / f"{im.name}.hdr")[0], im.wcs_true, im.shape)[1]
        wrong = wcs_error_mas(read_wcs(tmp_path / "wrong" / f"{im.name}.hdr")[0], im.wcs_true, im.shape)[1]
        assert good < 5.0 and wrong > 20.0, (good, wrong)
        q = json.loads((tmp_path / "out" / f"{im.name}_fit.json").read_text())["steps"][-1]["reference"]["query"]
        assert q["catalog"] == "gaia_dr3" and q["epoch"] == pytest.approx(im.epoch)

    for k, e in enumerate(images):
        e["epoch"] = sc.images[k].epoch + (0.0 if k < 2 else 0.5)
    (tmp_path / "m.json").write_text(json.dumps(images))
    rc, out, err = run(argv + ["--no-relative", "-o", tmp_path / "runs"], tty=True)
    assert rc == 0 and "(epoch run 1/2)" in err and "(epoch run 2/2)" in err
    epochs = [json.loads((tmp_path / "runs" / f"{im.name}_fit.json").read_text())["steps"][-1]["reference"]
              ["query"]["epoch"] for im in sc.images]
    assert epochs[0] == epochs[1] == pytest.approx(sc.images[0].epoch)
    assert epochs[2] == epochs[3] == pytest.approx(sc.images[0].epoch + 0.5)


# --- errors -----------------------------------------------------------------------------------

def _bad_inputs(work: Path, tmp: Path):
    Table({"wcs": ["in/im000.hdr"], "name": ["a"]}).write(tmp / "nocat.ecsv")
    (tmp / "nocat.json").write_text(json.dumps({"images": [{"wcs": "x.hdr"}]}))
    (tmp / "one.json").write_text(json.dumps([{"wcs": str(work / "in" / "im000.hdr"),
                                               "catalog": str(work / "in" / "im000_cat.ecsv")}]))
    (tmp / "nofile.json").write_text(json.dumps([{"wcs": "nowhere.fits", "catalog": "c.ecsv"},
                                                  {"wcs": "elsewhere.fits", "catalog": "c.ecsv"}]))
    (tmp / "broken.json").write_text("{not json")
    m = work / "manifest.json"
    return [
        (["align", tmp / "missing.json", "-o", tmp / "o"], "manifest '.*missing.json': no such file"),
        (["align", tmp / "nocat.ecsv", "-o", tmp / "o"], "no column 'catalog'"),
        (["align", tmp / "nocat.json", "-o", tmp / "o"], "image 0: no 'catalog'"),
        (["align", tmp / "broken.json", "-o", tmp / "o"], "not valid JSON"),
        (["align", tmp / "nofile.json", "-o", tmp / "o"], "nowhere.fits'?: no such file"),
        (["align", m, "--separation", "0.9", "-o", tmp / "o"], r"separation \(0.9 arcsec\) must be larger"),
        (["align", m, "--abs-refcat", work / "ref.ecsv", "--abs-separation", "0.5", "-o", tmp / "o"],
         "abs_separation"),
        (["align", m, "--abs-refcat", tmp / "nope.ecsv", "-o", tmp / "o"], "neither a known catalog name"),
        (["align", m, "--minobj", "many", "-o", tmp / "o"], "argument --minobj: invalid int value"),
        (["align", m, "--fitgeometry", "affine", "-o", tmp / "o"], "argument --fitgeometry: invalid choice"),
        (["align", m, "--abs-refcat", work / "ref.ecsv", "--epoch", "someday", "-o", tmp / "o"], "--epoch must be"),
        (["align", m], "the following arguments are required: -o/--outdir"),
        ([], "the following arguments are required: COMMAND"),
        (["align", tmp / "one.json", "-o", tmp / "o"], "nothing to do: only one image group"),
        (["align", m, "--no-relative", "-o", tmp / "o"], "nothing to do: --no-relative"),
        (["align", m, "-o", work / "in"], "would replace the input"),
    ]


def test_bad_input_exit_2_one_line(work, tmp_path):
    for argv, message in _bad_inputs(work, tmp_path):
        rc, out, err = run(argv)
        assert rc == 2, (argv, err)
        assert out == "", argv
        assert err.startswith("aligner: error: ") and err.count("\n") == 1, err
        assert re.search(message, err), (message, err)
        assert not (tmp_path / "o").exists()


# --- help and defaults ------------------------------------------------------------------------

def test_help_lists_everything():
    rc, out, err = run(["--help"])
    assert rc == 0 and "align" in out and err == ""
    rc, out, _ = run(["align", "--help"])
    assert rc == 0
    for name in list(cli._REL_OPTIONS) + list(cli._ABS_OPTIONS):
        assert "--" + name.replace("_", "-") in out, name
    for flag in ("--abs-refcat", "--store", "--no-relative", "--outdir", "--no-use2dhist", "--no-abs-use2dhist",
                 "MANIFEST", "exit status"):
        assert flag in out


def test_defaults_are_the_functions():
    args = cli._parser().parse_args(["align", "m.json", "-o", "out"])
    for func, names in ((aligner.relative_align, cli._REL_OPTIONS), (aligner.absolute_align, cli._ABS_OPTIONS)):
        params = inspect.signature(func).parameters
        for name in names:
            assert getattr(args, name) == params[name].default, name
    # and every tweakreg parameter of the two functions is an option
    exposed = set(cli._REL_OPTIONS) | set(cli._ABS_OPTIONS)
    skip = {"correctors", "abs_refcat", "ref_wcs", "ref_wcsinfo", "abs_catalog_output_dir", "store", "observer",
            "timeout", "provenance"}
    for func in (aligner.relative_align, aligner.absolute_align):
        assert set(inspect.signature(func).parameters) - skip <= exposed
    assert args.abs_refcat is None and args.relative is True


def test_epoch_runs_split_wide_spans_keep_groups_together():
    def corrector(gid, epoch):
        return SimpleNamespace(meta={"group_id": gid, "epoch": epoch})

    cs = [corrector(1, 2024.50), corrector(1, 2024.52), corrector(2, 2024.55), corrector(3, 2026.0),
          corrector(None, None), corrector(4, "2026-01-02")]
    runs = aligner.epoch_runs(cs)
    assert len(runs) == 2
    (e1, r1), (e2, r2) = runs
    assert r1 == [cs[0], cs[1], cs[2], cs[4]]          # the untimed image joins the largest run
    assert r2 == [cs[3], cs[5]]
    assert e1 == pytest.approx(np.mean([2024.50, 2024.52, 2024.55])) and 2026.0 <= e2 < 2026.01
    assert aligner.epoch_runs([corrector(None, None)])[0][0] is None
    assert len(aligner.epoch_runs(cs, span=10.0)) == 1


def test_the_command_runs_the_images_of_each_epoch_run():
    ims = [SimpleNamespace(corrector=SimpleNamespace(meta={"group_id": None, "epoch": e}))
           for e in (2024.5, 2026.0, 2024.52)]
    assert cli._epoch_runs(ims) == [(pytest.approx(2024.51), [ims[0], ims[2]]), (2026.0, [ims[1]])]


# --- the installed command --------------------------------------------------------------------

def test_console_script_help():
    exe = Path(sys.executable).parent / "aligner"
    if not exe.exists():
        pytest.skip("console script not installed (pip install -e .)")
    p = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "align" in p.stdout and p.stderr == ""


def test_runs_are_recorded_in_the_store_of_astrodb_url_also_with_a_file_reference(work, tmp_path, monkeypatch):
    import astrodb
    from astrodb.provenance.audit import list_runs

    url = f"sqlite:///{tmp_path / 'env.sqlite'}"
    astrodb.connect(url).init()
    monkeypatch.setenv("ASTRODB_URL", url)
    rc, out, err = run(["align", work / "manifest.json", "--abs-refcat", work / "ref.ecsv", "-o", tmp_path / "o"])
    assert rc == 0, err
    runs = list_runs(astrodb.connect(url))
    assert sorted(runs["step"]) == ["absolute", "relative"], runs
    # --no-provenance records nothing; --store wins over the environment.
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    astrodb.connect(other).init()
    rc, _, err = run(["align", work / "manifest.json", "--abs-refcat", work / "ref.ecsv", "--no-provenance",
                      "-o", tmp_path / "o2"])
    assert rc == 0, err
    rc, _, err = run(["align", work / "manifest.json", "--abs-refcat", work / "ref.ecsv", "--store", other,
                      "--no-relative", "-o", tmp_path / "o3"])
    assert rc == 0, err
    assert len(list_runs(astrodb.connect(url))) == 2 and list(list_runs(astrodb.connect(other))["step"]) == ["absolute"]


def test_a_store_catalog_by_name(work, tmp_path, scene):
    import astrodb

    url = f"sqlite:///{tmp_path / 'cats.sqlite'}"
    store = astrodb.connect(url)
    store.init()
    ref = scene.refcat.copy()
    ref.remove_columns(["RA", "DEC"])
    store.ingest_catalog(ref, "deep_field")
    argv = ["align", work / "manifest.json", "--store", url, "--no-relative"]
    rc, out, err = run(argv + ["--abs-refcat", "deep_field", "-o", tmp_path / "o"])
    assert rc == 0, err
    doc = json.loads((tmp_path / "o" / f"{scene.images[0].name}_fit.json").read_text())
    assert doc["steps"][-1]["reference"]["source"] == "store:deep_field"
    rc, out, err = run(argv + ["--abs-refcat", "shallow_field", "-o", tmp_path / "o2"])
    assert rc == 2 and "not a Gaia release name" in err and "catalogs there: deep_field" in err
