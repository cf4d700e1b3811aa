"""Batch alignment on a local Dask cluster (two worker processes) against a store catalog, on both
backends: a folder of manifests and a table with an association column, each association
recorded once (retries, reruns and a worker killed mid-batch included), failures alone with
their reason, the summary and exit statuses of ``aligner align-batch``."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa
from astropy.table import Table, vstack

from aligner import cli
from aligner.batch import align_batch, read_associations
from aligner.errors import ParameterError
from tests.support.aligner_synth import make_scene, write_fits_inputs
from tests.support.live_server import live_server

CENTRES = [(10.0, -20.0), (60.0, 5.0), (150.0, 40.0), (200.0, -60.0), (250.0, 10.0), (320.0, 30.0)]
COLS = ["source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "parallax", "radial_velocity",
        "ref_epoch", "mag"]


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def scenes():
    return [make_scene(4, 800, "fits", seed=40 + k, center=c, epoch=2024.0 + k) for k, c in enumerate(CENTRES)]


@pytest.fixture
def batch(tmp_path, scenes, db_factory):
    """A folder of six manifests (five good, one whose catalogs hold 3 sources) and a store with
    the scenes' reference stars as catalog ``batch_ref``."""
    d = tmp_path / "batch"
    for k, s in enumerate(scenes):
        images = write_fits_inputs(s, tmp_path / "data", f"a{k}")
        if k == 4:  # too few sources to match
            for im in images:
                path = tmp_path / "data" / im["catalog"]
                Table.read(path)[:3].write(path, overwrite=True)
        d.mkdir(exist_ok=True)
        (d / f"assoc{k}.json").write_text(json.dumps({"images": [
            dict(im, wcs=f"../data/{im['wcs']}", catalog=f"../data/{im['catalog']}") for im in images]}))
    store = db_factory.store()
    refs = []
    for k, s in enumerate(scenes):
        t = Table({c: s.refcat[c] for c in COLS})
        t["source_id"] = np.asarray(t["source_id"]) + k * 10_000_000
        refs.append(t)
    store.ingest_catalog(vstack(refs), "batch_ref")
    yield d, store
    store.close()


def _options(store):
    return {"abs_refcat": "batch_ref", "store": store.engine.url.render_as_string(hide_password=False)}


def _recorded(store):
    with store.engine.connect() as conn:
        tasks = conn.exec_driver_sql("SELECT association, attempt, status, run_ids FROM prov_batch_tasks").all()
        runs = conn.exec_driver_sql("SELECT run_id, step, status FROM prov_runs").all()
    return tasks, runs


def test_a_folder_of_manifests_each_recorded_once_and_skipped_on_rerun(batch, client, tmp_path):
    d, store = batch
    res = align_batch(d, tmp_path / "out", options=_options(store), client=client)
    by = {r.association: r for r in res.rows}
    assert [r.association for r in res.rows] == [f"assoc{k}" for k in range(6)]
    assert all(by[f"assoc{k}"].status == "success" for k in (0, 1, 2, 3, 5)), res.summary()
    assert by["assoc4"].status == "failed" and "FAILED" in by["assoc4"].note    # alone, with its reason
    assert not res.ok
    for k in (0, 1, 2, 3, 5):
        r = by[f"assoc{k}"]
        assert r.images == r.aligned == 4 and 0 < r.rmse_mas < 20 and r.seconds > 0 and r.worker
        assert len(list((tmp_path / "out" / f"assoc{k}").glob("*.hdr"))) == 4
        assert len(list((tmp_path / "out" / f"assoc{k}").glob("*_fit.json"))) == 4
    tasks, runs = _recorded(store)
    assert sorted(t.association for t in tasks) == [f"assoc{k}" for k in range(6)]
    run_ids = [rid for t in tasks for rid in (json.loads(t.run_ids) if isinstance(t.run_ids, str) else t.run_ids)]
    assert len(run_ids) == len(set(run_ids)) == len(runs) >= 12   # relative + absolute each, failed ones too
    assert {r.step for r in runs} == {"relative", "absolute"}
    # The same batch again: the aligned ones are skipped, the failed one is tried again (a new attempt).
    again = align_batch(d, tmp_path / "out2", options=_options(store), client=client)
    by2 = {r.association: r for r in again.rows}
    assert {k for k, r in by2.items() if r.status == "done"} == {f"assoc{k}" for k in (0, 1, 2, 3, 5)}
    assert by2["assoc4"].status == "failed"
    tasks2, _ = _recorded(store)
    assert sorted((t.association, t.attempt) for t in tasks2 if t.association == "assoc4") == [("assoc4", 0),
                                                                                               ("assoc4", 1)]
    assert len(tasks2) == 7
    # Forced: every association again, as new attempts.
    forced = align_batch(d, tmp_path / "out3", options=_options(store), client=client, force=True)
    assert sum(r.status == "success" for r in forced.rows) == 5
    assert len(_recorded(store)[0]) == 13


