"""Tamper evidence of the provenance: a hash chain over every recorded run (``prov_chain``,
migration 0009).

Each run has one link: ``seq`` (1, 2, ...), ``prev_digest`` (the digest of link ``seq - 1``, 64
zeros for the first), ``digest``, and who and when by the database (``db_role``,
``server_time``; NULL on SQLite, which has neither). The digest covers the link's own fields,
every column of the run's row and of each of its image rows as stored, and the previous digest,
so a changed byte anywhere in a chained record, a deleted or inserted link, or a reordering
changes what :func:`verify_chain` recomputes.

The digest, on both backends (PostgreSQL's SQL function ``astrodb.prov_link_digest`` computes
exactly this from its stored values, and its constraint trigger writes each link at commit)::

    field(NULL)      = b"N"
    field(integer)   = b"i" + int64, big-endian
    field(double)    = b"f" + IEEE-754 binary64, big-endian
    field(text)      = b"t" + uint32 length, big-endian + UTF-8 bytes   (JSON: its stored text)
    field(bytes)     = b"b" + uint32 length, big-endian + the bytes
    field(timestamp) = b"T" + int64 microseconds since 2000-01-01T00:00:00Z, big-endian
    row(r)           = sha256(field(column 1) + field(column 2) + ...), 32 bytes: every column, table order
    digest           = hex sha256(field(seq) + field(prev_digest) + field(run_id) + field(db_role)
                                  + field(server_time) + row(run) + field(number of images)
                                  + row(image 0) + row(image 1) + ...)   images by image_index

SQLite stores times and JSON as text, so there they are text fields; SQLite has no server to
compute links, so :func:`link_run` computes them in the writer's transaction. What that proves
is weaker (docs/provenance.md): whoever can write the file can rewrite the whole chain, which
only a head digest kept elsewhere (:func:`chain_head`, ``astrodb audit head``) exposes.
"""
from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass, field as dc_field
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import sqlalchemy as sa

from ..errors import QueryError
from ..store.schema import PG_SCHEMA

__all__ = ["GENESIS", "Link", "ChainReport", "field", "row_digest", "link_digest", "stored_rows", "link_run",
           "chain_head", "link_of", "parse_head", "verify_chain"]

#: The ``prev_digest`` of the first link.
GENESIS = "0" * 64

_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Link:
    """One link of the chain, as stored in ``prov_chain``."""

    seq: int
    run_id: str
    prev_digest: str
    digest: str
    db_role: str | None = None
    server_time: datetime | None = None


