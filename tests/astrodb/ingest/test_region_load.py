"""Region-limited Gaia loads ("Gaia for my fields") on both backends: only the bulk files and HATS
partitions that can hold the region's stars are read, only the rows within the region widened by
the release's largest motion over the epochs are kept, the catalog records the region, and its
queries are exact inside it and refused outside it (or at other epochs)."""
from __future__ import annotations

import uuid

import astropy.units as u
import fsspec
import numpy as np
import pytest
import sqlalchemy as sa
from astropy.coordinates import SkyCoord
from mocpy import MOC

import astrodb
from astrodb import epoch as epochs
from astrodb.ingest import region_select
from astrodb.ingest.gaia_reader import read_gaia_file
from astrodb.ingest.hats_reader import read_hats_partition
from astrodb.ingest.region_select import LoadRegion
from astrodb.query import coverage
from astrodb.query.healpix import hpx29
from astrodb.query.regions import Cone, separation_deg
from astrodb.store.schema import catalog_regions, catalogs, sources
import tests.support.gaia_fixtures as gf

RA0, DEC0, R0 = 150.0, 20.0, 1.0       # the region of most tests: a 1-degree cone
SPAN = (2000.0, 2030.0)                 # its epochs
N = 5000


def _offset(ra, dec, angle_deg, distance_deg):
    c = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(angle_deg * u.deg, distance_deg * u.deg)
    return float(c.ra.deg), float(c.dec.deg)


def _sky_rows():
    """DR3 rows over 8 x 8 degrees around (RA0, DEC0), with a fast mover just east of the cone's
    edge that moves west into it by 2030, and a star inside the cone's edge whose source_id is
    from 0.04 deg further out (as Barnard's star's is from 0.0435 deg away)."""
    rng = np.random.default_rng(11)
    rows = gf.gaia_rows("dr3", N, 7, real=False)
    dec = rng.uniform(DEC0 - 4, DEC0 + 4, N)
    ra = RA0 + rng.uniform(-4, 4, N) / np.cos(np.radians(dec))
    params = rows["astrometric_params_solved"].to_pylist()
    fast, shifted = [i for i, p in enumerate(params) if p == "31"][:2]
    ra[fast], dec[fast] = _offset(RA0, DEC0, 90.0, R0 + 0.03)   # 0.03 deg outside, due east
    rows = gf.with_motion(rows, fast, -10_000.0, 0.0)            # 10"/yr west: 0.039 deg in 14 yr
    ra[shifted], dec[shifted] = _offset(RA0, DEC0, 200.0, R0 - 0.01)
    id_ra, id_dec = ra.copy(), dec.copy()
    id_ra[shifted], id_dec[shifted] = _offset(RA0, DEC0, 200.0, R0 + 0.03)
    table = gf.relocated("dr3", rows, ra, dec, 3, id_ra=id_ra, id_dec=id_dec)
    fast_row = [i for i, v in enumerate(table["pmra"].to_pylist()) if v == "-10000.0"]
    assert len(fast_row) == 1  # the fast mover travelled with its row
    return table, int(table["source_id"].to_pylist()[fast_row[0]])


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    """The rows as 14 archive bulk files (named by level-8 ranges) and their values as read."""
    rows, fast = _sky_rows()
    d = tmp_path_factory.mktemp("bulk")
    files = gf.write_bulk_by_pixels(d, "dr3", rows, 14)
    parts = [read_gaia_file(f) for f in files]
    cols = {k: np.concatenate([p.columns[k] for p in parts]) for k in parts[0].columns}
    per_file = {str(f): p.columns["source_id"] for f, p in zip(files, parts)}
    return {"dir": d, "files": files, "rows": rows, "cols": cols, "fast": fast, "per_file": per_file}


def _brute(cols, region, epoch):
    """source_ids of the rows inside ``region`` at ``epoch``, over every row of every file."""
    ra, dec = cols["ra"], cols["dec"]
    if epoch is not None:
        p = epochs.propagate(ra, dec, cols["pmra"], cols["pmdec"], cols["parallax"], cols["radial_velocity"],
                             cols["ref_epoch"], epoch)
        ra, dec = p.ra, p.dec
    return sorted(cols["source_id"][region.contains(ra, dec)].tolist())