def test_a_table_with_an_association_column(batch, client, tmp_path):
    d, store = batch
    rows = []
    for k in (1, 2):
        for im in json.loads((d / f"assoc{k}.json").read_text())["images"]:
            rows.append(dict(im, association=f"visit-{k}"))
    Table(rows=[[r[c] for c in ("association", "wcs", "catalog", "group_id", "epoch")] for r in rows],
          names=("association", "wcs", "catalog", "group_id", "epoch")).write(d / "table.ecsv")
    assocs = read_associations(d / "table.ecsv")
    assert [a.name for a in assocs] == ["visit-1", "visit-2"] and all(len(a.entries) == 4 for a in assocs)
    res = align_batch(d / "table.ecsv", tmp_path / "out", options=_options(store), client=client)
    assert res.ok and [r.status for r in res.rows] == ["success", "success"], res.summary()
    assert (tmp_path / "out" / "visit-1").is_dir()


def test_bad_batches_name_what_is_wrong(batch, tmp_path):
    d, store = batch
    with pytest.raises(ParameterError, match="no such folder or file"):
        align_batch(tmp_path / "nope", tmp_path / "out", options=_options(store))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match="holds no manifests"):
        align_batch(tmp_path / "empty", tmp_path / "out", options=_options(store))
    Table({"wcs": ["x"], "catalog": ["y"]}).write(tmp_path / "t.ecsv")
    with pytest.raises(ParameterError, match="no association column 'association'"):
        align_batch(tmp_path / "t.ecsv", tmp_path / "out", options=_options(store))
    with pytest.raises(ParameterError, match="unknown option"):
        align_batch(d, tmp_path / "out", options={"abs_refcatt": "x"})
    with pytest.raises(ParameterError, match="abs-fitgeometry|fitgeometry"):
        align_batch(d, tmp_path / "out", options=dict(_options(store), abs_fitgeometry="affine"))


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(batch, client, tmp_path):
    d, store = batch
    os.remove(d / "assoc4.json")
    for k in range(6, 10):  # more tasks than workers; the same images under other names: other keys
        doc = json.loads((d / f"assoc{k - 6}.json").read_text())
        doc["images"][0]["name"] = f"first-of-{k}"
        (d / f"assoc{k}.json").write_text(json.dumps(doc))
    client.wait_for_workers(2, timeout=120)  # a worker killed by the other backend's run is back
    pids = client.run(os.getpid)
    killed = {}
    finished = threading.Event()

    def kill_one():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not finished.is_set():
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                time.sleep(0.3)     # into the task
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed["worker"] = busy[0]
                return
            time.sleep(0.05)

    t = threading.Thread(target=kill_one)
    t.start()
    try:
        res = align_batch(d, tmp_path / "out", options=_options(store), client=client)
    finally:
        finished.set()
        t.join()
    assert killed, "no task was seen running"
    assert res.ok and len(res.rows) == 9, res.summary()
    tasks, runs = _recorded(store)
    assert sorted(t.association for t in tasks) == sorted(r.association for r in res.rows)
    assert len(runs) == 2 * 9 and len({r.run_id for r in runs}) == len(runs)
    client.wait_for_workers(2, timeout=120)   # the nanny brings it back


