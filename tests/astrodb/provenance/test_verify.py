"""`verify_run` re-runs a recorded fit from its record: it reproduces to 1 µas, and says exactly
what differs when the reference changed since."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from astropy.table import Table

import aligner
from tests.support.aligner_synth import make_correctors, make_scene
from astrodb.provenance.verify import verify_run
from astrodb.store.schema import prov_runs

OBS = 2024.5


@pytest.fixture(scope="module")
def scene():
    return make_scene(3, 800, "gwcs", seed=51, epoch=OBS, epoch_gap=8.0)


def _last_run(store):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(prov_runs.c.run_id).order_by(prov_runs.c.started_at.desc())).scalar()


def _dr3(store, scene, rows=slice(None)):
    cols = ["source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "parallax", "radial_velocity",
            "ref_epoch", "mag"]
    return store.ingest_catalog(Table({c: scene.refcat[c][rows] for c in cols}), "gaia_dr3")


def test_relative_and_table_runs_reproduce(db_factory, scene):
    store = db_factory.store()
    corr = make_correctors(scene)
    aligner.relative_align(corr, store=store)
    rel = _last_run(store)
    aligner.absolute_align(corr, scene.refcat, store=store, abs_fitgeometry="general")
    ab = _last_run(store)
    for run_id in (rel, ab[:8]):
        report = verify_run(store, run_id)
        assert report.ok, str(report)
        assert report.max_difference_uas <= 1.0
    store.close()


def test_store_reference_run_reproduces_then_not_after_the_catalog_changes(db_factory, scene):
    store = db_factory.store()
    _dr3(store, scene)
    corr = make_correctors(scene)
    aligner.absolute_align(corr, "GAIADR3", epoch=OBS, store=store)
    run_id = _last_run(store)
    report = verify_run(store, run_id)
    assert report.ok, str(report)
    assert "sha256 match" in str(report)
    # Re-ingest a different version of the release: verify says the reference changed and how.
    store.drop_catalog("gaia_dr3")
    _dr3(store, scene, rows=slice(0, len(scene.refcat) // 2))
    report = verify_run(store, run_id)
    assert not report.ok
    text = str(report)
    assert "reference rows changed" in text and "no longer in the catalog" in text, text
    store.close()


def test_failed_runs_verify_as_failed_and_unknown_ids_are_errors(db_factory, scene):
    import astrodb

    store = db_factory.store()
    with pytest.raises(aligner.AlignmentError):
        aligner.relative_align(make_correctors(scene), minobj=10**6, store=store)
    report = verify_run(store, _last_run(store))
    assert report.ok, str(report)
    with pytest.raises(astrodb.QueryError, match="no recorded run"):
        verify_run(store, "00000000-nope")
    store.close()