def _ids(store, name):
    with store.engine.connect() as conn:
        cid = conn.execute(sa.select(catalogs.c.id).where(catalogs.c.name == name)).scalar_one()
        return sorted(conn.execute(sa.select(sources.c.source_id).where(sources.c.catalog_id == cid)).scalars())


def _recorded(store, name):
    with store.engine.connect() as conn:
        cid = conn.execute(sa.select(catalogs.c.id).where(catalogs.c.name == name)).scalar_one()
        return conn.execute(sa.select(catalog_regions).where(catalog_regions.c.catalog_id == cid)
                            .order_by(catalog_regions.c.id)).mappings().all()


def _in_cells(ranges, order, ra, dec):
    """Brute force with mocpy (cdshealpix), not the loader's numpy ranges."""
    return coverage.moc_from_ranges(ranges, order).contains_lonlat(ra * u.deg, dec * u.deg)


# --- which files ---------------------------------------------------------------------------------

def test_bulk_files_chosen_by_their_names_and_the_source_id_margin():
    cone = LoadRegion.from_cone(RA0, DEC0, R0)
    pad = region_select.release_pad("dr3", 2016.0, SPAN)
    assert 16 * 10.4 / 3600 < pad < (16 * 10.45 + 1.0) / 3600  # 10.4"/yr over 16 yr (2000 to 2016), parallax
    pixels = np.arange(12 * 4 ** 8)
    names = [f"GaiaSource_{p:06d}-{p:06d}.csv.gz" for p in pixels]
    tight = region_select.select(names, cone, "dr3", 2016.0, SPAN, False, margin_deg=0.0)
    wide = region_select.select(names, cone, "dr3", 2016.0, SPAN, False)
    # margin 0: exactly the level-8 pixels whose order-11 cells meet the cut
    cut = tight.cells
    hit = np.array([np.any((cut[:, 0] < (p + 1) * 64) & (cut[:, 1] > p * 64)) for p in pixels])
    assert [names.index(n) for n in tight.read] == np.nonzero(hit)[0].tolist()
    assert len(tight.read) + len(tight.outside) == len(names)
    # the margin adds the pixels within 0.1 deg more, and no far one
    extra = sorted(set(wide.read) - set(tight.read))
    assert set(tight.read) <= set(wide.read) and extra
    from astropy_healpix import HEALPix
    hp = HEALPix(2 ** 8, order="nested")
    lon, lat = hp.healpix_to_lonlat([names.index(n) for n in extra])
    far = separation_deg(RA0, DEC0, lon.deg, lat.deg)
    assert far.max() < R0 + pad + 0.1 + 0.05 + 0.35  # cut slack, margin, cell radii
    # DR2 names: the level-8 pixels of their first and last source_id
    sid_a, sid_b = (5 << 43) + 17, (9 << 43) + 5
    assert region_select.bulk_range(f"GaiaSource_{sid_a}_{sid_b}.csv.gz") == (5, 9, False)
    assert region_select.bulk_range("GaiaSource_000-000-000.csv.gz") is None  # DR1: no pixels


def test_bad_regions_and_epochs_are_named():
    with pytest.raises(astrodb.IngestError, match="epochs: lo \\(2030\\) must not be after hi \\(2020\\)"):
        region_select.check_epochs((2030, 2020))
    with pytest.raises(astrodb.IngestError, match="epochs: hi must be a Julian year between 1000 and 3000"):
        region_select.check_epochs((2000, 20300))
    with pytest.raises(astrodb.IngestError, match="region: radius must be within"):
        LoadRegion.from_cone(10, 20, -1)
    with pytest.raises(astrodb.IngestError, match="no such MOC file"):
        LoadRegion.create("/nonexistent/fields.moc.fits")
    with pytest.raises(astrodb.IngestError, match="region: a polygon needs at least 3"):
        LoadRegion.create([[10, 20], [11, 20]])


