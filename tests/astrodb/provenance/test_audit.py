"""Audits of the recorded runs on both backends: the Python API, the `astrodb audit` command, the
SQL of docs/provenance.md (run as documented) and the PostgreSQL service role it documents."""
from __future__ import annotations

import re
import shlex
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import sqlalchemy as sa
from astropy.table import Table

import aligner
from tests.support.aligner_synth import make_correctors, make_scene
from astrodb import provenance
from astrodb.cli.main import main
from astrodb.errors import QueryError
from astrodb.provenance import RunNotFoundError
from astrodb.store.schema import prov_runs

DOC = Path(__file__).resolve().parents[3] / "docs" / "provenance.md"
OBS = 2024.5
NAMES = ("ngc346_a1", "ngc346_a2")  # the image names docs/provenance.md uses
REF_COLUMNS = ["source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "parallax", "radial_velocity",
               "ref_epoch", "mag"]


@pytest.fixture(scope="module")
def scene():
    return make_scene(2, 500, "gwcs", seed=7, epoch=OBS, epoch_gap=8.0)


def _correctors(scene):
    corr = make_correctors(scene)
    for c, name in zip(corr, NAMES):
        c.meta["name"] = name
    return corr


def _reference(scene) -> Table:
    return Table({c: scene.refcat[c] for c in REF_COLUMNS})


@pytest.fixture(scope="module")
def audited(db_factory, scene, tmp_path_factory):
    """The runs docs/provenance.md describes, in a store of their own (read-only afterwards):

    A relative (success), B absolute against gaia_dr3 ingested from gaia_dr3_field1.ecsv,
    C relative that failed (bad parameter), then gaia_dr3 dropped and re-ingested from another
    file (a third of the rows), D absolute against it. B is stale, D is not.
    """
    tmp = tmp_path_factory.mktemp("audit")
    store = db_factory.store()
    ref = _reference(scene)
    ref.write(tmp / "gaia_dr3_field1.ecsv")
    store.ingest_catalog(tmp / "gaia_dr3_field1.ecsv", "gaia_dr3")
    corr = _correctors(scene)
    aligner.relative_align(corr, store=store)
    aligner.absolute_align(corr, "GAIADR3", epoch=OBS, observer=np.zeros(3), store=store)
    with pytest.raises(aligner.ParameterError):
        aligner.relative_align(_correctors(scene), separation=0.5, store=store)
    store.drop_catalog("gaia_dr3")
    ref[::3].write(tmp / "gaia_dr3_field1_v2.ecsv")
    store.ingest_catalog(tmp / "gaia_dr3_field1_v2.ecsv", "gaia_dr3")
    aligner.absolute_align(_correctors(scene), "GAIADR3", epoch=OBS, observer=np.zeros(3), store=store)
    with store.engine.connect() as conn:
        ids = conn.execute(sa.select(prov_runs.c.run_id).order_by(prov_runs.c.started_at)).scalars().all()
    assert len(ids) == 4
    yield SimpleNamespace(store=store, url=store.url, tmp=tmp, A=ids[0], B=ids[1], C=ids[2], D=ids[3],
                          file1=tmp / "gaia_dr3_field1.ecsv", file2=tmp / "gaia_dr3_field1_v2.ecsv")
    store.close()


# --- Python API -------------------------------------------------------------------------------

