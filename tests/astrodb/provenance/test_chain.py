"""Tamper evidence of the provenance (migration 0009) on both backends: finished runs closed, who
and when by the database, the hash chain and `astrodb audit verify --chain` / `head`; on
PostgreSQL as the roles docs/provenance.md and docs/service.md set up, and as a superuser who
tampers; on SQLite as someone with write access to the file."""
from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from astropy.table import Table

import aligner
import astrodb
from tests.support.aligner_synth import make_correctors, make_scene
from astrodb import provenance
from astrodb.cli.main import main
from astrodb.provenance import chain
from astrodb.store.engine import describe_database_error
from astrodb.store.schema import prov_chain, prov_images, prov_runs

DOCS = Path(__file__).resolve().parents[3] / "docs"


@pytest.fixture(scope="module")
def scene():
    return make_scene(2, 150, "fits", seed=17)


def _record(store, scene, n: int = 1) -> list[str]:
    """``n`` relative runs recorded by the aligner; their ids, oldest first."""
    for _ in range(n):
        aligner.relative_align(make_correctors(scene), store=store)
    return list(provenance.list_runs(store)["run_id"])[-n:]


def _links(store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(prov_chain).order_by(prov_chain.c.seq)).mappings()]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _run_values(run_id: str, **claims) -> dict:
    now = datetime.now(timezone.utc)
    values = dict(run_id=run_id, step="relative", started_at=now, finished_at=now, user_name="tester", host="h",
                  status="success", n_images=1, n_aligned=1)
    values.update(claims)
    return values


def _image_values(run_id: str, index: int = 0) -> dict:
    return dict(run_id=run_id, image_index=index, name=f"img{index}", status="SUCCESS", catalog_data=b"\x00\x01\x02")


# --- both backends ------------------------------------------------------------------------------

def test_recorded_runs_are_chained_and_verify(db_factory, scene, capsys):
    store = db_factory.store()
    ids = _record(store, scene, 2)
    links = _links(store)
    assert [(link["seq"], link["run_id"]) for link in links] == [(1, ids[0]), (2, ids[1])]
    assert links[0]["prev_digest"] == chain.GENESIS and links[1]["prev_digest"] == links[0]["digest"]
    head = (2, links[1]["digest"])
    assert provenance.chain_head(store) == head
    report = provenance.verify_chain(store)
    assert report.ok and report.n_runs == 2 and str(report) == f"ok: 2 runs, head 2 {head[1]}"
    # The head in each form `audit head` and a user may give it.
    for given in (head, f"2 {head[1]}", f"2:{head[1]}", head[1], f"1 {links[0]['digest']}",
                  links[0]["digest"].upper(), f"0 {chain.GENESIS}"):
        assert provenance.verify_chain(store, head=given).ok, given
    for bad in ("2", "two " + head[1], head[1][:20], "2 3 4"):
        with pytest.raises(astrodb.AstrodbError, match="chain head"):
            provenance.verify_chain(store, head=bad)

    rec = provenance.show_run(store, ids[1])
    assert rec["chain"]["seq"] == 2 and rec["chain"]["digest"] == head[1]
    pg = store.backend == "postgresql"
    if pg:  # the database's role and clock, on the run and its link
        role = store.engine.url.username
        assert rec["db_role"] == rec["db_session_role"] == rec["chain"]["db_role"] == role
        assert abs((rec["server_time"] - rec["finished_at"]).total_seconds()) < 60
        assert rec["chain"]["server_time"] == rec["server_time"]
    else:
        assert rec["db_role"] is rec["server_time"] is rec["chain"]["server_time"] is None

    url = store.url
    code, out, _ = run_cli(capsys, "--store", url, "audit", "head")
    assert code == 0 and out == f"2 {head[1]}\n"
    code, out, _ = run_cli(capsys, "--store", url, "audit", "verify", "--chain")
    assert code == 0 and out == f"ok: 2 runs, head 2 {head[1]}\n"
    code, out, _ = run_cli(capsys, "--store", url, "audit", "verify", "--chain", "--head", f"2 {head[1]}")
    assert code == 0 and out.startswith("ok: 2 runs")
    code, out, _ = run_cli(capsys, "--store", url, "audit", "show", ids[1][:8])
    assert code == 0 and f"chain     link 2, digest {head[1]}" in out
    assert (f"recorded  by database role {role} (session {role}) at server time" in out if pg
            else "no database role or server time" in out)
    code, out, _ = run_cli(capsys, "--store", url, "audit", "list", "--format", "json")
    rows = json.loads(out)["rows"]
    assert [r["db_role"] for r in rows] == ([role, role] if pg else ["", ""])
    assert all(r["server_time"].endswith("Z") for r in rows) if pg else all(r["server_time"] == "" for r in rows)
    for args, msg in ((["verify"], "RUN_ID is needed"), (["verify", ids[0], "--chain"], "not both"),
                      (["verify", ids[0], "--head", head[1]], "--head goes with --chain"),
                      (["verify", "--chain", "--head", "nope"], "chain head")):
        code, _, err = run_cli(capsys, "--store", url, "audit", *args)
        assert code == 2 and msg in err and err.count("\n") == 1, (args, err)
    store.close()