def test_region_forms_and_their_covers(tmp_path):
    """Every form ``region=`` takes, named as the messages name it, and covered with its pad."""
    from astropy.wcs import WCS

    from astrodb.query.regions import WCSFootprint

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [RA0, DEC0], [50.5, 50.5], [-10 / 3600, 10 / 3600]
    w.pixel_shape = (100, 100)  # nx, ny
    moc = MOC.from_cone(lon=RA0 * u.deg, lat=DEC0 * u.deg, radius=0.2 * u.deg, max_depth=12)
    moc_file = tmp_path / "f.fits"
    moc.save(str(moc_file), format="fits")
    square = [[RA0 - 0.1, DEC0 - 0.1], [RA0 + 0.1, DEC0 - 0.1], [RA0 + 0.1, DEC0 + 0.1], [RA0 - 0.1, DEC0 + 0.1]]
    forms = {
        "--cone 150 20 0.25 deg": Cone.create(RA0, DEC0, 15 * u.arcmin),
        "--polygon 149.9 19.9 150.1 19.9 150.1 20.1 149.9 20.1": square,
        "1 image footprint": (w, (100, 100)),
        "2 image footprints": [w, WCSFootprint(w, (100, 100))],
        "--moc f.fits": str(moc_file),
        "a MOC of 0.138 deg²": moc,
    }
    rng = np.random.default_rng(8)
    dec = DEC0 + rng.uniform(-0.4, 0.4, 20000)
    ra = RA0 + rng.uniform(-0.4, 0.4, 20000) / np.cos(np.radians(dec))
    for text, region in forms.items():
        lr = LoadRegion.create(region)
        assert lr.description == text
        inside = np.zeros(len(ra), bool)
        for shape in lr.shapes:
            inside |= (shape.contains_lonlat(ra * u.deg, dec * u.deg) if isinstance(shape, MOC)
                       else shape.contains(ra, dec))
        assert inside.sum() > 100
        for pad in (0.0, 0.05):
            cut = coverage.moc_ranges(lr.cover(pad))
            # points within the pad of the shape: points of it moved by 0.99 pad any way
            moved = SkyCoord(ra[inside] * u.deg, dec[inside] * u.deg).directional_offset_by(
                rng.uniform(0, 360, inside.sum()) * u.deg, 0.99 * pad * u.deg)
            assert coverage.contains(cut, coverage.COVER_ORDER, hpx29(moved.ra.deg, moved.dec.deg)).all(), text
            far = separation_deg(RA0, DEC0, ra, dec) > 0.36 + pad + 0.1   # the shapes end within 0.36 deg
            assert not coverage.contains(cut, coverage.COVER_ORDER, hpx29(ra[far], dec[far])).any(), text


# --- bulk files ----------------------------------------------------------------------------------