def field(value: Any) -> bytes:
    """One value in the chain's canonical form (see the module's docstring).

    Parameters
    ----------
    value : None, int, float, str, bytes or datetime
        A stored value (a naive datetime is UTC).

    Returns
    -------
    bytes
        Its tag byte and encoding.
    """
    if value is None:
        return b"N"
    if isinstance(value, bool):
        raise TypeError("provenance chain: booleans are not stored in the provenance tables")
    if isinstance(value, int):
        return b"i" + struct.pack(">q", value)
    if isinstance(value, float):
        return b"f" + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode("utf-8")
        return b"t" + struct.pack(">I", len(data)) + data
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return b"b" + struct.pack(">I", len(data)) + data
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)  # naive: UTC
        return b"T" + struct.pack(">q", (aware - _EPOCH) // _US)
    raise TypeError(f"provenance chain: no canonical form for a {type(value).__name__}")


def row_digest(values: Sequence[Any]) -> bytes:
    """sha256 of one stored row: the fields of every column in table order (raw 32 bytes)."""
    h = hashlib.sha256()
    for v in values:
        h.update(field(v))
    return h.digest()


def link_digest(seq: int, prev_digest: str, run_id: str, db_role: str | None, server_time: datetime | None,
                run_row: Sequence[Any] | None, image_rows: Sequence[Sequence[Any]]) -> str | None:
    """The digest of a link (hex), or None when its run's row is missing.

    Parameters
    ----------
    seq, prev_digest, run_id, db_role, server_time
        The link's own fields.
    run_row : sequence or None
        Every column of the run's ``prov_runs`` row in table order, as stored.
    image_rows : sequence of sequences
        Every column of each of its ``prov_images`` rows, by ``image_index``.
    """
    if run_row is None:
        return None
    h = hashlib.sha256()
    for v in (seq, prev_digest, run_id, db_role, server_time):
        h.update(field(v))
    h.update(row_digest(run_row))
    h.update(field(len(image_rows)))
    for row in image_rows:
        h.update(row_digest(row))
    return h.hexdigest()


def _typed_columns(table: sa.Table) -> list:
    """PostgreSQL: the columns as the digest reads them (JSON as its stored text)."""
    return [sa.cast(c, sa.Text).label(c.name) if isinstance(c.type, sa.JSON) else c for c in table.c]


def stored_rows(conn: sa.Connection, run_id: str) -> tuple[tuple | None, list[tuple]]:
    """The run's row and its image rows as the digest reads them.

    Parameters
    ----------
    conn : sqlalchemy.Connection
        SQLite: every column as stored (``SELECT *``: times and JSON are text). PostgreSQL:
        every column of :mod:`astrodb.store.schema`'s tables, JSON as its stored text.
    run_id : str
        The run's full id.

    Returns
    -------
    tuple
        ``(run row or None when there is no such run, [image rows by image_index])``.
    """
    if conn.dialect.name == "sqlite":
        run = conn.exec_driver_sql("SELECT * FROM prov_runs WHERE run_id = ?", (run_id,)).fetchone()
        images = conn.exec_driver_sql("SELECT * FROM prov_images WHERE run_id = ? ORDER BY image_index",
                                      (run_id,)).fetchall()
    else:
        from ..store.schema import prov_images, prov_runs

        run = conn.execute(sa.select(*_typed_columns(prov_runs)).where(prov_runs.c.run_id == run_id)).fetchone()
        images = conn.execute(sa.select(*_typed_columns(prov_images)).where(prov_images.c.run_id == run_id)
                              .order_by(prov_images.c.image_index)).fetchall()
    return (None if run is None else tuple(run)), [tuple(r) for r in images]


def _last(conn: sa.Connection) -> tuple[int, str]:
    row = conn.execute(sa.text("SELECT seq, digest FROM prov_chain ORDER BY seq DESC LIMIT 1")).first()
    return (0, GENESIS) if row is None else (int(row[0]), row[1])


def link_run(conn: sa.Connection, run_id: str) -> Link | None:
    """Chain run ``run_id``, in the transaction that inserted it, after its images.

    Parameters
    ----------
    conn : sqlalchemy.Connection
        The writer's connection, inside its transaction.
    run_id : str
        The run just inserted.

    Returns
    -------
    Link or None
        SQLite: the link computed from the stored rows and inserted; from then on the run takes
        no more images (a trigger refuses them). PostgreSQL: None, the database links each run
        itself when the transaction commits.
    """
    if conn.dialect.name == "postgresql":
        return None
    seq, prev = _last(conn)
    run, images = stored_rows(conn, run_id)
    if run is None:
        raise QueryError(f"no recorded run {run_id!r} to chain")
    link = Link(seq + 1, run_id, prev, link_digest(seq + 1, prev, run_id, None, None, run, images))
    conn.execute(sa.text("INSERT INTO prov_chain (seq, run_id, prev_digest, digest, db_role, server_time) "
                         "VALUES (:seq, :run_id, :prev, :digest, NULL, NULL)"),
                 {"seq": link.seq, "run_id": run_id, "prev": prev, "digest": link.digest})
    return link


def _link(row) -> Link:
    m = row._mapping
    t = m["server_time"]
    if isinstance(t, str):  # SQLite gives back text through a textual query
        t = datetime.fromisoformat(t)
    if t is not None and t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return Link(int(m["seq"]), m["run_id"], m["prev_digest"], m["digest"], m["db_role"], t)


_LINK_COLUMNS = "c.seq, c.run_id, c.prev_digest, c.digest, c.db_role, c.server_time"


def link_of(store, run_id: str) -> Link | None:
    """The chain link of a run.

    Parameters
    ----------
    store : astrodb.Store
    run_id : str
        The run's full id.

    Returns
    -------
    Link or None
        None when the run has no link.
    """
    with store.engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT {_LINK_COLUMNS} FROM prov_chain c WHERE c.run_id = :r"),
                           {"r": run_id}).first()
    return None if row is None else _link(row)


def chain_head(store) -> tuple[int, str]:
    """The newest link of the chain.

    Keep it somewhere the store's writers cannot change (a log, a ticket, a signed mail):
    :func:`verify_chain` with ``head=`` then tells whether the chain still holds it.

    Parameters
    ----------
    store : astrodb.Store

    Returns
    -------
    (int, str)
        ``(seq, digest)``; ``(0, GENESIS)`` for an empty chain.
    """
    store._require_schema()
    with store.engine.connect() as conn:
        return _last(conn)


def parse_head(head) -> tuple[int | None, str]:
    """Read a chain head.

    Parameters
    ----------
    head : str or (int, str)
        As ``astrodb audit head`` prints it (``"SEQ DIGEST"``, also ``SEQ:DIGEST``), a bare
        digest, or a ``(seq, digest)`` pair.

    Returns
    -------
    (int or None, str)
        The sequence number (None when not given) and the lower-case digest.

    Raises
    ------
    QueryError
        Not a head.
    """
    if isinstance(head, (tuple, list)) and len(head) == 2:
        seq, digest = head
    else:
        parts = str(head).replace(":", " ").split()
        if len(parts) == 1:
            seq, digest = None, parts[0]
        elif len(parts) == 2:
            seq, digest = parts
        else:
            seq, digest = None, ""
    digest = str(digest).strip().lower()
    try:
        seq = None if seq is None else int(seq)
    except ValueError:
        seq = -1
    if not _HEX64.match(digest) or (seq is not None and seq < 0):
        raise QueryError(f"a chain head is 'SEQ DIGEST' (as `astrodb audit head` prints it) or a 64-digit "
                         f"sha256, got {head!r}")
    return seq, digest