def test_list_runs_and_its_filters(audited):
    s, a = audited.store, audited
    t = provenance.list_runs(s)
    assert list(t["run_id"]) == [a.A, a.B, a.C, a.D]
    assert list(t["step"]) == ["relative", "absolute", "relative", "absolute"]
    assert list(t["status"]) == ["success", "success", "failed", "success"]
    assert t["n_aligned"][1] == 2 and t["ref_source"][1] == "store:gaia_dr3" and t["user"][0]
    assert "separation" in t["message"][2] and t["started_at"][0].endswith("Z")

    assert list(provenance.list_runs(s, catalog="gaia_dr3")["run_id"]) == [a.B, a.D]
    assert list(provenance.list_runs(s, catalog="GAIADR3")["run_id"]) == [a.B, a.D]  # stcal's name
    assert list(provenance.list_runs(s, status="FAILED")["run_id"]) == [a.C]
    assert list(provenance.list_runs(s, step="relative")["run_id"]) == [a.A, a.C]
    assert len(provenance.list_runs(s, image="ngc346_a1")) == 4
    assert len(provenance.list_runs(s, image="nope")) == 0
    now = datetime.now(timezone.utc)
    assert len(provenance.list_runs(s, since=now - timedelta(hours=1))) == 4
    assert len(provenance.list_runs(s, since=now + timedelta(minutes=5))) == 0
    assert len(provenance.list_runs(s, until=(now - timedelta(days=1)).date().isoformat())) == 0
    started_c = provenance.list_runs(s)["started_at"][2]
    assert list(provenance.list_runs(s, since=started_c)["run_id"]) == [a.C, a.D]  # ISO text, 'Z'
    with pytest.raises(QueryError, match="date or time"):
        provenance.list_runs(s, since="yesterday")

    # a file: by path, by bare name, by sha256 (and prefix), by an existing file's content
    sha1 = provenance.runs_using_file(s, str(a.file1))["sha256"][0]
    for key in (str(a.file1), "gaia_dr3_field1.ecsv", sha1, sha1[:10]):
        assert list(provenance.list_runs(s, file=key)["run_id"]) == [a.B], key
    assert list(provenance.list_runs(s, file="gaia_dr3_field1_v2.ecsv")["run_id"]) == [a.D]
    assert len(provenance.list_runs(s, file="other.ecsv")) == 0


def test_list_fits_which_images_against_what(audited):
    s, a = audited.store, audited
    t = provenance.list_fits(s, catalog="gaia_dr3", status="success")
    assert list(zip(t["run_id"], t["image"])) == [(a.B, NAMES[0]), (a.B, NAMES[1]), (a.D, NAMES[0]), (a.D, NAMES[1])]
    assert np.all(t["rmse_mas"] < 10) and np.all(t["nref"] > 50) and np.all(np.isfinite(t["shift_x"]))
    t = provenance.list_fits(s, file="gaia_dr3_field1.ecsv", status="success")
    assert set(t["run_id"]) == {a.B} and sorted(t["image"]) == list(NAMES)
    failed = provenance.list_fits(s, status="failed")
    assert set(failed["run_id"]) == {a.C} and len(failed) == 2 and np.all(np.isnan(failed["shift_x"]))
    one = provenance.list_fits(s, run=a.A[:8])
    assert sorted(one["status"]) == ["REFERENCE", "SUCCESS"]
    assert len(provenance.list_fits(s, image=NAMES[1])) == 4


def test_show_run_and_run_ids(audited, db_factory):
    s, a = audited.store, audited
    rec = provenance.show_run(s, a.B[:8])
    assert rec["run_id"] == a.B and rec["step"] == "absolute" and rec["ref_catalog"] == "gaia_dr3"
    assert rec["started_at"].tzinfo is not None and rec["finished_at"] >= rec["started_at"]
    assert rec["ref_files"][0][0] == str(a.file1) and len(rec["ref_files"][0][1]) == 64
    assert rec["parameters"]["abs_refcat"] == "GAIADR3" and rec["software"]["numpy"]
    assert "ref_data" not in rec and rec["ref_data_bytes"] in (0, None)
    assert [im["name"] for im in rec["images"]] == list(NAMES)
    for im in rec["images"]:
        assert not {"catalog_data", "input_wcs", "output_wcs", "matches"} & set(im)
        assert len(im["input_wcs_sha256"]) == len(im["output_wcs_sha256"]) == 64
        assert im["status"] == "SUCCESS" and im["matches_bytes"] > 0
    assert provenance.show_run(s, a.B)["run_id"] == a.B  # the full id
    with pytest.raises(RunNotFoundError, match="no recorded run"):
        provenance.show_run(s, "0123abcd-0000")
    with pytest.raises(RunNotFoundError, match="not a run id"):
        provenance.show_run(s, "zz; DROP TABLE prov_runs")
    assert issubclass(RunNotFoundError, QueryError)

    # an ambiguous prefix (two runs inserted by hand: provenance is insert-only, not read-only)
    other = db_factory.store()
    now = datetime.now(timezone.utc)
    with other.engine.begin() as conn:
        for rid in ("abcd0000-0000-4000-8000-000000000000", "abcd1111-0000-4000-8000-000000000000"):
            conn.execute(prov_runs.insert().values(run_id=rid, step="relative", started_at=now, finished_at=now,
                                                   status="failed", n_images=0, n_aligned=0))
    with pytest.raises(RunNotFoundError, match="ambiguous"):
        provenance.show_run(other, "abcd")
    assert provenance.show_run(other, "abcd1")["run_id"].startswith("abcd1111")
    other.close()