def test_cone_load_reads_only_overlapping_files_keeps_the_padded_rows_and_queries_exactly(db_factory, sky):
    store = db_factory.store()
    cols = sky["cols"]
    report = store.ingest_gaia(sky["dir"], region=LoadRegion.from_cone(RA0, DEC0, R0), epochs=SPAN,
                               progress=False)
    assert report.ok and report.region.recorded and report.region.complete, str(report)
    assert "region --cone 150 20 1 deg, epochs 2000–2030" in str(report)
    read = [f.path for f in report.files]
    assert read == report.region.read and 0 < len(read) < len(sky["files"]) and report.region.outside
    assert sorted(read + report.region.outside) == sorted(str(f) for f in sky["files"])

    rec = _recorded(store, "gaia_dr3")
    assert len(rec) == 1 and rec[0]["complete"] and rec[0]["description"] == "--cone 150 20 1 deg"
    assert (rec[0]["epoch_lo"], rec[0]["epoch_hi"]) == SPAN
    cells, order = coverage.from_bytes(rec[0]["cells"]), rec[0]["norder"]
    assert np.array_equal(coverage.from_bytes(rec[0]["claimed"]), cells)
    # kept rows = every row of every file inside the recorded cut, by brute force
    inside = _in_cells(cells, order, cols["ra"], cols["dec"])
    assert _ids(store, "gaia_dr3") == sorted(cols["source_id"][inside].tolist())
    # which cover the region widened by the pad, and little more
    pad = rec[0]["pad_deg"]
    d = separation_deg(RA0, DEC0, cols["ra"], cols["dec"])
    assert np.all(inside[d <= R0 + pad]) and d[inside].max() < R0 + pad + 0.1
    # a file not read holds no row of the cut
    for path in report.region.outside:
        assert not np.isin(sky["per_file"][path], cols["source_id"][inside]).any()
    assert sky["fast"] in _ids(store, "gaia_dr3")

    # exact cones inside the region at epochs inside the range: brute force over all rows
    rng = np.random.default_rng(2)
    for epoch in (None, 2000.0, 2016.0, 2030.0):
        for _ in range(4):
            ra, dec = _offset(RA0, DEC0, rng.uniform(0, 360), rng.uniform(0, 0.6))
            cone = Cone.create(ra, dec, 0.3)
            got = store.cone(ra, dec, 0.3, catalog="gaia_dr3", epoch=epoch)
            assert sorted(got["source_id"].tolist()) == _brute(cols, cone, epoch)
    whole = store.cone(RA0, DEC0, R0, catalog="gaia_dr3", epoch=2030.0)   # the region itself
    assert sorted(whole["source_id"].tolist()) == _brute(cols, Cone.create(RA0, DEC0, R0), 2030.0)
    assert sky["fast"] in whole["source_id"]                   # moved in from outside
    assert sky["fast"] not in store.cone(RA0, DEC0, R0, catalog="gaia_dr3")["source_id"]
    # a polygon inside, at its epochs
    square = [[RA0 - 0.3, DEC0 - 0.3], [RA0 + 0.3, DEC0 - 0.3], [RA0 + 0.3, DEC0 + 0.3], [RA0 - 0.3, DEC0 + 0.3]]
    got = store.footprint(square, catalog="gaia_dr3", epoch=2020.0)
    from astrodb.query.regions import Polygon
    assert sorted(got["source_id"].tolist()) == _brute(cols, Polygon.create(square), 2020.0)

    # outside the region, or at another epoch: refused, naming the region
    msg = "catalog gaia_dr3 holds only the region loaded with --cone 150 20 1 deg, exact for epochs 2000–2030"
    with pytest.raises(astrodb.OutsideRegionError, match=msg + ": this cone .*reaches outside it"):
        store.cone(RA0, DEC0 + 0.9, 0.3, catalog="gaia_dr3", epoch=2020.0)
    with pytest.raises(astrodb.OutsideRegionError, match=msg + ": this cone reaches outside it"):
        store.cone(RA0, DEC0, 1.2, catalog="gaia_dr3")
    with pytest.raises(astrodb.OutsideRegionError, match=msg + ": epoch 2040 is outside them"):
        store.cone(RA0, DEC0, 0.1, catalog="gaia_dr3", epoch=2040.0)
    with pytest.raises(astrodb.OutsideRegionError, match="epoch 1995 is outside them"):
        store.footprint(square, catalog="gaia_dr3", epoch=1995.0)
    assert isinstance(astrodb.OutsideRegionError("x"), astrodb.QueryError)
    if store.backend == "postgresql":
        _sql_functions_check_the_region(store, cols, square)

    # a rerun reads the same files and finds them loaded
    again = store.ingest_gaia(sky["dir"], region=LoadRegion.from_cone(RA0, DEC0, R0), epochs=SPAN, progress=False)
    assert again.count("skipped") == len(read) and again.rows == 0 and again.region.recorded
    # a region far from the stars: the one file whose pixels hold it is read, and holds none
    far = store.ingest_gaia(sky["dir"], catalog="far", region=Cone.create(10, -40, 1), progress=False)
    assert far.ok and [(f.rows, f.message) for f in far.files] == [(0, "no row in the region")], str(far)
    assert far.files[0].path == str(sky["files"][-1]) and far.region.recorded
    assert len(store.cone(10, -40, 0.5, catalog="far", epoch=2020.0)) == 0   # exact: there is none
    store.close()


