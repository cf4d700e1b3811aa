"""``astrodb export hats``: a store catalog as a HATS collection that LSDB reads.

On each backend a catalog of stars over the whole sky, with dense patches at both poles and
across RA 0/360 and fast movers, is exported at J2030; ``lsdb.read_hats`` cone searches must
return exactly the rows ``Store.cone`` gives at that epoch, with the same positions and errors.
A Gaia DR3 catalog of real rows is exported at its own epoch, correlations included; a
cross-match through LSDB uses the margin cache.
"""
from __future__ import annotations

import numpy as np
import pytest
from astropy.table import vstack

from astrodb import CatalogNotFoundError, QueryError
from astrodb.cli.main import main as astrodb_main
from astrodb.export.hats import export_hats
from astrodb.export.rows import chunk_ranges
from tests.support import gaia_fixtures as gf
from tests.support.synth import gaia_like

lsdb = pytest.importorskip("lsdb")
distributed = pytest.importorskip("dask.distributed")

PATCHES = [(0.0, 0.0, 180.0, 3000, 0), (0.0, 89.8, 1.0, 500, 20), (123.0, -89.6, 1.0, 500, 20),
           (359.95, 10.0, 1.5, 1200, 20)]
EPOCH = 2030.0
CONES = [(0.0, 90.0, 0.5), (200.0, 89.5, 0.6), (0.0, -90.0, 0.8), (359.99, 10.0, 0.7), (0.01, 10.3, 0.4),
         (45.0, 30.0, 12.0), (270.0, -60.0, 20.0)]


@pytest.fixture(scope="module")
def client():
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def exported(store, client, tmp_path_factory):
    t = vstack([gaia_like(n, ra, dec, r, seed=40 + i, fast=f) for i, (ra, dec, r, n, f) in enumerate(PATCHES)])
    t["source_id"] = np.arange(len(t), dtype=np.int64) + 1
    t["ref_epoch"][::4] = 2015.5
    store.ingest_catalog(t, "hats_sky")
    folder = tmp_path_factory.mktemp(f"hats_{store.backend}")
    gf.write_dr3_partition(folder, 300, seed=5, real=True)
    store.ingest_gaia(sorted(folder.glob("*.csv.gz")), "dr3", catalog="hats_gaia")
    # Small partitions and chunks, so that cones and the margin cross partition boundaries.
    sky = export_hats(store, "hats_sky", folder / "sky", epoch=f"J{EPOCH:g}", pixel_threshold=400,
                      chunk_rows=1500, client=client)
    gaia = export_hats(store, "hats_gaia", folder / "gaia", pixel_threshold=100, client=client)
    return sky, gaia, t


def _same_rows(store, path, catalog, epoch, ra, dec, radius):
    got = lsdb.read_hats(path).cone_search(ra, dec, radius * 3600).compute()
    want = store.cone(ra, dec, radius, catalog=catalog, epoch=epoch)
    assert sorted(got["source_id"]) == sorted(want["source_id"])
    got = got.set_index("source_id").loc[np.asarray(want["source_id"])]
    for name in ("ra", "dec", "pmra", "parallax", "ref_epoch", "ra_error", "mag"):
        expected = np.ma.filled(np.ma.asarray(want[name], float), np.nan)
        np.testing.assert_array_equal(got[name].to_numpy(dtype=float, na_value=np.nan), expected, err_msg=name)
    return got, want


def test_cone_search_equals_store_cone_at_the_epoch(store, exported):
    sky, _, t = exported
    assert sky.rows == len(t) and sky.epoch == EPOCH and sky.partitions > 5 and sky.margin_rows > 0
    found = 0
    for ra, dec, radius in CONES:
        got, want = _same_rows(store, sky.path, "hats_sky", EPOCH, ra, dec, radius)
        found += len(want)
        for name in ("ra_epoch_error", "dec_epoch_error", "ra_ref", "dec_ref"):
            np.testing.assert_allclose(got[name].to_numpy(dtype=float), np.asarray(want[name], float), rtol=0,
                                       atol=0, err_msg=name)
        assert (got["propagated"].to_numpy(dtype=bool) == np.asarray(want["propagated"])).all()
    assert found > 500


def test_fast_movers_are_where_they_are_at_the_epoch(store, exported):
    sky, _, t = exported
    fast = np.nonzero(np.hypot(t["pmra"], t["pmdec"]) > 1000)[0][:10]
    cat = lsdb.read_hats(sky.path)
    for i in fast:
        at = store.cone(t["ra"][i], t["dec"][i], 0.2, catalog="hats_sky", epoch=EPOCH)
        row = at[at["source_id"] == t["source_id"][i]]
        assert len(row) == 1 and row["distance"][0] > 10 / 3600  # moved by more than 10 arcsec since 2016
        got = cat.cone_search(row["ra"][0], row["dec"][0], 0.5).compute()
        assert t["source_id"][i] in set(got["source_id"])


