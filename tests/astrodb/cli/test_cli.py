"""The astrodb command on both backends: every command, every output format, clear errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from astrodb.cli.main import main
from tests.support.synth import gaia_like


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def url(db_factory):
    return db_factory.url()


def test_help_on_every_command(capsys):
    for cmd in ([], ["init"], ["ingest"], ["ingest", "catalog"], ["catalogs"], ["cone"], ["footprint"],
                ["drop"], ["demo"]):
        with pytest.raises(SystemExit) as exit_:
            main([*cmd, "--help"])
        assert exit_.value.code == 0 and "usage: astrodb" in capsys.readouterr().out, cmd
    # and the installed console script
    res = subprocess.run([sys.executable, "-m", "astrodb.cli.main", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "cone" in res.stdout


def test_init_ingest_catalogs_cone_footprint_drop(capsys, url, tmp_path):
    assert run(capsys, "--store", url, "init")[0] == 0
    path = tmp_path / "stars.ecsv"
    gaia_like(200, 150.0, 20.0, 0.3, seed=3, fast=5).write(path)
    code, out, _ = run(capsys, "--store", url, "ingest", "catalog", str(path), "--name", "mine")
    assert code == 0 and "200 rows ingested" in out
    code, out, _ = run(capsys, "--store", url, "ingest", "catalog", str(path), "--name", "mine")
    assert code == 0 and "already ingested" in out
    code, out, _ = run(capsys, "--store", url, "catalogs")
    assert "mine" in out and "J2016" in out and "200" in out and str(path) in out

    out_file = tmp_path / "cone.ecsv"
    code, _, _ = run(capsys, "--store", url, "cone", "150", "20", "6arcmin", "--catalog", "mine",
                     "--epoch", "2030", "--format", "ecsv", "-o", str(out_file))
    t = Table.read(out_file)
    assert code == 0 and len(t) > 0 and t.meta["epoch"] == 2030.0
    assert np.all(t["distance"] * 60 <= 6.0)

    for fmt in ("csv", "votable", "json", "text"):
        code, out, _ = run(capsys, "--store", url, "cone", "150", "20", "0.1", "--catalog", "mine",
                           "--format", fmt, "--columns", "source_id,ra,dec")
        assert code == 0, fmt
    doc = json.loads(out if fmt == "json" else run(capsys, "--store", url, "cone", "150", "20", "0.1",
                                                   "--catalog", "mine", "--format", "json")[1])
    assert doc["columns"][0]["name"] == "source_id" and doc["meta"]["catalog"] == "mine"
    assert all(len(r) == len(doc["columns"]) for r in doc["rows"])

    code, out, _ = run(capsys, "--store", url, "footprint", "--polygon",
                       "149.9,19.9 150.1,19.9 150.1,20.1 149.9,20.1", "--catalog", "mine", "--format", "csv")
    assert code == 0 and out.startswith("source_id,")

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 20.0]
    w.wcs.crpix = [50.5, 50.5]
    w.wcs.cdelt = [-0.002, 0.002]
    hdr = w.to_header()
    fits.PrimaryHDU(data=np.zeros((100, 100), np.float32), header=hdr).writeto(tmp_path / "img.fits")
    code, out, _ = run(capsys, "--store", url, "footprint", "--wcs", str(tmp_path / "img.fits"),
                       "--catalog", "mine", "--format", "json")
    assert code == 0 and len(json.loads(out)["rows"]) > 0

    code, out, _ = run(capsys, "--store", url, "drop", "mine")
    assert code == 0 and "200 sources" in out


@pytest.mark.parametrize("args,match", [
    (["cone", "0", "95", "1", "--catalog", "x"], "dec must be within"),
    (["cone", "0", "0", "1", "--catalog", "nope"], "no catalog 'nope'"),
    (["ingest", "catalog", "/no/such.ecsv", "--name", "x"], "no such file"),
    (["footprint", "--polygon", "1,2 3", "--catalog", "x"], "--polygon must be"),
])
def test_errors_are_one_line_without_traceback(capsys, url, args, match):
    run(capsys, "--store", url, "init")
    code, out, err = run(capsys, "--store", url, *args)
    assert code == 2 and match in err and "Traceback" not in err and err.count("\n") == 1


def test_uninitialized_store_says_what_to_do(capsys, url):
    code, _, err = run(capsys, "--store", url, "catalogs")
    assert code == 2 and "astrodb init" in err


def test_demo_finds_barnards_star_at_both_epochs(capsys, url):
    code, out, err = run(capsys, "--store", url, "demo")
    assert code == 0, err
    assert "117955 rows ingested into catalog 'hip'" in out
    assert out.count("\n    87937 ") == 2  # one row at each epoch
    # The alignment part: every image aligned to a fraction of a mas, the run reproduces.
    rows = [line.split() for line in out.splitlines() if line.startswith("image_")]
    assert len(rows) == 4 and all(r[-1] == "SUCCESS" and float(r[4]) < 1.0 < float(r[2]) for r in rows), out
    assert ": reproduces (largest WCS difference" in out
    # Second run: the catalog is already there.
    code, out, _ = run(capsys, "--store", url, "demo")
    assert code == 0 and "already in the store" in out