def _sql_functions_check_the_region(store, cols, square):
    """astrodb.cone and astrodb.footprint on the region-limited catalog: exact inside the region
    at its epochs, refused outside naming the region, as the Python API."""
    import sqlalchemy as sa

    def ids(sql, **params):
        with store.engine.connect() as conn:
            return sorted(conn.execute(sa.text(f"SELECT source_id FROM {sql}"), params).scalars().all())
    rng = np.random.default_rng(5)
    for epoch in (None, 2000.0, 2030.0):
        ra, dec = _offset(RA0, DEC0, rng.uniform(0, 360), rng.uniform(0, 0.6))
        got = ids("astrodb.cone('gaia_dr3', :ra, :dec, 0.3, :t)", ra=ra, dec=dec, t=epoch)
        assert got == _brute(cols, Cone.create(ra, dec, 0.3), epoch)
    got = ids("astrodb.cone('gaia_dr3', :ra, :dec, :r, 2030.0)", ra=RA0, dec=DEC0, r=R0)   # the region itself
    assert got == _brute(cols, Cone.create(RA0, DEC0, R0), 2030.0)
    got = ids("astrodb.footprint('gaia_dr3', CAST(:p AS float8[]), 2020.0)", p=square)
    from astrodb.query.regions import Polygon
    assert got == _brute(cols, Polygon.create(square), 2020.0)
    held = 'astrodb.cone: catalog "gaia_dr3" holds only the region loaded with --cone 150 20 1 deg \\(epochs 2000–2030\\)'
    for sql, params, why in (
            ("astrodb.cone('gaia_dr3', :ra, :dec, 0.3, 2020.0)", dict(ra=RA0, dec=DEC0 + 0.9),
             held + ': this cone \\(with the [0-9]+" a star can move by 2020\\) reaches outside it'),
            ("astrodb.cone('gaia_dr3', :ra, :dec, 1.2)", dict(ra=RA0, dec=DEC0), held + ": this cone reaches outside it"),
            ("astrodb.cone('gaia_dr3', :ra, :dec, 0.1, 2040.0)", dict(ra=RA0, dec=DEC0), held + ": epoch 2040 is outside them"),
            ("astrodb.footprint('gaia_dr3', CAST(:p AS float8[]), 1995.0)", dict(p=square), "epoch 1995 is outside them")):
        with pytest.raises(sa.exc.DBAPIError, match=why):
            ids(sql, **params)


def test_regions_union_then_a_whole_load_makes_the_catalog_unlimited(db_factory, sky):
    store = db_factory.store()
    cols = sky["cols"]
    a = store.ingest_gaia(sky["dir"], region=Cone.create(RA0, DEC0, R0), epochs=SPAN, progress=False)
    square = [[152.0, 22.0], [152.8, 22.0], [152.8, 22.7], [152.0, 22.7]]
    b = store.ingest_gaia(sky["dir"], region=square, epochs=(2010, 2025), jobs=2, progress=False)
    assert a.ok and b.ok and b.region.recorded, str(b)
    rec = _recorded(store, "gaia_dr3")
    assert [r["description"] for r in rec] == ["--cone 150 20 1 deg", "--polygon 152 22 152.8 22 152.8 22.7 152 22.7"]
    union = coverage.union_ranges([coverage.from_bytes(r["cells"]) for r in rec])
    inside = _in_cells(union, rec[0]["norder"], cols["ra"], cols["dec"])
    assert _ids(store, "gaia_dr3") == sorted(cols["source_id"][inside].tolist())   # each row once
    got = store.cone(152.4, 22.35, 0.2, catalog="gaia_dr3", epoch=2024.0)
    assert sorted(got["source_id"].tolist()) == _brute(cols, Cone.create(152.4, 22.35, 0.2), 2024.0)
    with pytest.raises(astrodb.OutsideRegionError,
                       match="holds only the regions loaded with --cone 150 20 1 deg \\(epochs 2000–2030\\); "
                             "--polygon 152 22 .* \\(epochs 2010–2025\\): this cone .*reaches outside it"):
        store.cone(151.3, 21.3, 0.3, catalog="gaia_dr3", epoch=2020.0)

    # a load without a region: every row of the files, each once, and no limit any more
    whole = store.ingest_gaia(sky["dir"], progress=False)
    assert whole.ok and whole.region is None, str(whole)
    assert _ids(store, "gaia_dr3") == sorted(cols["source_id"].tolist())
    got = store.cone(151.3, 21.3, 0.3, catalog="gaia_dr3", epoch=2050.0)
    assert sorted(got["source_id"].tolist()) == _brute(cols, Cone.create(151.3, 21.3, 0.3), 2050.0)
    store.close()


