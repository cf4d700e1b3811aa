"""HATS catalogs of Gaia rows (the layout of the public Gaia DR3 HATS copy): the reader, and
ingest into the same release catalogs as the archive's CSV files on both backends, from a local
directory and an fsspec URL (``memory://``), resumable, a bad partition failing alone."""
from __future__ import annotations

import importlib.util
import uuid

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

import astrodb
from astrodb import epoch as epochs
from astrodb.ingest import hats_reader
from astrodb.ingest.gaia import expand_paths
from astrodb.ingest.gaia_reader import CORR_COLUMNS
from astrodb.query.regions import separation_deg
from astrodb.store.schema import catalogs, source_files, sources
import tests.support.gaia_fixtures as gf

_VALUES = ("ra", "dec", "ra_error", "dec_error", "pmra", "pmra_error", "pmdec", "pmdec_error", "parallax",
           "parallax_error", "radial_velocity", "radial_velocity_error", *CORR_COLUMNS)


def _counts(store, name):
    with store.engine.connect() as conn:
        cid = conn.execute(sa.select(catalogs.c.id).where(catalogs.c.name == name)).scalar()
        if cid is None:
            return None
        return (conn.execute(sa.select(catalogs.c.row_count).where(catalogs.c.id == cid)).scalar(),
                conn.execute(sa.select(sa.func.count()).select_from(sources).where(sources.c.catalog_id == cid)).scalar(),
                conn.execute(sa.select(sa.func.count()).select_from(source_files).where(source_files.c.catalog_id == cid)).scalar())


def _loaded(store, name) -> dict[str, np.ndarray]:
    """Every loaded row of catalog ``name``, by source_id."""
    cols = ["source_id", "hpx29", "ref_epoch", "mag", "astrometric_params_solved", *_VALUES]
    with store.engine.connect() as conn:
        cid = conn.execute(sa.select(catalogs.c.id).where(catalogs.c.name == name)).scalar_one()
        rows = conn.execute(sa.select(*(sources.c[c] for c in cols)).where(sources.c.catalog_id == cid)
                            .order_by(sources.c.source_id)).all()
    return {c: np.array([np.nan if r[i] is None else r[i] for r in rows]) for i, c in enumerate(cols)}


def _assert_rows_equal(got: dict[str, np.ndarray], cat: gf.HatsCatalog) -> None:
    order = np.argsort(cat.expected("source_id"))
    assert np.array_equal(got["source_id"].astype(np.int64), cat.expected("source_id")[order])
    assert np.array_equal(got["hpx29"].astype(np.int64), cat.rows["_healpix_29"].to_numpy()[order])
    for name in _VALUES:  # float32 columns exactly as widened to float64, nulls as NULL
        np.testing.assert_array_equal(got[name], cat.expected(name)[order], err_msg=name)
    np.testing.assert_array_equal(got["mag"], cat.expected("phot_g_mean_mag")[order])
    assert np.all(got["ref_epoch"] == 2016.0)
    assert np.array_equal(got["astrometric_params_solved"].astype(np.int64),
                          cat.rows["astrometric_params_solved"].to_numpy(zero_copy_only=False)[order])


def _to_memory(directory) -> str:
    """Copy a local directory tree into fsspec's memory filesystem; its ``memory://`` URL."""
    fs = fsspec.filesystem("memory")
    root = f"/hats_{uuid.uuid4().hex[:10]}"
    for f in sorted(p for p in directory.rglob("*") if p.is_file()):
        fs.pipe(root + "/" + f.relative_to(directory).as_posix(), f.read_bytes())
    return "memory://" + root


@pytest.fixture(scope="module")
def hats_dir(tmp_path_factory):
    """A DR3 catalog at mixed orders 6 and 7 (real rows and a 1-degree patch), one partition
    written as a directory of files."""
    return gf.write_hats_catalog(tmp_path_factory.mktemp("hats") / "gaia_dr3", "dr3", 1500, seed=21, order=6,
                                 max_rows=400, npix_dirs=1)


# --- the reader ------------------------------------------------------------------------------

def test_layout_partitions_and_release(hats_dir, tmp_path):
    cat = hats_dir
    assert len({k for k, _ in cat.partitions}) >= 2 and len(cat.partitions) >= 5  # mixed orders
    assert hats_reader.is_hats_catalog(cat.path) and hats_reader.is_hats_catalog(str(cat.path))
    assert not hats_reader.is_hats_catalog(cat.path / "dataset")
    assert not hats_reader.is_hats_catalog(tmp_path / "nothing")
    assert hats_reader.hats_partitions(cat.path) == [str(f) for f in cat.files]
    assert any(f.parent.name.startswith("Npix=") for f in cat.files)  # the directory form
    assert hats_reader.hats_release(cat.path) == "dr3"
    assert hats_reader.partition_release(cat.files[0]) == "dr3"
    assert expand_paths([cat.path]) == cat.files
    assert expand_paths([f"file://{cat.path}"]) == cat.files


