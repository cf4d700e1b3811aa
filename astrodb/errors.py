"""Exceptions raised by astrodb.

Every error derives from :class:`AstrodbError` (itself an ``Exception``), so callers can catch
them all at once; the input-validation ones also derive from ``ValueError``.
"""
from __future__ import annotations


class AstrodbError(Exception):
    """Base class of every astrodb error."""


class ConfigError(AstrodbError):
    """The store URL or its backend cannot be used."""


class IngestError(AstrodbError, ValueError):
    """A catalog could not be ingested; nothing was written.

    Parameters
    ----------
    message : str
        What is wrong and what was expected.
    source : str, optional
        The file (or ``<table>``) being ingested.
    column : str, optional
        The offending column.
    rows : sequence of int, optional
        0-based data row indices of the offending rows (the first few are quoted in the message).
    """

    def __init__(self, message: str, *, source: str | None = None, column: str | None = None,
                 rows=None) -> None:
        self.source = source
        self.column = column
        self.rows = None if rows is None else [int(r) for r in rows]
        parts = []
        if source:
            parts.append(str(source))
        if column:
            parts.append(f"column {column!r}")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:5])
            more = f" (and {len(self.rows) - 5} more)" if len(self.rows) > 5 else ""
            parts.append(f"data row{'s' if len(self.rows) > 1 else ''} {shown}{more} (0-based)")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class CatalogExistsError(AstrodbError, ValueError):
    """A catalog of that name already holds different data."""


class CatalogNotFoundError(AstrodbError, LookupError):
    """No catalog of that name is in the store."""


class QueryError(AstrodbError, ValueError):
    """A query's parameters are invalid (radius, position, region, epoch)."""


class OutsideRegionError(QueryError):
    """A query reaches outside the region a catalog was loaded for, or asks for an epoch its
    region load is not exact at: it would return too few rows."""


def one_line(exc: BaseException) -> str:
    """The first line of an error, of the driver's error for a database one (without
    SQLAlchemy's statement and background link; a wcslib error without its C call stack)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


class ShardUnavailableError(AstrodbError):
    """A shard of a sharded catalog cannot be reached: the query needing it is refused whole
    (never a partial result). ``shard`` names it."""

    def __init__(self, message: str, shard: str) -> None:
        super().__init__(message)
        self.shard = shard
