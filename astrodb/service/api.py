"""The JSON API (``/v1``) and ``/health``. Errors: ``{"error": {"status", "parameter", "message"}}``."""
from __future__ import annotations

import os
from typing import Literal

import numpy as np
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from . import lanes
from . import params as P
from . import runs as R
from .errors import BadParameter, ServiceError, call_store
from .formats import VOTABLE_MEDIA_TYPE, json_result, text_table, votable

router = APIRouter()

Format = Literal["json", "ecsv", "votable", "csv"]
_MEDIA = {"json": "application/json", "ecsv": "text/plain; charset=utf-8", "votable": VOTABLE_MEDIA_TYPE,
          "csv": "text/csv; charset=utf-8"}


class ErrorBody(BaseModel):
    status: int
    parameter: str | None = None
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_response(exc: ServiceError) -> JSONResponse:
    return JSONResponse({"error": {"status": exc.status, "parameter": exc.parameter, "message": exc.message}},
                        status_code=exc.status)


ERRORS = {400: {"model": ErrorResponse, "description": "bad parameter (named in error.parameter)"},
          404: {"model": ErrorResponse, "description": "unknown catalog or run"},
          503: {"model": ErrorResponse, "description": "database unavailable; retry later"}}
_TABLE_CONTENT = {m: {"schema": {"type": "string"}} for m in _MEDIA.values() if m != "application/json"}
_TABLE_CONTENT["application/json"] = {"schema": {"type": "object", "properties": {
    "meta": {"type": "object"}, "columns": {"type": "array", "items": {"type": "object"}},
    "rows": {"type": "array", "items": {"type": "array"}}}, "required": ["meta", "columns", "rows"]}}
TABLE_RESPONSES = {200: {"description": "sources sorted by distance; meta.truncated (JSON), X-Truncated "
                         "header (all formats) when the row limit cut the result", "content": _TABLE_CONTENT},
                   **ERRORS}


# -- health and catalogs --------------------------------------------------------------------
class Health(BaseModel):
    """The database is up and at the current schema: versions, counts and limits, never its address."""

    status: str
    version: str = Field(description="astrodb version of the service")
    schema_revision: str = Field(description="the store's schema (migration) revision")
    backend: str = Field(description="postgresql or sqlite")
    catalogs: int
    read_only_session: bool
    role_can_write: bool | None
    max_radius_deg: float
    max_rows: int
    max_body_bytes: int = Field(description="largest request body accepted; more is 413")
    request_timeout_s: float = Field(description="each request's time limit (waiting, query, rendering); later is 503")
    heavy_radius_deg: float = Field(description="regions wider than this run in the low-priority lane, a few at a time")


@router.get("/health", response_model=Health, responses={503: ERRORS[503]}, tags=["service"],
            summary="database reachable and at the current schema")
async def health(request: Request):
    return await request.app.state.service.run(request.app.state.service.health)


class FileInfo(BaseModel):
    file: str
    sha256: str
    rows: int
    ingested_at: str


class Catalog(BaseModel):
    name: str
    kind: str
    ref_epoch: float | None
    description: str | None
    row_count: int
    created_at: str
    files: list[FileInfo]


def _catalog_dict(c) -> dict:
    # File names only: the server's directory layout is none of the clients' business.
    return {"name": c.name, "kind": c.kind, "ref_epoch": c.ref_epoch, "description": c.description,
            "row_count": c.row_count, "created_at": c.created_at.isoformat(),
            "files": [{"file": os.path.basename(str(f["path"])), "sha256": f["sha256"], "rows": int(f["rows"]),
                       "ingested_at": f["ingested_at"].isoformat()} for f in c.files]}


class CatalogList(BaseModel):
    catalogs: list[Catalog]


@router.get("/v1/catalogs", response_model=CatalogList, responses={503: ERRORS[503]}, tags=["catalogs"],
            summary="every catalog: kind, epoch, rows, ingested files")
async def catalogs(request: Request):
    cats = await request.app.state.service.run(request.app.state.service.catalogs)
    return {"catalogs": [_catalog_dict(c) for c in cats]}


@router.get("/v1/catalogs/{name}", response_model=Catalog, responses=ERRORS, tags=["catalogs"],
            summary="one catalog")
async def catalog(request: Request, name: str = Path(max_length=200)):
    return _catalog_dict(await request.app.state.service.run(request.app.state.service.catalog, name))


# -- queries -----------------------------------------------------------------------------
def _table(res, fmt: str, meta: dict) -> tuple[bytes, str, dict]:
    """A query's result rendered: (body, media type, headers)."""
    meta = {**meta, "rows": len(res.rows), "row_limit": res.limit, "truncated": res.truncated}
    headers = {"X-Truncated": "true"} if res.truncated else {}
    t, deadline = res.rows, lanes.deadline()
    if fmt == "json":
        body = json_result(t, meta, deadline=deadline)
    elif fmt == "votable":
        desc = f"astrodb {meta['query']} of catalog {meta['catalog']}: {len(t)} sources"
        body = votable(t, description=desc, epoch=meta.get("epoch"), truncated=res.truncated,
                       infos={"catalog": meta["catalog"], "row_limit": res.limit}, deadline=deadline)
    else:
        body = text_table(t, fmt, meta, deadline=deadline)
    return body, _MEDIA[fmt], headers


