"""absolute_align against Gaia releases in the store (both backends): resolved by stcal's names,
queried at the observation epoch, 2-parameter stars kept with low weights."""
from __future__ import annotations


import numpy as np
import pytest
from astropy.table import Table

import aligner
from aligner import AlignmentWarning, CatalogError
from tests.support.aligner_synth import absolute_error_mas, make_correctors, make_scene

OBS, GAP = 2024.5, 8.5


@pytest.fixture(scope="module")
def scene():
    return make_scene(2, 1500, "gwcs", seed=21, epoch=OBS, epoch_gap=GAP, ref_two_param_fraction=0.1,
                      pm_sigma=8.0)


def _store_with_dr3(db_factory, scene, name="gaia_dr3"):
    store = db_factory.store()
    cols = ["source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "parallax", "radial_velocity",
            "ref_epoch", "mag"]
    store.ingest_catalog(Table({c: scene.refcat[c] for c in cols}), name, description="synthetic DR3-like")
    return store


@pytest.mark.parametrize("name", ["GAIADR3", "GAIAREFCAT", "GAIADR3_S3"])
def test_store_reference_at_the_observation_epoch(db_factory, scene, name, tmp_path):
    store = _store_with_dr3(db_factory, scene)
    corr = make_correctors(scene)
    # The synthetic truth is barycentric (no annual parallax): observer at the barycentre.
    aligner.absolute_align(corr, name, epoch=OBS, store=store, observer=np.zeros(3), save_abs_catalog=True,
                           abs_catalog_output_dir=str(tmp_path))
    assert absolute_error_mas(corr, scene) < 0.5
    r = corr[0].meta["fit_result"]
    assert r.reference["source"] == "store:gaia_dr3" and r.reference["query"]["epoch"] == OBS
    saved = Table.read(tmp_path / f"fit_{name.lower()}_ref.ecsv")
    two = ~saved["propagated"]
    assert two.any() and (~two).any()  # 2-parameter stars kept ...
    assert np.median(saved["weight"][two]) < 0.01 < np.median(saved["weight"][~two])  # ... with low weights
    store.close()


def test_epoch_from_meta_and_the_earth_as_default_observer(db_factory, scene):
    store = _store_with_dr3(db_factory, scene)
    corr = make_correctors(scene)
    for c in corr:
        c.meta["epoch"] = f"J{OBS}"
    aligner.absolute_align(corr, "GAIADR3", store=store)  # epoch from meta, observer = Earth
    r = corr[0].meta["fit_result"]
    assert r.reference["query"]["epoch"] == OBS
    earth = np.asarray(r.reference["query"]["observer_au"])
    assert 0.98 < np.linalg.norm(earth) < 1.02
    # Parallaxes here are < 30 mas: the Earth's parallax shifts stars by less than that, and the
    # fit absorbs most of its common part; still aligned to well under the tolerance.
    assert absolute_error_mas(corr, scene) < 5.0
    store.close()


def test_without_an_epoch_the_stars_are_where_the_catalog_put_them(db_factory, scene):
    store = _store_with_dr3(db_factory, scene)
    corr = make_correctors(scene)
    with pytest.warns(AlignmentWarning, match="no epoch"):
        aligner.absolute_align(corr, "GAIADR3", store=store)
    # 8.5 years of the bulk proper motion (3, -4 mas/yr) the fit cannot tell from a pointing error.
    assert absolute_error_mas(corr, scene) > 20
    store.close()


def test_missing_release_is_a_clear_error(db_factory, scene):
    store = _store_with_dr3(db_factory, scene)
    corr = make_correctors(scene)
    with pytest.raises(CatalogError, match="gaia_dr2.*astrodb ingest gaia"):
        aligner.absolute_align(corr, "GAIADR2", epoch=OBS, store=store)
    assert all("fit_info" not in c.meta for c in corr)
    store.close()


def test_any_store_catalog_is_a_reference_by_name(db_factory, scene):
    store = _store_with_dr3(db_factory, scene, name="mycat")
    corr = make_correctors(scene)
    aligner.absolute_align(corr, "mycat", epoch=OBS, store=store, observer=np.zeros(3))
    assert absolute_error_mas(corr, scene) < 0.5
    r = corr[0].meta["fit_result"]
    assert r.reference["source"] == "store:mycat" and r.reference["query"]["epoch"] == OBS
    # A name that is no Gaia release, no file and no catalog: all three said, with what there is.
    corr = make_correctors(scene)
    with pytest.raises(CatalogError, match="not a Gaia release name.*not an existing file.*not a catalog in the "
                       "store.*catalogs there: mycat"):
        aligner.absolute_align(corr, "nosuch", epoch=OBS, store=store)
    store.close()


def test_a_table_from_the_store_is_a_reference(db_factory, scene):
    from aligner import refcat

    store = _store_with_dr3(db_factory, scene, name="mycat")
    ra, dec = float(np.mean(scene.refcat["ra"])), float(np.mean(scene.refcat["dec"]))
    t = store.cone(ra, dec, 0.2, catalog="mycat", epoch=OBS)
    assert "weight" in t.colnames and np.all(np.ma.getmaskarray(t["weight"]) | np.isnan(np.ma.filled(t["weight"],
                                                                                                   np.nan)))
    ref = refcat.resolve(t, center=(ra, dec), radius=0.2, epoch=None, observer=None)
    # No weights given: from the position errors at the epoch, as for the store's own queries.
    e = [np.ma.filled(t[c], np.nan).astype(float) for c in ("ra_epoch_error", "dec_epoch_error")]
    assert np.allclose(ref.weight, refcat.error_weights(e[0], e[1], refcat.DEFAULT_CENTROID_ERROR_MAS))
    assert ref.weight.min() < 0.01 < ref.weight.max() <= 1.0  # 2-parameter stars 8.5 yr out weigh little
    corr = make_correctors(scene)
    aligner.absolute_align(corr, t)
    assert absolute_error_mas(corr, scene) < 5.0  # the store's Earth-less epoch positions (barycentric truth)
    # Weights given are used; a bad one is refused with its row.
    t2 = t.copy()
    t2["weight"] = np.full(len(t2), 2.0)
    assert np.all(refcat.resolve(t2, center=(ra, dec), radius=0.2, epoch=None, observer=None).weight == 2.0)
    t2["weight"][3] = -1.0
    with pytest.raises(CatalogError, match=r"weight.*rows \[3\]"):
        refcat.resolve(t2, center=(ra, dec), radius=0.2, epoch=None, observer=None)
    store.close()