def test_image_history_and_wcs_lineage(audited):
    s, a = audited.store, audited
    h = provenance.image_history(s, NAMES[0])
    assert list(h["run_id"]) == [a.A, a.B, a.C, a.D]
    assert list(h["step"]) == ["relative", "absolute", "relative", "absolute"]
    assert h["status"][2].startswith("FAILED: separation") and h["status"][1] == h["status"][3] == "SUCCESS"
    # B started from the WCS A left; C and D from the original one (C failed: it changed nothing)
    a_left = h["wcs_sha256"][0]
    assert h["input_wcs_sha256"][1] == a_left and h["input_from_run"][1] == (a.A if h["status"][0] == "SUCCESS" else "")
    assert h["input_from_run"][2] == h["input_from_run"][3] == ""
    assert h["input_wcs_sha256"][2] == h["input_wcs_sha256"][3] == h["wcs_sha256"][2]
    assert h["wcs_sha256"][3] != h["input_wcs_sha256"][3]
    assert np.isfinite(h["rmse_mas"][1]) and np.isnan(h["rmse_mas"][2])
    assert h["rotation"].unit == "deg" and h["shift_x"].unit == "arcsec"
    with pytest.raises(QueryError, match="no recorded fit.*similar names: ngc346_a1"):
        provenance.image_history(s, "a1")


def test_stale_runs_of_the_documented_scenario(audited):
    s, a = audited.store, audited
    t = provenance.stale_runs(s)
    assert list(t["run_id"]) == [a.B]
    assert f"file no longer in the catalog: {a.file1}" in t["changes"][0]
    assert f"file ingested since: {a.file2}" in t["changes"][0]
    assert t["rows_changed"][0] == ""
    t = provenance.stale_runs(s, requery=True)
    assert list(t["rows_changed"]) == ["yes"]


def test_stale_dropped_or_reingested_identical_rows_and_files_on_disk(db_factory, scene, tmp_path):
    """A dropped catalog; the same rows re-ingested from another file (the catalog changed, the
    rows used did not); a reference file changed on disk or gone; image catalogs from files."""
    store = db_factory.store()
    ref = _reference(scene)
    ref.write(tmp_path / "ref.ecsv")
    store.ingest_catalog(tmp_path / "ref.ecsv", "gaia_dr3")
    corr = _correctors(scene)
    for c in corr:  # image catalogs as files
        path = tmp_path / f"{c.meta['name']}_cat.ecsv"
        c.meta["catalog"].write(path)
        c.meta["catalog"] = str(path)
    aligner.absolute_align(corr, "GAIADR3", epoch=OBS, observer=np.zeros(3), store=store)
    store_run = provenance.list_runs(store)["run_id"][0]
    assert len(provenance.stale_runs(store)) == 0

    store.drop_catalog("gaia_dr3")
    t = provenance.stale_runs(store, requery=True)
    assert list(t["run_id"]) == [store_run] and t["changes"][0] == "catalog dropped" and t["rows_changed"][0] == "yes"

    same = ref.copy()
    same["note"] = "identical rows, another file"
    same.write(tmp_path / "ref_again.ecsv")
    store.ingest_catalog(tmp_path / "ref_again.ecsv", "gaia_dr3")
    t = provenance.stale_runs(store, requery=True)
    assert "file ingested since" in t["changes"][0] and t["rows_changed"][0] == "no"

    # a reference file (other bytes than ref.ecsv, which the same content would match), then
    # changed on disk, then gone
    ref = ref.copy()
    ref.meta["comment"] = "the reference as a file"
    ref.write(tmp_path / "ref_file.ecsv")
    aligner.absolute_align(_correctors(scene), str(tmp_path / "ref_file.ecsv"), store=store)
    file_run = provenance.list_runs(store)["run_id"][-1]
    assert provenance.show_run(store, file_run)["ref_kind"] == "file"
    uses = provenance.runs_using_file(store, str(tmp_path / "ref_file.ecsv"))
    assert list(uses["run_id"]) == [file_run] and list(uses["used_as"]) == ["reference"]
    assert file_run not in provenance.stale_runs(store)["run_id"]
    ref[:-1].write(tmp_path / "ref_file.ecsv", overwrite=True)
    t = provenance.stale_runs(store)
    assert list(t["run_id"]) == [store_run, file_run] and "changed on disk" in t["changes"][1]
    assert file_run not in provenance.stale_runs(store, files=False)["run_id"]
    (tmp_path / "ref_file.ecsv").unlink()
    assert "file missing" in provenance.stale_runs(store)["changes"][1]

    # the image catalog files: found by path, by name and by content
    uses = provenance.runs_using_file(store, str(tmp_path / "ngc346_a2_cat.ecsv"))
    assert list(uses["run_id"]) == [store_run] and list(uses["used_as"]) == ["catalog"]
    assert list(uses["image"]) == ["ngc346_a2"]
    moved = tmp_path / "moved.ecsv"
    moved.write_bytes((tmp_path / "ngc346_a2_cat.ecsv").read_bytes())
    assert list(provenance.runs_using_file(store, str(moved))["image"]) == ["ngc346_a2"]
    assert len(provenance.runs_using_file(store, "ngc346_a1_cat.ecsv")) == 1
    store.close()


