"""Gaia bulk partitions into the store on both backends: per-file transactions, resumable,
exactly once after kill -9, bad files fail alone, queries exact at other epochs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import sqlalchemy as sa

import astrodb
from astrodb import epoch as epochs
from astrodb.ingest.gaia_reader import read_gaia_file
from astrodb.query.regions import separation_deg
from astrodb.store.schema import catalogs, source_files, sources
import tests.support.gaia_fixtures as gf


def _counts(store, name):
    with store.engine.connect() as conn:
        cid = conn.execute(sa.select(catalogs.c.id).where(catalogs.c.name == name)).scalar()
        if cid is None:
            return None
        return (conn.execute(sa.select(catalogs.c.row_count).where(catalogs.c.id == cid)).scalar(),
                conn.execute(sa.select(sa.func.count()).select_from(sources).where(sources.c.catalog_id == cid)).scalar(),
                conn.execute(sa.select(sa.func.count()).select_from(source_files).where(source_files.c.catalog_id == cid)).scalar())


def _density_is_exact(store, name) -> bool:
    """The catalog's density map counts exactly the rows it holds, pixel by pixel."""
    from astropy_healpix import HEALPix
    import astropy.units as u

    with store.engine.connect() as conn:
        cid = conn.execute(sa.select(catalogs.c.id).where(catalogs.c.name == name)).scalar()
        ra, dec = np.array(conn.execute(sa.select(sources.c.ra, sources.c.dec)
                                        .where(sources.c.catalog_id == cid)).all(), float).reshape(-1, 2).T
    m = store.density(name)
    pix, n = np.unique(HEALPix(2 ** 7, order="nested").lonlat_to_healpix(ra * u.deg, dec * u.deg),
                       return_counts=True)
    return np.array_equal(m["pixel"], pix) and np.array_equal(m["count"], n) and m.meta["rows"] == len(ra)


@pytest.fixture(scope="module")
def dr3_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dr3")
    for i in range(3):
        gf.write_dr3_partition(d, 800, seed=10 + i, real=(i == 0), name=f"GaiaSource_{i:06d}-{i:06d}.csv.gz")
    gf.write_md5sum(d)
    return d


def test_load_rerun_and_query(db_factory, dr3_dir):
    store = db_factory.store()
    report = store.ingest_gaia(dr3_dir, progress=False)
    assert report.ok and report.release == "dr3" and report.count("loaded") == 3, str(report)
    files = sorted(dr3_dir.glob("GaiaSource_*.csv.gz"))
    rows = [read_gaia_file(f) for f in files]
    n = sum(r.n for r in rows)
    assert report.rows == n and _counts(store, "gaia_dr3") == (n, n, 3)
    info = store.catalog("gaia_dr3")
    assert info.kind == "gaia_dr3" and info.ref_epoch == 2016.0 and len(info.files) == 3

    again = store.ingest_gaia([str(dr3_dir / "GaiaSource_*.csv.gz")], "dr3", progress=False)
    assert again.count("skipped") == 3 and again.rows == 0 and "3 already loaded" in str(again)
    assert _counts(store, "gaia_dr3") == (n, n, 3)

    # Exact queries at another epoch over the loaded rows, two-parameter sources kept in place.
    cols = {k: np.concatenate([r.columns[k] for r in rows]) for k in rows[0].columns}
    p = epochs.propagate(cols["ra"], cols["dec"], cols["pmra"], cols["pmdec"], cols["parallax"],
                         cols["radial_velocity"], cols["ref_epoch"], 2030.0)
    for i in np.linspace(0, n - 1, 12).astype(int):
        got = store.cone(p.ra[i], p.dec[i], 0.5, catalog="gaia_dr3", epoch=2030.0)
        expected = cols["source_id"][separation_deg(p.ra[i], p.dec[i], p.ra, p.dec) <= 0.5]
        assert sorted(got["source_id"]) == sorted(expected)
    two = cols["two_parameter"]
    assert two.any()
    got = store.cone(cols["ra"][two][0], cols["dec"][two][0], 1 / 3600, catalog="gaia_dr3", epoch=2030.0)
    assert cols["source_id"][two][0] in got["source_id"]
    row = got[got["source_id"] == cols["source_id"][two][0]][0]
    assert not row["propagated"] and row["ra"] == cols["ra"][two][0]
    with store.engine.connect() as conn:
        aps = conn.execute(sa.select(sources.c.astrometric_params_solved, sources.c.ra_dec_corr)
                           .where(sources.c.source_id == int(cols["source_id"][0]))).first()
    assert aps[0] == cols["astrometric_params_solved"][0]
    assert np.isclose(aps[1], cols["ra_dec_corr"][0], equal_nan=True)
    store.close()


