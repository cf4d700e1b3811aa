"""Gaia archive bulk partitions -> store columns: every release's layout, the real DR3 rows,
release inference, and the errors (ref_epoch, truncated gzip, malformed CSV, missing columns, md5)."""
from __future__ import annotations

import gzip
import shutil

import numpy as np
import pyarrow as pa
import pytest

from astrodb.errors import IngestError
from astrodb.ingest import gaia_reader
from astrodb.ingest.gaia_reader import (CORR_COLUMNS, GAIA_COLUMNS, RELEASE_EPOCHS, STORE_COLUMNS, GaiaRows,
                                        read_gaia_file, required_columns, verify_md5)
import tests.support.gaia_fixtures as gf

FLOATS = ("ra", "dec", "ra_error", "dec_error", "pmra", "pmra_error", "pmdec", "pmdec_error",
          "parallax", "parallax_error", *CORR_COLUMNS)

CASES = {  # id -> (release, writer kwargs)
    "dr3": ("dr3", {}),
    "edr3": ("edr3", {}),
    "dr2": ("dr2", {}),
    "dr1": ("dr1", {}),
    "dr1-tgas": ("dr1", {"tgas": True}),
}


def _rows_and_file(tmp_path, case, n=400, seed=11, **kw):
    release, extra = CASES[case]
    rows = gf.gaia_rows(release, n, seed, tgas=extra.get("tgas", False))
    return rows, gf.write_partition(tmp_path, release, rows, **extra, **kw)


def _rewrite(path, edit, name=None):
    """Decompress, let ``edit`` change the list of lines, recompress (to ``name`` if given)."""
    with gzip.open(path, "rt") as f:
        lines = f.read().split("\n")
    lines = edit(lines)
    out = path.with_name(name) if name else path
    with gzip.open(out, "wt") as f:
        f.write("\n".join(lines))
    return out


def _first_data_line(lines):
    """0-based index of the first data line (after the '#' lines and the header row)."""
    return next(i for i, line in enumerate(lines) if not line.startswith("#")) + 1


# --- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_release_round_trips(tmp_path, case):
    release = CASES[case][0]
    rows, path = _rows_and_file(tmp_path, case)
    got = read_gaia_file(path)

    assert isinstance(got, GaiaRows) and got.source == str(path)
    assert got.release == release and got.n == len(got) == rows.num_rows
    assert list(got.columns) == list(STORE_COLUMNS + GAIA_COLUMNS)
    for name in FLOATS:
        assert got.columns[name].dtype == np.float64, name
        np.testing.assert_array_equal(got.columns[name], gf.expected_float(rows, name), err_msg=name)
    np.testing.assert_array_equal(got.columns["mag"], gf.expected_float(rows, "phot_g_mean_mag"))
    assert got.columns["source_id"].dtype == np.int64
    np.testing.assert_array_equal(got.columns["source_id"], gf.expected_int(rows, "source_id"))
    assert np.all(got.columns["ref_epoch"] == RELEASE_EPOCHS[release]) and got.ref_epoch == RELEASE_EPOCHS[release]
    assert np.isnan(got.columns["weight"]).all()

    rv = {"dr1": None, "dr2": "radial_velocity", "edr3": "dr2_radial_velocity", "dr3": "radial_velocity"}[release]
    for suffix in ("", "_error"):
        if rv is None:
            assert np.isnan(got.columns["radial_velocity" + suffix]).all()
        else:
            np.testing.assert_array_equal(got.columns["radial_velocity" + suffix], gf.expected_float(rows, rv + suffix))

    two = gf.expected_float(rows, "parallax") != gf.expected_float(rows, "parallax")  # NaN: not solved
    assert got.columns["two_parameter"].dtype == np.bool_
    np.testing.assert_array_equal(got.columns["two_parameter"], two)
    aps = got.columns["astrometric_params_solved"]
    assert aps.dtype == np.int16
    if release == "dr1":  # no such column: derived
        np.testing.assert_array_equal(aps, np.where(two, 3, 31))
    else:
        np.testing.assert_array_equal(aps, gf.expected_int(rows, "astrometric_params_solved"))

    # what the fixture promises to cover
    assert (got.columns["parallax"] < 0).any()  # DR1: from the real rows (its generated stars are bright)
    if case != "dr1-tgas":
        assert two.any() and (~two).any()
    if release != "dr1":
        assert np.isnan(got.columns["radial_velocity"]).any() and np.isfinite(got.columns["radial_velocity"]).any()


