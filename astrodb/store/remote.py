"""A store read through the HTTP service's JSON API (``astrodb serve``), for machines that cannot
reach the database: ``astrodb.connect("https://host/")`` gives one.

It answers what readers of a store ask (:meth:`catalogs`, :meth:`catalog`, :meth:`cone`, :meth:`search`)
with the same rows, values and units as :class:`astrodb.Store` (the service renders floats in
shortest round-trip form, so every value comes back bit for bit). It only reads: loading,
dropping and provenance need the database. A result the service cut at its row limit is an
error, never a silent subset. Python's own ``urllib`` speaks HTTP here: one request per query.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime

import numpy as np
from astropy.table import Table

from .. import epoch as epochs
from ..errors import AstrodbError, CatalogNotFoundError, ConfigError, QueryError
from ..query.columns import SourceColumns
from ..query.regions import Cone
from .catalog_info import CatalogInfo

__all__ = ["ServiceStore", "ReadOnlyServiceError", "is_service_url"]

_INT_COLUMNS = {"source_id"}
_BOOL_COLUMNS = {"propagated"}


class ReadOnlyServiceError(ConfigError, AttributeError):
    """What a store behind the HTTP service cannot do (it is an AttributeError too, so that
    ``hasattr`` says no)."""


def is_service_url(url: str | None) -> bool:
    """True for an http(s) URL: the store behind an ``astrodb serve``."""
    return isinstance(url, str) and url.lower().startswith(("http://", "https://"))


class ServiceStore:
    """A read-only store behind an ``astrodb serve`` (its JSON API at ``/v1``).

    Parameters
    ----------
    url : str
        The service's base URL, e.g. ``https://astro.example.org/`` (``/v1/...`` is added).
    timeout : float
        Seconds to wait for one answer.
    """

    backend = "http"

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        self._base = url.rstrip("/")
        self.timeout = timeout

    @property
    def url(self) -> str:
        """The service's base URL."""
        return self._base

    def __repr__(self) -> str:
        return f"ServiceStore({self._base!r})"

    def __enter__(self) -> "ServiceStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: each query is one request."""

    def __getattr__(self, name: str):
        # What a database store has and this one has not (loading, dropping, provenance, SQL).
        if name.startswith("__"):
            raise AttributeError(name)
        raise ReadOnlyServiceError(f"{name}: the store at {self._base} is an astrodb service, read over HTTP "
                                   f"(catalogs and cones only); this needs the database itself")

    # -- HTTP ---------------------------------------------------------------------------------
    def _get(self, path: str, params: dict | None = None) -> dict:
        query = "" if not params else "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self._base}{path}{query}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"}),
                                        timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc, url) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"the astrodb service at {self._base} cannot be reached: {reason}") from None
        except ValueError as exc:  # not JSON: not an astrodb service
            raise ConfigError(f"{url} did not answer as an astrodb service (JSON expected): {exc}") from None

    def _refusal(self, exc: urllib.error.HTTPError, url: str) -> AstrodbError:
        try:
            body = json.loads(exc.read())["error"]
            message = body.get("message") or exc.reason
        except Exception:  # noqa: BLE001 - whatever a proxy in between answered
            message = f"HTTP {exc.code} {exc.reason}"
        if exc.code == 404 and "catalog" in message:
            return CatalogNotFoundError(f"{message} (service {self._base})")
        if exc.code in (400, 413, 422):
            return QueryError(f"{message} (service {self._base})")
        return AstrodbError(f"the astrodb service at {self._base} answered {exc.code}: {message}")

    # -- catalogs -----------------------------------------------------------------------------
    @staticmethod
    def _info(c: dict) -> CatalogInfo:
        files = tuple({"path": f["file"], "size": None, "sha256": f["sha256"], "rows": f["rows"],
                       "ingested_at": datetime.fromisoformat(f["ingested_at"])} for f in c["files"])
        return CatalogInfo(c["name"], c["kind"], c["ref_epoch"], c["description"], int(c["row_count"]),
                           datetime.fromisoformat(c["created_at"]), files)

    def catalogs(self) -> list[CatalogInfo]:
        """Every catalog of the served store (file names without their server paths)."""
        return [self._info(c) for c in self._get("/v1/catalogs")["catalogs"]]

    def catalog(self, name: str) -> CatalogInfo:
        """The catalog called ``name``; :class:`~astrodb.errors.CatalogNotFoundError` if none."""
        return self._info(self._get(f"/v1/catalogs/{urllib.parse.quote(name, safe='')}"))

    # -- queries ------------------------------------------------------------------------------
    def cone(self, ra, dec, radius, *, catalog: str, epoch=None, observer=None, columns=None,
             pm_prior: float = epochs.DEFAULT_PM_PRIOR) -> Table:
        """As :meth:`astrodb.Store.cone`, through the service (its ``max_radius`` applies)."""
        return self.search(Cone.create(ra, dec, radius), catalog=catalog, epoch=epoch, observer=observer,
                           columns=columns, pm_prior=pm_prior).to_table()

    def search(self, region, *, catalog: str, epoch=None, observer=None, columns=None,
               pm_prior: float = epochs.DEFAULT_PM_PRIOR) -> SourceColumns:
        """As :meth:`astrodb.Store.search` for a cone (:class:`~astrodb.query.regions.Cone`)."""
        if not isinstance(region, Cone):
            raise QueryError("a store behind the HTTP service answers cones here; give a Cone")
        ra, dec, radius = region.cap
        jy = None if epoch is None else float(epochs.to_julian_year(epoch))
        params = {"catalog": catalog, "ra": repr(float(ra) % 360.0), "dec": repr(float(dec)),
                  "radius": repr(float(radius)), "epoch": None if jy is None else repr(jy), "format": "json",
                  "pm_prior": repr(float(pm_prior)),
                  "columns": None if columns is None else ",".join(columns)}
        if observer is not None:
            xyz = np.asarray(observer, float).reshape(3)
            params["observer"] = ",".join(repr(float(v)) for v in xyz)
        body = self._get("/v1/cone", params)
        meta = body.get("meta", {})
        if meta.get("truncated"):
            raise QueryError(f"the service at {self._base} returns at most {meta.get('row_limit')} rows and this "
                             f"cone holds more: use a smaller radius, or the database itself")
        names = [c["name"] for c in body["columns"]]
        rows = body["rows"]
        data = {}
        for j, name in enumerate(names):
            values = [r[j] for r in rows]
            if name in _INT_COLUMNS:
                data[name] = np.array(values, np.int64)
            elif name in _BOOL_COLUMNS:
                data[name] = np.array(values, bool)
            else:  # numpy reads JSON's null as NaN
                data[name] = np.array(values, float)
        return SourceColumns(names, data, {"catalog": catalog, "epoch": jy, "cap_ra": float(ra), "cap_dec": float(dec),
                                           "cap_radius": float(radius), "service": self._base})
