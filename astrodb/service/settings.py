"""The service's settings (a light module: ``astrodb serve``'s supervisor imports only this)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import ConfigError

#: Environment variables read by :meth:`Settings.from_env` (``astrodb serve`` sets them for its workers).
ENV_MAX_RADIUS = "ASTRODB_SERVICE_MAX_RADIUS"
ENV_MAX_ROWS = "ASTRODB_SERVICE_MAX_ROWS"
ENV_TIMEOUT = "ASTRODB_SERVICE_STATEMENT_TIMEOUT"
ENV_THREADS = "ASTRODB_SERVICE_THREADS"
ENV_MAX_BODY = "ASTRODB_SERVICE_MAX_BODY"
ENV_REQUEST_TIMEOUT = "ASTRODB_SERVICE_REQUEST_TIMEOUT"
ENV_HEAVY_RADIUS = "ASTRODB_SERVICE_HEAVY_RADIUS"
ENV_HEAVY_QUEUE = "ASTRODB_SERVICE_HEAVY_QUEUE"

#: Default largest request body, bytes: a 1000-vertex polygon or a 500-keyword WCS is under 40 kB.
DEFAULT_MAX_BODY = 1_048_576


def _env_int(name: str, default: int) -> int:
    """``$name`` as an integer, else ``default``; a bad value is a :class:`ConfigError` naming it."""
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {text[:40]!r}") from None


def _env_float(name: str, default: float) -> float:
    """``$name`` as a number, else ``default``; a bad value is a :class:`ConfigError` naming it."""
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text[:40]!r}") from None


def _default_max_body() -> int:
    # Read here too so that `astrodb serve`, which has no option for it, passes the variable on.
    return _env_int(ENV_MAX_BODY, DEFAULT_MAX_BODY)


@dataclass(frozen=True)
class Settings:
    """Service limits. ``store_url`` None: ``$ASTRODB_URL``, else the embedded SQLite default."""

    store_url: str | None = None
    max_radius: float = 1.0         # deg: larger cones / footprints get 400
    max_rows: int = 200_000         # rows per response (the nearest; truncation flagged): a 1° cone at Gaia's mean density is ~138 k
    statement_timeout: float = 30.0  # s, PostgreSQL: a slower statement is cancelled (503)
    threads: int = 2                 # queries at once per worker process (<= the pool's 5 connections)
    max_body: int = field(default_factory=_default_max_body)  # bytes per request body; more is 413
    request_timeout: float = 30.0    # s per request: waiting, query and rendering; later is 503
    heavy_radius: float = 0.25       # deg: wider regions run in the low-priority lane (lanes.HeavyLane)
    heavy_queue: int = 4             # large requests held per worker process (running + waiting); more is 503

    def __post_init__(self) -> None:
        if not 0 < self.max_radius <= 180:
            raise ConfigError(f"max radius must be within (0, 180] deg, got {self.max_radius}")
        if self.max_rows < 1:
            raise ConfigError(f"max rows must be >= 1, got {self.max_rows}")
        if not 1 <= self.threads <= 5:
            raise ConfigError(f"threads must be within [1, 5] (the connection pool's size), got {self.threads}")
        if not self.statement_timeout > 0:
            raise ConfigError(f"statement timeout must be > 0 s, got {self.statement_timeout}")
        if self.max_body < 1:
            raise ConfigError(f"max body must be >= 1 byte, got {self.max_body}")
        if not self.request_timeout > 0:
            raise ConfigError(f"request timeout must be > 0 s, got {self.request_timeout}")
        if not self.heavy_radius >= 0:
            raise ConfigError(f"heavy radius must be >= 0 deg, got {self.heavy_radius}")
        if self.heavy_queue < 1:
            raise ConfigError(f"heavy queue must be >= 1 request, got {self.heavy_queue}")

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Settings from the ``ASTRODB_*`` environment variables; ``overrides`` that are not None win."""
        env = os.environ
        values = {"store_url": env.get("ASTRODB_URL") or None,
                  "max_radius": _env_float(ENV_MAX_RADIUS, cls.max_radius),
                  "max_rows": _env_int(ENV_MAX_ROWS, cls.max_rows),
                  "statement_timeout": _env_float(ENV_TIMEOUT, cls.statement_timeout),
                  "threads": _env_int(ENV_THREADS, cls.threads),
                  "max_body": _env_int(ENV_MAX_BODY, DEFAULT_MAX_BODY),
                  "request_timeout": _env_float(ENV_REQUEST_TIMEOUT, cls.request_timeout),
                  "heavy_radius": _env_float(ENV_HEAVY_RADIUS, cls.heavy_radius),
                  "heavy_queue": _env_int(ENV_HEAVY_QUEUE, cls.heavy_queue)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment variables :meth:`from_env` rebuilds these settings from."""
        env = {ENV_MAX_RADIUS: repr(self.max_radius), ENV_MAX_ROWS: str(self.max_rows),
               ENV_TIMEOUT: repr(self.statement_timeout), ENV_THREADS: str(self.threads),
               ENV_MAX_BODY: str(self.max_body), ENV_REQUEST_TIMEOUT: repr(self.request_timeout),
               ENV_HEAVY_RADIUS: repr(self.heavy_radius), ENV_HEAVY_QUEUE: str(self.heavy_queue)}
        if self.store_url:
            env["ASTRODB_URL"] = self.store_url
        return env
