"""IVOA Simple Cone Search 1.03, one service per catalog: ``GET /scs/{catalog}?RA=&DEC=&SR=``.

Parameters (names case-insensitive): RA, DEC (ICRS deg), SR (deg; 0 = metadata only, as the
standard asks), VERB 1|2|3 (default 2), and the extensions EPOCH (Julian year or ISO time of the
positions, propagated rigorously) and MAXREC (DALI row limit, capped at the service's). Errors
are a VOTable with ``INFO name="Error"`` and HTTP 400/404/503.
"""
from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import lanes
from . import params as P
from .errors import BadParameter, ServiceError
from .formats import VOTABLE_MEDIA_TYPE, votable, votable_error

log = logging.getLogger("astrodb.service")
router = APIRouter(tags=["IVOA Simple Cone Search 1.03"])

VERB_COLUMNS = {
    1: ["source_id", "ra", "dec"],
    2: ["source_id", "ra", "dec", "distance", "ra_error", "dec_error", "pmra", "pmdec", "parallax",
        "mag", "ref_epoch"],
    3: None,  # everything
}
_EPOCH_EXTRA = ["ra_epoch_error", "dec_epoch_error", "propagated"]
_RESPONSE_FORMATS = {"votable", "application/x-votable+xml", "text/xml", "application/xml"}


def _q(name: str, desc: str, schema: dict, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": desc, "schema": schema}


_VOT = {VOTABLE_MEDIA_TYPE: {"schema": {"type": "string"}}}
OPENAPI = {
    "parameters": [
        _q("RA", "cone centre right ascension, ICRS, degrees [0, 360]", {"type": "number"}, True),
        _q("DEC", "cone centre declination, ICRS, degrees [-90, 90]", {"type": "number"}, True),
        _q("SR", "search radius, degrees; 0 returns the table metadata only; at most the service's "
           "max radius (GET /health)", {"type": "number"}, True),
        _q("VERB", "verbosity: 1 id and position, 2 astrometry (default), 3 every column",
           {"type": "integer", "enum": [1, 2, 3]}),
        _q("EPOCH", "epoch of the returned positions: Julian year (2024.5), 'J2024.5' or ISO time; "
           "default: each source at its catalog epoch", {"type": "string"}),
        _q("MAXREC", "row limit (the nearest rows are kept, QUERY_STATUS OVERFLOW flags truncation); "
           "capped at the service's max rows", {"type": "integer", "minimum": 0}),
    ],
    "responses": {"200": {"description": "VOTable of the sources in the cone, nearest first", "content": _VOT}},
}
ERROR_RESPONSES = {s: {"description": d, "content": _VOT} for s, d in (
    (400, "bad parameter: VOTable with INFO name=\"Error\" naming it"), (404, "unknown catalog"),
    (503, "database unavailable"))}


@router.get("/scs/{catalog}", summary="Simple Cone Search of one catalog", response_class=Response,
            openapi_extra=OPENAPI, responses=ERROR_RESPONSES)
async def scs(catalog: str, request: Request) -> Response:
    return await respond(request.app.state.service, catalog, request.query_params)


async def respond(svc, catalog: str, query_params) -> Response:
    """The SCS answer for ``catalog`` and the request's query parameters (any error included)."""
    try:
        q = P.lower_keys(query_params)
        ra = P.check_ra("RA", P.number("RA", q.get("ra")))
        dec = P.check_dec("DEC", P.number("DEC", q.get("dec")))
        sr = P.check_radius("SR", P.number("SR", q.get("sr")), svc.settings.max_radius, allow_zero=True)
        verb = P.integer("VERB", q.get("verb"), default=2)
        if verb not in VERB_COLUMNS:
            raise BadParameter("VERB", f"must be 1, 2 or 3, got {verb}")
        epoch = P.parse_epoch("EPOCH", q.get("epoch"))
        limit = svc.row_limit("MAXREC", P.integer("MAXREC", q.get("maxrec")))
        fmt = q.get("responseformat")
        if fmt and fmt.strip().lower().split(";")[0] not in _RESPONSE_FORMATS:
            raise BadParameter("RESPONSEFORMAT", f"only VOTable is offered, got {fmt[:40]!r}")
        body = await svc.query(sr, _search, catalog, ra, dec, sr, verb, epoch, limit)
        return Response(body, media_type=VOTABLE_MEDIA_TYPE)
    except ServiceError as exc:
        return Response(votable_error(exc.message), status_code=exc.status, media_type=VOTABLE_MEDIA_TYPE)
    except Exception:
        log.exception("SCS request failed: catalog %r, %s", catalog, query_params)
        return Response(votable_error("internal error"), status_code=500, media_type=VOTABLE_MEDIA_TYPE)


def _search(svc, catalog, ra, dec, sr, verb, epoch, limit) -> bytes:
    columns = VERB_COLUMNS[verb]
    if columns is not None and epoch is not None and verb > 1:
        columns = columns + _EPOCH_EXTRA
    if sr == 0 or limit == 0:  # metadata query: the fields, no rows (an empty cone of the catalog)
        res = svc.cone(catalog, ra, dec, 1e-9, epoch=epoch, columns=columns, limit=0)
        res.truncated = False
    else:
        res = svc.cone(catalog, ra, dec, sr, epoch=epoch, columns=columns, limit=limit)
    when = "each source at its catalog epoch" if epoch is None else f"positions at J{epoch:g}"
    desc = (f"astrodb Simple Cone Search of catalog {catalog}: {len(res.rows)} sources within {sr:g} deg "
            f"of RA {ra:g}, Dec {dec:g} (ICRS), {when}, nearest first")
    infos = {"catalog": catalog, "row_limit": res.limit}
    if epoch is not None:
        infos["epoch"] = f"J{epoch:g}"
    return votable(res.rows, description=desc, epoch=epoch, truncated=res.truncated, infos=infos, scs=True,
                   deadline=lanes.deadline())