def test_generated_rows_without_the_real_ones(tmp_path):
    rows = gf.gaia_rows("dr3", 300, 2, real=False)
    got = read_gaia_file(gf.write_partition(tmp_path, "dr3", rows))
    np.testing.assert_array_equal(got.columns["source_id"], gf.expected_int(rows, "source_id"))
    np.testing.assert_array_equal(got.columns["pmdec"], gf.expected_float(rows, "pmdec"))
    assert set(np.unique(got.columns["astrometric_params_solved"])) == {3, 31, 95}


def test_plain_csv_edr3_uncompressed_and_zlib_fallback(tmp_path, monkeypatch):
    rows = gf.gaia_rows("edr3", 200, 4)
    path = gf.write_partition(tmp_path, "edr3", rows, ecsv=False)  # should EDR3 files be plain CSV
    assert read_gaia_file(path).release == "edr3"
    plain = tmp_path / "GaiaSource_000000-003111.csv"
    with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    expected = read_gaia_file(path)
    monkeypatch.setattr(gaia_reader, "_igzip_threaded", None)  # without isal: gzip/zlib
    for p in (plain, path):
        got = read_gaia_file(p, use_threads=False)
        for name, col in expected.columns.items():
            np.testing.assert_array_equal(got.columns[name], col, err_msg=name)


def test_quoted_fields_take_the_careful_pass(tmp_path):
    rows = gf.gaia_rows("dr2", 100, 5)
    path = gf.write_partition(tmp_path, "dr2", rows)

    def quote(lines):
        k = _first_data_line(lines) + 3
        cells = lines[k].split(",")
        cells[1] = '"Gaia DR2, quoted"'  # designation with the delimiter inside
        lines[k] = ",".join(cells)
        return lines

    got = read_gaia_file(_rewrite(path, quote))
    np.testing.assert_array_equal(got.columns["ra"], gf.expected_float(rows, "ra"))


def test_header_only_partition_is_refused(tmp_path):
    # The archive ships no empty partition: a header alone is a damaged or cut file.
    rows = gf.gaia_rows("dr3", 10, 1, real=False).slice(0, 0)
    path = gf.write_partition(tmp_path, "dr3", rows, name="GaiaSource_000000-003111.csv.gz")
    with pytest.raises(IngestError, match=r"GaiaSource_000000-003111\.csv\.gz: no rows \(only a header\)"):
        read_gaia_file(path)


# --- the real DR3 rows ---------------------------------------------------------------------------

def _assert_as_astropy(ours, col, name):
    """Our float64 column equals astropy's: exactly for float64, as float32 for float32 columns
    (both parse the same shortest-repr text; astropy stops at float32)."""
    data = np.ma.filled(np.ma.asarray(col).astype(np.float64), np.nan)
    if col.dtype == np.float32:
        np.testing.assert_array_equal(ours.astype(np.float32), data.astype(np.float32), err_msg=name)
    else:
        np.testing.assert_array_equal(ours, data, err_msg=name)


def test_real_dr3_rows_equal_astropy():
    from astropy.table import Table
    path = gf.GAIA_DATA / "astroquery_gaia_dr3_cone50.ecsv"  # space-delimited ECSV, "" = missing
    ref = Table.read(path)
    got = read_gaia_file(path)
    assert got.release == "dr3" and got.n == len(ref) == 50
    assert got.columns["source_id"].tolist() == ref["source_id"].tolist()
    for ours, theirs in [(c, c) for c in FLOATS] + [("mag", "phot_g_mean_mag"),
                                                    ("radial_velocity", "radial_velocity")]:
        _assert_as_astropy(got.columns[ours], ref[theirs], ours)
    np.testing.assert_array_equal(got.columns["astrometric_params_solved"], ref["astrometric_params_solved"])
    np.testing.assert_array_equal(got.columns["two_parameter"], ref["astrometric_params_solved"] == 3)
    assert set(ref["astrometric_params_solved"]) == {3, 31, 95} and (got.columns["parallax"] < 0).any()


