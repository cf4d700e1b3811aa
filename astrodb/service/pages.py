"""The service's web pages (read-only, the same store and role as the API): catalogs with their
sky coverage and a cone search, the provenance runs (filtered, paged), one run with its fits and
residual plots, and one image's WCS history.

Server-rendered HTML (Jinja2 templates with autoescaping: every recorded value, image names and
messages included, is escaped), no JavaScript, no asset from outside the service. Images are
separate requests, cached in the process: sky maps are drawn from the catalogs' HEALPix density
maps (:mod:`.skymap`), residual plots by :func:`astrodb.provenance.plot.plot_run` (records are
append-only, so a run's plot never changes).
"""
from __future__ import annotations

import io
import json
import math
import os
import threading
import urllib.parse
from collections import OrderedDict

import jinja2
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from .. import __version__
from ..errors import AstrodbError
from ..store.remote import is_service_url
from . import params as P
from . import runs as R
from .errors import BadParameter, NotFound, ServiceError, call_store

router = APIRouter(include_in_schema=False)

PAGE_RUNS = 50          # runs per page
PAGE_ROWS = 500         # cone rows shown in the page (the downloads have them all)
_IMAGE_CACHE = 64       # plots kept per process

_templates = jinja2.Environment(loader=jinja2.PackageLoader("astrodb.service", "templates"),
                                autoescape=jinja2.select_autoescape(default=True), trim_blocks=True,
                                lstrip_blocks=True)


def _render(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    html = _templates.get_template(template).render(root=root, version=__version__, **context)
    return HTMLResponse(html, status_code=status)


def _error(request: Request, exc: Exception, back: str | None = None) -> HTMLResponse:
    status = exc.status if isinstance(exc, ServiceError) else 400
    message = exc.message if isinstance(exc, ServiceError) else str(exc)
    return _render(request, "error.html", status=status, code=status, message=message, back=back, nav=None)


class _Cache:
    """A small LRU of rendered images, shared by the worker's threads."""

    def __init__(self, size: int) -> None:
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key, value) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_images = _Cache(_IMAGE_CACHE)


def _png(data: bytes, cacheable: bool) -> Response:
    # Sky maps change when a catalog is loaded into (their URL is the same): a short max-age;
    # a run's plot never changes.
    age = 31536000 if cacheable else 60
    return Response(data, media_type="image/png", headers={"Cache-Control": f"public, max-age={age}"})


# -- catalogs and cone search -------------------------------------------------------------------
def _catalog_rows(cats) -> list[dict]:
    return [{"name": c.name, "kind": c.kind, "ref_epoch": c.ref_epoch, "row_count": c.row_count,
             "description": c.description, "created": c.created_at.strftime("%Y-%m-%d %H:%M"),
             "files": [{"name": os.path.basename(str(f["path"])), "sha256": f["sha256"] or "", "rows": int(f["rows"])}
                       for f in c.files]} for c in cats]


@router.get("/", response_class=HTMLResponse)
async def catalogs_page(request: Request):
    svc = request.app.state.service
    try:
        cats = await svc.run(svc.catalogs)
    except ServiceError as exc:
        return _error(request, exc)
    return _render(request, "catalogs.html", nav="catalogs", catalogs=_catalog_rows(cats),
                   max_radius=svc.settings.max_radius, max_rows=svc.settings.max_rows, default_ra="", default_dec="")


def _sky(store, name: str) -> bytes:
    from .skymap import sky_png

    info = store.catalog(name)
    key = ("sky", name, info.row_count, info.created_at)
    png = _images.get(key)
    if png is None:
        png = sky_png(store.density(name), title=f"{name}: {info.row_count:,} rows")
        _images.put(key, png)
    return png


@router.get("/pages/catalogs/{name}/sky.png")
async def sky_map(request: Request, name: str):
    svc = request.app.state.service
    try:
        svc.check_name(name, "name")
        png = await svc.run(call_store, svc.store, _sky, svc.store, name)
    except ServiceError as exc:
        return _error(request, exc)
    return _png(png, cacheable=False)


