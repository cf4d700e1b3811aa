"""The regions a catalog was loaded for (table ``catalog_regions``, migration 0013): recorded by
the Gaia loads, read by the queries.

A region load records its cut when it starts (incomplete: nothing is claimed yet) and marks it
complete when every file it read was loaded, adding the part of the cut the files hold in full to
what the catalog claims. Loads later into the same catalog add their cuts: the catalog claims the
union. A load without a region makes a catalog that has region rows unlimited (a ``full_sky``
row, once it completes); a catalog that never had a region load has no row and stays unlimited.
"""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import sqlalchemy as sa

from ..query import coverage
from ..query.region_limits import RegionLimits, RegionLoad
from .schema import catalog_regions, catalogs, source_files

#: ``cut_key`` of a catalog's load(s) without a region.
FULL_SKY = "full-sky"


def cuts(conn: sa.Connection, catalog_id: int) -> list[tuple[str, np.ndarray]]:
    """Every cut the catalog was loaded with: ``(cut_key, cells)``, started loads included (some
    of their files may be in the catalog)."""
    rows = conn.execute(sa.select(catalog_regions.c.cut_key, catalog_regions.c.cells).where(
        catalog_regions.c.catalog_id == catalog_id, catalog_regions.c.full_sky.is_(False))
        .order_by(catalog_regions.c.id)).all()
    return [(key, coverage.from_bytes(cells)) for key, cells in rows]


def _insert(engine: sa.Engine, values: dict) -> None:
    """Insert a row unless the catalog has that cut already (possibly inserted meanwhile)."""
    now = datetime.now(timezone.utc)
    try:
        with engine.begin() as conn:
            exists = conn.execute(sa.select(catalog_regions.c.id).where(
                catalog_regions.c.catalog_id == values["catalog_id"],
                catalog_regions.c.cut_key == values["cut_key"])).first()
            if exists is None:
                conn.execute(catalog_regions.insert().values(created_at=now, **values))
    except sa.exc.IntegrityError:  # another loader inserted the same cut at the same time
        pass


def start(engine: sa.Engine, catalog_id: int, created: bool, selection) -> None:
    """Record that a load starts: its cut (``selection``, a
    :class:`~astrodb.ingest.region_select.Selection`), or for a load without a region (None) a
    full-sky row when the catalog has region rows.

    A catalog that already held rows without any region row was loaded whole: it is recorded as
    such first, so that a region load does not limit it.
    """
    with engine.connect() as conn:
        has_rows = conn.execute(sa.select(sa.func.count()).select_from(catalog_regions).where(
            catalog_regions.c.catalog_id == catalog_id)).scalar_one() > 0
        held = conn.execute(sa.select(sa.func.count()).select_from(source_files).where(
            source_files.c.catalog_id == catalog_id)).scalar_one() > 0
    if selection is None:
        if has_rows:
            _insert(engine, {"catalog_id": catalog_id, "cut_key": FULL_SKY, "description": "the whole sky",
                             "full_sky": True})
        return
    if not has_rows and not created and held:
        _insert(engine, {"catalog_id": catalog_id, "cut_key": FULL_SKY, "complete": True, "full_sky": True,
                         "description": "the whole sky (files loaded without a region)",
                         "completed_at": datetime.now(timezone.utc)})
    bound = selection.bound
    lo, hi = selection.epochs
    _insert(engine, {"catalog_id": catalog_id, "cut_key": selection.key, "description": selection.region.description,
                     "epoch_lo": lo, "epoch_hi": hi, "ref_epoch": selection.ref_epoch, "pad_deg": selection.pad_deg,
                     "pm_max": bound.pm_max, "radial_rate_max": bound.radial_rate_max,
                     "parallax_max": bound.parallax_max, "norder": selection.order,
                     "cells": coverage.to_bytes(selection.cells)})


def finish(engine: sa.Engine, catalog_id: int, selection) -> None:
    """Record that every file of a load is in the catalog: its cut's claim counts from now on
    (added to an earlier claim of the same cut); a load without a region makes the catalog
    unlimited, if it has region rows at all."""
    key = FULL_SKY if selection is None else selection.key
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        query = sa.select(catalog_regions.c.id, catalog_regions.c.claimed).where(
            catalog_regions.c.catalog_id == catalog_id, catalog_regions.c.cut_key == key)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            return
        values: dict = {"complete": True, "completed_at": now}
        if selection is not None:
            claim = coverage.union_ranges([coverage.from_bytes(row.claimed), selection.claim])
            values["claimed"] = coverage.to_bytes(claim)
        conn.execute(catalog_regions.update().where(catalog_regions.c.id == row.id).values(**values))


def read_limits(conn: sa.Connection, catalog_id: int, name: str) -> RegionLimits | None:
    """What a query of the catalog must stay within; None when it is unlimited."""
    rows = conn.execute(sa.select(catalog_regions).where(catalog_regions.c.catalog_id == catalog_id)
                        .order_by(catalog_regions.c.id)).mappings().all()
    if not rows or any(r["full_sky"] and r["complete"] for r in rows):
        return None
    regional = [r for r in rows if not r["full_sky"]]
    done = [r for r in regional if r["complete"]]
    order = int(regional[0]["norder"]) if regional else coverage.COVER_ORDER
    cells = coverage.union_ranges([coverage.from_bytes(r["claimed"]) for r in done])
    ref = conn.execute(sa.select(catalogs.c.ref_epoch).where(catalogs.c.id == catalog_id)).scalar()
    loads = tuple(RegionLoad(r["description"], r["epoch_lo"], r["epoch_hi"], bool(r["complete"]))
                  for r in regional)
    return RegionLimits(
        catalog=name, loads=loads, cells=cells, order=order,
        ref_epoch=float(done[0]["ref_epoch"] if done else (ref or 2016.0)),
        pm_max=max((r["pm_max"] for r in done), default=0.0),
        radial_rate_max=max((r["radial_rate_max"] for r in done), default=0.0),
        parallax_max=max((r["parallax_max"] for r in done), default=0.0))