def test_files_missing_around_the_region_limit_what_is_recorded(db_factory, sky, tmp_path):
    """Given only some of the files, the catalog records only what they hold in full."""
    store = db_factory.store()
    cols = sky["cols"]
    probe = region_select.select([str(f) for f in sky["files"]], LoadRegion.from_cone(RA0, DEC0, R0), "dr3",
                                 2016.0, SPAN, False)
    given = probe.read[1:]                      # the first of the needed files was not downloaded
    for f in given:
        (tmp_path / f.rsplit("/", 1)[-1]).write_bytes(open(f, "rb").read())
    report = store.ingest_gaia(tmp_path, region=LoadRegion.from_cone(RA0, DEC0, R0), epochs=SPAN, progress=False)
    assert report.ok and report.region.recorded and not report.region.complete, str(report)
    assert "the files given hold in full" in str(report)
    rec = _recorded(store, "gaia_dr3")[0]
    claimed = coverage.from_bytes(rec["claimed"])
    assert 0 < coverage.cell_count(claimed) < coverage.cell_count(coverage.from_bytes(rec["cells"]))
    # the missing file's stars are where the catalog claims nothing
    missing = np.isin(cols["source_id"], sky["per_file"][probe.read[0]])
    near = missing & (separation_deg(RA0, DEC0, cols["ra"], cols["dec"]) < R0)
    assert near.any() and not _in_cells(claimed, rec["norder"], cols["ra"][near], cols["dec"][near]).any()
    i = np.nonzero(near)[0][0]
    with pytest.raises(astrodb.OutsideRegionError, match="reaches outside it"):
        store.cone(cols["ra"][i], cols["dec"][i], 0.01, catalog="gaia_dr3", epoch=2016.0)
    store.close()


# --- HATS catalogs ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hats_sky(tmp_path_factory, sky):
    """The same rows as a HATS catalog at orders 3-5, and a collection holding it."""
    root = tmp_path_factory.mktemp("hats")
    cat = gf.write_hats_catalog(root / "collection" / "gaia_dr3", "dr3", rows=sky["rows"], order=3, max_rows=700)
    (root / "collection" / "collection.properties").write_text(
        "obs_collection=gaia_dr3_fields\nhats_primary_table_url=gaia_dr3\n")
    return cat, root / "collection"


def _to_memory(directory) -> str:
    fs = fsspec.filesystem("memory")
    root = f"/regions_{uuid.uuid4().hex[:10]}"
    for f in sorted(p for p in directory.rglob("*") if p.is_file()):
        fs.pipe(root + "/" + f.relative_to(directory).as_posix(), f.read_bytes())
    return "memory://" + root


