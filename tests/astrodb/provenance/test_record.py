"""Every alignment run given a store is recorded, append-only, on both backends."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

import aligner
from astrodb.provenance import npz_load, resolve_wcs
from tests.support.aligner_synth import make_correctors, make_scene, wcs_error_mas
from astrodb.store.schema import prov_images, prov_runs


@pytest.fixture(scope="module")
def scene():
    return make_scene(3, 800, "gwcs", seed=41)


def _runs(store):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(prov_runs).order_by(prov_runs.c.started_at)).mappings().all()


def _images(store, run_id):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(prov_images).where(prov_images.c.run_id == run_id)
                            .order_by(prov_images.c.image_index)).mappings().all()


def test_runs_are_recorded_with_inputs_fits_and_outputs(db_factory, scene):
    store = db_factory.store()
    corr = make_correctors(scene)
    aligner.relative_align(corr, store=store)
    aligner.absolute_align(corr, scene.refcat, store=store)
    rel, ab = _runs(store)
    assert rel["step"] == "relative" and ab["step"] == "absolute"
    assert rel["status"] == ab["status"] == "success" and ab["n_aligned"] == 3
    assert rel["parameters"]["searchrad"] == 2.0 and rel["parameters"]["fitgeometry"] == "rshift"
    assert ab["parameters"]["abs_searchrad"] == 6.0 and ab["parameters"]["abs_refcat"].startswith("<Table")
    assert ab["software"]["tweakwcs"] and ab["software"]["python"]
    assert ab["ref_kind"] == "table" and ab["ref_rows"] > 100 and len(ab["ref_sha256"]) == 64
    ref = npz_load(ab["ref_data"])
    assert len(ref["ra"]) == ab["ref_rows"]
    rows = _images(store, ab["run_id"])
    assert [r["name"] for r in rows] == [c.meta["name"] for c in corr]
    for r, c in zip(rows, corr):
        assert r["status"] == "SUCCESS" and r["nref"] > 50 and r["rmse"] < 0.01
        data = npz_load(r["catalog_data"])
        assert len(data["x"]) == r["rows_used"] > 0
        out = resolve_wcs(store, r["wcs_kind"], r["output_wcs"])
        assert wcs_error_mas(out, c.wcs, (2048, 2048), n=4)[1] < 1e-6
        inp = resolve_wcs(store, r["wcs_kind"], r["input_wcs"])
        assert wcs_error_mas(inp, c.wcs, (2048, 2048), n=4)[1] > 0.01  # the relatively aligned WCS
        m = npz_load(r["matches"])
        assert len(m["input"]) == len(m["partner"]) == r["nmatches"]
    store.close()


def test_an_absolute_run_failing_before_its_query_records_its_unchanged_inputs(db_factory, scene):
    """The absolute step serializes its input WCSs while the reference query runs; a run that
    never gets there still records them (and nothing as output)."""
    store = db_factory.store()
    corr = make_correctors(scene)
    with pytest.raises(aligner.ParameterError):
        aligner.absolute_align(corr, scene.refcat, abs_separation=0.5, store=store)
    (run,) = _runs(store)
    assert run["status"] == "failed" and "separation" in run["message"]
    rows = _images(store, run["run_id"])
    assert len(rows) == len(corr)
    for r, c in zip(rows, corr):
        inp = resolve_wcs(store, r["wcs_kind"], r["input_wcs"])
        assert wcs_error_mas(inp, c.wcs, (2048, 2048), n=4)[1] < 1e-6
        assert r["output_wcs"] is None and r["status"].startswith("FAILED")
    store.close()


def test_failed_runs_are_recorded_with_why(db_factory, scene):
    store = db_factory.store()
    corr = make_correctors(scene)
    with pytest.raises(aligner.ParameterError):
        aligner.relative_align(corr, separation=0.5, store=store)
    with pytest.raises(aligner.AlignmentError):
        aligner.relative_align(corr, minobj=10**6, store=store)
    bad, few = _runs(store)
    assert bad["status"] == "failed" and "separation" in bad["message"]
    assert few["status"] == "failed" and "minobj" in few["message"]
    assert all(r["status"].startswith("FAILED") or r["status"] == "REFERENCE" for r in _images(store, few["run_id"]))
    assert all((r["output_wcs"] is None) == r["status"].startswith("FAILED") for r in _images(store, few["run_id"]))
    assert all(r["matrix"] is None for r in _images(store, few["run_id"]) if r["status"].startswith("FAILED"))
    store.close()


def test_provenance_is_append_only(db_factory, scene):
    store = db_factory.store()
    corr = make_correctors(scene)
    aligner.relative_align(corr, store=store)
    run_id = _runs(store)[0]["run_id"]
    for stmt in (prov_runs.update().values(status="tampered"), prov_runs.delete(),
                 prov_images.update().values(rmse=0.0), prov_images.delete()):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with store.engine.begin() as conn:
                conn.execute(stmt)
    if store.engine.dialect.name == "postgresql":
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with store.engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE prov_images"))
    assert _runs(store)[0]["status"] == "success" and len(_images(store, run_id)) == 3
    # REPLACE and UPSERT rewrite a row through its key: refused too (SQLite's REPLACE deletes the
    # old row without the DELETE trigger).
    if store.engine.dialect.name == "sqlite":
        rewrites = [f"INSERT OR REPLACE INTO prov_runs SELECT * FROM prov_runs WHERE run_id = '{run_id}'",
                    f"REPLACE INTO prov_images SELECT * FROM prov_images WHERE run_id = '{run_id}'",
                    f"INSERT INTO prov_runs SELECT * FROM prov_runs WHERE run_id = '{run_id}' "
                    "ON CONFLICT (run_id) DO UPDATE SET status = 'tampered'"]
    else:
        rewrites = [f"INSERT INTO prov_runs SELECT * FROM prov_runs WHERE run_id = '{run_id}' "
                    "ON CONFLICT (run_id) DO UPDATE SET status = 'tampered'"]
    for stmt in rewrites:  # an image of a chained run is refused as a finished run's, too
        with pytest.raises(sa.exc.DBAPIError, match="append-only|run is finished"):
            with store.engine.begin() as conn:
                conn.execute(sa.text(stmt))
    assert _runs(store)[0]["status"] == "success" and len(_images(store, run_id)) == 3
    store.close()


def test_no_store_no_record_and_opt_out(db_factory, scene):
    store = db_factory.store()
    aligner.relative_align(make_correctors(scene))
    aligner.relative_align(make_correctors(scene), store=store, provenance=False)
    assert _runs(store) == []
    store.close()
