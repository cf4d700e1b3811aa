"""Where the store lives: the URL from the caller, ``ASTRODB_URL``, or the embedded default."""
from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the store URL (SQLAlchemy form).
ENV_URL = "ASTRODB_URL"


def default_sqlite_path() -> Path:
    """Return the embedded default database file.

    ``$XDG_DATA_HOME/astrodb/astrodb.sqlite``, i.e. ``~/.local/share/astrodb/astrodb.sqlite``
    when ``XDG_DATA_HOME`` is unset.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "astrodb" / "astrodb.sqlite"


def resolve_url(url: str | None = None) -> str:
    """Return the store URL: ``url``, else ``$ASTRODB_URL``, else the embedded SQLite default.

    A bare ``postgresql://`` URL is given the psycopg 3 driver; a plain file path is taken as
    an SQLite database file.
    """
    url = url or os.environ.get(ENV_URL)
    if not url:
        path = default_sqlite_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    return url
