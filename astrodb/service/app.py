"""The ASGI application: ``create_app(settings)`` (the store is opened at startup, read-only).

``astrodb.service.server.serve`` runs it under uvicorn.
"""
from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import QueryParams

from .. import __version__
from . import api, gsss, pages, scs
from .core import Service
from .front import BodyLimit, without_body
from .settings import Settings
from .errors import ServiceError

log = logging.getLogger("astrodb.service")

DESCRIPTION = """Read-only HTTP access to an astrodb catalog store: exact, epoch-aware cone and
footprint queries over Gaia releases and user catalogs, and the provenance records of alignment
runs.

* IVOA Simple Cone Search 1.03 per catalog: `/scs/{catalog}?RA=&DEC=&SR=` (VOTable).
* GSSS-compatible search for stcal/drizzlepac (`ASTROMETRIC_CATALOG_URL`): `/vo/CatalogSearch.aspx`.
* JSON API: `/v1/...`; errors are `{"error": {"status", "parameter", "message"}}`.

Bad input: 400 naming the parameter; unknown catalog or run: 404; request body over
`max_body_bytes`: 413; database unavailable, or the request past its time limit
`request_timeout_s`, or too many large requests waiting: 503. Limits: radius at most
`max_radius_deg`, at most `max_rows` rows per response, nearest first; regions wider than
`heavy_radius_deg` run one at a time per worker at a lower priority (see `GET /health`). HEAD
works on every GET endpoint."""


def create_app(settings: Settings | None = None) -> "ProtocolFront":
    """The service over the store named by ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc = Service.open(settings)
        app.state.service = svc
        await svc.run(svc.check_role)
        # Everything loaded so far lives as long as the process: keep the collector off it
        # (full collections over astropy & co. would pause requests for milliseconds).
        gc.collect()
        gc.freeze()
        log.info("serving %s (read-only; max radius %g deg, max rows %d, max body %d bytes, %g s per request, "
                 "heavy lane above %g deg)", svc.store.url, settings.max_radius, settings.max_rows, settings.max_body,
                 settings.request_timeout, settings.heavy_radius)
        try:
            yield
        finally:
            svc.close()
            gc.unfreeze()  # an app closed in a process that goes on (tests, embedding) leaves its heap as it was

    # The API docs load Swagger UI from the service itself (docs_swagger), never from a CDN.
    app = FastAPI(title="astrodb service", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        return api.error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("query", "path", "body")]
        param = ".".join(loc) or "body"
        msg = first.get("msg", "invalid")
        value = first.get("input")
        shown = f" (got {str(value)[:60]!r})" if value is not None and not isinstance(value, (dict, list)) else ""
        return JSONResponse({"error": {"status": 400, "parameter": param, "message": f"{param}: {msg}{shown}"}},
                            status_code=400)

    app.include_router(scs.router)
    app.include_router(gsss.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    _docs(app)
    return ProtocolFront(app, settings.max_body)


def _docs(app: FastAPI) -> None:
    """The pages' static files and the OpenAPI docs at /docs, Swagger UI served from the
    ``swagger-ui-bundle-v2`` package (works offline)."""
    from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.staticfiles import StaticFiles

    swagger = pages.swagger_folder()
    if swagger is not None:
        app.mount("/static/swagger", StaticFiles(directory=swagger), name="swagger")
    app.mount("/static", StaticFiles(directory=pages.static_folder()), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=root + app.openapi_url, title=app.title + " – API docs",
                                   oauth2_redirect_url=root + "/docs/oauth2-redirect",
                                   swagger_js_url=root + "/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url=root + "/static/swagger/swagger-ui.css",
                                   swagger_favicon_url=root + "/static/favicon.svg")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect():
        return get_swagger_ui_oauth2_redirect_html()


class ProtocolFront:
    """The ASGI app: SCS and GSSS queries go straight to their handlers; everything else
    (the JSON API, the docs, lifespan) to FastAPI, whose routes also document those two.

    The two protocol handlers validate their own parameters and render every error their
    protocol's way, so FastAPI's middleware, routing and request parsing add nothing for them
    but CPU (about a quarter of a small cone's time in the service).

    HEAD is answered for every GET route: the GET handler runs and its status and headers are
    sent without the body. Requests for FastAPI pass :class:`~astrodb.service.front.BodyLimit`
    (413 past ``max_body`` bytes, before the body is read or parsed).

    Parameters
    ----------
    app : FastAPI
        The application of the routes.
    max_body : int
        Largest request body accepted, bytes.
    """

    def __init__(self, app: FastAPI, max_body: int) -> None:
        self.app = app
        self.limited = BodyLimit(app, max_body)

    def __getattr__(self, name):      # .state, .routes, .openapi(), ... of the FastAPI app
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            if scope["method"] == "HEAD":
                # Monitoring probes use HEAD: the GET answer's status and headers, no body.
                scope, send = {**scope, "method": "GET"}, without_body(send)
            path = scope["path"]
            response = None
            if path.startswith("/scs/") and len(path) > 5 and "/" not in path[5:]:
                response = await scs.respond(self.app.state.service, path[5:], _query(scope))
            elif path in gsss.PATHS:
                response = await gsss.respond(self.app.state.service, _query(scope))
            if response is not None:
                await response(scope, receive, send)
                return
        await self.limited(scope, receive, send)


def _query(scope) -> QueryParams:
    return QueryParams(scope.get("query_string", b""))