def test_bad_file_fails_alone(db_factory, tmp_path):
    store = db_factory.store()
    gf.write_dr2_partition(tmp_path, 300, seed=1, real=False, name="GaiaSource_1_2.csv.gz")
    gf.write_dr2_partition(tmp_path, 300, seed=2, real=False, name="GaiaSource_3_4.csv.gz")
    bad = tmp_path / "GaiaSource_5_6.csv.gz"
    data = gf.write_dr2_partition(tmp_path, 300, seed=3, real=False, name="tmp.csv.gz").read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated download
    (tmp_path / "tmp.csv.gz").unlink()
    report = store.ingest_gaia(tmp_path, "dr2", progress=False)
    assert not report.ok and report.count("loaded") == 2 and report.count("failed") == 1
    failed = [f for f in report.files if f.status == "failed"][0]
    assert failed.path == str(bad) and str(bad) in str(report)
    assert _counts(store, "gaia_dr2") == (600, 600, 2)
    store.close()


def test_wrong_release_and_missing_paths(db_factory, tmp_path):
    store = db_factory.store()
    gf.write_dr2_partition(tmp_path, 50, seed=1, real=False, name="GaiaSource_1_2.csv.gz")
    report = store.ingest_gaia(tmp_path, "dr3", progress=False)
    assert report.count("failed") == 1 and _counts(store, "gaia_dr3") is None  # no empty catalog left
    with pytest.raises(astrodb.IngestError, match="no such file"):
        store.ingest_gaia(tmp_path / "nothing_here", "dr3")
    with pytest.raises(astrodb.IngestError, match="unknown Gaia release"):
        store.ingest_gaia(tmp_path, "dr9")
    store.close()


_LOADER = """
import sys, astrodb
store = astrodb.connect(sys.argv[1])
report = store.ingest_gaia(sys.argv[2], "dr3", jobs=1, progress=False)
print(report)
"""


def test_kill_9_then_restart_loads_every_file_exactly_once(db_factory, tmp_path):
    url = db_factory.url()
    store = astrodb.connect(url)
    store.init()
    d = tmp_path / "parts"
    for i in range(8):
        gf.write_dr3_partition(d, 6000, seed=100 + i, real=False, name=f"GaiaSource_{i:06d}-{i:06d}.csv.gz")
    total = sum(read_gaia_file(f).n for f in d.glob("*.csv.gz"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", _LOADER, url, str(d)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        counts = _counts(store, "gaia_dr3")
        if counts and counts[2] >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    partial = _counts(store, "gaia_dr3")
    assert partial[2] < 8 and partial[0] == partial[1]  # only whole files, stats consistent
    assert _density_is_exact(store, "gaia_dr3")
    report = store.ingest_gaia(d, "dr3", progress=False)
    assert report.ok and report.count("skipped") == partial[2]
    assert _counts(store, "gaia_dr3") == (total, total, 8) and _density_is_exact(store, "gaia_dr3")
    store.close()


def test_cli_ingest_gaia_exit_status(capsys, db_factory, tmp_path):
    from astrodb.cli.main import main
    url = db_factory.url()
    main(["--store", url, "init"])
    gf.write_dr1_partition(tmp_path, 200, seed=4, name="GaiaSource_000-000-000.csv.gz")
    assert main(["--store", url, "ingest", "gaia", str(tmp_path), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "gaia_dr1 (dr1): 1 file(s) loaded (200 rows" in out
    (tmp_path / "GaiaSource_000-000-001.csv.gz").write_bytes(b"\x1f\x8b garbage")
    assert main(["--store", url, "ingest", "gaia", str(tmp_path), "--release", "dr1"]) == 3
    out = capsys.readouterr().out
    assert "1 already loaded, 1 failed" in out and "GaiaSource_000-000-001.csv.gz" in out
    main(["--store", url, "catalogs"])
    assert "gaia_dr1" in capsys.readouterr().out


def test_parallel_loads_give_the_same_catalog(db_factory, dr3_dir):
    # jobs=2: files are read in worker processes and, on PostgreSQL, COPYed on two connections.
    store = db_factory.store()
    report = store.ingest_gaia(dr3_dir, "dr3", jobs=2, progress=False)
    assert report.ok and report.count("loaded") == 3
    n = sum(read_gaia_file(f).n for f in sorted(dr3_dir.glob("GaiaSource_*.csv.gz")))
    assert _counts(store, "gaia_dr3") == (n, n, 3) and _density_is_exact(store, "gaia_dr3")
    assert store.ingest_gaia(dr3_dir, "dr3", jobs=2, progress=False).count("skipped") == 3
    assert _density_is_exact(store, "gaia_dr3")
    store.close()