@dataclass
class ChainReport:
    """Outcome of :func:`verify_chain`: ``ok``, one line per problem, the links checked and the head."""

    n_runs: int = 0
    head: tuple[int, str] = (0, GENESIS)
    problems: list[str] = dc_field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.n_runs} runs, head {self.head[0]} {self.head[1]}"
        return "\n".join(self.problems)


def _recomputed(conn: sa.Connection) -> list[tuple[Link, str | None]]:
    """Every link with its digest recomputed from the stored rows (None: the run is gone)."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(sa.text(
            f"SELECT {_LINK_COLUMNS}, CASE WHEN r.run_id IS NULL THEN NULL ELSE "
            f"{PG_SCHEMA}.prov_link_digest(c.seq, c.prev_digest, c.run_id, c.db_role, c.server_time) END AS again "
            "FROM prov_chain c LEFT JOIN prov_runs r ON r.run_id = c.run_id ORDER BY c.seq")).all()
        return [(_link(r), r._mapping["again"]) for r in rows]
    out = []
    for r in conn.execute(sa.text(f"SELECT {_LINK_COLUMNS} FROM prov_chain c ORDER BY c.seq")).all():
        link = _link(r)
        run, images = stored_rows(conn, link.run_id)
        raw_time = r._mapping["server_time"]  # as stored, like every other field
        out.append((link, link_digest(link.seq, link.prev_digest, link.run_id, link.db_role, raw_time, run, images)))
    return out


def verify_chain(store, head=None) -> ChainReport:
    """Recompute every link of the provenance chain from the stored rows and check the chain.

    Parameters
    ----------
    store : astrodb.Store
    head : str or (int, str), optional
        A head exported earlier (``"SEQ DIGEST"`` as :func:`chain_head` / ``astrodb audit head``
        give it, or a bare digest): the chain must still hold it. Without one, a chain rewritten
        as a whole from some link on is consistent again; with one, any rewrite of the links up
        to it shows.

    Returns
    -------
    ChainReport
        ``ok`` when every link's digest is what its run's stored rows give, the sequence has no
        gaps, each link names the previous one, every run is chained and the head is held;
        else one line per problem naming the run (altered, missing, not chained) or link.
    """
    store._require_schema()
    want = None if head is None else parse_head(head)
    report = ChainReport()
    with store.engine.connect() as conn:
        links = _recomputed(conn)
        unchained = conn.execute(sa.text(
            "SELECT r.run_id FROM prov_runs r WHERE NOT EXISTS (SELECT 1 FROM prov_chain c WHERE c.run_id = r.run_id) "
            "ORDER BY r.started_at, r.run_id")).scalars().all()
    expected, prev = 1, GENESIS
    for link, again in links:
        where = f"run {link.run_id} (link {link.seq})"
        if link.seq != expected:
            gap = f"link {expected} is" if link.seq == expected + 1 else f"links {expected}..{link.seq - 1} are"
            report.problems.append(f"{gap} missing: deleted from the chain before {where}")
        elif link.prev_digest != prev:
            report.problems.append(f"{where}: forged: its prev_digest is not the digest of link {link.seq - 1}")
        if again is None:
            report.problems.append(f"{where}: missing: the run's record was deleted")
        elif again != link.digest:
            report.problems.append(f"{where}: altered: its stored rows no longer give the link's digest")
        expected, prev = link.seq + 1, link.digest
    for run_id in unchained:
        report.problems.append(f"run {run_id}: not in the chain: its link was deleted or it was inserted around "
                               "the chaining")
    report.n_runs = len(links)
    if links:
        report.head = (links[-1][0].seq, links[-1][0].digest)
    if want is not None:
        seq, digest = want
        held = {link.seq: link.digest for link, _ in links}
        if seq == 0 and digest == GENESIS:
            pass
        elif seq is None and digest not in held.values():
            report.problems.append(f"head {digest}: not in the chain any more: the chain was rewritten or cut")
        elif seq is not None and held.get(seq) != digest:
            now = f"link {seq} has digest {held[seq]} now" if seq in held else f"there is no link {seq} now"
            report.problems.append(f"head {seq} {digest}: not in the chain any more ({now}): the chain was "
                                   "rewritten or cut")
    return report
