"""astrodb.provenance.corrections: an aligned gwcs recorded as the correction of its input."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import aligner
from astrodb.errors import QueryError
from astrodb.provenance import deserialize_wcs, list_runs, resolve_wcs, show_run
from astrodb.provenance.audit import run_record
from astrodb.provenance.corrections import (FORMAT_VERSION, TANGENT_PLANE, correction_document, is_correction,
                                            parse_correction)
from tests.support.aligner_synth import make_correctors, make_scene

INFO = {"v2_ref": 86.1, "v3_ref": -493.2, "roll_ref": 30.0}


def _doc(**over) -> bytes:
    kw = dict(wcsinfo=INFO, tangent_point=(53.1, -27.8), matrix=np.eye(2), shift=np.array([0.01, -0.02]))
    kw.update(over)
    return correction_document("run-a", 1, "ab" * 32, **kw)


def test_the_document_is_canonical_json_that_reads_back_exactly():
    m = np.array([[0.9999999388932036, 0.0003495906021845736], [-0.0003495906021845736, 0.9999999388932036]])
    data = _doc(matrix=m, shift=[0.1 + 0.2, 1e-17])
    assert data.startswith(b'{"astrodb_wcs_correction":1,') and b" " not in data
    assert is_correction(data) and not is_correction(b"#ASDF 1.0.0") and not is_correction(None)
    doc = parse_correction(data)
    assert doc["matrix"] == m.tolist() and doc["shift"] == [0.1 + 0.2, 1e-17]  # floats exact
    assert doc["of"] == {"run_id": "run-a", "image_index": 1, "sha256": "ab" * 32}
    assert doc["method"] == TANGENT_PLANE and doc["astrodb_wcs_correction"] == FORMAT_VERSION
    assert _doc(matrix=m, shift=[0.1 + 0.2, 1e-17]) == data  # the same numbers, the same bytes


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(astrodb_wcs_correction=99), "format 99"),
    (lambda d: d.pop("shift"), "without shift"),
    (lambda d: d["of"].pop("sha256"), "without of.sha256"),
])
def test_a_damaged_document_says_what_is_wrong(change, message):
    doc = json.loads(_doc())
    change(doc)
    with pytest.raises(ValueError, match=message):
        parse_correction(json.dumps(doc).encode())
    with pytest.raises(ValueError, match="not a recorded WCS correction"):
        parse_correction(b'{"astrodb_wcs_correction":1,')
    with pytest.raises(ValueError, match="resolve_wcs"):
        deserialize_wcs("gwcs", _doc())


def test_aligned_gwcs_resolve_through_their_corrections_and_say_when_they_cannot(db_factory):
    store = db_factory.store()
    scene = make_scene(3, 300, "gwcs", seed=12)
    correctors = make_correctors(scene)
    aligner.relative_align(correctors, store=store)
    aligner.absolute_align(correctors, scene.refcat, store=store)
    runs = list_runs(store)
    ab = str(runs["run_id"][list(runs["step"]).index("absolute")])
    assert [im["status"] for im in show_run(store, ab)["images"]] == ["SUCCESS"] * 3
    x, y = np.linspace(0, 2047, 7), np.linspace(2047, 0, 7)
    _, rows = run_record(store, ab)
    # the relative run's outputs (its reference image kept its WCS), then each its own correction
    assert sum(is_correction(r["input_wcs"]) for r in rows) == 2
    for r, c in zip(rows, correctors):
        assert is_correction(r["output_wcs"])
        np.testing.assert_allclose(resolve_wcs(store, "gwcs", r["output_wcs"])(x, y), c.wcs(x, y), rtol=0, atol=1e-12)
    # a correction of a WCS the store does not hold, or not those bytes
    with pytest.raises(QueryError, match="run run-a image 1, which is not in"):
        resolve_wcs(store, "gwcs", _doc())
    wrong = correction_document(ab, 0, "0" * 64, wcsinfo=INFO, tangent_point=(53.1, -27.8), matrix=np.eye(2),
                                shift=[0, 0])
    with pytest.raises(QueryError, match=f"the input WCS of run {ab} image 0 is not the one"):
        resolve_wcs(store, "gwcs", wrong)
    sha = hashlib.sha256(bytes(rows[0]["input_wcs"])).hexdigest()
    unknown = correction_document(ab, 0, sha, wcsinfo=INFO, tangent_point=(53.1, -27.8), matrix=np.eye(2),
                                  shift=[0, 0], method="some-other-method")
    with pytest.raises(ValueError, match="'some-other-method'"):
        resolve_wcs(store, "gwcs", unknown)
    store.close()
