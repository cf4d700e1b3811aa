"""A GSSS-compatible catalog search (the STScI Guide Star Catalog web service that
stcal.tweakreg and drizzlepac query for GAIA references):
``GET /vo/CatalogSearch.aspx?RA=&DEC=&SR=&EPOCH=&FORMAT=CSV&CAT=GAIADR3``.

Point ``ASTROMETRIC_CATALOG_URL`` at this server (``http://host:port``; ``.../webservices`` also
works) before the pipeline imports stcal. CAT GAIAREFCAT and GAIADR3 read the store catalog
``gaia_dr3``, GAIADR2 ``gaia_dr2``, GAIADR1 ``gaia_dr1``. With EPOCH, sources with proper motion
are propagated rigorously to it (``epoch`` column = EPOCH); sources without one keep their
catalog position and epoch and have empty pmra/pmdec (stcal then drops them, as with GSSS).

The CSV: a first line ``#Number of sources: N`` (clients drop it or skip it as a comment), the
header, CRLF line ends. Columns: objID, GAIAsourceID (the Gaia source_id), ra, dec (deg),
epoch (Julian year), raErr, decErr (mas, at the epoch), pmra, pmraErr, pmdec, pmdecErr (mas/yr),
parallax, parallaxErr (mas), mag (G). Names are case-insensitive; MINDET and other GSSS filters
are accepted and ignored.
"""
from __future__ import annotations

import logging

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import lanes
from . import params as P
from .errors import BadParameter, ServiceError
from .formats import VOTABLE_MEDIA_TYPE, gsss_csv, gsss_error, votable

log = logging.getLogger("astrodb.service")
router = APIRouter(tags=["GSSS-compatible catalog search"])

CATALOGS = {"GAIAREFCAT": "gaia_dr3", "GAIADR3": "gaia_dr3", "GAIADR2": "gaia_dr2", "GAIADR1": "gaia_dr1"}
_FORMATS = ("CSV", "VOTABLE")
_COLUMNS = ["source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmra_error", "pmdec", "pmdec_error",
            "parallax", "parallax_error", "mag", "ref_epoch"]
_EPOCH_COLUMNS = _COLUMNS + ["ra_epoch_error", "dec_epoch_error", "propagated"]


def _q(name, desc, schema, required=False):
    return {"name": name, "in": "query", "required": required, "description": desc, "schema": schema}


OPENAPI = {
    "parameters": [
        _q("RA", "centre right ascension, ICRS degrees (any finite value, wrapped)", {"type": "number"}, True),
        _q("DEC", "centre declination, ICRS degrees [-90, 90]", {"type": "number"}, True),
        _q("SR", "search radius, degrees, > 0 and at most the service's max radius", {"type": "number"}, True),
        _q("EPOCH", "decimal (Julian) year of the positions; default: catalog epoch", {"type": "string"}),
        _q("CAT", "GAIAREFCAT, GAIADR3 (default), GAIADR2 or GAIADR1",
           {"type": "string", "enum": list(CATALOGS)}),
        _q("FORMAT", "CSV (default) or VOTABLE", {"type": "string", "enum": list(_FORMATS)}),
        _q("MINDET", "accepted and ignored (GSSS detection filter)", {"type": "integer"}),
    ],
    "responses": {"200": {"description": "the sources, nearest first", "content": {
        "text/csv": {"schema": {"type": "string"}}, VOTABLE_MEDIA_TYPE: {"schema": {"type": "string"}}}}},
}
ERROR_RESPONSES = {s: {"description": d, "content": {"text/csv": {"schema": {"type": "string"}}}} for s, d in (
    (400, "bad parameter: '#ERROR: ...' then a one-column 'error' table"), (404, "catalog not in the store"),
    (503, "database unavailable"))}


async def catalog_search(request: Request) -> Response:
    return await respond(request.app.state.service, request.query_params)


async def respond(svc, query_params) -> Response:
    """The GSSS answer for the request's query parameters (any error included)."""
    try:
        q = P.lower_keys(query_params)
        ra = P.check_ra("RA", P.number("RA", q.get("ra")), wrap=True)
        dec = P.check_dec("DEC", P.number("DEC", q.get("dec")))
        sr = P.check_radius("SR", P.number("SR", q.get("sr")), svc.settings.max_radius)
        epoch = P.parse_epoch("EPOCH", q.get("epoch"))
        cat = (q.get("cat") or "GAIADR3").strip().upper()
        if cat not in CATALOGS:
            raise BadParameter("CAT", f"must be one of {', '.join(CATALOGS)}, got {cat[:40]!r}")
        fmt = (q.get("format") or "CSV").strip().upper()
        if fmt not in _FORMATS:
            raise BadParameter("FORMAT", f"must be CSV or VOTABLE, got {fmt[:40]!r}")
        body, truncated = await svc.query(sr, _search, CATALOGS[cat], ra, dec, sr, epoch, fmt)
        headers = {"X-Truncated": "true"} if truncated else {}
        return Response(body, media_type=VOTABLE_MEDIA_TYPE if fmt == "VOTABLE" else "text/csv", headers=headers)
    except ServiceError as exc:
        return Response(gsss_error(exc.message), status_code=exc.status, media_type="text/csv")
    except Exception:
        log.exception("GSSS request failed: %s", query_params)
        return Response(gsss_error("internal error"), status_code=500, media_type="text/csv")


PATHS = ("/vo/CatalogSearch.aspx", "/webservices/vo/CatalogSearch.aspx")
for _path in PATHS:
    router.add_api_route(_path, catalog_search, methods=["GET"], response_class=Response,
                         summary="GSSS-compatible cone search (stcal ASTROMETRIC_CATALOG_URL)",
                         openapi_extra=OPENAPI, responses=ERROR_RESPONSES,
                         operation_id="gsss_" + _path.strip("/").replace("/", "_").replace(".", "_"))


def _search(svc, catalog, ra, dec, sr, epoch, fmt):
    res = svc.cone(catalog, ra, dec, sr, epoch=epoch, columns=_EPOCH_COLUMNS if epoch is not None else _COLUMNS,
                   limit=svc.settings.max_rows)
    t = res.rows.data
    if fmt == "VOTABLE":
        desc = f"astrodb GSSS-compatible search of {catalog}: {len(res.rows)} sources within {sr:g} deg"
        return (votable(res.rows, description=desc, epoch=epoch, truncated=res.truncated, deadline=lanes.deadline()),
                res.truncated)
    ids = t["source_id"]
    if epoch is None:
        ep, ra_err, dec_err = t["ref_epoch"], t["ra_error"], t["dec_error"]
    else:
        moved = np.asarray(t["propagated"], bool)
        ep = np.where(moved, epoch, t["ref_epoch"])
        ra_err, dec_err = t["ra_epoch_error"], t["dec_epoch_error"]
    columns = [("objID", ids), ("GAIAsourceID", ids), ("ra", t["ra"]), ("dec", t["dec"]),
               ("epoch", ep), ("raErr", ra_err), ("decErr", dec_err)]
    for name, col in (("pmra", "pmra"), ("pmraErr", "pmra_error"), ("pmdec", "pmdec"), ("pmdecErr", "pmdec_error"),
                      ("parallax", "parallax"), ("parallaxErr", "parallax_error"), ("mag", "mag")):
        columns.append((name, t[col]))
    return gsss_csv(columns, deadline=lanes.deadline()), res.truncated
