"""Bad input, as a new user or an attacker gives it: every case is a clear one-line error naming
what is wrong, on both backends, and leaves the store exactly as it was (row counts of every
table checked before and after)."""
from __future__ import annotations

import contextlib
import gzip
import io
import math
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from astropy.table import Table

import astrodb
from astrodb.cli import main as cli
from tests.support.gaia_fixtures import write_dr2_partition, write_dr3_partition

TABLES = ("catalogs", "source_files", "sources")


def _counts(store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def _run(url: str, argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["--store", url] + [str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def base(db_factory, tmp_path_factory):
    """A store with one good catalog (so that 'unchanged' means something)."""
    store = db_factory.store()
    d = tmp_path_factory.mktemp("good")
    Table({"ra": [10.0, 10.1], "dec": [2.0, 2.1]}).write(d / "good.ecsv")
    store.ingest_catalog(str(d / "good.ecsv"), "good", epoch=2016.0)
    yield store
    store.close()


def _write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


ECSV_HEAD = "# %ECSV 1.0\n# ---\n# datatype:\n# - {name: ra, datatype: float64}\n"

# (label, file name, content, extra CLI arguments, expected words in the one-line error)
CATALOG_CASES = [
    ("header-only CSV", "h.csv", "ra,dec\n", ["--epoch", "2016"], "no rows"),
    ("header-only ECSV", "h.ecsv", ECSV_HEAD + "# - {name: dec, datatype: float64}\nra dec\n",
     ["--epoch", "2016"], "no rows"),
    ("unknown unit", "u.ecsv", ECSV_HEAD + "# - {name: dec, datatype: float64, unit: bogus}\nra dec\n1.0 2.0\n",
     ["--epoch", "2016"], "unit 'bogus' is not a unit astropy knows"),
    ("RA 1e308", "r.csv", "ra,dec\n1e308,2\n", ["--epoch", "2016"], "right ascension outside [-360, 720]"),
    ("RA infinite", "ri.csv", "ra,dec\ninf,2\n", ["--epoch", "2016"], "non-finite position"),
    ("pmra 1e30", "p.csv", "ra,dec,pmra,pmdec,parallax\n10,2,1e30,0,1\n", ["--epoch", "2016"],
     "proper motion above 100\"/yr"),
    ("parallax 5 arcsec", "x.csv", "ra,dec,pmra,pmdec,parallax\n10,2,1,1,5000\n", ["--epoch", "2016"],
     "parallax above 2\""),
    ("catalog epoch 1e9", "e.csv", "ra,dec\n10,2\n", ["--epoch", "1e9"], "between 1000 and 3000"),
    ("epoch column 1e9", "e2.csv", "ra,dec,epoch\n10,2,1e9\n", [], "epoch outside 1000-3000"),
    ("epoch column NaN, no epoch", "e3.csv", "ra,dec,epoch\n10,2,\n", [], "missing epoch"),
    ("a README as a catalog", "README.md", "# Title\n\nSome words, not a table.\n", ["--epoch", "2016"],
     "cannot read as a table"),
]


@pytest.mark.parametrize("label, fname, text, extra, words", CATALOG_CASES, ids=[c[0] for c in CATALOG_CASES])
def test_bad_user_catalogs(base, tmp_path, label, fname, text, extra, words):
    before = _counts(base)
    path = _write(tmp_path, fname, text)
    rc, out, err = _run(base.url, ["ingest", "catalog", path, "--name", "bad"] + extra)
    assert rc == 2, (label, rc, err)
    assert err.startswith("astrodb: error: ") and err.count("\n") == 1 and words in err, err
    assert out == ""
    # The Python API says the same, as an IngestError (a ValueError).
    with pytest.raises(astrodb.IngestError, match=".") as exc:
        base.ingest_catalog(str(path), "bad", epoch=None if not extra else float(extra[1]))
    assert isinstance(exc.value, ValueError)
    assert _counts(base) == before


def test_a_zero_row_table_through_the_api(base):
    before = _counts(base)
    with pytest.raises(astrodb.IngestError, match="no rows"):
        base.ingest_catalog(Table({"ra": np.zeros(0), "dec": np.zeros(0)}), "empty", epoch=2016.0)
    assert _counts(base) == before


def _corrupt(d: Path) -> list[Path]:
    """Gaia partitions that all fail: truncated gzip, a flipped byte, a header only, DR2 rows."""
    d.mkdir()
    good = write_dr3_partition(d, 50, seed=1)
    data = good.read_bytes()
    (d / "GaiaSource_000001-000002.csv.gz").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    (d / "GaiaSource_000003-000004.csv.gz").write_bytes(bytes(flipped))
    header = gzip.decompress(data).decode().split("\n")
    head = "\n".join(ln for ln in header if ln.startswith("#")) + "\n" + next(ln for ln in header if not ln.startswith("#")) + "\n"
    (d / "GaiaSource_000005-000006.csv.gz").write_bytes(gzip.compress(head.encode()))
    good.unlink()
    write_dr2_partition(d, 50, seed=2, name="GaiaSource_000007-000008.csv.gz")
    return sorted(d.iterdir())


def test_a_gaia_load_where_every_file_fails_leaves_no_trace(base, tmp_path):
    _corrupt(tmp_path / "g")
    before = _counts(base)
    rc, out, err = _run(base.url, ["ingest", "gaia", tmp_path / "g", "--release", "dr3", "--catalog", "g"])
    assert rc == 3, err
    text = out + err
    assert "0 file(s) loaded" in text and "4 failed" in text and "no rows" in text, text
    assert _counts(base) == before
    assert "g" not in [c.name for c in base.catalogs()]
    if base.backend == "postgresql":
        with base.engine.connect() as conn:
            left = conn.execute(sa.text("SELECT count(*) FROM pg_class WHERE relname LIKE 'sources\\_c%' "
                                        "AND relkind IN ('r', 'p')")).scalar_one()
            parts = conn.execute(sa.text("SELECT count(*) FROM catalogs")).scalar_one()
        assert left == parts, "an empty partition was left behind"


def test_gaia_jobs_must_be_positive(base, tmp_path):
    before = _counts(base)
    rc, out, err = _run(base.url, ["ingest", "gaia", tmp_path, "--release", "dr3", "--jobs", "-3"])
    assert rc == 2 and "jobs must be an integer >= 1" in err and err.count("\n") == 1, err
    assert _counts(base) == before


@pytest.mark.parametrize("epoch", [1e9, math.inf, -1e300, 20300.0, "J1e9"])
def test_query_epochs_follow_the_same_rule(base, epoch):
    with pytest.raises(astrodb.QueryError, match="epoch"):
        base.cone(10.0, 2.0, 1.0, catalog="good", epoch=epoch)
    with pytest.raises(astrodb.QueryError, match="epoch"):
        base.footprint([[9, 1], [11, 1], [11, 3], [9, 3]], catalog="good", epoch=epoch)
    rc, out, err = _run(base.url, ["cone", "10", "2", "1", "--catalog", "good", f"--epoch={epoch}"])
    assert rc == 2 and "epoch" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("name", ["", "two\nlines", "tab\there", "x" * 10_000_000, "-dash", "a b", "ünï", "a" * 65])
def test_catalog_names_are_checked(base, tmp_path, name):
    before = _counts(base)
    good = tmp_path / "ok.ecsv"
    Table({"ra": [10.0], "dec": [2.0]}).write(good)
    with pytest.raises(astrodb.IngestError, match="is not a catalog name") as exc:
        base.ingest_catalog(str(good), name, epoch=2016.0)
    assert len(str(exc.value)) < 300 and "\n" not in str(exc.value)
    with pytest.raises(astrodb.CatalogNotFoundError, match="is not a catalog name") as exc:
        base.cone(10.0, 2.0, 1.0, catalog=name)
    assert len(str(exc.value)) < 300
    assert _counts(base) == before


def test_an_unknown_catalog_names_the_near_ones_only(base, tmp_path):
    for k in range(30):
        Table({"ra": [10.0 + k * 0.01], "dec": [2.0]}).write(tmp_path / f"c{k}.ecsv")
        base.ingest_catalog(str(tmp_path / f"c{k}.ecsv"), f"survey_{k:02d}", epoch=2016.0)
    with pytest.raises(astrodb.CatalogNotFoundError) as exc:
        base.cone(10.0, 2.0, 1.0, catalog="survey_1")
    msg = str(exc.value)
    assert "did you mean: survey_" in msg and "more (astrodb catalogs)" in msg and len(msg) < 300, msg
    with pytest.raises(astrodb.CatalogNotFoundError, match="catalogs: good"):
        base.cone(10.0, 2.0, 1.0, catalog="zzz")


@pytest.mark.parametrize("cd, words", [(np.full((2, 2), np.nan), "non-finite CD/PC"),
                                       (np.zeros((2, 2)), "singular CD/PC")])
def test_a_footprint_through_a_broken_wcs_says_so(base, cd, words):
    # It used to return an empty table (NaN CD) or raise astropy's multi-line SingularMatrixError.
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cd = [10.0, 2.0], [50.0, 50.0], cd
    with pytest.raises(astrodb.QueryError, match=words) as exc:
        base.footprint((w, (100, 100)), catalog="good")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("polygon, words", [("10,10 11,11 11,10 10,11", "cross each other"),
                                            ("10,0 20,0 30,0", "no area")])
def test_polygons_that_are_no_region(base, polygon, words):
    rc, out, err = _run(base.url, ["footprint", "--polygon", polygon, "--catalog", "good"])
    assert rc == 2 and words in err and err.count("\n") == 1, err


def test_two_ingests_under_one_name_at_once(db_factory, tmp_path):
    # The second one to commit says the name was taken meanwhile, in one line; no raw
    # IntegrityError or "database is locked".
    import subprocess
    import sys

    url = db_factory.url()
    astrodb.connect(url).init()
    n = 200_000
    Table({"ra": np.random.default_rng(1).uniform(0, 360, n), "dec": np.random.default_rng(2).uniform(-60, 60, n)}
          ).write(tmp_path / "big.csv")
    code = ("import sys; from astrodb.cli.main import main; "
            f"sys.exit(main(['--store', {url!r}, 'ingest', 'catalog', {str(tmp_path / 'big.csv')!r}, "
            "'--name', 'same', '--epoch', '2016']))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _, _ in results) in ([0, 0], [0, 2]), results
    for rc, _, err in results:
        if rc == 2:
            assert err.count("\n") == 1 and ("created meanwhile" in err or "already exists" in err), err
    store = astrodb.connect(url)
    assert store.catalog("same").row_count == n
    store.close()


def test_database_errors_are_one_line():
    from astrodb.store.engine import describe_database_error
    import sqlite3

    locked = sa.exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    assert describe_database_error(locked).startswith("the store is busy")
    denied = sa.exc.ProgrammingError("INSERT ...", {}, Exception("permission denied for table catalogs\nDETAIL: x"))
    msg = describe_database_error(denied)
    assert "read-only role" in msg and "\n" not in msg and "INSERT" not in msg