def _response(rendered: tuple[bytes, str, dict]) -> Response:
    body, media_type, headers = rendered
    return Response(body, media_type=media_type, headers=headers)


def _cone(svc, catalog: str, ra: float, dec: float, radius: float, epoch, columns, limit: int, pm_prior: float,
          fmt: str, observer=None) -> tuple[bytes, str, dict]:
    res = svc.cone(catalog, ra, dec, radius, epoch=epoch, columns=columns, limit=limit, pm_prior=pm_prior,
                   observer=observer)
    meta = {"query": "cone", "catalog": catalog, "ra": ra, "dec": dec, "radius": radius, "epoch": epoch}
    if observer is not None:
        meta["observer_au"] = [float(v) for v in observer]
    return _table(res, fmt, meta)


def _observer(text: str | None) -> np.ndarray | None:
    if text is None or not text.strip():
        return None
    try:
        xyz = np.array([float(v) for v in text.split(",")], float)
    except ValueError:
        xyz = np.empty(0)
    if xyz.shape != (3,) or not np.all(np.isfinite(xyz)) or np.linalg.norm(xyz) > 1e6:
        raise BadParameter("observer", f"must be 'x,y,z': the observer's barycentric ICRS position in AU "
                                       f"(three finite numbers), got {text[:80]!r}")
    return xyz


def _footprint(svc, catalog: str, region, epoch, columns, limit: int, pm_prior: float,
               fmt: str) -> tuple[bytes, str, dict]:
    res = svc.footprint(catalog, region, epoch=epoch, columns=columns, limit=limit, pm_prior=pm_prior)
    return _table(res, fmt, {"query": "footprint", "catalog": catalog, "epoch": epoch})


def _columns(text: str | None) -> list[str] | None:
    if text is None or not text.strip():
        return None
    cols = [c.strip() for c in text.split(",") if c.strip()]
    if len(cols) > 50:
        raise BadParameter("columns", "too many columns")
    return cols


@router.get("/v1/cone", response_class=Response, responses=TABLE_RESPONSES, tags=["queries"],
            summary="sources within a radius, exact at an epoch, nearest first")
async def cone(request: Request,
               catalog: str = Query(max_length=200, description="catalog name (GET /v1/catalogs)"),
               ra: float = Query(ge=0, le=360, allow_inf_nan=False, description="ICRS deg"),
               dec: float = Query(ge=-90, le=90, allow_inf_nan=False, description="ICRS deg"),
               radius: float = Query(gt=0, le=180, allow_inf_nan=False,
                                     description="deg; at most the service's max_radius_deg (GET /health)"),
               epoch: str | None = Query(None, max_length=64, description="Julian year (2030.0), 'J2030' or "
                                         "ISO time of the positions; default: each source's catalog epoch"),
               format: Format = Query("json", description="json, ecsv, votable or csv"),
               columns: str | None = Query(None, max_length=2000, description="comma-separated output "
                                           "columns (default all); distance is always included"),
               limit: int | None = Query(None, ge=0, description="row limit (default and cap: max_rows)"),
               pm_prior: float = Query(10.0, ge=0, le=1e6, allow_inf_nan=False, description="mas/yr: prior on "
                                       "the motion of sources without proper motion (their epoch errors)"),
               observer: str | None = Query(None, max_length=200, description="with epoch: the observer's "
                                            "barycentric ICRS position 'x,y,z' in AU, for the annual parallax "
                                            "(default: none, positions as seen from the barycentre)")):
    svc = request.app.state.service
    P.check_radius("radius", radius, svc.settings.max_radius)
    jy = P.parse_epoch("epoch", epoch)
    n = svc.row_limit("limit", limit)
    cols = _columns(columns)
    xyz = _observer(observer)
    if xyz is not None and jy is None:
        raise BadParameter("observer", "give an epoch with the observer: the parallax shift is the one seen then")
    return _response(await svc.query(radius, _cone, catalog, ra, dec, radius, jy, cols, n, pm_prior, format, xyz))


class FootprintRequest(BaseModel):
    """A spherical polygon (great-circle edges, the smaller side) or an image's FITS WCS + shape."""

    model_config = ConfigDict(extra="forbid")
    catalog: str = Field(max_length=200)
    polygon: list[list[float]] | None = Field(None, min_length=3, max_length=1000,
                                              description="vertices [[ra, dec], ...] in ICRS deg")
    wcs: dict[str, str | float | int | bool] | None = Field(
        None, max_length=500, description="FITS WCS keywords of an image (CTYPE1, CRVAL1, CD1_1, ...)")
    shape: list[int] | None = Field(None, min_length=2, max_length=2, description="image shape [ny, nx] for wcs")
    epoch: float | str | None = Field(None, description="Julian year or ISO time of the positions")
    format: Format = "json"
    columns: list[str] | None = Field(None, max_length=50)
    limit: int | None = Field(None, ge=0)
    pm_prior: float = Field(10.0, ge=0, le=1e6, allow_inf_nan=False)


