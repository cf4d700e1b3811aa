"""What the store says of one catalog (:meth:`astrodb.Store.catalogs`)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class CatalogInfo:
    """A catalog held by the store."""

    name: str
    kind: str
    ref_epoch: float | None
    description: str | None
    row_count: int
    created_at: datetime
    files: tuple[dict, ...]