def _check_hats_load(store, report, name, cat, cols, files: list[str]):
    assert report.ok and report.region.recorded and report.region.complete, str(report)
    rec = _recorded(store, name)[-1]
    cells, order = coverage.from_bytes(rec["cells"]), rec["norder"]
    # read: exactly the partitions whose pixel meets the cut
    expected = []
    for (k, n), f in zip(cat.partitions, files):
        lo, hi = n << 2 * (order - k), (n + 1) << 2 * (order - k)
        if np.any((cells[:, 0] < hi) & (cells[:, 1] > lo)):
            expected.append(f)
    assert [f.path for f in report.files] == expected and len(expected) < len(files)
    assert sorted(report.region.outside) == sorted(set(files) - set(expected))
    inside = _in_cells(cells, order, cols["ra"], cols["dec"])
    assert _ids(store, name) == sorted(cols["source_id"][inside].tolist())
    got = store.cone(RA0 + 0.2, DEC0 - 0.3, 0.5, catalog=name, epoch=2030.0)
    assert sorted(got["source_id"].tolist()) == _brute(cols, Cone.create(RA0 + 0.2, DEC0 - 0.3, 0.5), 2030.0)
    with pytest.raises(astrodb.OutsideRegionError, match=f"catalog {name} holds only the region loaded with"):
        store.cone(RA0 + 1.5, DEC0, 0.3, catalog=name, epoch=2030.0)


def test_hats_directory_url_and_collection(db_factory, sky, hats_sky):
    cat, collection = hats_sky
    parts = [read_hats_partition(f) for f in cat.files]
    cols = {k: np.concatenate([p.columns[k] for p in parts]) for k in parts[0].columns}
    assert sorted(cols["source_id"].tolist()) == sorted(sky["cols"]["source_id"].tolist())
    store = db_factory.store()
    region = LoadRegion.from_cone(RA0, DEC0, R0)
    files = [str(f) for f in cat.files]

    report = store.ingest_gaia(cat.path, region=region, epochs=SPAN, progress=False)
    _check_hats_load(store, report, "gaia_dr3", cat, cols, files)

    url = _to_memory(cat.path)
    try:
        urls = [url + "/" + f.relative_to(cat.path).as_posix() for f in cat.files]
        report = store.ingest_gaia(url, catalog="from_url", region=region, epochs=SPAN, jobs=2, progress=False)
        _check_hats_load(store, report, "from_url", cat, cols, urls)
    finally:
        fsspec.filesystem("memory").rm(url.removeprefix("memory://"), recursive=True)

    report = store.ingest_gaia(collection, catalog="from_collection", region=region, epochs=SPAN, progress=False)
    assert report.release == "dr3"
    _check_hats_load(store, report, "from_collection", cat, cols, files)
    store.close()


# --- the command line ------------------------------------------------------------------------------