@pytest.mark.parametrize("value, release", [("gaia_dr3", "dr3"), ("GaiaEDR3", "edr3"), ("gaia_edr3", "edr3"),
                                            ("Gaia DR2", "dr2"), ("gaia_dr1_tgas", "dr1"), ("sdss_dr16", None),
                                            ("stars", None)])
def test_release_from_properties(tmp_path, value, release):
    (tmp_path / "properties").write_text(f"# old name of hats.properties\nobs_collection = {value}\n")
    (tmp_path / "partition_info.csv").write_text("Norder,Npix\n")
    assert hats_reader.is_hats_catalog(tmp_path)
    assert hats_reader.hats_release(tmp_path) == release
    assert hats_reader.hats_partitions(tmp_path) == []


def test_read_partition_values_types_and_case(tmp_path):
    cat = gf.write_hats_catalog(tmp_path / "c", "dr3", 300, seed=3, order=3, real=False, upper_case=True,
                                properties_name="properties", info_dir_column=True)
    assert len(cat.files) == 1 and pq.read_schema(cat.files[0]).field("RA_ERROR").type == pa.float32()
    rows = hats_reader.read_hats_partition(cat.files[0], "dr3")
    assert rows.release == "dr3" and rows.n == 300 and rows.source == str(cat.files[0])
    for name in ("RA", "DEC", "RA_ERROR", "PMRA", "PARALLAX_PMRA_CORR", "RADIAL_VELOCITY"):
        np.testing.assert_array_equal(rows.columns[name.lower()], cat.expected(name))
        assert rows.columns[name.lower()].dtype == np.float64
    assert np.array_equal(rows.columns["source_id"], cat.expected("SOURCE_ID"))
    assert rows.columns["two_parameter"].any() and (rows.columns["astrometric_params_solved"] == 95).any()
    # the same from memory (the bytes of a remote file), and the release from the columns
    data = cat.files[0].read_bytes()
    again = hats_reader.read_hats_partition("memory://nowhere/Npix=1.parquet", data=data)
    assert again.release == "dr3" and again.source == "memory://nowhere/Npix=1.parquet"
    assert all(np.array_equal(again.columns[k], rows.columns[k], equal_nan=True) for k in rows.columns
               if rows.columns[k].dtype.kind == "f")


def test_url_without_its_filesystem(tmp_path):
    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed")
    with pytest.raises(astrodb.IngestError, match="s3://stpubdata/gaia: cannot open the URL: .*s3fs"):
        hats_reader.is_hats_catalog("s3://stpubdata/gaia")
    assert hats_reader.is_remote("s3://stpubdata/gaia") and not hats_reader.is_remote(f"file://{tmp_path}")
    assert hats_reader.local_path(f"file://{tmp_path}") == str(tmp_path)


def test_reader_errors_name_the_file(tmp_path):
    cat = gf.write_hats_catalog(tmp_path / "c", "dr3", 400, seed=4, order=6, real=False)
    bad = cat.files[0]
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(astrodb.IngestError, match="not a readable Parquet file") as err:
        hats_reader.read_hats_partition(bad, "dr3")
    assert str(bad) in str(err.value)
    table = pq.read_table(cat.files[-1]).drop_columns(["radial_velocity"])
    pq.write_table(table, tmp_path / "norv.parquet")
    with pytest.raises(astrodb.IngestError, match="missing required Gaia DR3 column: radial_velocity"):
        hats_reader.read_hats_partition(tmp_path / "norv.parquet", "dr3")
    table = pq.read_table(cat.files[-1])
    i = table.column_names.index("ra_error")
    neg = pa.compute.multiply(table["ra_error"], -1.0)
    pq.write_table(table.set_column(i, "ra_error", neg), tmp_path / "neg.parquet")
    with pytest.raises(astrodb.IngestError, match="negative uncertainty") as err:
        hats_reader.read_hats_partition(tmp_path / "neg.parquet", "dr3")
    assert "neg.parquet" in str(err.value) and err.value.column == "ra_error"
    # a partition listed in partition_info.csv but absent
    missing = cat.files[-1]
    missing.unlink()
    with pytest.raises(astrodb.IngestError, match="missing") as err:
        hats_reader.hats_partitions(cat.path)
    assert str(missing) in str(err.value)
    with pytest.raises(astrodb.IngestError, match="no such file"):
        hats_reader.read_hats_partition(missing, "dr3")
    with pytest.raises(astrodb.IngestError, match="partition_info.csv.*no Norder"):
        (cat.path / "partition_info.csv").write_text("order,pixel\n6,1\n")
        hats_reader.hats_partitions(cat.path)


