"""Tamper-evident provenance: finished runs closed, who and when by the server, a hash chain.

* ``prov_runs.db_role``, ``db_session_role``, ``server_time``: on PostgreSQL a BEFORE INSERT
  trigger sets them to ``current_user``, ``session_user`` and ``now()`` (the transaction's
  time), whatever the client sent, beside the user name and times the client claims. SQLite has
  no server and no roles: they stay NULL there (a trigger refuses anything else).
* ``prov_chain(seq, run_id, prev_digest, digest, db_role, server_time)``: one link per run, its
  digest a sha256 over the run's stored row, its image rows and the previous link (the
  definition: :mod:`astrodb.provenance.chain`). PostgreSQL computes it itself: a DEFERRABLE
  INITIALLY DEFERRED constraint trigger on ``prov_runs`` fires at commit, when the images are
  in, and calls the SECURITY DEFINER function ``prov_chain_link`` (owned by the role running this
  migration, ``search_path`` fixed), which locks the chain (one writer at a time: the chain is
  linear; a REPEATABLE READ writer that waited fails on the taken ``seq`` instead of forking it)
  and appends the link with ``prov_link_digest``, the SQL function ``astrodb audit verify
  --chain`` calls again. No client role is granted anything on ``prov_chain`` but SELECT.
  SQLite: the writer computes the link in Python in its transaction
  (:func:`astrodb.provenance.chain.link_run`); triggers keep the chain gapless and linear.
* A finished run takes no more images: PostgreSQL refuses an image unless its run row was
  inserted by the current transaction (``xmin`` against ``pg_current_xact_id()``; the run row
  must not be inserted inside a savepoint) and is not chained yet; SQLite refuses an image of a
  chained run (the writer links it last).
* ``prov_chain`` is append-only like the other provenance tables. Runs recorded before this
  revision are chained here in (started_at, run_id) order; on PostgreSQL their links carry the
  migrating role and time.

The digest function lists the tables' columns as they are here: a later revision that adds a
column to ``prov_runs`` or ``prov_images`` must create it again (``_digest_sql``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""
from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

S = "astrodb"
_SAFE = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"

#: The canonical field of a value of each PostgreSQL type (astrodb.provenance.chain.field).
_FIELDS = {
    "text": "pg_catalog.decode('74', 'hex') || pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(v, "
            "'UTF8'))) || pg_catalog.convert_to(v, 'UTF8')",
    "bytea": "pg_catalog.decode('62', 'hex') || pg_catalog.int4send(pg_catalog.length(v)) || v",
    "bigint": "pg_catalog.decode('69', 'hex') || pg_catalog.int8send(v)",
    "double precision": "pg_catalog.decode('66', 'hex') || pg_catalog.float8send(v)",
    "timestamp with time zone": "pg_catalog.decode('54', 'hex') || pg_catalog.timestamptz_send(v)",
}
#: Column types -> the field's argument type.
_AS = {"character varying": "text", "text": "text", "json": "text", "jsonb": "text", "bytea": "bytea",
       "integer": "bigint", "bigint": "bigint", "smallint": "bigint", "double precision": "double precision",
       "timestamp with time zone": "timestamp with time zone"}


def _columns(bind, table: str) -> list[tuple[str, str]]:
    return [tuple(r) for r in bind.execute(sa.text(
        "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
        "WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped ORDER BY attnum"),
        {"t": f"{S}.{table}"})]


def _row_sql(bind, table: str, alias: str) -> str:
    """sha256 of one row: the fields of every column in table order."""
    parts = []
    for name, typ in _columns(bind, table):
        if typ not in _AS:
            raise RuntimeError(f"prov_chain: no canonical field for {table}.{name} of type {typ}")
        parts.append(f'{S}.prov_field(CAST({alias}."{name}" AS {_AS[typ]}))')
    return "sha256(" + " || ".join(parts) + ")"


def _digest_sql(bind) -> str:
    return f"""
CREATE OR REPLACE FUNCTION {S}.prov_link_digest(p_seq bigint, p_prev text, p_run_id text, p_db_role text,
                                                p_server_time timestamptz)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
SELECT encode(sha256(
    {S}.prov_field(p_seq) || {S}.prov_field(p_prev) || {S}.prov_field(p_run_id) || {S}.prov_field(p_db_role)
    || {S}.prov_field(p_server_time)
    || (SELECT {_row_sql(bind, "prov_runs", "r")} FROM {S}.prov_runs r WHERE r.run_id = p_run_id)
    || {S}.prov_field((SELECT count(*) FROM {S}.prov_images i WHERE i.run_id = p_run_id))
    || coalesce((SELECT string_agg({_row_sql(bind, "prov_images", "i")}, ''::bytea ORDER BY i.image_index)
                 FROM {S}.prov_images i WHERE i.run_id = p_run_id), ''::bytea)), 'hex')