def test_the_command_line(batch, tmp_path):
    d, store = batch
    os.remove(d / "assoc4.json")
    for k in (0, 1, 5):
        os.remove(d / f"assoc{k}.json")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["align-batch", str(d), "-o", str(tmp_path / "out"), "--workers", "2",
                       "--abs-refcat", "batch_ref", "--store", _options(store)["store"]])
    assert rc == 0, err.getvalue()
    text = out.getvalue()
    assert "assoc2" in text and "assoc3" in text and "2 association(s): 2 aligned" in text
    t = Table.read(tmp_path / "out" / "batch_summary.ecsv")
    assert list(t["status"]) == ["success", "success"] and set(t.colnames) >= {"rmse_mas", "seconds", "worker"}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as e:
        assert cli.main(["align-batch", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert "no such folder or file" in e.getvalue()
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM prov_batch_tasks")).scalar() == 2


def test_workers_read_the_store_through_its_http_service(batch, client, tmp_path):
    """Workers that cannot reach the database read their references from ``astrodb serve``; the
    client records into the database; the references are the database's rows, bit for bit, and
    each run re-runs through the service to the same result."""
    from aligner import refcat as refcats
    from astrodb.provenance import verify_run

    d, store = batch
    db = store.engine.url.render_as_string(hide_password=False)
    with live_server(db) as (base, _):
        res = align_batch(d, tmp_path / "out", client=client,
                          options={"abs_refcat": "batch_ref", "store": base, "record_store": db})
        by = {r.association: r for r in res.rows}
        assert all(by[f"assoc{k}"].status == "success" for k in (0, 1, 2, 3, 5)), res.summary()
        assert by["assoc4"].status == "failed"
        tasks, runs = _recorded(store)
        assert sorted(t.association for t in tasks) == [f"assoc{k}" for k in range(6)]
        with store.engine.connect() as conn:
            absolute = conn.exec_driver_sql("SELECT run_id, ref_query, ref_sha256, ref_files FROM prov_runs "
                                            "WHERE step = 'absolute' AND status = 'success'").all()
        assert len(absolute) == 5
        files = [[f["path"], f["sha256"]] for f in store.catalog("batch_ref").files]
        for _, query, sha, ref_files in absolute:
            query = json.loads(query) if isinstance(query, str) else query
            ref_files = json.loads(ref_files) if isinstance(ref_files, str) else ref_files
            assert query["store"] == base
            assert [h for _, h in ref_files] == [h for _, h in files]
            direct = refcats.resolve("batch_ref", center=(query["ra"], query["dec"]), radius=query["radius_deg"],
                                     epoch=query["epoch"], observer=np.asarray(query["observer_au"]), store=store)
            assert direct.checksum() == sha    # the database's rows, bit for bit
        report = verify_run(store, absolute[0][0])
        assert report.ok, str(report)
        # One manifest with aligner align: the same split, its runs recorded in --record-store.
        assert cli.main(["align", str(d / "assoc0.json"), "--abs-refcat", "batch_ref", "--store", base,
                         "--record-store", db, "-o", str(tmp_path / "single")]) == 0
        _, after = _recorded(store)
        assert len(after) == len(runs) + 2


def test_warnings_reach_the_summary(batch, client, tmp_path):
    """A partly aligned association: the aligner's warning is in its summary row, not only on a
    worker's stderr."""
    d, store = batch
    manifest = json.loads((d / "assoc0.json").read_text())
    bad = d.parent / "data" / "a0_partial_cat.ecsv"
    Table.read(d.parent / "data" / manifest["images"][3]["catalog"].removeprefix("../data/"))[:3].write(bad)
    manifest["images"][3]["catalog"] = f"../data/{bad.name}"
    one = tmp_path / "one"
    one.mkdir()
    (one / "partial.json").write_text(json.dumps(manifest).replace('"../data/', f'"{d.parent}/data/'))
    res = align_batch(one, tmp_path / "out", options=_options(store), client=client)
    (row,) = res.rows
    assert row.status == "partial" and row.aligned == 3, res.summary()
    assert "warning: " in row.note and "1 of 4 image(s) not aligned" in row.note, row.note
