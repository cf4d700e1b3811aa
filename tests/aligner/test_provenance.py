"""aligner.provenance: the Recorder gathers a run's facts and hands them to the store, which
writes and chains the record (the record's format and its reading: tests/astrodb/provenance)."""
from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from aligner import provenance, relative_align, wcs_serializer
from tests.support.aligner_synth import make_correctors, make_scene
from astrodb.provenance import chain, deserialize_wcs, serialize_wcs
from astrodb.store.schema import prov_chain, prov_images, prov_runs


def test_a_recorded_run_is_chained_in_its_own_transaction(db_factory):
    """Each run the aligner records gets the next link of the chain, as the documented digest
    of its stored rows, and takes no image afterwards."""
    store = db_factory.store()
    scene = make_scene(2, 150, "fits", seed=8)
    relative_align(make_correctors(scene), store=store)
    relative_align(make_correctors(scene), store=store)
    with store.engine.connect() as conn:
        runs = conn.execute(sa.select(prov_runs.c.run_id).order_by(prov_runs.c.started_at)).scalars().all()
        links = conn.execute(sa.select(prov_chain).order_by(prov_chain.c.seq)).mappings().all()
        assert [(link["seq"], link["run_id"]) for link in links] == [(1, runs[0]), (2, runs[1])]
        assert links[0]["prev_digest"] == chain.GENESIS and links[1]["prev_digest"] == links[0]["digest"]
        for link in links:
            run, images = chain.stored_rows(conn, link["run_id"])
            assert len(images) == 2
            assert chain.link_digest(link["seq"], link["prev_digest"], link["run_id"], link["db_role"],
                                     link["server_time"], run, images) == link["digest"]
    if store.backend == "postgresql":  # the database's own role and clock, in the link too
        assert links[0]["db_role"] == store.engine.url.username and links[0]["server_time"] is not None
    else:
        assert links[0]["db_role"] is None and links[0]["server_time"] is None
    report = chain.verify_chain(store)
    assert report.ok and str(report) == f"ok: 2 runs, head 2 {links[1]['digest']}"
    store.close()


def test_the_record_holds_the_store_formats_bytes_of_what_the_run_used_and_made(db_factory, monkeypatch):
    """Inputs as they were before the run, outputs as the run left them, the JWST correctors'
    reference angles, the software versions: in the store's format (astrodb.provenance)."""
    monkeypatch.setattr(wcs_serializer, "ENABLED", False)  # every WCS serialized by the caller
    wcs_serializer.stop()
    store = db_factory.store()
    scene = make_scene(3, 300, "gwcs", seed=6)
    correctors = make_correctors(scene)
    before = [serialize_wcs(c.wcs) for c in correctors]
    relative_align(correctors, store=store)
    with store.engine.connect() as conn:
        run = conn.execute(sa.select(prov_runs)).mappings().one()
        rows = conn.execute(sa.select(prov_images).order_by(prov_images.c.image_index)).mappings().all()
    assert run["software"]["asdf"] == provenance.software_versions()["asdf"] and run["status"] == "success"
    assert [r["input_wcs"] for r in rows] == before
    for r, c in zip(rows, correctors):
        assert r["wcs_kind"] == "gwcs" and r["wcsinfo"] == c.ref_angles
        assert r["output_wcs"] == serialize_wcs(c.wcs)
        x, y = np.array([100.0, 1500.0]), np.array([300.0, 1900.0])
        np.testing.assert_allclose(deserialize_wcs("gwcs", r["output_wcs"])(x, y), c.wcs(x, y), rtol=0, atol=1e-12)
    store.close()