# --- the command ------------------------------------------------------------------------------

def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_list_fits_show_history_stale(audited, capsys):
    url, a = audited.url, audited
    code, out, err = run(capsys, "--store", url, "audit", "list")
    assert code == 0 and all(r[:8] in out for r in (a.A, a.B, a.C, a.D)) and "ParameterError" in out
    code, out, err = run(capsys, "--store", url, "audit", "list", "--status", "failed", "--format", "json")
    assert code == 0, err
    import json
    doc = json.loads(out)
    assert code == 0 and [r["run_id"] for r in doc["rows"]] == [a.C] and doc["rows"][0]["ref_rows"] is None
    code, out, _ = run(capsys, "--store", url, "audit", "list", "--catalog", "gaia_dr3", "--format", "ecsv")
    t = Table.read(out, format="ascii.ecsv")
    assert code == 0 and list(t["run_id"]) == [a.B, a.D]
    code, out, _ = run(capsys, "--store", url, "audit", "list", "--image", "nope")
    assert code == 0 and "no recorded runs match" in out
    code, out, _ = run(capsys, "--store", url, "audit", "fits", "--file", "gaia_dr3_field1.ecsv", "--status", "success")
    assert code == 0 and out.count(a.B[:8]) == 2 and a.D[:8] not in out
    code, out, _ = run(capsys, "--store", url, "audit", "fits", "--status", "failed", "--format", "json")
    rows = json.loads(out, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))["rows"]  # NaN, masked: null
    assert code == 0 and len(rows) == 2 and rows[0]["shift_x"] is None and rows[0]["nmatches"] is None
    code, out, _ = run(capsys, "--store", url, "audit", "show", a.B[:6])
    assert code == 0 and f"run {a.B}: absolute alignment, success" in out and "gaia_dr3_field1.ecsv" in out
    assert "[0] ngc346_a1: SUCCESS" in out and "rmse" in out
    code, out, _ = run(capsys, "--store", url, "audit", "show", a.C, "--format", "json")
    rec = json.loads(out)
    assert code == 0 and rec["status"] == "failed" and rec["images"][0]["status"].startswith("FAILED")
    code, out, _ = run(capsys, "--store", url, "audit", "history", NAMES[1], "--format", "json")
    assert code == 0 and [r["run_id"] for r in json.loads(out)["rows"]] == [a.A, a.B, a.C, a.D]
    code, out, _ = run(capsys, "--store", url, "audit", "stale", "--requery")
    assert code == 0 and a.B[:8] in out and "yes" in out and a.D[:8] not in out