def _cell(name: str, v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if not math.isfinite(v):
        return ""
    if name in ("ra", "dec", "ra_ref", "dec_ref"):
        return f"{v:.9f}"
    if name == "distance":
        return f"{v * 3600:.4f}\u2033" if v < 1 / 60 else f"{v:.6f}"
    return f"{v:.6g}"


def _cone_rows(svc, catalog: str, ra: float, dec: float, radius: float, epoch, limit: int) -> dict:
    res = svc.cone(catalog, ra, dec, radius, epoch=epoch, limit=limit)
    rows = res.rows
    shown = rows.head(PAGE_ROWS)
    cells = [[_cell(n, shown.data[n][i]) for n in shown.names] for i in range(len(shown))]
    units = {n: rows.unit(n) or "" for n in rows.names}
    if "distance" in units:
        units["distance"] = "deg (″ below 1′)"
    return {"names": list(rows.names), "units": units, "rows": cells, "total": len(rows), "truncated": res.truncated}


@router.get("/pages/cone", response_class=HTMLResponse)
async def cone_page(request: Request):
    svc = request.app.state.service
    q = request.query_params
    try:
        catalog = svc.check_name(q.get("catalog", ""))
        ra = P.check_ra("ra", P.number("ra", q.get("ra")))
        dec = P.check_dec("dec", P.number("dec", q.get("dec")))
        radius = P.check_radius("radius", P.number("radius", q.get("radius")), svc.settings.max_radius)
        epoch = P.parse_epoch("epoch", q.get("epoch") or None)
        found = await svc.query(radius, _cone_rows, catalog, ra, dec, radius, epoch, svc.settings.max_rows)
    except ServiceError as exc:
        return _error(request, exc, back=str(request.url_for("catalogs_page")))
    query = urllib.parse.urlencode({k: v for k, v in (("catalog", catalog), ("ra", repr(ra)), ("dec", repr(dec)),
                                                       ("radius", repr(radius)), ("epoch", q.get("epoch") or None))
                                    if v is not None})
    return _render(request, "cone.html", nav="catalogs", catalog=catalog, ra=ra, dec=dec, radius=radius, epoch=epoch,
                   query=query, shown=len(found["rows"]), **found)


# -- runs --------------------------------------------------------------------------------------
_FILTERS = ("image", "catalog", "status", "step", "since", "until")


def _when(value) -> str:
    from ..provenance.audit import _utc

    dt = _utc(value)
    return "" if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S")


@router.get("/pages/runs", response_class=HTMLResponse)
async def runs_page(request: Request):
    svc = request.app.state.service
    q = request.query_params
    f = {k: (q.get(k) or "").strip() or None for k in _FILTERS}
    try:
        for k in ("image", "catalog"):
            if f[k] is not None and len(f[k]) > 1000:
                raise BadParameter(k, "too long")
        if f["status"] not in (None, "success", "partial", "failed"):
            raise BadParameter("status", "success, partial or failed")
        if f["step"] not in (None, "relative", "absolute"):
            raise BadParameter("step", "relative or absolute")
        page = P.integer("page", q.get("page"), default=1)
        if not 1 <= page <= 10 ** 7:
            raise BadParameter("page", f"must be from 1 to 10000000, got {page}")
        per = P.integer("n", q.get("n"), default=PAGE_RUNS)
        if not 1 <= per <= 500:
            raise BadParameter("n", f"runs per page must be from 1 to 500, got {per}")
        rows, more = await svc.run(call_store, svc.store, R.page_runs, svc.store, limit=per,
                                   offset=(page - 1) * per, **f)
    except ServiceError as exc:
        return _error(request, exc, back=str(request.url_for("runs_page")))
    for r in rows:
        r["started"] = _when(r["started_at"])
    kept = {k: v for k, v in f.items() if v}
    if per != PAGE_RUNS:
        kept["n"] = per
    url = str(request.url_for("runs_page"))

    def link(p: int) -> str:
        return url + "?" + urllib.parse.urlencode({**kept, "page": p})

    first = (page - 1) * per + 1
    return _render(request, "runs.html", nav="runs", runs=rows, more=more, f=f, first=first,
                   per=per if per != PAGE_RUNS else None,
                   last=first + len(rows) - 1, prev_url=link(page - 1) if page > 1 else None,
                   next_url=link(page + 1) if more else None)


def _fmt(v, spec: str) -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


@router.get("/pages/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: str):
    svc = request.app.state.service
    try:
        run = await svc.run(call_store, svc.store, R.by_run_id, "show_run", svc.store, run_id)
    except ServiceError as exc:
        return _error(request, exc, back=str(request.url_for("runs_page")))
    images = []
    for im in run["images"]:
        shift = im.get("shift")
        images.append({**im, "shift": "" if not shift else f"{shift[0]:.4f}, {shift[1]:.4f}",
                       "rotation": _fmt(im.get("rotation"), ".6f"), "scale": _fmt(im.get("scale"), ".8f"),
                       "rmse": _fmt(None if im.get("rmse") is None else im["rmse"] * 1000.0, ".3f"),
                       "input_wcs_sha256": im.get("input_wcs_sha256") or "",
                       "output_wcs_sha256": im.get("output_wcs_sha256") or ""})
    run["started"], run["finished"] = _when(run["started_at"]), _when(run["finished_at"])
    query = dict(run.get("ref_query") or {})
    if "store" in query and not is_service_url(str(query["store"])):
        query["store"] = "(a database: its address is not shown)"   # no server paths or hosts in the pages
    params = run.get("parameters") or {}
    software = run.get("software") or {}
    return _render(request, "run.html", nav="runs", run=run, images=images, chain=run.get("chain"),
                   parameters=sorted((str(k), json.dumps(v, default=str)) for k, v in params.items()),
                   software=sorted((str(k), str(v)) for k, v in software.items()),
                   ref_query=json.dumps(query, indent=1, default=str),
                   ref_files=[f for f in (run.get("ref_files") or []) if isinstance(f, (list, tuple)) and len(f) == 2])


def _residuals(store, run_id: str) -> bytes:
    from ..provenance.plot import plot_run

    rid = R.by_run_id("resolve_run_id", store, run_id)
    png = _images.get(("residuals", rid))
    if png is None:
        buf = io.BytesIO()
        plot_run(store, rid, buf, dpi=72)
        png = buf.getvalue()
        _images.put(("residuals", rid), png)
    return png


@router.get("/pages/runs/{run_id}/residuals.png")
async def residuals_png(request: Request, run_id: str):
    svc = request.app.state.service
    try:
        png = await svc.run(call_store, svc.store, _residuals, svc.store, run_id)
    except ServiceError as exc:
        return _error(request, exc)
    return _png(png, cacheable=True)


def _history(store, name: str) -> list[dict]:
    from ..provenance import audit

    try:
        t = audit.image_history(store, name)
    except AstrodbError as exc:
        raise NotFound(str(exc).replace(str(store.url), "the store")) from None
    out = []
    for row in t:
        r = {k: row[k] for k in t.colnames}
        rm = r.get("rmse_mas")
        r["rmse"] = _fmt(None if rm is None or np.ma.is_masked(rm) else float(rm), ".3f")
        out.append(r)
    return out


@router.get("/pages/image", response_class=HTMLResponse)
async def image_page(request: Request):
    # The name as a query parameter: image names may hold '/' (paths) and anything else.
    svc = request.app.state.service
    name = request.query_params.get("name") or ""
    try:
        if not name:
            raise BadParameter("name", "give the image's name")
        if len(name) > 1000:
            raise BadParameter("name", "too long")
        history = await svc.run(call_store, svc.store, _history, svc.store, name)
    except ServiceError as exc:
        return _error(request, exc, back=str(request.url_for("runs_page")))
    return _render(request, "image.html", nav="runs", name=name, history=history)


def static_folder() -> str:
    """The pages' CSS and icon."""
    return os.path.join(os.path.dirname(__file__), "static")


def swagger_folder() -> str | None:
    """Swagger UI's files from the ``swagger-ui-bundle-v2`` package (None if missing)."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return swagger_ui_bundle.swagger_ui_path