def _region(body: FootprintRequest, max_radius: float):
    from ..errors import QueryError
    from ..query.regions import Polygon, WCSFootprint

    if (body.polygon is None) == (body.wcs is None):
        raise BadParameter("polygon", "give exactly one of polygon (vertices) or wcs (+ shape)")
    if body.polygon is not None:
        verts = np.asarray([v if len(v) == 2 else [np.nan, np.nan] for v in body.polygon], float)
        if not np.all(np.isfinite(verts)):
            raise BadParameter("polygon", "vertices must be [ra, dec] pairs of finite degrees")
        if np.any(np.abs(verts[:, 1]) > 90):
            raise BadParameter("polygon", "vertex declinations must be within [-90, 90]")
        name = "polygon"
        try:
            region = Polygon.create(verts)
        except QueryError as exc:
            raise BadParameter("polygon", str(exc)) from None
    else:
        name = "wcs"
        if body.shape is None or min(body.shape) <= 0 or max(body.shape) > 10 ** 6:
            raise BadParameter("shape", "give the image shape [ny, nx] (positive) with wcs")
        try:
            import warnings

            from astropy.io import fits
            from astropy.wcs import WCS
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                w = WCS(fits.Header(list(body.wcs.items()))).celestial
                if not w.has_celestial:
                    raise ValueError("no celestial axes")
                region = WCSFootprint(w, tuple(body.shape))
                region.cap  # noqa: B018 - evaluates the footprint now, inside the try
        except Exception as exc:  # noqa: BLE001 - astropy raises many kinds for bad headers
            raise BadParameter("wcs", f"not a usable celestial FITS WCS: {exc}") from None
    if region.cap[2] > max_radius:
        raise BadParameter(name, f"the region's bounding circle ({region.cap[2]:g} deg radius) exceeds this "
                                 f"service's maximum radius {max_radius:g} deg")
    return region


@router.post("/v1/footprint", response_class=Response, tags=["queries"], responses={
                 **TABLE_RESPONSES, 413: {"model": ErrorResponse, "description": "request body larger than the "
                                          "service's max_body_bytes (GET /health)"}},
             summary="sources inside a polygon or an image's pixels, exact at an epoch")
async def footprint(request: Request, body: FootprintRequest):
    svc = request.app.state.service
    jy = P.parse_epoch("epoch", body.epoch)
    n = svc.row_limit("limit", body.limit)

    region = await svc.run(_region, body, svc.settings.max_radius)
    return _response(await svc.query(region.cap[2], _footprint, body.catalog, region, jy, body.columns, n,
                                     body.pm_prior, body.format))


# -- provenance ----------------------------------------------------------------------------
@router.get("/v1/runs", responses={400: ERRORS[400], 503: ERRORS[503]}, tags=["provenance"],
            summary="recorded alignment runs, newest first")
async def runs(request: Request, limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10 ** 9),
               catalog: str | None = Query(None, max_length=200, description="reference store catalog"),
               status: Literal["success", "partial", "failed"] | None = None,
               step: Literal["relative", "absolute"] | None = None) -> dict:
    store = request.app.state.service.store
    if catalog is not None:
        request.app.state.service.check_name(catalog)
    rows = await request.app.state.service.run(call_store, store, R.list_runs, store, limit=limit, offset=offset,
                                   catalog=catalog, status=status, step=step)
    return {"runs": rows, "limit": limit, "offset": offset}


@router.get("/v1/runs/{run_id}", responses=ERRORS, tags=["provenance"],
            summary="one run: parameters, software, reference, and every image's fit")
async def run(request: Request, run_id: str = Path(max_length=36)) -> dict:
    store = request.app.state.service.store
    return await request.app.state.service.run(call_store, store, R.get_run, store, run_id)


@router.get("/v1/runs/{run_id}/prov", response_class=Response, tags=["provenance"],
            summary="one run as W3C PROV (PROV-JSON, or PROV-N)",
            responses={200: {"description": "the PROV document", "content": {
                "application/json": {"schema": {"type": "object"}}, "text/plain": {"schema": {"type": "string"}}}},
                **ERRORS})
async def run_prov(request: Request, run_id: str = Path(max_length=36),
                   format: Literal["json", "provn"] = Query("json", description="PROV-JSON or PROV-N")):
    store = request.app.state.service.store
    text = await request.app.state.service.run(call_store, store, R.get_prov, store, run_id, format)
    return Response(text, media_type="application/json" if format == "json" else "text/plain; charset=utf-8")
