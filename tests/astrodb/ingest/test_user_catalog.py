"""User-catalog ingest on both backends: formats, units, validation, atomicity, idempotence."""
from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time

import astrodb
from astrodb.store.schema import catalogs, source_files, sources
from tests.support.synth import gaia_like


def _counts(store):
    with store.engine.connect() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                     for t in (catalogs, source_files, sources))


@pytest.mark.parametrize("fmt,ext", [("ascii.ecsv", "ecsv"), ("fits", "fits"), ("votable", "xml"), ("ascii.csv", "csv")])
def test_every_astropy_format_round_trips(store, catalog_name, tmp_path, fmt, ext):
    t = gaia_like(300, 120.0, -30.0, 0.5, seed=1)
    path = tmp_path / f"cat.{ext}"
    t.write(path, format=fmt)
    res = store.ingest_catalog(path, catalog_name)
    assert res.status == "ingested" and res.rows == 300
    info = store.catalog(catalog_name)
    assert info.row_count == 300 and info.ref_epoch == 2016.0 and info.kind == "user"
    assert info.files[0]["rows"] == 300 and len(info.files[0]["sha256"]) == 64
    got = store.cone(120.0, -30.0, 1.0, catalog=catalog_name)
    assert len(got) == 300
    ref = t[np.argsort(t["source_id"])]
    got = got[np.argsort(got["source_id"])]
    np.testing.assert_array_equal(got["source_id"], ref["source_id"])
    np.testing.assert_allclose(got["ra"], ref["ra"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["dec"], ref["dec"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got["pmra"].mask, np.isnan(ref["pmra"]))
    np.testing.assert_allclose(got["mag"], ref["phot_g_mean_mag"])


def test_identical_file_is_a_noop(store, catalog_name, tmp_path):
    path = tmp_path / "c.ecsv"
    gaia_like(50, 10, 10, 0.1).write(path)
    assert store.ingest_catalog(path, catalog_name).status == "ingested"
    before = _counts(store)
    res = store.ingest_catalog(path, catalog_name)
    assert res.status == "unchanged" and "already ingested" in str(res)
    assert _counts(store) == before


def test_identical_file_at_another_epoch_is_refused_and_the_catalog_keeps_its_epoch(store, catalog_name, tmp_path):
    path = tmp_path / "c.ecsv"
    t = gaia_like(50, 10, 10, 0.1)
    t.remove_columns([c for c in t.colnames if c in ("ref_epoch", "epoch")])
    t.write(path)
    assert store.ingest_catalog(path, catalog_name, epoch=2016.0).status == "ingested"
    before = _counts(store)
    assert store.ingest_catalog(path, catalog_name, epoch="J2016").status == "unchanged"
    with pytest.raises(astrodb.CatalogExistsError, match=r"at J2016, not J2000; the catalog keeps its epoch\. "
                       rf"To load it at the new epoch, drop the catalog first \(astrodb drop {catalog_name}\)"):
        store.ingest_catalog(path, catalog_name, epoch=2000.0)
    assert _counts(store) == before and store.catalog(catalog_name).ref_epoch == 2016.0


def test_duplicate_name_with_other_data_is_refused(store, catalog_name, tmp_path):
    gaia_like(50, 10, 10, 0.1, seed=1).write(tmp_path / "a.ecsv")
    gaia_like(50, 10, 10, 0.1, seed=2).write(tmp_path / "b.ecsv")
    store.ingest_catalog(tmp_path / "a.ecsv", catalog_name)
    before = _counts(store)
    with pytest.raises(astrodb.CatalogExistsError, match=catalog_name):
        store.ingest_catalog(tmp_path / "b.ecsv", catalog_name)
    assert _counts(store) == before


def test_units_case_and_skycoord_columns(store, catalog_name):
    t = Table()
    t["RA"] = np.radians([10.0, 20.0]) * u.rad
    t["Dec"] = [1.0, 2.0] * u.deg
    t["PMRA"] = [1.0, 2.0] * u.arcsec / u.yr
    t["pmdec"] = [0.0, 0.0] * u.mas / u.yr
    t["Weight"] = [1.0, 2.0]
    store.ingest_catalog(t, catalog_name, epoch="J2000")
    got = store.cone(15, 1.5, 10, catalog=catalog_name)
    got.sort("source_id")
    np.testing.assert_allclose(got["ra"], [10.0, 20.0], atol=1e-12)
    np.testing.assert_allclose(got["pmra"], [1000.0, 2000.0])
    np.testing.assert_allclose(got["weight"], [1.0, 2.0])
    assert list(got["source_id"]) == [1, 2]  # row numbers when there is no id column

    s = Table({"sky_centroid": SkyCoord([30.0, 31.0] * u.deg, [-5.0, -5.5] * u.deg),
               "epoch": Time(["2020-01-01", "2021-01-01"])})
    store.ingest_catalog(s, catalog_name + "_sky")
    got = store.cone(30.5, -5.25, 2, catalog=catalog_name + "_sky")
    assert len(got) == 2
    np.testing.assert_allclose(sorted(got["ref_epoch"]), Time(["2020-01-01", "2021-01-01"]).jyear)


@pytest.mark.parametrize("mutate,match", [
    (lambda t: t.rename_columns(["ra", "dec"], ["x", "y"]), "no position columns"),
    (lambda t: t.__setitem__("dec", np.where(np.arange(len(t)) == 3, 95.0, t["dec"])), r"data row 3 \(0-based\): declination"),
    (lambda t: t["ra"].__setitem__(7, np.nan), r"column 'ra': data row 7 \(0-based\): missing or non-finite"),
    (lambda t: t.replace_column("ra", ["x"] * len(t)), "expected numbers"),
    (lambda t: t["ra_error"].__setitem__(2, -1.0), r"data row 2 \(0-based\): negative uncertainty"),
    (lambda t: t["source_id"].__setitem__(5, t["source_id"][4]), r"data rows 4, 5 \(0-based\): duplicate source id"),
])
def test_bad_input_names_column_and_row_and_writes_nothing(store, catalog_name, tmp_path, mutate, match):
    t = gaia_like(20, 50, 50, 0.1)
    mutate(t)
    path = tmp_path / "bad.ecsv"
    t.write(path)
    before = _counts(store)
    with pytest.raises(astrodb.IngestError, match=match) as err:
        store.ingest_catalog(path, catalog_name)
    assert str(path) in str(err.value)
    assert _counts(store) == before


def test_unreadable_file_and_missing_epoch(store, catalog_name, tmp_path):
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file at all")
    with pytest.raises(astrodb.IngestError, match="cannot read as a table"):
        store.ingest_catalog(junk, catalog_name)
    with pytest.raises(astrodb.IngestError, match="no such file"):
        store.ingest_catalog(tmp_path / "absent.ecsv", catalog_name)
    t = gaia_like(5, 1, 1, 0.1)
    del t["ref_epoch"]
    with pytest.raises(astrodb.IngestError, match="no epoch"):
        store.ingest_catalog(t, catalog_name)


def test_failure_during_load_leaves_store_unchanged(store, catalog_name, monkeypatch):
    """A database error after rows went in rolls back the catalog, its file and its rows."""
    import astrodb.ingest.catalog as ingest_catalog
    real = ingest_catalog.insert_columns

    def insert_then_fail(conn, *args, **kwargs):
        real(conn, *args, **kwargs)
        conn.execute(sa.text("SELECT * FROM no_such_table"))  # a real database error

    monkeypatch.setattr(ingest_catalog, "insert_columns", insert_then_fail)
    before = _counts(store)
    with pytest.raises(sa.exc.DBAPIError):
        store.ingest_catalog(gaia_like(100, 5, 5, 0.2), catalog_name)
    assert _counts(store) == before
    with pytest.raises(astrodb.CatalogNotFoundError):
        store.catalog(catalog_name)


def test_drop_catalog(store, catalog_name):
    store.ingest_catalog(gaia_like(30, 5, 5, 0.2), catalog_name)
    assert store.drop_catalog(catalog_name) == 30
    with pytest.raises(astrodb.CatalogNotFoundError, match="no catalog"):
        store.cone(5, 5, 1, catalog=catalog_name)