def test_cli_errors_are_one_line(audited, capsys, db_factory):
    url = audited.url
    for args, msg in ((["show", "ffffffff"], "no recorded run"), (["show", "x!"], "not a run id"),
                      (["list", "--since", "soon"], "date or time"), (["history", "nobody"], "no recorded fit"),
                      (["export", "ffffffff"], "no recorded run"), (["plot", "ffffffff", "-o", "x.png"], "no recorded run")):
        code, out, err = run(capsys, "--store", url, "audit", *args)
        assert code == 2 and err.startswith("astrodb: error:") and msg in err and err.count("\n") == 1, args
    code, _, err = run(capsys, "--store", db_factory.url(), "audit", "list")
    assert code == 2 and "not initialized" in err and err.count("\n") == 1
    for cmd in (["audit"], ["audit", "list"], ["audit", "fits"], ["audit", "show"], ["audit", "history"],
                ["audit", "stale"], ["audit", "verify"], ["audit", "export"], ["audit", "plot"]):
        with pytest.raises(SystemExit) as exit_:
            main([*cmd, "--help"])
        assert exit_.value.code == 0 and "usage: astrodb audit" in capsys.readouterr().out, cmd


def test_cli_verify(audited, capsys):
    pytest.importorskip("astrodb.provenance.verify")
    code, out, _ = run(capsys, "--store", audited.url, "audit", "verify", audited.D[:8])
    assert code == 0 and "reproduces" in out
    code, out, _ = run(capsys, "--store", audited.url, "audit", "verify", audited.B[:8])
    assert code == 1 and "NOT" in out


# --- docs/provenance.md -----------------------------------------------------------------------

def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def _title(block: str) -> str:
    return block.strip().splitlines()[0].lstrip("- ").strip()


def _query(conn_raw, sql: str) -> list[tuple]:
    cur = conn_raw.cursor()
    try:
        cur.execute(sql)  # as psql / sqlite3 would: no parameters
        return [tuple(r) for r in cur.fetchall()] if cur.description is not None else []
    finally:
        cur.close()


def test_documented_sql_answers_the_typical_questions(audited):
    """Every ```sql query block of docs/provenance.md, run as written, gives the expected rows."""
    s, a = audited.store, audited
    backend = s.backend
    expect = {
        "images aligned against a release": lambda rows: rows == [(NAMES[0],), (NAMES[1],)],
        "images aligned against an ingested file": lambda rows: rows == [(NAMES[0],), (NAMES[1],)],
        "fits that used reference rows that have since changed":
            lambda rows: [(r[0], r[2]) for r in rows] == [(a.B, NAMES[0]), (a.B, NAMES[1])],
        "what changed in their reference catalogs":
            lambda rows: sorted((r[0], r[2], r[3]) for r in rows) == [
                (a.B, "file ingested since", str(a.file2)), (a.B, "file no longer in the catalog", str(a.file1))],
        "the full history of one image's WCS":
            lambda rows: [r[1] for r in rows] == [a.A, a.B, a.C, a.D] and rows[2][3].startswith("FAILED")
            and rows[3][3] == "SUCCESS" and rows[3][8] == "store:gaia_dr3" and rows[2][4] is None,
        "fits that failed, and why":
            lambda rows: [r[1] for r in rows] == [a.C, a.C] and all("separation" in r[4] for r in rows),
        "absolute runs and their fit geometry":
            lambda rows: [(r[0], r[2]) for r in rows] == [(a.B, "rshift"), (a.D, "rshift")],
    }
    ran = set()
    raw = s.engine.raw_connection()
    try:
        for block in _blocks("sql"):
            first = block.strip().splitlines()[0]
            if "CREATE ROLE" in block:
                continue  # the service role: test_documented_service_role
            if first.startswith("-- postgresql") and backend != "postgresql":
                continue
            if first.startswith("-- sqlite") and backend != "sqlite":
                continue
            title = _title(block).split(": ", 1)[-1] if first.startswith(("-- postgresql", "-- sqlite")) else _title(block)
            assert title in expect, f"no expectation for the documented query {title!r}"
            if backend == "postgresql":
                _query(raw, "SET search_path = astrodb")  # as the docs say for psql
            rows = _query(raw, block)
            assert expect[title](rows), (title, rows)
            ran.add(title)
    finally:
        raw.close()
    assert ran == set(expect)