# --- ingest ----------------------------------------------------------------------------------

def test_load_values_rerun_and_query(db_factory, hats_dir):
    cat = hats_dir
    store = db_factory.store()
    report = store.ingest_gaia(cat.path, progress=False)  # release from hats.properties
    n = cat.rows.num_rows
    assert report.ok and report.release == "dr3" and report.catalog == "gaia_dr3", str(report)
    assert report.count("loaded") == len(cat.files) and report.rows == n
    assert _counts(store, "gaia_dr3") == (n, n, len(cat.files))
    _assert_rows_equal(_loaded(store, "gaia_dr3"), cat)
    info = store.catalog("gaia_dr3")
    assert info.kind == "gaia_dr3" and info.ref_epoch == 2016.0 and len(info.files) == len(cat.files)

    again = store.ingest_gaia(str(cat.path), "dr3", jobs=2, progress=False)
    assert again.count("skipped") == len(cat.files) and again.rows == 0, str(again)
    assert _counts(store, "gaia_dr3") == (n, n, len(cat.files))

    # exact cones at another epoch over the HATS rows: brute force on the written values
    cols = {k: cat.expected(k) for k in ("ra", "dec", "pmra", "pmdec", "parallax", "radial_velocity", "source_id")}
    p = epochs.propagate(cols["ra"], cols["dec"], cols["pmra"], cols["pmdec"], cols["parallax"],
                         cols["radial_velocity"], np.full(n, 2016.0), 2030.0)
    for i in np.linspace(0, n - 1, 12).astype(int):
        got = store.cone(p.ra[i], p.dec[i], 0.4, catalog="gaia_dr3", epoch=2030.0)
        expected = cols["source_id"][separation_deg(p.ra[i], p.dec[i], p.ra, p.dec) <= 0.4]
        assert sorted(got["source_id"]) == sorted(expected)
    store.close()


def test_same_catalog_as_csv_and_jobs(db_factory, tmp_path):
    """CSV partitions and HATS partitions of one release share its catalog."""
    store = db_factory.store()
    csv = gf.write_dr3_partition(tmp_path / "csv", 300, seed=31, real=False, name="GaiaSource_000001-000001.csv.gz")
    cat = gf.write_hats_catalog(tmp_path / "hats", "dr3", 700, seed=32, order=7, real=False)
    assert store.ingest_gaia(csv, progress=False).rows == 300
    report = store.ingest_gaia([cat.path, csv], jobs=2, progress=False)
    assert report.ok and report.count("loaded") == len(cat.files) and report.count("skipped") == 1, str(report)
    assert _counts(store, "gaia_dr3") == (1000, 1000, len(cat.files) + 1)
    store.close()