$$"""


_PG_FUNCTIONS = f"""
CREATE FUNCTION {S}.prov_runs_server_stamp() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Who and when by the database, whatever the client sent (not SECURITY DEFINER: the caller's role).
    NEW.db_role := current_user;
    NEW.db_session_role := session_user;
    NEW.server_time := now();
    RETURN NEW;
END $$;

CREATE FUNCTION {S}.prov_images_open_run() RETURNS trigger LANGUAGE plpgsql {_SAFE} AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {S}.prov_runs r
                   WHERE r.run_id = NEW.run_id AND r.xmin = pg_current_xact_id()::xid)
       OR EXISTS (SELECT 1 FROM {S}.prov_chain c WHERE c.run_id = NEW.run_id) THEN
        RAISE EXCEPTION 'provenance run % is finished: its images are inserted with it, in the transaction '
                        'that inserts the run', NEW.run_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION {S}.prov_chain_link() RETURNS trigger LANGUAGE plpgsql {_SAFE} AS $$
DECLARE
    last_seq bigint;
    last_digest text;
BEGIN
    -- One chaining transaction at a time: each link names the newest committed one.
    LOCK TABLE {S}.prov_chain IN EXCLUSIVE MODE;
    SELECT seq, digest INTO last_seq, last_digest FROM {S}.prov_chain ORDER BY seq DESC LIMIT 1;
    IF NOT FOUND THEN
        last_seq := 0;
        last_digest := repeat('0', 64);
    END IF;
    INSERT INTO {S}.prov_chain (seq, run_id, prev_digest, digest, db_role, server_time)
    VALUES (last_seq + 1, NEW.run_id, last_digest,
            {S}.prov_link_digest(last_seq + 1, last_digest, NEW.run_id, NEW.db_role, NEW.server_time),
            NEW.db_role, NEW.server_time);
    RETURN NULL;
END $$;
"""

_PG_CHAIN_EXISTING = f"""
DO $$
DECLARE
    r record;
    s bigint := 0;
    p text := repeat('0', 64);
    d text;
BEGIN
    FOR r IN SELECT run_id FROM {S}.prov_runs ORDER BY started_at, run_id LOOP
        s := s + 1;
        d := {S}.prov_link_digest(s, p, r.run_id, current_user::text, now());
        INSERT INTO {S}.prov_chain (seq, run_id, prev_digest, digest, db_role, server_time)
        VALUES (s, r.run_id, p, d, current_user, now());
        p := d;
    END LOOP;
