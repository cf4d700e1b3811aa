"""aligner.provenance: WCS serialization, and each record's link of the provenance chain (the
records themselves: tests/astrodb/provenance)."""
from __future__ import annotations

import contextlib
import io
import threading

import asdf
import asdf.schema
import numpy as np
import pytest
import sqlalchemy as sa

from aligner import provenance, relative_align
from aligner.provenance import asdf_write_batch, deserialize_wcs, serialize_wcs
from aligner_synth import make_correctors, make_scene
from astrodb.provenance import chain
from astrodb.store.schema import prov_chain, prov_runs


@pytest.fixture
def schema_checks(monkeypatch):
    """Counts asdf's JSON-schema validations (each builds a validator), per thread."""
    seen: dict[str, int] = {}
    real = asdf.schema.get_validator

    def counting(*args, **kwargs):
        name = threading.current_thread().name
        seen[name] = seen.get(name, 0) + 1
        return real(*args, **kwargs)

    monkeypatch.setattr(asdf.schema, "get_validator", counting)
    return seen


def test_gwcs_serialized_in_a_batch_are_byte_identical_unvalidated_and_read_back_validated(schema_checks,
                                                                                          monkeypatch):
    monkeypatch.setattr(provenance, "_tag_layout", {})  # nothing learnt yet in this process
    scene = make_scene(3, 300, "gwcs", seed=3)
    correctors = make_correctors(scene)
    relative_align(correctors)  # two of the three now have a v2v3corr step
    wcss = [c.wcs for c in correctors]
    corrected = ["v2v3corr" in w.available_frames for w in wcss]
    assert sum(corrected) == 2
    main = threading.current_thread().name
    plain = [serialize_wcs(w) for w in wcss]
    assert schema_checks.pop(main) >= 3          # asdf validates each write outside a batch
    with asdf_write_batch():
        # The first gwcs of each kind has tags not seen yet: validated, and their layout learnt.
        first = [serialize_wcs(wcss[corrected.index(False)]), serialize_wcs(wcss[corrected.index(True)])]
        assert schema_checks.pop(main) == 2
        batched = [serialize_wcs(w) for w in wcss]
        with asdf_write_batch():  # nested: the same batch
            batched.append(serialize_wcs(wcss[0]))
    assert main not in schema_checks            # ... then no more validation
    assert batched[:3] == plain and batched[3] == plain[0]
    assert first == [plain[corrected.index(False)], plain[corrected.index(True)]]
    # Plain asdf again after the batch; the bytes read back (validated on read) as the same WCS.
    assert serialize_wcs(wcss[1]) == plain[1]
    assert schema_checks.pop(main) >= 1
    x, y = np.array([10.0, 500.0, 1800.0]), np.array([20.0, 900.0, 1500.0])
    for w, data in zip(wcss, batched):
        back = deserialize_wcs("gwcs", data)
        np.testing.assert_allclose(back(x, y), w(x, y), rtol=0, atol=1e-12)
    assert schema_checks.pop(main) >= 3


def test_a_tag_laid_out_differently_in_two_places_is_always_validated(schema_checks, monkeypatch):
    """What is learnt is per tag; a tag whose nodes asdf lays out in more than one way is not guessed."""
    monkeypatch.setattr(provenance, "_tag_layout", {})
    scene = make_scene(2, 50, "gwcs", seed=5)
    w = make_correctors(scene)[0].wcs
    with asdf_write_batch():
        serialize_wcs(w)
    ndarray = next(t for t in provenance._tag_layout if "/core/ndarray-" in t)
    assert provenance._tag_layout[ndarray][0][:3] == ("source", "data", "mask")  # the schema's order
    provenance._tag_layout[ndarray] = None
    schema_checks.clear()
    with asdf_write_batch():
        again = serialize_wcs(w)
    assert schema_checks.pop(threading.current_thread().name) == 1
    assert again == serialize_wcs(w)


def test_a_batch_keeps_asdfs_structural_checks_on_write():
    """Integer literals beyond 64 bits are refused inside a batch as outside it."""
    for batch in (False, True):
        buf = io.BytesIO()
        with asdf_write_batch() if batch else contextlib.nullcontext():
            with pytest.raises(asdf.ValidationError, match="Integer value"):
                asdf.AsdfFile({"n": 2 ** 70}).write_to(buf)


def test_batch_is_per_thread(schema_checks):
    """Another thread writing ASDF during a batch is validated as usual (same bytes)."""
    scene = make_scene(2, 50, "gwcs", seed=4)
    wcss = [c.wcs for c in make_correctors(scene)]
    plain = [serialize_wcs(w) for w in wcss]
    with asdf_write_batch():
        serialize_wcs(wcss[0])  # its tags learnt (if not yet)
    schema_checks.clear()
    seen = {}

    def other():
        seen["bytes"] = serialize_wcs(wcss[1])

    with asdf_write_batch():
        mine = serialize_wcs(wcss[0])
        t = threading.Thread(target=other, name="other-writer")
        t.start()
        t.join()
    assert mine == plain[0] and seen["bytes"] == plain[1]
    assert schema_checks.get("other-writer", 0) >= 1
    assert threading.current_thread().name not in schema_checks


def test_npz_record_is_exact_and_deflates_only_what_shrinks():
    import zipfile

    rng = np.random.default_rng(3)
    arrays = {"row": np.arange(20_000), "x": rng.uniform(0, 2048, 20_000), "weight": np.ones(20_000),
              "flag": rng.random(50) < 0.5, "empty": np.zeros(0), "grid": rng.normal(size=(300, 40))}
    data = provenance.npz_bytes(**arrays)
    back = provenance.npz_load(data)
    assert set(back) == set(arrays)
    for k, a in arrays.items():
        assert back[k].dtype == a.dtype and back[k].shape == a.shape
        np.testing.assert_array_equal(back[k], a)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        kinds = {i.filename[:-4]: i.compress_type for i in zf.infolist()}
    # Random doubles barely deflate: stored; indices and constant weights shrink many times.
    assert kinds["x"] == kinds["grid"] == zipfile.ZIP_STORED
    assert kinds["row"] == kinds["weight"] == zipfile.ZIP_DEFLATED
    assert len(data) < arrays["x"].nbytes + arrays["grid"].nbytes + arrays["row"].nbytes // 2


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