def test_a_finished_run_takes_no_more_images(db_factory, scene):
    """Not even from its owner, nor from a transaction that opens a run of its own first."""
    store = db_factory.store()
    (done,) = _record(store, scene)
    for own_run_first in (False, True):
        with pytest.raises(sa.exc.DBAPIError, match="is finished") as refused:
            with store.engine.begin() as conn:
                if own_run_first:
                    conn.execute(prov_runs.insert().values(**_run_values(str(uuid.uuid4()))))
                conn.execute(prov_images.insert().values(**_image_values(done, 7)))
        msg = describe_database_error(refused.value)
        assert msg.startswith("the store refuses this: provenance run") and "\n" not in msg and "INSERT" not in msg
    # A run with its images in one transaction is fine, and chained (SQLite: by whoever writes it).
    fresh = str(uuid.uuid4())
    with store.engine.begin() as conn:
        conn.execute(prov_runs.insert().values(**_run_values(fresh)))
        conn.execute(prov_images.insert(), [_image_values(fresh, 0), _image_values(fresh, 1)])
        chain.link_run(conn, fresh)
    assert [link["run_id"] for link in _links(store)] == [done, fresh]
    assert provenance.verify_chain(store).ok
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(prov_images.c.run_id == done)).scalar() == 2
    store.close()


def test_concurrent_writers_get_one_linear_chain(db_factory):
    """Writers committing at the same time are chained one after the other: no fork, no gap."""
    store = db_factory.store()
    barrier = threading.Barrier(4)
    errors = []

    def writer(k: int) -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(5):
                rid = str(uuid.uuid4())
                with store.engine.begin() as conn:
                    conn.execute(prov_runs.insert().values(**_run_values(rid, user_name=f"writer{k}")))
                    conn.execute(prov_images.insert().values(**_image_values(rid)))
                    chain.link_run(conn, rid)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    links = _links(store)
    assert [link["seq"] for link in links] == list(range(1, 21)) and len({link["run_id"] for link in links}) == 20
    report = provenance.verify_chain(store)
    assert report.ok and report.n_runs == 20, str(report)
    store.close()


# --- PostgreSQL: the roles of the docs, and a superuser who tampers ------------------------------------

def _pg_only(store) -> None:
    if store.backend != "postgresql":
        store.close()
        pytest.skip("roles and a database server are PostgreSQL's")


def _admin_url(store) -> str:
    return store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _doc_sql(doc: str, first_line: str) -> str:
    blocks = re.findall(r"```sql\n(.*?)```", (DOCS / doc).read_text(), flags=re.S)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block