def test_cli_region_options(capsys, db_factory, sky, tmp_path):
    from astropy.io import fits
    from astropy.wcs import WCS

    from astrodb.cli.main import main

    url = db_factory.url()
    assert main(["--store", url, "init"]) == 0
    d = str(sky["dir"])
    assert main(["--store", url, "ingest", "gaia", d, "--cone", "150", "20", "60arcmin", "--epochs", "2000", "2030"]) == 0
    out = capsys.readouterr().out
    assert "region --cone 150 20 1 deg, epochs 2000–2030" in out and "recorded" in out
    assert main(["--store", url, "cone", "150", "20", "0.5", "--catalog", "gaia_dr3", "--epoch", "2025",
                 "--format", "csv"]) == 0
    capsys.readouterr()
    assert main(["--store", url, "cone", "150", "21.5", "0.5", "--catalog", "gaia_dr3", "--epoch", "2025"]) == 2
    assert ("catalog gaia_dr3 holds only the region loaded with --cone 150 20 1 deg, exact for epochs 2000–2030: "
            "this cone") in capsys.readouterr().err

    # a MOC file, a polygon and an image's footprint, each into its own catalog
    moc_file = tmp_path / "fields.fits"
    MOC.from_cone(lon=151 * u.deg, lat=21 * u.deg, radius=0.4 * u.deg, max_depth=10).save(str(moc_file), format="fits")
    assert main(["--store", url, "ingest", "gaia", d, "--catalog", "m", "--moc", str(moc_file)]) == 0
    assert "region --moc fields.fits, epochs 1990–2040" in capsys.readouterr().out
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [149.5, 19.5], [500.5, 500.5], [-1 / 3600, 1 / 3600]
    header = w.to_header()
    header["NAXIS"], header["NAXIS1"], header["NAXIS2"] = 2, 1000, 1000
    image = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((10, 10), np.float32), header=header).writeto(image)  # data smaller: NAXIS wins
    assert main(["--store", url, "ingest", "gaia", d, "--catalog", "w", "--wcs", str(image), "--epochs",
                 "2010", "2020"]) == 0
    assert "region --wcs image.fits, epochs 2010–2020" in capsys.readouterr().out
    assert main(["--store", url, "ingest", "gaia", d, "--catalog", "p", "--polygon", "149", "19", "149.5", "19",
                 "149.5", "19.5"]) == 0
    assert "region --polygon 149 19 149.5 19 149.5 19.5" in capsys.readouterr().out
    assert main(["--store", url, "footprint", "--polygon", "149.1,19.1 149.4,19.1 149.4,19.3", "--catalog", "p",
                 "--epoch", "2030"]) == 0
    capsys.readouterr()

    # bad input: one line naming the option
    with pytest.raises(SystemExit) as exit_:
        main(["--store", url, "ingest", "gaia", d, "--cone", "150", "abc", "1"])
    assert exit_.value.code == 2 and "argument --cone: not an angle: 'abc'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--store", url, "ingest", "gaia", d, "--cone", "150", "20"])
    assert "argument --cone: expected 3 arguments" in capsys.readouterr().err
    for args, message in (
            (["--cone", "150", "20", "-1"], "--cone: radius must be within (0, 180] deg, got -1"),
            (["--cone", "150", "95", "1"], "--cone: dec must be within [-90, 90] deg"),
            (["--moc", str(tmp_path / "none.fits")], "--moc: " + str(tmp_path / "none.fits") + ": no such MOC file"),
            (["--wcs", str(tmp_path / "none.fits")], "--wcs: " + str(tmp_path / "none.fits") + ": no such image file"),
            (["--polygon", "1", "2", "3", "4"], "--polygon: give RA DEC pairs of at least 3 vertices"),
            (["--cone", "150", "20", "1", "--epochs", "2030", "2020"], "--epochs: lo (2030) must not be after hi (2020)"),
            (["--cone", "150", "20", "1", "--epochs", "2000", "soon"], "--epochs: hi must be a Julian year"),
            (["--epochs", "2000", "2030"], "epochs: they apply to a region load")):
        assert main(["--store", url, "ingest", "gaia", d, "--catalog", "bad", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("astrodb: error: ") and message in err, (args, err)
    assert "bad" not in [c.name for c in astrodb.connect(url).catalogs()]


def test_two_parameter_and_dr1_files_are_read_and_cut(db_factory, tmp_path):
    """Files without pixels in their names (DR1) are all read, and their rows cut."""
    rows = gf.gaia_rows("dr1", 400, 5, real=False)
    rng = np.random.default_rng(4)
    dec = rng.uniform(-62, -58, 400)
    ra = 280 + rng.uniform(-2, 2, 400) / np.cos(np.radians(dec))
    gf.write_partition(tmp_path, "dr1", gf.relocated("dr1", rows, ra, dec, 1), name="GaiaSource_000-000-000.csv.gz")
    store = db_factory.store()
    report = store.ingest_gaia(tmp_path, region=Cone.create(280, -60, 0.7), epochs=(2015, 2016), progress=False)
    assert report.ok and report.count("loaded") == 1 and report.region.recorded, str(report)
    cols = read_gaia_file(tmp_path / "GaiaSource_000-000-000.csv.gz").columns
    rec = _recorded(store, "gaia_dr1")[0]
    inside = _in_cells(coverage.from_bytes(rec["cells"]), rec["norder"], cols["ra"], cols["dec"])
    assert 0 < inside.sum() < 400 and _ids(store, "gaia_dr1") == sorted(cols["source_id"][inside].tolist())
    assert np.array_equal(inside, coverage.contains(coverage.from_bytes(rec["cells"]), rec["norder"],
                                                    hpx29(cols["ra"], cols["dec"])))
    store.close()
