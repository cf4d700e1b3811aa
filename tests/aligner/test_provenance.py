"""aligner.provenance: the Recorder gathers a run's facts and hands them to the store, which
writes and chains the record (the record's format and its reading: tests/astrodb/provenance)."""
from __future__ import annotations

import hashlib

import numpy as np
import sqlalchemy as sa

from aligner import provenance, relative_align, wcs_serializer
from tests.support.aligner_synth import make_correctors, make_scene
from astrodb.provenance import chain, resolve_wcs, serialize_wcs
from astrodb.provenance.corrections import is_correction, parse_correction
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
    """Inputs as they were before the run, outputs as the run left them (an aligned gwcs as the
    fit's correction of its input), the JWST correctors' reference angles, the software
    versions: in the store's format (astrodb.provenance)."""
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
    x, y = np.array([100.0, 1500.0]), np.array([300.0, 1900.0])
    for i, (r, c) in enumerate(zip(rows, correctors)):
        res = c.meta["fit_result"]
        assert r["wcs_kind"] == "gwcs" and r["wcsinfo"] == c.ref_angles
        if res.status == "REFERENCE":  # kept its WCS: the same bytes
            assert r["output_wcs"] == r["input_wcs"] and "v2v3corr" not in c.wcs.available_frames
        else:  # the fit's correction of this image's recorded input
            assert res.status == "SUCCESS" and is_correction(r["output_wcs"])
            doc = parse_correction(r["output_wcs"])
            assert doc["of"] == {"run_id": run["run_id"], "image_index": i,
                                 "sha256": hashlib.sha256(before[i]).hexdigest()}
            assert doc["matrix"] == res.matrix.tolist() and doc["shift"] == res.shift.tolist()
            assert doc["tangent_point"] == list(res.plane_center) and doc["wcsinfo"] == c.ref_angles
        # read back: the WCS the run left, to rounding (1e-12 deg = 4 nano-arcsec)
        np.testing.assert_allclose(resolve_wcs(store, "gwcs", r["output_wcs"])(x, y), c.wcs(x, y), rtol=0, atol=1e-12)
    store.close()


def _images(store):
    with store.engine.connect() as conn:
        runs = conn.execute(sa.select(prov_runs.c.run_id).order_by(prov_runs.c.started_at)).scalars().all()
        return [conn.execute(sa.select(prov_images).where(prov_images.c.run_id == rid)
                             .order_by(prov_images.c.image_index)).mappings().all() for rid in runs]


def test_a_run_on_an_earlier_runs_unchanged_output_records_the_same_bytes(db_factory):
    """The next run's input is the earlier run's output, byte for byte (the audit's lineage keys
    on it), and reads back through both corrections; a WCS changed in between, or a run recorded
    in another store, records the WCS itself."""
    store = db_factory.store()
    scene = make_scene(3, 300, "gwcs", seed=6)
    correctors = make_correctors(scene)
    relative_align(correctors, store=store)
    relative_align(correctors, store=store)
    first, second = _images(store)
    assert [r["input_wcs"] for r in second] == [r["output_wcs"] for r in first]
    x, y = np.array([10.0, 2000.0]), np.array([30.0, 1000.0])
    for r, c in zip(second, correctors):
        np.testing.assert_allclose(resolve_wcs(store, "gwcs", r["output_wcs"])(x, y), c.wcs(x, y),
                                   rtol=0, atol=1e-12)
    moved = correctors[1].wcs
    moved.forward_transform.offset_1 = moved.forward_transform.offset_1 + 0.5  # a change outside the aligner
    relative_align(correctors, store=store)
    third = _images(store)[2]
    assert third[1]["input_wcs"] == serialize_wcs(moved) and not is_correction(third[1]["input_wcs"])
    assert third[0]["input_wcs"] == second[0]["output_wcs"]
    other = db_factory.store()
    relative_align(correctors, store=other)
    assert not any(is_correction(r["input_wcs"]) for r in _images(other)[0])
    other.close()
    store.close()
