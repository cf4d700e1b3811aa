"""Ingest a user catalog: validate, index, sort spatially and load in one transaction."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import sqlalchemy as sa

from .. import epoch as epochs
from ..errors import CatalogExistsError
from ..query.healpix import hpx29
from ..store import partitions
from ..store.schema import SOURCE_FLOAT_COLUMNS, catalogs, source_files, sources
from .bulk import insert_columns
from .density import add_counts
from .table_reader import CatalogRows

#: Columns loaded into ``sources``, in order.
LOAD_COLUMNS = ("catalog_id", "source_id", "file_id", *SOURCE_FLOAT_COLUMNS, "hpx29")


@dataclass(frozen=True)
class IngestResult:
    """What an ingest did."""

    catalog: str
    source: str
    rows: int
    status: str          # "ingested" or "unchanged" (identical file already in the catalog)
    sha256: str

    def __str__(self) -> str:
        if self.status == "unchanged":
            return f"{self.source}: already ingested into catalog {self.catalog!r} (sha256 {self.sha256[:12]}…), nothing to do"
        return f"{self.source}: {self.rows} rows ingested into catalog {self.catalog!r}"


def motion_stats(cols: dict[str, np.ndarray]) -> dict[str, float]:
    """Catalog-wide maxima a search needs to widen its pre-filter for another epoch."""
    pm = np.hypot(cols["pmra"], cols["pmdec"])
    rate = epochs.radial_rate(cols["parallax"], cols["radial_velocity"], pm)
    plx = cols["parallax"]

    def nanmax(a) -> float:
        a = a[np.isfinite(a)]
        return float(a.max()) if a.size else 0.0

    return {"pm_max": nanmax(pm), "radial_rate_max": nanmax(rate), "parallax_max": max(nanmax(plx), 0.0),
            "epoch_min": float(cols["ref_epoch"].min()), "epoch_max": float(cols["ref_epoch"].max())}


def _epoch_text(lo: float, hi: float) -> str:
    return f"J{lo:g}" if lo == hi else f"J{lo:g}–J{hi:g}"


def _same_epochs(rows: CatalogRows, name: str, lo: float | None, hi: float | None) -> None:
    """Refuse an identical file whose positions would now be at other epochs (another ``epoch``)."""
    ep = rows.columns["ref_epoch"]
    new_lo, new_hi = float(np.min(ep)), float(np.max(ep))
    if lo is None or hi is None or (abs(new_lo - lo) <= 1e-9 and abs(new_hi - hi) <= 1e-9):
        return
    raise CatalogExistsError(
        f"{rows.source}: already ingested into catalog {name!r} with positions at {_epoch_text(lo, hi)}, not "
        f"{_epoch_text(new_lo, new_hi)}; the catalog keeps its epoch. To load it at the new epoch, drop the "
        f"catalog first (astrodb drop {name}) or ingest it under another name")


def ingest_rows(conn: sa.Connection, rows: CatalogRows, name: str, *, kind: str = "user",
                description: str | None = None, shards=None) -> IngestResult:
    """Load ``rows`` as the new catalog ``name`` on ``conn`` (the caller owns the transaction).

    An identical source (same sha256) already in catalog ``name`` at the same epochs makes this a
    no-op; the same source at other epochs, or any other existing catalog of that name, is an error.
    ``shards``: (:class:`~astrodb.shard.ShardConnections`, a list) to spread the catalog over the
    store's shards; the rows are then prepared on them (:class:`~astrodb.shard.loading.ShardLoad`,
    appended to the list), for the caller to commit once ``conn`` has, or to roll back.
    """
    existing = conn.execute(sa.select(catalogs.c.id, catalogs.c.epoch_min, catalogs.c.epoch_max)
                            .where(catalogs.c.name == name)).first()
    if existing is not None:
        same = conn.execute(sa.select(source_files.c.id).where(
            source_files.c.catalog_id == existing.id, source_files.c.sha256 == rows.sha256)).scalar()
        if same is not None:
            _same_epochs(rows, name, existing.epoch_min, existing.epoch_max)
            return IngestResult(name, rows.source, 0, "unchanged", rows.sha256)
        raise CatalogExistsError(
            f"catalog {name!r} already exists with other data; choose another name or drop it first "
            f"(astrodb drop {name})")
    now = datetime.now(timezone.utc)
    cols = rows.columns
    stats = motion_stats(cols)
    try:
        cat_id = conn.execute(catalogs.insert().values(
            name=name, kind=kind, ref_epoch=rows.ref_epoch, description=description, row_count=len(rows),
            created_at=now, **stats).returning(catalogs.c.id)).scalar_one()
    except sa.exc.IntegrityError:  # another ingest created the name since the check above
        raise CatalogExistsError(f"catalog {name!r} was created meanwhile by another ingest; choose another "
                                 f"name or drop it first (astrodb drop {name})") from None
    file_id = conn.execute(source_files.insert().values(
        catalog_id=cat_id, path=rows.source, size=rows.size, sha256=rows.sha256, rows=len(rows),
        ingested_at=now).returning(source_files.c.id)).scalar_one()
    pix = hpx29(cols["ra"], cols["dec"])
    order = np.argsort(pix, kind="stable")  # spatial order on disk: a cone reads few pages
    n = len(rows)
    data = {"catalog_id": np.full(n, cat_id, np.int64), "file_id": np.full(n, file_id, np.int64),
            "hpx29": pix, **cols}
    arrays = [np.ascontiguousarray(data[c][order]) for c in LOAD_COLUMNS]
    if shards is not None:
        from ..shard.loading import ShardLoad
        from ..shard.placement import new_catalog_map

        conns, pending = shards
        load = ShardLoad(conns, new_catalog_map(conn, cat_id), conn, rows.sha256)
        pending.append(load)
        load.copy(LOAD_COLUMNS, arrays, create_tables=True)
    elif conn.dialect.name == "postgresql":
        insert_columns(conn, partitions.create_bare(conn, cat_id), LOAD_COLUMNS, arrays)
        partitions.index_and_attach(conn, cat_id)
    else:
        insert_columns(conn, sources.name, LOAD_COLUMNS, arrays)
    add_counts(conn, cat_id, pix)
    return IngestResult(name, rows.source, n, "ingested", rows.sha256)