def test_real_gaia_rows_at_their_own_epoch(store, exported):
    _, gaia, _ = exported
    real = gf.real_dr3_rows()
    if real is None:
        pytest.skip("no real Gaia rows")
    ra, dec = float(real["ra"][0].as_py()), float(real["dec"][0].as_py())
    got, want = _same_rows(store, gaia.path, "hats_gaia", None, ra, dec, 0.3)
    assert len(want) >= 40 and gaia.epoch is None
    corr = got["ra_pmra_corr"].to_numpy(dtype=float, na_value=np.nan)
    assert np.isfinite(corr).sum() >= 30 and np.all(np.abs(corr[np.isfinite(corr)]) <= 1)


def test_properties_say_what_and_when(exported):
    import hats

    sky, gaia, _ = exported
    props = hats.read_hats(sky.path).main_catalog.catalog_info
    extra = props.__pydantic_extra__
    assert extra["astrodb_catalog"] == "hats_sky" and float(extra["astrodb_epoch"]) == EPOCH
    assert hats.read_hats(gaia.path).main_catalog.catalog_info.__pydantic_extra__["astrodb_epoch"] == "ref_epoch"
    margin = hats.read_hats(hats.read_hats(sky.path).default_margin_catalog_dir).catalog_info
    # The margin names the catalog where it now is, not the folder it was built in.
    assert margin.primary_catalog == str(sky.path / "hats_sky")
    assert not [p for p in sky.path.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_margin_cache_makes_crossmatches_complete(store, exported):
    sky, _, _ = exported
    cat = lsdb.read_hats(sky.path)
    assert cat.margin is not None
    main = cat.compute()
    # Every star, 8 arcsec off, matched back through LSDB: the ones by a partition's edge need
    # the margin cache (10 arcsec); without it some find nothing.
    shifted = main[["source_id", "ra", "dec"]].copy()
    shifted["dec"] = np.clip(shifted["dec"].astype(float) + 8 / 3600, -90, 90)
    shifted = shifted.rename(columns={"source_id": "probe_id"})
    probes = lsdb.from_dataframe(shifted, ra_column="ra", dec_column="dec", lowest_order=0, highest_order=6,
                                 partition_rows=1000)
    matched = probes.crossmatch(cat, radius_arcsec=9, n_neighbors=1, suffixes=("_p", "")).compute()
    assert len(matched) == len(main)
    # Each probe's nearest star is its own, or one nearer still (a chance neighbour).
    own = matched["probe_id_p"].to_numpy() == matched["source_id"].to_numpy()
    assert np.all(matched["_dist_arcsec"].to_numpy()[~own] < 8.0) and own.mean() > 0.99
    assert np.all(np.abs(matched["_dist_arcsec"].to_numpy()[own] - 8.0) < 1e-3)  # 8" but at the poles
    alone = lsdb.read_hats(sky.path / "hats_sky")  # the catalog without its margin cache
    assert alone.margin is None
    assert len(probes.crossmatch(alone, radius_arcsec=9, n_neighbors=1, suffixes=("_p", "")).compute()) < len(main)


def test_cli_refuses_bad_input_and_leaves_nothing(store, exported, tmp_path, capsys):
    url = store.url
    assert astrodb_main(["--store", url, "export", "hats", "no_such", str(tmp_path / "x")]) == 2
    assert "no catalog 'no_such'" in capsys.readouterr().err
    assert astrodb_main(["--store", url, "export", "hats", "hats_sky", str(tmp_path / "y"), "--epoch", "soon"]) == 2
    assert "epoch" in capsys.readouterr().err
    assert astrodb_main(["--store", url, "export", "hats", "hats_sky", str(exported[0].path)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert astrodb_main(["--store", url, "export", "hats", "hats_sky", str(tmp_path / "z"), "--margin", "0"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_export_errors_name_the_problem(store, tmp_path):
    with pytest.raises(CatalogNotFoundError):
        export_hats(store, "hats_nope", tmp_path / "a")
    with pytest.raises(QueryError, match="epoch"):
        export_hats(store, "hats_sky", tmp_path / "b", epoch=5000.0)
    assert list(tmp_path.iterdir()) == []


def test_chunk_ranges_cover_every_pixel_once():
    rng = np.random.default_rng(1)
    pixels = np.unique(rng.integers(0, 12 * 4**7, 3000))
    counts = rng.integers(1, 500, len(pixels))
    ranges = chunk_ranges(pixels, counts, 10_000)
    hpx = pixels << 44
    which = np.searchsorted(ranges[:, 0], hpx, side="right") - 1
    assert np.all(hpx >= ranges[which, 0]) and np.all(hpx <= ranges[which, 1])
    assert np.all(ranges[1:, 0] > ranges[:-1, 1])
    per = np.bincount(which, counts)
    assert per.max() < 10_000 + counts.max() and len(ranges) == pytest.approx(counts.sum() / 10_000, abs=2)