def test_documented_commands_run(audited, capsys, monkeypatch, tmp_path):
    """Every `$ astrodb ...` line of docs/provenance.md runs (3f2a9c1e: a run id, here D's)."""
    monkeypatch.chdir(tmp_path)
    lines = [ln[2:] for block in _blocks("console") for ln in block.splitlines() if ln.startswith("$ astrodb ")]
    assert len(lines) >= 10
    seq, digest = provenance.chain_head(audited.store)
    assert seq == 4  # the documented head: the four runs
    for line in lines:
        line = re.sub(r"\b[0-9a-f]{64}\b", digest, line)  # the head the docs show stands for this store's
        args = shlex.split(line.replace("3f2a9c1e", audited.D[:8]))[1:]
        if args[:2] == ["audit", "verify"] and _no_verify():
            continue
        code, out, err = run(capsys, "--store", audited.url, *args)
        assert code == 0, (line, err)
        assert out.strip(), line
        if "history ngc346_a1" in line:
            assert all(r[:8] in out for r in (audited.A, audited.B, audited.C, audited.D))
        if "stale" in line:
            assert audited.B[:8] in out
        if "--file gaia_dr3_field1.ecsv" in line:
            assert audited.B[:8] in out and audited.D[:8] not in out
        if "--chain" in line or args[:2] == ["audit", "head"]:
            assert f"4 {digest}" in out
    assert (tmp_path / "fit.png").stat().st_size > 10_000


def _no_verify() -> bool:
    try:
        import astrodb.provenance.verify  # noqa: F401
    except ImportError:
        return True
    return False


# --- the PostgreSQL service role ----------------------------------------------------------------

def test_documented_service_role(db_factory, scene):
    """The role docs/provenance.md creates reads everything and can only add provenance."""
    if db_factory.backend != "postgresql":
        pytest.skip("roles are PostgreSQL's")
    import psycopg

    owner = db_factory.store()
    owner.ingest_catalog(_reference(scene)[:20], "tiny")
    aligner.relative_align(_correctors(scene), store=owner)
    dbname = owner.engine.url.database
    role = f"astrodb_svc_{uuid.uuid4().hex[:10]}"
    (block,) = [b for b in _blocks("sql") if "CREATE ROLE astrodb_service" in b]
    sql = block.replace("astrodb_service", role).replace("ON DATABASE astrodb ", f'ON DATABASE "{dbname}" ')
    admin_url = owner.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql)
    service = None
    try:
        import astrodb

        service = astrodb.connect(owner.engine.url.set(username=role).render_as_string(hide_password=False))
        # SELECT: every audit, and the catalogs
        assert len(provenance.list_runs(service)) == 1 and [c.name for c in service.catalogs()] == ["tiny"]
        assert len(service.cone(53.16, -27.79, 1.0, catalog="tiny")) == 20
        # INSERT: the aligner records its run as the service role
        aligner.relative_align(_correctors(scene), store=service)
        assert len(provenance.list_runs(service)) == 2
        # nothing else
        for stmt in ("UPDATE prov_runs SET status = 'tampered'", "DELETE FROM prov_images",
                     "TRUNCATE prov_runs CASCADE", "DROP TABLE prov_images", "DROP VIEW prov_fits",
                     "ALTER TABLE prov_runs DISABLE TRIGGER prov_runs_append_only",
                     "DROP TRIGGER prov_runs_append_only ON prov_runs",
                     "INSERT INTO catalogs (name, kind, created_at) VALUES ('x', 'user', now())",
                     "DELETE FROM catalogs", "CREATE TABLE astrodb.mine (x int)"):
            with pytest.raises(sa.exc.DBAPIError, match="permission denied|must be owner|must be the owner"):
                with service.engine.begin() as conn:
                    conn.execute(sa.text(stmt))
        with pytest.raises(sa.exc.DBAPIError, match="permission denied|must be owner"):
            service.drop_catalog("tiny")
        with pytest.raises(sa.exc.DBAPIError, match="permission denied"):
            service.ingest_catalog(_reference(scene)[:5], "mine")
        assert list(provenance.list_runs(owner)["status"]) == ["success", "success"]
    finally:
        if service is not None:
            service.close()
        owner.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')
