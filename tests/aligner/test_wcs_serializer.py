"""aligner.wcs_serializer: the record's gwcs bytes from the helper process are the caller's own."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from concurrent.futures import Future

import pytest
import sqlalchemy as sa

import aligner
from aligner import provenance, wcs_serializer
from aligner.provenance import asdf_write_batch, serialize_wcs
from aligner_synth import make_correctors, make_scene
from astrodb.store.schema import prov_images, prov_runs


@pytest.fixture(scope="module")
def wcss():
    """Three input gwcs and the three corrected by a relative run (two with a v2v3corr step)."""
    scene = make_scene(3, 300, "gwcs", seed=5)
    before = [c.wcs for c in make_correctors(scene)]
    correctors = make_correctors(scene)
    aligner.relative_align(correctors)
    return before + [c.wcs for c in correctors]


@pytest.fixture
def helper():
    assert wcs_serializer.wait_ready(60), "the helper process did not start"
    yield wcs_serializer._current()


def _here(wcs) -> bytes:
    with asdf_write_batch():
        return serialize_wcs(wcs)


def test_the_helpers_bytes_are_the_callers(helper, wcss):
    sent = [wcs_serializer.submit(w) for w in wcss]
    assert all(isinstance(s, wcs_serializer.Serialized) for s in sent)
    assert [s.result() for s in sent] == [_here(w) for w in wcss]
    assert helper.proc.pid != os.getpid() and helper.proc.poll() is None


def test_the_same_gwcs_gives_the_same_bytes_in_a_fresh_process(wcss):
    """asdf lists the extensions used in a set's order (object ids): sorted by URI here, or a
    WCS had another sha256 in another process (the audit's lineage keys on it)."""
    code = ("import pickle, sys; from aligner.provenance import serialize_wcs; "
            "sys.stdout.buffer.write(serialize_wcs(pickle.loads(sys.stdin.buffer.read())))")
    for w in (wcss[0], wcss[4]):
        out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(w), capture_output=True, check=True)
        assert out.stdout == serialize_wcs(w)
    text = serialize_wcs(wcss[4]).decode(errors="replace")
    uris = [line.split("extension_uri:")[1].strip() for line in text.splitlines() if "extension_uri:" in line]
    assert len(uris) >= 3 and uris == sorted(uris)


def test_the_snapshot_is_the_wcs_as_it_was_sent(helper, wcss):
    w = pickle.loads(pickle.dumps(wcss[4]))
    expected = _here(w)
    sent = wcs_serializer.submit(w)
    w.name = "renamed after it was sent"
    assert sent.result() == expected


def test_what_the_helper_has_not_answered_is_serialized_by_the_caller(wcss):
    never: Future = Future()  # a helper that never answers
    items = [wcs_serializer.Serialized(payload=pickle.dumps(w), future=never) for w in wcss[3:]]
    wcs_serializer.gather(items)
    assert [s.result() for s in items] == [_here(w) for w in wcss[3:]]
    assert not never.done()


def test_a_helper_that_dies_costs_nothing_but_time(helper, wcss):
    sent = [wcs_serializer.submit(w) for w in wcss * 4]
    helper.proc.kill()
    helper.proc.wait()
    assert [s.result() for s in sent] == [_here(w) for w in wcss * 4]
    deadline = time.monotonic() + 10
    while not helper.dead and time.monotonic() < deadline:
        time.sleep(0.01)
    assert helper.dead and wcs_serializer.submit(wcss[0]) is None  # not used, not restarted by submit
    # A new one starts when asked (by the recorder: after a recorded gwcs run).
    assert wcs_serializer.wait_ready(60)
    again = wcs_serializer._current()
    assert again is not helper and again.proc.poll() is None
    assert wcs_serializer.submit(wcss[1]).result() == _here(wcss[1])


class NotAWcs:
    """Picklable, a "gwcs" by its class (a forward_transform), and not serializable by asdf."""
    forward_transform = None


def test_an_error_in_the_helper_is_the_callers_error(helper):
    sent = wcs_serializer.submit(NotAWcs())
    assert sent is not None  # sent: the helper fails on it
    with pytest.raises(Exception) as here:
        serialize_wcs(NotAWcs())
    with pytest.raises(type(here.value)):
        sent.result()


def test_fits_wcs_and_unpicklable_gwcs_stay_in_the_caller(helper, wcss):
    from astropy.wcs import WCS

    assert wcs_serializer.submit(WCS(naxis=2)) is None
    w = pickle.loads(pickle.dumps(wcss[0]))
    w.unpicklable = lambda: None
    assert wcs_serializer.submit(w) is None


def test_switched_off_no_process_starts(monkeypatch):
    wcs_serializer.stop()
    monkeypatch.setattr(wcs_serializer, "ENABLED", False)
    wcs_serializer.start()
    assert wcs_serializer._current() is None and not wcs_serializer.wait_ready(1)
    monkeypatch.setenv("ALIGNER_RECORD_PROCESS", "yes")
    with pytest.raises(ValueError, match="ALIGNER_RECORD_PROCESS must be 0 .* or 1"):
        wcs_serializer._enabled_from_environment()
    monkeypatch.setenv("ALIGNER_RECORD_PROCESS", "0")
    assert wcs_serializer._enabled_from_environment() is False


def _record_bytes(store):
    with store.engine.connect() as conn:
        run = conn.execute(sa.select(prov_runs.c.run_id).order_by(prov_runs.c.started_at.desc())).first()[0]
        rows = conn.execute(sa.select(prov_images.c.input_wcs, prov_images.c.output_wcs)
                            .where(prov_images.c.run_id == run).order_by(prov_images.c.image_index)).all()
    return [tuple(r) for r in rows]


def test_a_record_is_the_same_with_and_without_the_helper(db_factory, monkeypatch):
    scene = make_scene(3, 500, "gwcs", seed=8)
    store = db_factory.store()
    try:
        wcs_serializer.stop()
        monkeypatch.setattr(wcs_serializer, "ENABLED", False)
        aligner.absolute_align(make_correctors(scene), scene.refcat, store=store)
        without = _record_bytes(store)
        assert wcs_serializer._current() is None  # no helper started by the run
        monkeypatch.setattr(wcs_serializer, "ENABLED", True)
        aligner.absolute_align(make_correctors(scene), scene.refcat, store=store)  # starts it at its end
        assert wcs_serializer.wait_ready(60)
        calls = []
        real = wcs_serializer._Helper.submit
        monkeypatch.setattr(wcs_serializer._Helper, "submit", lambda self, p: calls.append(1) or real(self, p))
        aligner.absolute_align(make_correctors(scene), scene.refcat, store=store)
        with_helper = _record_bytes(store)
        assert len(calls) == 6  # 3 inputs, 3 outputs
        assert with_helper == without and all(i and o for i, o in without)
    finally:
        store.close()
