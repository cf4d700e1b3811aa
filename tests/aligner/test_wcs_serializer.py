"""aligner.wcs_serializer: the record's gwcs bytes from the worker process are the caller's own."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
import sqlalchemy as sa

import aligner
from aligner import wcs_serializer
from tests.support.aligner_synth import make_correctors, make_scene
from astrodb.provenance.corrections import parse_correction
from astrodb.provenance.wcs_bytes import serialize_wcs
from astrodb.store.schema import prov_images, prov_runs

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wcss():
    """Three input gwcs and the three corrected by a relative run (two with a v2v3corr step)."""
    scene = make_scene(3, 300, "gwcs", seed=5)
    before = [c.wcs for c in make_correctors(scene)]
    correctors = make_correctors(scene)
    aligner.relative_align(correctors)
    return before + [c.wcs for c in correctors]


@pytest.fixture
def worker():
    assert wcs_serializer.wait_ready(60), "the worker process did not start"
    yield wcs_serializer._current()


def test_the_workers_bytes_are_the_callers(worker, wcss):
    sent = [wcs_serializer.submit(w) for w in wcss]
    assert all(isinstance(s, wcs_serializer.Serialized) for s in sent)
    assert [s.result() for s in sent] == [serialize_wcs(w) for w in wcss]
    assert worker.proc.pid != os.getpid() and worker.proc.poll() is None


def test_what_the_caller_serialized_itself_is_cancelled_in_the_worker(worker, wcss):
    sent = [wcs_serializer.submit(w) for w in wcss * 3]
    wcs_serializer.gather(sent)  # the caller takes what the worker has not answered, from the back
    assert worker._pending == {}  # answered, or cancelled: nothing left for the worker to send
    assert [s.result() for s in sent] == [serialize_wcs(w) for w in wcss * 3]
    assert wcs_serializer.submit(wcss[2]).result() == serialize_wcs(wcss[2])  # the worker goes on


def test_the_snapshot_is_the_wcs_as_it_was_sent(worker, wcss):
    w = pickle.loads(pickle.dumps(wcss[4]))
    expected = serialize_wcs(w)
    sent = wcs_serializer.submit(w)
    w.name = "renamed after it was sent"
    assert sent.result() == expected


def test_what_the_worker_has_not_answered_is_serialized_by_the_caller(wcss):
    never: Future = Future()  # a worker that never answers
    items = [wcs_serializer.Serialized(payload=pickle.dumps(w), future=never) for w in wcss[3:]]
    wcs_serializer.gather(items)
    assert [s.result() for s in items] == [serialize_wcs(w) for w in wcss[3:]]


def test_a_worker_that_dies_costs_nothing_but_time(worker, wcss):
    sent = [wcs_serializer.submit(w) for w in wcss * 4]
    worker.proc.kill()
    worker.proc.wait()
    assert [s.result() for s in sent] == [serialize_wcs(w) for w in wcss * 4]
    deadline = time.monotonic() + 10
    while not worker.dead and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.dead and wcs_serializer.submit(wcss[0]) is None  # not used, not restarted by submit
    # A new one starts when asked (by the recorder: after a recorded gwcs run).
    assert wcs_serializer.wait_ready(60)
    again = wcs_serializer._current()
    assert again is not worker and again.proc.poll() is None
    assert wcs_serializer.submit(wcss[1]).result() == serialize_wcs(wcss[1])


class NotAWcs:
    """Picklable, a "gwcs" by its class (a forward_transform), and not serializable by asdf."""
    forward_transform = None


def test_an_error_in_the_worker_is_the_callers_error(worker):
    sent = wcs_serializer.submit(NotAWcs())
    assert sent is not None  # sent: the worker fails on it
    with pytest.raises(Exception) as here:
        serialize_wcs(NotAWcs())
    with pytest.raises(type(here.value)):
        sent.result()
    assert not worker.dead  # a WCS that fails is not a worker that failed


def test_fits_wcs_and_unpicklable_gwcs_stay_in_the_caller(worker, wcss):
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


def _correction(data: bytes) -> dict:
    doc = parse_correction(data)
    return dict(doc, of={k: v for k, v in doc["of"].items() if k != "run_id"})


def test_a_record_is_the_same_with_and_without_the_worker(db_factory, monkeypatch):
    scene = make_scene(3, 500, "gwcs", seed=8)
    store = db_factory.store()
    try:
        wcs_serializer.stop()
        monkeypatch.setattr(wcs_serializer, "ENABLED", False)
        aligner.absolute_align(make_correctors(scene), scene.refcat, store=store)
        without = _record_bytes(store)
        assert wcs_serializer._current() is None  # no worker started by the run
        monkeypatch.setattr(wcs_serializer, "ENABLED", True)
        aligner.absolute_align(make_correctors(scene), scene.refcat, store=store)  # starts it at its end
        assert wcs_serializer.wait_ready(60)
        calls = []
        real = wcs_serializer._Worker.submit
        monkeypatch.setattr(wcs_serializer._Worker, "submit", lambda self, p: calls.append(1) or real(self, p))
        aligner.absolute_align(make_correctors(scene), scene.refcat, store=store)
        with_worker = _record_bytes(store)
        assert len(calls) == 3  # the inputs (the outputs are recorded as their corrections)
        assert [i for i, _ in with_worker] == [i for i, _ in without] and all(i and o for i, o in without)
        # the same corrections, each of its own run's input
        assert [_correction(o) for _, o in with_worker] == [_correction(o) for _, o in without]
    finally:
        store.close()


def test_a_process_that_exits_is_not_held_up_by_a_starting_worker(tmp_path):
    """The worker starts after the first recorded gwcs run; a process that exits right then
    kills it instead of waiting for its start (imports, a first serialization)."""
    script = tmp_path / "one_run.py"
    script.write_text(
        "import sys, time\n"
        "import aligner, astrodb\n"
        "from aligner import wcs_serializer\n"
        f"sys.path.append({str(TESTS.parent)!r})  # the repository root, for tests.support\n"
        "from tests.support.aligner_synth import make_correctors, make_scene\n"
        f"store = astrodb.connect('sqlite:///{tmp_path / 'store.sqlite'}')\n"
        "store.init()\n"
        "aligner.relative_align(make_correctors(make_scene(2, 100, 'gwcs', seed=3)), store=store)\n"
        "assert wcs_serializer._current() is not None and not wcs_serializer._current().ready.is_set()\n"
        "print(time.time(), flush=True)\n")
    env = {k: v for k, v in os.environ.items() if k != "ALIGNER_RECORD_PROCESS"}
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    ended = time.time()
    assert res.returncode == 0, res.stderr
    assert ended - float(res.stdout.split()[-1]) < 2.0  # a starting worker would hold it up for 2-4 s