def test_real_rows_in_a_bulk_partition_equal_astropy(tmp_path):
    from astropy.table import Table
    rows = gf.gaia_rows("dr3", 120, 3)
    path = gf.write_partition(tmp_path, "dr3", rows)
    with gzip.open(path, "rt") as f:
        text = f.read()
    assert text.count("\n#") + 1 == 1035 and ",null," in text and "# %ECSV 1.0" in text
    ref = Table.read(path, format="ascii.ecsv", fill_values=[("null", "0")])  # how astropy copes with null
    got = read_gaia_file(path)
    assert got.columns["source_id"].tolist() == ref["source_id"].tolist()
    for ours, theirs in [(c, c) for c in FLOATS] + [("mag", "phot_g_mean_mag"), ("radial_velocity", "radial_velocity"),
                                                    ("radial_velocity_error", "radial_velocity_error")]:
        _assert_as_astropy(got.columns[ours], ref[theirs], ours)
    np.testing.assert_array_equal(got.columns["astrometric_params_solved"], ref["astrometric_params_solved"])
    # the real cone rows and the two real radial velocities came through
    cone = Table.read(gf.GAIA_DATA / "astroquery_gaia_dr3_cone50.ecsv")
    index = {s: i for i, s in enumerate(got.columns["source_id"].tolist())}
    at = np.array([index[s] for s in cone["source_id"].tolist()])
    np.testing.assert_array_equal(got.columns["dec"][at], cone["dec"])
    assert np.isfinite(got.columns["radial_velocity"][np.isin(got.columns["source_id"],
                                                              [4583627001381815936, 5348723816842275584])]).all()


def test_archive_ecsv_with_empty_values_and_missing_params_solved():
    """The archive's own ECSV (nan/empty, astrometric_params_solved missing): derived from the
    astrometry, matching the real values' 2-/5-parameter split."""
    from astropy.table import Table
    got = read_gaia_file(gf.GAIA_DATA / "astroquery_gaia_dr3_5rows.ecsv")
    cone = Table.read(gf.GAIA_DATA / "astroquery_gaia_dr3_cone50.ecsv")
    real = dict(zip(cone["source_id"].tolist(), cone["astrometric_params_solved"].tolist()))
    assert got.release == "dr3" and got.n == 5
    for sid, aps in zip(got.columns["source_id"].tolist(), got.columns["astrometric_params_solved"].tolist()):
        assert (aps == 3) == (real[sid] == 3)


# --- release inference ---------------------------------------------------------------------------

def test_release_from_columns_without_meta_or_name(tmp_path):
    for release in ("dr1", "dr2", "edr3", "dr3"):
        rows = gf.gaia_rows(release, 60, 1, real=False)
        path = gf.write_partition(tmp_path, release, rows, release_meta=False, name=f"part_{release}.csv.gz")
        assert read_gaia_file(path).release == release


def _subset(release, n=40):
    """Only the columns the reader needs: nothing release-specific."""
    return gf.gaia_rows(release, n, 2, real=False).select(list(required_columns(release)))


def test_release_from_ecsv_meta_then_file_name(tmp_path):
    # only the columns every release has: the ECSV meta (RELEASE: Gaia DR3) tells
    assert read_gaia_file(gf.write_partition(tmp_path, "dr3", _subset("dr3"), name="x.csv.gz")).release == "dr3"
    # neither columns nor meta: the archive's file name pattern
    named = {"dr1": "GaiaSource_000-000-001.csv.gz", "dr2": "GaiaSource_5_999.csv.gz",
             "dr3": "GaiaSource_000000-003111.csv.gz"}
    for release, name in named.items():
        path = gf.write_partition(tmp_path, release, _subset(release), ecsv=False, name=name)
        assert read_gaia_file(path).release == release
    with pytest.raises(IngestError, match="cannot tell the Gaia release"):
        read_gaia_file(gf.write_partition(tmp_path, "dr2", _subset("dr2"), ecsv=False, name="y.csv.gz"))