END $$
"""

_SERVER_COLUMNS = ("db_role", "db_session_role", "server_time")


def upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    op.add_column("prov_runs", sa.Column("db_role", sa.String(200),
                                         comment="current_user when inserted, set by the database (PostgreSQL)"))
    op.add_column("prov_runs", sa.Column("db_session_role", sa.String(200),
                                         comment="session_user when inserted, set by the database (PostgreSQL)"))
    op.add_column("prov_runs", sa.Column("server_time", sa.DateTime(timezone=True),
                                         comment="the database server's transaction time (PostgreSQL)"))
    op.create_table(
        "prov_chain",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("prov_runs.run_id"), nullable=False),
        sa.Column("prev_digest", sa.String(64), nullable=False, comment="the digest of link seq - 1"),
        sa.Column("digest", sa.String(64), nullable=False, comment="sha256: astrodb.provenance.chain"),
        sa.Column("db_role", sa.String(200), comment="the role that inserted the run (PostgreSQL)"),
        sa.Column("server_time", sa.DateTime(timezone=True), comment="the server's time (PostgreSQL)"),
        sa.UniqueConstraint("run_id", name="uq_prov_chain_run_id"),
    )
    if pg:
        op.execute(f"REVOKE ALL ON {S}.prov_chain FROM PUBLIC")
        for arg, body in _FIELDS.items():
            # No SET clause, so it is inlined; prov_link_digest fixes the search_path it runs with.
            volatility = "STABLE" if arg == "text" else "IMMUTABLE"  # convert_to is STABLE
            op.execute(f"CREATE FUNCTION {S}.prov_field(v {arg}) RETURNS bytea LANGUAGE sql {volatility} PARALLEL SAFE "
                       f"AS $$ SELECT CASE WHEN v IS NULL THEN pg_catalog.decode('4e', 'hex') ELSE {body} END $$")
        op.execute(_digest_sql(bind))
        op.execute(_PG_FUNCTIONS)
        for fn in ("prov_images_open_run()", "prov_chain_link()"):
            op.execute(f"REVOKE ALL ON FUNCTION {S}.{fn} FROM PUBLIC")
        op.execute(f"CREATE TRIGGER prov_runs_server_stamp BEFORE INSERT ON {S}.prov_runs "
                   f"FOR EACH ROW EXECUTE FUNCTION {S}.prov_runs_server_stamp()")
        op.execute(f"CREATE TRIGGER prov_images_open_run BEFORE INSERT ON {S}.prov_images "
                   f"FOR EACH ROW EXECUTE FUNCTION {S}.prov_images_open_run()")
        op.execute(f"CREATE CONSTRAINT TRIGGER prov_runs_chain AFTER INSERT ON {S}.prov_runs "
                   f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {S}.prov_chain_link()")
        op.execute(f"CREATE TRIGGER prov_chain_append_only BEFORE UPDATE OR DELETE ON {S}.prov_chain "
                   f"FOR EACH ROW EXECUTE FUNCTION {S}.prov_append_only()")
        op.execute(f"CREATE TRIGGER prov_chain_no_truncate BEFORE TRUNCATE ON {S}.prov_chain "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {S}.prov_append_only()")
        op.execute(_PG_CHAIN_EXISTING)
        return
    for op_name in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER prov_chain_no_{op_name.lower()} BEFORE {op_name} ON prov_chain BEGIN "
                   f"SELECT RAISE(ABORT, 'provenance is append-only: {op_name} on prov_chain rejected'); END")
    # One link after the other, never over one (REPLACE would delete the old without the DELETE trigger).
    op.execute("CREATE TRIGGER prov_chain_linear BEFORE INSERT ON prov_chain "
               "WHEN EXISTS (SELECT 1 FROM prov_chain WHERE run_id = NEW.run_id OR seq = NEW.seq) "
               "OR NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM prov_chain) "
               f"OR NEW.prev_digest IS NOT coalesce((SELECT digest FROM prov_chain ORDER BY seq DESC LIMIT 1), "
               f"'{'0' * 64}') BEGIN "
               "SELECT RAISE(ABORT, 'provenance chain: a link follows the newest link (seq + 1, its digest)'); END")
    op.execute("CREATE TRIGGER prov_images_open_run BEFORE INSERT ON prov_images "
               "WHEN EXISTS (SELECT 1 FROM prov_chain WHERE run_id = NEW.run_id) BEGIN "
               "SELECT RAISE(ABORT, 'provenance run is finished: its images are inserted with it, before its "
               "chain link'); END")
    op.execute("CREATE TRIGGER prov_runs_no_server_claims BEFORE INSERT ON prov_runs "
               "WHEN NEW.db_role IS NOT NULL OR NEW.db_session_role IS NOT NULL OR NEW.server_time IS NOT NULL "
               "BEGIN SELECT RAISE(ABORT, 'prov_runs: db_role, db_session_role and server_time are set by a "
               "database server; SQLite has none'); END")
    from astrodb.provenance.chain import link_run

    for (run_id,) in bind.exec_driver_sql("SELECT run_id FROM prov_runs ORDER BY started_at, run_id").fetchall():
        link_run(bind, run_id)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for trigger, table in (("prov_runs_chain", "prov_runs"), ("prov_runs_server_stamp", "prov_runs"),
                               ("prov_images_open_run", "prov_images")):
            op.execute(f"DROP TRIGGER {trigger} ON {S}.{table}")
        op.drop_table("prov_chain")
        op.execute(f"DROP FUNCTION {S}.prov_chain_link(), {S}.prov_images_open_run(), "
                   f"{S}.prov_runs_server_stamp(), {S}.prov_link_digest(bigint, text, text, text, timestamptz)")
        op.execute("DROP FUNCTION " + ", ".join(f"{S}.prov_field({arg})" for arg in _FIELDS))
        for column in _SERVER_COLUMNS:
            op.drop_column("prov_runs", column)
        return
    for trigger in ("prov_images_open_run", "prov_runs_no_server_claims"):
        op.execute(f"DROP TRIGGER {trigger}")
    op.drop_table("prov_chain")  # and its triggers
    for column in _SERVER_COLUMNS:
        op.execute(f"ALTER TABLE prov_runs DROP COLUMN {column}")