@contextlib.contextmanager
def _role(store, doc: str, first_line: str, name: str):
    """The role a doc's SQL block creates, under a unique name in ``store``'s database (roles are
    the cluster's: dropped afterwards); yields a Store connected as that role."""
    import psycopg

    role, password = f"{name}_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    sql = (_doc_sql(doc, first_line).replace(name, role).replace("'change-me'", f"'{password}'")
           .replace("ON DATABASE astrodb ", f'ON DATABASE "{store.engine.url.database}" ')
           .replace("ON DATABASE astro ", f'ON DATABASE "{store.engine.url.database}" '))
    with psycopg.connect(_admin_url(store), autocommit=True) as conn:
        conn.execute(sql)
    other = None
    try:
        other = astrodb.connect(store.engine.url.set(username=role, password=password)
                                .render_as_string(hide_password=False))
        yield other, role
    finally:
        if other is not None:
            other.close()
        with psycopg.connect(_admin_url(store), autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_the_service_role_cannot_reopen_forge_or_write_the_chain(db_factory, scene, capsys):
    owner = db_factory.store()
    _pg_only(owner)
    (owners_run,) = _record(owner, scene)
    with _role(owner, "provenance.md", "-- postgresql: a service role", "astrodb_service") as (service, role):
        # The aligner records as the role: the database says so, in the run and its link.
        (mine,) = _record(service, scene)
        rec = provenance.show_run(service, mine)
        assert rec["db_role"] == rec["db_session_role"] == rec["chain"]["db_role"] == role

        # An image for a run someone else finished: refused, also inside a run of its own.
        for own_run_first in (False, True):
            with pytest.raises(sa.exc.DBAPIError, match=f"provenance run {owners_run} is finished") as refused:
                with service.engine.begin() as conn:
                    if own_run_first:
                        conn.execute(prov_runs.insert().values(**_run_values(str(uuid.uuid4()))))
                    conn.execute(prov_images.insert().values(**_image_values(owners_run, 5)))
            assert "\n" not in describe_database_error(refused.value)
        # Closing the chain early (constraints immediate) closes the run early: no images then.
        with pytest.raises(sa.exc.DBAPIError, match="is finished"):
            with service.engine.begin() as conn:
                conn.execute(sa.text("SET CONSTRAINTS ALL IMMEDIATE"))
                early = str(uuid.uuid4())
                conn.execute(prov_runs.insert().values(**_run_values(early)))
                conn.execute(prov_images.insert().values(**_image_values(early)))

        # The chain: not writable, not changeable.
        head = provenance.chain_head(service)
        for stmt in (f"INSERT INTO prov_chain VALUES ({head[0] + 1}, '{mine}', '{head[1]}', '{'0' * 64}', 'x', now())",
                     "UPDATE prov_chain SET digest = prev_digest", "DELETE FROM prov_chain", "TRUNCATE prov_chain",
                     "UPDATE prov_runs SET server_time = now()", "DELETE FROM prov_images",
                     "ALTER TABLE prov_chain DISABLE TRIGGER USER"):
            with pytest.raises(sa.exc.DBAPIError, match="permission denied|must be owner"):
                with service.engine.begin() as conn:
                    conn.execute(sa.text(stmt))

        # A complete run under another user's name, dated 2020, claiming the superuser's role:
        # recorded (the role may add runs), with the role and clock the database saw beside the claims.
        forged = str(uuid.uuid4())
        t2020 = datetime(2020, 3, 1, 12, 0, tzinfo=timezone.utc)
        with service.engine.begin() as conn:
            conn.execute(prov_runs.insert().values(**_run_values(
                forged, started_at=t2020, finished_at=t2020 + timedelta(minutes=3), user_name="alice",
                host="observatory", db_role="postgres", db_session_role="postgres", server_time=t2020)))
            conn.execute(prov_images.insert().values(**_image_values(forged)))
        rec = provenance.show_run(owner, forged)
        assert rec["user_name"] == "alice" and rec["started_at"] == t2020  # the claims, kept as claims
        assert rec["db_role"] == rec["db_session_role"] == role
        assert abs((rec["server_time"] - datetime.now(timezone.utc)).total_seconds()) < 120
        assert rec["chain"]["server_time"] == rec["server_time"] and rec["chain"]["db_role"] == role
        assert "years before the server's time" in provenance.audit.clock_note(rec)
        row = [r for r in provenance.list_runs(owner) if r["run_id"] == forged][0]
        assert row["user"] == "alice" and row["db_role"] == role and row["server_time"][:4] != "2020"
        code, out, _ = run_cli(capsys, "--store", owner.url, "audit", "show", forged[:8])
        assert code == 0 and f"by database role {role}" in out and "NOTE      the client's end time is 6" in out
        code, out, _ = run_cli(capsys, "--store", owner.url, "audit", "list")
        line = [ln for ln in out.splitlines() if ln.startswith(forged[:8])][0]
        assert "2020-03-01T12:00:00.000Z alice" in line and role in line
        prov_doc = json.loads(provenance.export_prov(owner, forged, "prov-json"))
        activity = prov_doc["activity"][f"run:{forged}"]
        assert activity["astrodb:db_role"] == role and activity["astrodb:server_time"]["$"][:4] != "2020"
        assert activity["astrodb:chain_digest"] == rec["chain"]["digest"]
        assert prov_doc["agent"][f"agent:dbrole.{role}"]["astrodb:db_role"] == role

        report = provenance.verify_chain(service)  # the role verifies the chain too
        assert report.ok and report.n_runs == 3, str(report)
    owner.close()


def test_a_read_only_role_is_refused_in_one_line(db_factory, capsys, tmp_path):
    """docs/service.md's reader: writing a catalog is astrodb's one-line error, not the database
    driver's with its SQL; reading, the provenance chain included, works."""
    store = db_factory.store()
    _pg_only(store)
    Table({"ra": [10.0, 10.1], "dec": [-30.0, -30.1]}).write(tmp_path / "tiny.ecsv")
    store.ingest_catalog(tmp_path / "tiny.ecsv", "tiny", epoch=2016.0)
    with _role(store, "service.md", "-- read-only role for astrodb serve", "astrodb_reader") as (reader, _):
        for args in (["ingest", "catalog", tmp_path / "tiny.ecsv", "--name", "more", "--epoch", "2016"],
                     ["drop", "tiny"]):
            code, out, err = run_cli(capsys, "--store", reader.engine.url.render_as_string(hide_password=False),
                                     *args)
            assert code == 1 and err.count("\n") == 1, err
            assert err.startswith("astrodb: error: the store's database role may not write (a read-only role)")
            assert "[SQL" not in err and "VALUES" not in err and "Error" not in err
        with pytest.raises(sa.exc.DBAPIError) as refused:
            reader.ingest_catalog(tmp_path / "tiny.ecsv", "more", epoch=2016.0)
        msg = describe_database_error(refused.value)
        assert "read-only" in msg and "\n" not in msg and "[SQL" not in msg
        assert [c.name for c in reader.catalogs()] == ["tiny"]
        assert provenance.verify_chain(reader).ok
    store.close()


def _superuser(store, *statements: str) -> None:
    with store.engine.begin() as conn:
        for stmt in statements:
            conn.execute(sa.text(stmt))


def test_superuser_tampering_is_named_by_verify_chain(db_factory, scene, capsys):
    """The tables' owner can disable the triggers; what it then changes, deletes or adds around
    the chain, verify --chain names, run by run."""
    store = db_factory.store()
    _pg_only(store)
    r1, r2, r3 = _record(store, scene, 3)
    head = provenance.chain_head(store)
    _superuser(store, "ALTER TABLE prov_images DISABLE TRIGGER USER",
               "UPDATE prov_images SET catalog_data = set_byte(catalog_data, 40, "
               f"(get_byte(catalog_data, 40) + 1) % 256) WHERE run_id = '{r2}' AND image_index = 1",
               "ALTER TABLE prov_images ENABLE TRIGGER USER")
    report = provenance.verify_chain(store)
    assert not report.ok and report.problems == [f"run {r2} (link 2): altered: its stored rows no longer give the "
                                                 "link's digest"]
    code, out, _ = run_cli(capsys, "--store", store.url, "audit", "verify", "--chain")
    assert code == 1 and out == str(report) + "\n"

    _superuser(store, "ALTER TABLE prov_chain DISABLE TRIGGER USER", f"DELETE FROM prov_chain WHERE run_id = '{r1}'",
               "ALTER TABLE prov_chain ENABLE TRIGGER USER")
    forged = str(uuid.uuid4())
    _superuser(store, "ALTER TABLE prov_runs DISABLE TRIGGER USER",
               f"INSERT INTO prov_runs (run_id, step, started_at, finished_at, status, n_images, n_aligned) "
               f"VALUES ('{forged}', 'relative', now(), now(), 'success', 0, 0)",
               "ALTER TABLE prov_runs ENABLE TRIGGER USER")
    report = provenance.verify_chain(store)
    assert report.problems == [
        f"link 1 is missing: deleted from the chain before run {r2} (link 2)",
        f"run {r2} (link 2): altered: its stored rows no longer give the link's digest",
        f"run {r1}: not in the chain: its link was deleted or it was inserted around the chaining",
        f"run {forged}: not in the chain: its link was deleted or it was inserted around the chaining",
    ], report.problems
    code, out, _ = run_cli(capsys, "--store", store.url, "audit", "verify", "--chain", "--head", f"{head[0]} {head[1]}")
    assert code == 1 and out.count("\n") == 4 and r3 not in out  # the head is still there: no line for it
    store.close()


# --- SQLite: tamper evidence against a head kept elsewhere -----------------------------------------

def test_sqlite_rewrites_show_only_against_an_exported_head(db_factory, scene, capsys):
    store = db_factory.store()
    if store.backend != "sqlite":
        store.close()
        pytest.skip("SQLite's chain, computed by its writers")
    r1, r2, r3 = _record(store, scene, 3)
    exported = provenance.chain_head(store)
    first = (1, _links(store)[0]["digest"])
    path = store.engine.url.database
    store.close()

    # Someone with write access to the file: drops the append-only trigger, changes a byte.
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DROP TRIGGER prov_images_no_update")
        (matches,) = db.execute("SELECT matches FROM prov_images WHERE run_id = ? AND image_index = 0",
                                (r2,)).fetchone()
        changed = matches[:30] + bytes([matches[30] ^ 1]) + matches[31:]
        db.execute("UPDATE prov_images SET matches = ? WHERE run_id = ? AND image_index = 0", (changed, r2))
    store = astrodb.connect(f"sqlite:///{path}")
    report = provenance.verify_chain(store)
    assert report.problems == [f"run {r2} (link 2): altered: its stored rows no longer give the link's digest"]

    # ... then rewrites the whole chain: consistent again, unless a head exported before is given.
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DROP TRIGGER prov_chain_no_delete")
        db.execute("DELETE FROM prov_chain")
    with store.engine.begin() as conn:
        for run_id in (r1, r2, r3):
            chain.link_run(conn, run_id)
    assert provenance.verify_chain(store).ok
    assert provenance.verify_chain(store, head=first).ok  # links before the change are the same
    report = provenance.verify_chain(store, head=exported)
    assert report.problems == [f"head 3 {exported[1]}: not in the chain any more (link 3 has digest "
                               f"{provenance.chain_head(store)[1]} now): the chain was rewritten or cut"]
    code, out, _ = run_cli(capsys, "--store", store.url, "audit", "verify", "--chain", "--head", exported[1])
    assert code == 1 and out == f"head {exported[1]}: not in the chain any more: the chain was rewritten or cut\n"

    # The chain itself refuses links out of line, and no one claims a server's role or clock here.
    with pytest.raises(sa.exc.DBAPIError, match="a link follows the newest link"):
        with store.engine.begin() as conn:
            conn.execute(prov_chain.insert().values(seq=9, run_id=r1, prev_digest=chain.GENESIS, digest="0" * 64))
    with pytest.raises(sa.exc.DBAPIError, match="SQLite has none"):
        with store.engine.begin() as conn:
            conn.execute(prov_runs.insert().values(**_run_values(str(uuid.uuid4()), db_role="postgres")))
    store.close()