def test_explicit_release_and_conflicts(tmp_path):
    path = gf.write_partition(tmp_path, "dr2", _subset("dr2"), ecsv=False, name="y.csv.gz")
    assert read_gaia_file(path, release="Gaia DR2").release == "dr2"
    assert read_gaia_file(path, release="gdr2").release == "dr2"
    with pytest.raises(IngestError, match="unknown Gaia release"):
        read_gaia_file(path, release="dr4")
    # EDR3 columns under a header saying DR3
    rows = gf.gaia_rows("edr3", 30, 1, real=False)
    lying = gf.write_partition(tmp_path, "edr3", rows, name="z.csv.gz")
    _rewrite(lying, lambda lines: [line.replace("RELEASE: Gaia EDR3", "RELEASE: Gaia DR3") for line in lines])
    with pytest.raises(IngestError, match="header says Gaia DR3 but the columns are EDR3"):
        read_gaia_file(lying)
    assert read_gaia_file(lying, release="edr3").release == "edr3"


# --- errors --------------------------------------------------------------------------------------

def test_ref_epoch_mismatch_names_file_column_and_rows(tmp_path):
    rows, path = _rows_and_file(tmp_path, "dr3", n=100)

    def shift(lines):
        k = _first_data_line(lines)
        for r in (7, 42):
            lines[k + r] = lines[k + r].replace(",2016.0,", ",2015.5,", 1)
        return lines

    _rewrite(path, shift)
    with pytest.raises(IngestError) as err:
        read_gaia_file(path)
    assert err.value.source == str(path) and err.value.column == "ref_epoch" and err.value.rows == [7, 42]
    assert "J2015.5" in str(err.value) and "J2016.0" in str(err.value) and path.name in str(err.value)
    # a whole DR2 file read as DR1
    _, dr2 = _rows_and_file(tmp_path, "dr2", n=50)
    with pytest.raises(IngestError) as err:
        read_gaia_file(dr2, release="dr1")
    assert err.value.column == "ref_epoch" and err.value.rows == list(range(50))


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "crc"])
def test_damaged_gzip_names_the_file(tmp_path, damage):
    _, path = _rows_and_file(tmp_path, "dr3", n=2000, seed=3)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "corrupt":
        for i in range(len(data) // 2, len(data) // 2 + 64):
            data[i] ^= 0xA5
    else:
        data[-6] ^= 0x01  # the CRC32 in the gzip trailer
    path.write_bytes(bytes(data))
    with pytest.raises(IngestError) as err:
        read_gaia_file(path)
    msg = str(err.value)
    assert err.value.source == str(path) and path.name in msg
    assert {"truncated": "truncated gzip data: the file ends after line", "corrupt": "corrupt gzip data",
            "crc": "lines decompress but fail the gzip check"}[damage] in msg


def test_malformed_csv_names_the_line(tmp_path):
    _, path = _rows_and_file(tmp_path, "dr2", n=200)

    def drop_field(lines):
        k = _first_data_line(lines) + 150
        assert k == 151  # the header row, then data rows 0..150
        lines[k] = lines[k].rsplit(",", 1)[0]
        return lines

    _rewrite(path, drop_field)
    with pytest.raises(IngestError, match=r"line 152: expected 94 fields, found 93") as err:
        read_gaia_file(path)
    assert err.value.source == str(path)


def test_bad_number_names_line_column_and_row(tmp_path):
    _, path = _rows_and_file(tmp_path, "dr3", n=200)
    col = gf.DR3_COLUMNS.index("parallax")
    where = {}

    def spoil(lines):
        k = where["k"] = _first_data_line(lines) + 99
        cells = lines[k].split(",")
        cells[col] = "1.2.3"
        lines[k] = ",".join(cells)
        return lines

    _rewrite(path, spoil)
    with pytest.raises(IngestError) as err:
        read_gaia_file(path)
    assert err.value.column == "parallax" and err.value.rows == [99]
    assert f"line {where['k'] + 1}: '1.2.3' is not a number" in str(err.value)
    assert where["k"] + 1 == 1035 + 1 + 100  # '#' lines, header row, data rows 0..99


def test_missing_columns_are_named(tmp_path):
    rows = gf.gaia_rows("dr3", 30, 1).drop_columns(["parallax_error", "pmra_pmdec_corr"])
    path = gf.write_partition(tmp_path, "dr3", rows, name="GaiaSource_000000-003111.csv.gz")
    with pytest.raises(IngestError, match="missing required Gaia DR3 columns: parallax_error, pmra_pmdec_corr"):
        read_gaia_file(path)
    rows = gf.gaia_rows("edr3", 30, 1).drop_columns(["dr2_radial_velocity_error"])
    with pytest.raises(IngestError, match="missing required Gaia EDR3 column: dr2_radial_velocity_error"):
        read_gaia_file(gf.write_partition(tmp_path, "edr3", rows, name="e.csv.gz"))


def test_no_header_and_no_file(tmp_path):
    empty = tmp_path / "GaiaSource_000000-003111.csv.gz"
    with gzip.open(empty, "wb") as f:
        f.write(b"# %ECSV 1.0\n# ---\n")
    with pytest.raises(IngestError, match="no header row"):
        read_gaia_file(empty)
    with pytest.raises(IngestError, match="no such file"):
        read_gaia_file(tmp_path / "nope.csv.gz")


@pytest.mark.parametrize("spoil,column,message", [
    (lambda r: r.set_column(r.column_names.index("source_id"), "source_id",
                            pa.array([r["source_id"][0].as_py()] * 2 + r["source_id"].to_pylist()[2:])),
     "source_id", "duplicate source_id"),
    (lambda r: r.set_column(r.column_names.index("dec"), "dec", pa.array([None] + r["dec"].to_pylist()[1:])),
     "dec", "missing or non-finite position"),
    (lambda r: r.set_column(r.column_names.index("pmra"), "pmra",
                            pa.array(["1.5" if v is None else v for v in r["pmra"].to_pylist()])),
     "parallax", "partial astrometric solution"),
    (lambda r: r.set_column(r.column_names.index("ra_error"), "ra_error", pa.array(["-0.1"] + r["ra_error"].to_pylist()[1:])),
     "ra_error", "negative uncertainty"),
])
def test_invalid_values(tmp_path, spoil, column, message):
    rows = spoil(gf.gaia_rows("dr3", 80, 6, real=False))
    with pytest.raises(IngestError, match=message) as err:
        read_gaia_file(gf.write_partition(tmp_path, "dr3", rows))
    assert err.value.column == column and err.value.rows


# --- md5 -----------------------------------------------------------------------------------------

def test_verify_md5(tmp_path):
    _, a = _rows_and_file(tmp_path, "dr3", n=50)
    assert verify_md5(a) is None  # no _MD5SUM.txt
    _, b = _rows_and_file(tmp_path, "dr2", n=50)
    listing = gf.write_md5sum(tmp_path)
    assert listing.name == "_MD5SUM.txt" and len(listing.read_text().splitlines()) == 2
    assert verify_md5(a) == gf.file_md5(a) and verify_md5(b) == gf.file_md5(b)
    other = tmp_path / "GaiaSource_000-000-009.csv.gz"
    shutil.copy(a, other)
    assert verify_md5(other) is None  # no line for it
    with open(b, "ab") as f:
        f.write(b"\0")
    with pytest.raises(IngestError, match="md5 .* differs") as err:
        verify_md5(b)
    assert err.value.source == str(b)