def test_bad_partition_fails_alone(db_factory, tmp_path):
    store = db_factory.store()
    cat = gf.write_hats_catalog(tmp_path / "c", "dr3", 900, seed=5, order=7, real=False)
    assert len(cat.files) >= 3
    bad = cat.files[1]
    data = bad.read_bytes()
    bad.write_bytes(data[:len(data) // 2])  # interrupted download
    report = store.ingest_gaia(cat.path, progress=False)
    assert not report.ok and report.count("failed") == 1 and report.count("loaded") == len(cat.files) - 1
    failed = [f for f in report.files if f.status == "failed"][0]
    assert failed.path == str(bad) and str(bad) in failed.message and str(bad) in str(report)
    lost = pq.read_metadata(pa.BufferReader(data)).num_rows
    n = cat.rows.num_rows - lost
    assert _counts(store, "gaia_dr3") == (n, n, len(cat.files) - 1)
    bad.write_bytes(data)  # repaired: the rerun loads just that one
    again = store.ingest_gaia(cat.path, progress=False)
    assert again.ok and again.count("loaded") == 1 and again.count("skipped") == len(cat.files) - 1
    assert _counts(store, "gaia_dr3") == (cat.rows.num_rows, cat.rows.num_rows, len(cat.files))
    store.close()


def test_release_mismatch_and_unknown_release(db_factory, tmp_path):
    store = db_factory.store()
    edr3 = gf.write_hats_catalog(tmp_path / "e", "edr3", 200, seed=6, order=5, real=False, obs_collection=None)
    assert hats_reader.hats_release(edr3.path) is None
    report = store.ingest_gaia(edr3.path, progress=False)  # from the columns: dr2_radial_velocity
    assert report.ok and report.release == "edr3" and _counts(store, "gaia_edr3")[0] == 200
    report = store.ingest_gaia(edr3.path, "dr3", progress=False)
    assert report.count("failed") == len(edr3.files) and "radial_velocity" in str(report)
    wrong = gf.write_hats_catalog(tmp_path / "w", "dr3", 100, seed=7, order=5, real=False,
                                  obs_collection="gaia_edr3")
    with pytest.raises(astrodb.IngestError, match="cannot tell the Gaia release"):
        store.ingest_gaia(wrong.path, progress=False)  # properties say EDR3, columns DR3
    with pytest.raises(astrodb.IngestError, match="not a HATS catalog"):
        store.ingest_gaia("memory://no_such_catalog_here", progress=False)
    store.close()


def test_memory_url_catalog(capsys, db_factory, hats_dir):
    cat = hats_dir
    url = _to_memory(cat.path)
    try:
        assert hats_reader.is_hats_catalog(url) and hats_reader.hats_release(url) == "dr3"
        urls = hats_reader.hats_partitions(url)
        assert urls == [url + "/" + f.relative_to(cat.path).as_posix() for f in cat.files]
        store = db_factory.store()
        report = store.ingest_gaia(url, progress=True)  # sizes of remote files for the ETA
        assert report.ok and report.release == "dr3" and report.count("loaded") == len(urls), str(report)
        assert f"[{len(urls)}/{len(urls)} files] {cat.rows.num_rows:,} rows" in capsys.readouterr().err
        assert [f.path for f in report.files] == urls
        n = cat.rows.num_rows
        assert _counts(store, "gaia_dr3") == (n, n, len(urls))
        _assert_rows_equal(_loaded(store, "gaia_dr3"), cat)
        # same bytes, same sha256: the URL rerun and the local copy are already loaded
        assert store.ingest_gaia(url + "/", progress=False).count("skipped") == len(urls)
        assert store.ingest_gaia(cat.path, progress=False).count("skipped") == len(urls)
        with store.engine.connect() as conn:
            paths = set(conn.execute(sa.select(source_files.c.path)).scalars())
        assert paths == set(urls)
        # a partition gone from the listing is named
        fs = fsspec.filesystem("memory")
        # a single-file partition (removing one file of an Npix=N/ directory partition leaves one)
        gone = next(u for u in urls if u.rsplit("/", 2)[-2].startswith("Dir="))
        fs.rm(gone.removeprefix("memory://"))
        with pytest.raises(astrodb.IngestError, match="missing") as err:
            store.ingest_gaia(url, progress=False)
        assert gone in str(err.value)
        store.close()
    finally:
        fsspec.filesystem("memory").rm(url.removeprefix("memory://"), recursive=True)


def test_memory_url_bad_partition(db_factory, tmp_path):
    cat = gf.write_hats_catalog(tmp_path / "c", "dr3", 600, seed=8, order=7, real=False)
    cat.files[0].write_bytes(b"PAR1 not really")
    url = _to_memory(cat.path)
    try:
        store = db_factory.store()
        report = store.ingest_gaia(url, "dr3", progress=False)
        failed = [f for f in report.files if f.status == "failed"]
        assert len(failed) == 1 and failed[0].path.endswith(cat.files[0].relative_to(cat.path).as_posix())
        assert failed[0].path in failed[0].message and report.count("loaded") == len(cat.files) - 1
        store.close()
    finally:
        fsspec.filesystem("memory").rm(url.removeprefix("memory://"), recursive=True)


def test_cli_ingest_hats_dir(capsys, db_factory, hats_dir):
    from astrodb.cli.main import main
    url = db_factory.url()
    assert main(["--store", url, "init"]) == 0
    capsys.readouterr()
    assert main(["--store", url, "ingest", "gaia", str(hats_dir.path), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    n = hats_dir.rows.num_rows
    assert f"gaia_dr3 (dr3): {len(hats_dir.files)} file(s) loaded ({n:,} rows" in out
    assert main(["--store", url, "ingest", "gaia", str(hats_dir.path)]) == 0
    assert f"{len(hats_dir.files)} already loaded, 0 failed" in capsys.readouterr().out
    assert main(["--store", url, "ingest", "gaia", "memory://nothing_there"]) == 2
    assert "not a HATS catalog" in capsys.readouterr().err
